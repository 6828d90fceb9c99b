"""`KubeEmulator`: start, stop, point a client at it, and steer it from tests."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .access import AccessControl
from .api import KubeApi
from .authn import Authenticator
from .clock import Clock
from .crd import CrdController, register_crd_api
from .faults import Fault, Faults, RequestStats
from .policy import BOOTSTRAP_CLUSTER_ROLE_BINDINGS, BOOTSTRAP_CLUSTER_ROLES
from .rbac import Authorizer
from .controllers import Workloads, register_workload_api
from .kubelet import Timings
from .registry import Registry, builtin_registry
from .reviews import register_access_reviews
from .server import EmulatorHTTPServer
from .serviceaccounts import ServiceAccountController
from .store import Store
from .tokens import TokenAuthority, register_token_api
from .watch import WatchHub

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CONTEXT_NAME = "pier-emulator"
TOKEN = "pier-emulator-token"  # the kubeconfig's: user kubernetes-admin, in system:masters


class KubeEmulator:
    """An in-memory Kubernetes API server on 127.0.0.1 (see the package docstring).

    Usable as a context manager (`with KubeEmulator() as emu:`), which starts and stops it.

    `max_token_expiration_seconds` is kube-apiserver's `--service-account-max-token-expiration`:
    TokenRequests asking for longer get this much (between 1 hour and 2^32 seconds); None, the
    default, grants what is asked.

    `watch_history` is how many changes per resource type a watch can resume across (the watch
    cache's capacity; older resourceVersions get 410 Expired), and `watch_bookmark_interval` how
    often, in seconds, watches that allow bookmarks get one (a real server: about a minute).
    `authorization=True` authenticates every request (the kubeconfig's admin token, tokens of
    `add_user`, ServiceAccount tokens; 401 for any other) and authorizes it by RBAC (403), as
    the real server does; False, the default here (`python -m kube_emulator` defaults to on),
    accepts any token and allows everything. Access reviews answer from RBAC either way.
    Workloads (see `controllers.py`): `nodes` is how many ready worker nodes to seed (named
    `emulator-node-1`...), or a list of names or dicts (`name`, `labels`, and spec fields such
    as `taints`); a pod bound to a node starts `pod_start_delay` seconds later and runs
    `pod_run_seconds` unless its arguments say otherwise; a Job replaces a failed pod after
    `job_backoff_seconds`, doubled per failure. Tests shorten these.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        namespace_deletion_delay: float = 0.2,
        max_token_expiration_seconds: int | None = None,
        watch_history: int = 1000,
        watch_bookmark_interval: float = 60.0,
        authorization: bool = False,
        nodes: int | Sequence[str | dict[str, Any]] = 2,
        pod_start_delay: float = 1.0,
        pod_run_seconds: float = 5.0,
        job_backoff_seconds: float = 10.0,
    ):
        for name, value in (
            ("pod_start_delay", pod_start_delay),
            ("pod_run_seconds", pod_run_seconds),
            ("job_backoff_seconds", job_backoff_seconds),
        ):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds ≥ 0")
        node_specs = [f"emulator-node-{i}" for i in range(1, nodes + 1)] if isinstance(nodes, int) else list(nodes)
        self._clock = Clock()
        self.registry: Registry = builtin_registry()
        crd_type = register_crd_api(self.registry)
        register_workload_api(self.registry)
        store = Store(self.registry, namespace_deletion_delay=namespace_deletion_delay, clock=self._clock)
        store.observe(CrdController(self.registry, crd_type))
        tokens = TokenAuthority(self._clock, max_expiration_seconds=max_token_expiration_seconds)
        register_token_api(self.registry, store, tokens)
        store.add_controller(ServiceAccountController(tokens))
        authorizer = Authorizer(self.registry, store)
        register_access_reviews(self.registry, authorizer)
        for plural, objects in (
            ("clusterroles", BOOTSTRAP_CLUSTER_ROLES), ("clusterrolebindings", BOOTSTRAP_CLUSTER_ROLE_BINDINGS),
        ):  # fmt: skip
            resource = self.registry.get("rbac.authorization.k8s.io", "v1", plural)
            assert resource is not None
            store.add_builtins(resource, list(objects))
        def lookup(plural: str) -> Callable[[str, str], dict[str, Any] | None]:
            resource = self.registry.get("", "v1", plural)
            assert resource is not None

            def get(namespace: str, name: str) -> dict[str, Any] | None:
                try:
                    return store.get(resource, namespace, name)
                except Exception:  # noqa: BLE001 - a 404, or a name that cannot exist
                    return None

            return get

        self.authorization = authorization
        self._access = AccessControl(
            Authenticator(TOKEN, tokens, lookup("serviceaccounts"), lookup("secrets")), authorizer, enabled=authorization
        )
        watches = WatchHub(store, history_size=watch_history, bookmark_interval=watch_bookmark_interval)
        self._workloads = Workloads(
            self.registry,
            store,
            nodes=node_specs,
            timings=Timings(start_delay=pod_start_delay, run_seconds=pod_run_seconds),
            job_backoff_seconds=job_backoff_seconds,
        )
        self._app = KubeApi(self.registry, store, Faults(), RequestStats(), self._clock, watches=watches,
                            access=self._access)
        self._app.controls.append(self._workloads.control)
        self._address = (host, port)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = EmulatorHTTPServer(self._address, self._app)
        host, port = server.server_address[:2]
        self._app.server_address = f"{host}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-emulator", daemon=True
        )
        self._server = server
        self._thread.start()
        self._workloads.start()
        return self

    def stop(self) -> None:
        """Stop serving, close client connections and join every server thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._workloads.stop()  # also ends followed log streams, so their connections can close
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- clients -----------------------------------------------------------------------------

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": self.url}}],
            "users": [{"name": CONTEXT_NAME, "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": "default"},
                }
            ],
            "current-context": CONTEXT_NAME,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig for this emulator (context `pier-emulator`); JSON, which is YAML too.

        Written to a temporary name and renamed, so a process polling for it never reads half a file.
        """
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(json.dumps(self.kubeconfig(), indent=2) + "\n")
        partial.replace(target)
        return target

    def api_client(self, token: str = TOKEN) -> ApiClient:
        """An official-client ApiClient configured for this emulator (not the global default),
        with the admin's token or another (`add_user`'s, a ServiceAccount's)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    # --- identities --------------------------------------------------------------------------

    def add_user(self, name: str, groups: list[str] | tuple[str, ...] = ()) -> str:
        """Register a user (groups plus `system:authenticated`) and return its bearer token, like a
        line of kube-apiserver's `--token-auth-file`. Users last until `reset()`."""
        return self._access.authenticator.add_user(name, list(groups))

    # --- test controls -----------------------------------------------------------------------

    def inject_fault(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        status: int | None = None,
        latency: float = 0.0,
        drop: bool = False,
        times: int | None = None,
    ) -> Fault:
        """Make matching requests fail (see `Fault`); returns the fault, whose `times` counts down."""
        fault = Fault(verb, resource, namespace, status, latency, drop, times)
        self._app.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._app.faults.clear()

    def reset(self) -> None:
        """Back to a fresh cluster: built-in objects only, no faults, request counts at zero, and
        the clock back to real time. Open watches end, and none can resume from before the reset
        (410 Expired): clients list again, as after a real cluster's etcd was restored."""
        self._app.reset()

    def advance_clock(self, seconds: float) -> None:
        """Let `seconds` pass in the cluster at once: tokens expire, terminating namespaces are
        purged, pods start and finish, Jobs hit their deadlines, new timestamps are that much
        later. Only forward; `reset()` returns to real time."""
        self._clock.advance(seconds)
        self._workloads.run_once()

    def set_exit_code(self, namespace: str, name: str, code: int, *, container: str = "") -> None:
        """The exit code of the containers of a pod, or of every pod of a Job, named `name` (one
        container only if `container` is given), when they end; wins over `--pier-emulator-exit`."""
        self._workloads.set_exit_code(namespace, name, code, container)

    def append_pod_log(self, namespace: str, name: str, text: str, *, container: str = "") -> None:
        """Write `text` (one log line per line) to the running containers of the pod or Job named
        `name`; if none is running, to the next container of it that starts."""
        self._workloads.append_pod_log(namespace, name, text, container)

    def request_count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests served since start or the last reset; `resource` is a plural, or
        `<plural>/<subresource>` (`serviceaccounts/token`); None counts all."""
        return self._app.stats.count(verb, resource)
