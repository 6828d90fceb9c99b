"""The emulated cluster's moving parts, and the thread that runs them on the emulator's clock.

`Workloads` registers what they serve (`v1` Node and Event, the `pods/log` and `nodes/status`
subresources), adds the controllers to the store (garbage collector `gc.py`, job controller
`jobs.py`, scheduler `scheduler.py`, kubelet `kubelet.py`; events `events.py`) and runs `Store.reconcile()` every
`TICK_SECONDS` on a background thread, so pods start, finish and time out by themselves
without a client polling; `advance_clock` runs a pass at once. Every change goes through the
store's write path, so a client (or a watcher) sees it as any other write. The thread is
started and joined with the server, and `reset()` clears every controller's memory along with
the objects.

Test hooks, from Python (`KubeEmulator.set_exit_code`, `append_pod_log`) or over HTTP:

    POST /_emulator/exit-code  {"namespace", "name" (pod or Job), "code", "container"?}
    POST /_emulator/pod-log    {"namespace", "name" (pod or Job), "text", "container"?}
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from . import validation
from .api import Request, Response
from .events import EVENT_FIELD_SELECTORS, EventRecorder
from .gc import GarbageCollector
from .jobs import JobController
from .kubelet import Kubelet, Timings
from .logs import PodLogHandler
from .registry import Registry, ResourceType, Subresource, _path
from .scheduler import Scheduler
from .store import Store, Txn

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.02
Obj = dict[str, Any]


class _Recorder(EventRecorder):
    """The event recorder, reset with the store like a controller."""

    def reset(self, txn: Txn | None = None) -> None:  # type: ignore[override]
        super().reset()

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        pass

    def reconcile(self, txn: Txn) -> None:
        pass


def register_workload_api(registry: Registry) -> None:
    subdomain = validation.dns1123_subdomain
    registry.register(
        ResourceType(
            "", "v1", "Node", "nodes", False, subdomain, short_names=("no",), has_status=True,
            return_deleted_object=True, extra_field_selectors={"spec.unschedulable": _path("spec", "unschedulable")},
        )
    )  # fmt: skip
    registry.register(
        ResourceType(
            "", "v1", "Event", "events", True, subdomain, short_names=("ev",),
            extra_field_selectors=EVENT_FIELD_SELECTORS,
        )
    )  # fmt: skip


class Workloads:
    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        nodes: list[Obj | str],
        timings: Timings,
        job_backoff_seconds: float,
    ):
        self._store = store
        self.stopping = threading.Event()
        self.recorder = _Recorder()
        self.kubelet = Kubelet(self.recorder, timings)
        pods = registry.get("", "v1", "pods")
        assert pods is not None
        registry.register_subresource(
            Subresource(pods, "log", "", "v1", "Pod", PodLogHandler(store, pods, self.kubelet, self.stopping), ("get",))
        )
        # A node's conditions, as its kubelet reports them (or a test: a node gone NotReady).
        node_type = registry.get("", "v1", "nodes")
        assert node_type is not None
        registry.register_subresource(
            Subresource(node_type, "status", "", "v1", "Node", None, ("get", "patch", "update"))
        )
        for controller in (
            self.recorder,
            GarbageCollector(),
            JobController(self.recorder, job_backoff_seconds),
            Scheduler(self.recorder, nodes),
            self.kubelet,
        ):
            store.add_controller(controller)
        self._thread: threading.Thread | None = None

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="kube-emulator-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self.stopping.wait(TICK_SECONDS):
            try:
                self._store.reconcile()
            except Exception:  # a bug in a controller must not stop the others for good
                logger.exception("Kubernetes API emulator: a controller pass failed")

    def run_once(self) -> None:
        self._store.reconcile()

    # --- test hooks ----------------------------------------------------------------------------

    def set_exit_code(self, namespace: str, name: str, code: int, container: str = "") -> None:
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
            raise ValueError("code must be an exit code, an integer from 0 to 255")
        with self._store.transaction():
            self.kubelet.set_exit_code(namespace, name, code, container)

    def append_pod_log(self, namespace: str, name: str, text: str, container: str = "") -> None:
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        with self._store.transaction() as txn:
            self.kubelet.append_log(txn, namespace, name, text, container)

    def control(self, request: Request) -> Response | None:
        endpoint = (request.method, request.path.split("/_emulator/", 1)[-1].rstrip("/"))
        if endpoint not in (("POST", "exit-code"), ("POST", "pod-log")):
            return None
        try:
            body = json.loads(request.body or b"null")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            value_field = "code" if endpoint[1] == "exit-code" else "text"
            allowed = {"namespace", "name", value_field, "container"}
            if not {"namespace", "name", value_field} <= set(body) <= allowed:
                raise ValueError(f"the body takes namespace, name, {value_field} and optionally container")
            if endpoint[1] == "exit-code":
                self.set_exit_code(body["namespace"], body["name"], body["code"], body.get("container", ""))
            else:
                self.append_pod_log(body["namespace"], body["name"], body["text"], body.get("container", ""))
        except (ValueError, TypeError) as error:
            return Response(400, {"error": str(error)})
        return Response(200, body)
