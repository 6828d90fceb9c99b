"""`KubeEmulator`: start, stop, point a client at it, and steer it from tests."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .api import KubeApi
from .clock import Clock
from .controllers import Workloads, register_workload_api
from .faults import Fault, Faults, RequestStats
from .kubelet import Timings
from .registry import Registry, builtin_registry
from .server import EmulatorHTTPServer
from .store import Store
from .tokens import TokenAuthority, register_token_api

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CONTEXT_NAME = "pier-emulator"
TOKEN = "pier-emulator-token"  # any bearer token is accepted; clients just need one to send


class KubeEmulator:
    """An in-memory Kubernetes API server on 127.0.0.1 (see the package docstring).

    Usable as a context manager (`with KubeEmulator() as emu:`), which starts and stops it.

    `max_token_expiration_seconds` is kube-apiserver's `--service-account-max-token-expiration`:
    TokenRequests asking for longer get this much (between 1 hour and 2^32 seconds); None, the
    default, grants what is asked.

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
        register_workload_api(self.registry)
        store = Store(self.registry, namespace_deletion_delay=namespace_deletion_delay, clock=self._clock)
        tokens = TokenAuthority(self._clock, max_expiration_seconds=max_token_expiration_seconds)
        register_token_api(self.registry, store, tokens)
        self._workloads = Workloads(
            self.registry,
            store,
            nodes=node_specs,
            timings=Timings(start_delay=pod_start_delay, run_seconds=pod_run_seconds),
            job_backoff_seconds=job_backoff_seconds,
        )
        self._app = KubeApi(self.registry, store, Faults(), RequestStats(), self._clock)
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

    def api_client(self) -> ApiClient:
        """An official-client ApiClient configured for this emulator (not the global default)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": TOKEN}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

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
        the clock back to real time."""
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
