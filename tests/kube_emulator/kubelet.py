"""A simulated kubelet on every node: pods bound to a node run, finish and write logs.

No container runs. A pod bound to a node (by the scheduler, or `spec.nodeName` on create)
goes through the phases a real kubelet reports, on the emulator's clock:

- bound: `Pending`, `status.startTime`, `hostIP`, each container `waiting` (ContainerCreating),
  conditions PodReadyToStartContainers/Initialized/ContainersReady/Ready; a `Pulling` or
  `Pulled` event by the image pull policy.
- `pod_start_delay` seconds later, once the configMap volumes its containers mount can be set
  up: `Running`, each container `running` (`startedAt`), ready, `podIP`; `Created` and
  `Started` events; the container's log lines are written. A mounted configMap volume whose
  ConfigMap is missing (or lacks a key its `items` name), unless `optional`, keeps the pod
  Pending in ContainerCreating with a Warning `FailedMount` (`MountVolume.SetUp failed for
  volume "session" : configmap "s" not found`), repeated after a doubling back-off; it is
  checked again on every pass, so the pod starts as soon as the ConfigMap is there.
- after its run time: the container `terminated` with an exit code (reason `Completed` for 0,
  `Error` otherwise, `startedAt`/`finishedAt`). With `restartPolicy` Always, or OnFailure and
  a non-zero code, it starts again (`restartCount` + 1, `lastState`, the previous log kept for
  `previous=true`); otherwise, once every container has ended, the pod is `Succeeded` (all
  exited 0) or `Failed`.
- a pod with `spec.activeDeadlineSeconds`, active that long since its `startTime` (a deadline
  an update set or lowered counts from when the kubelet saw it, never back in time): its running
  containers stopped as for a delete (below), the pod `Failed` with reason `DeadlineExceeded`
  ("Pod was active on the node longer than the specified deadline", also a `DeadlineExceeded`
  event); the pod stays, and so does its log, as a real kubelet leaves it.
- a pod being deleted (a DELETE marks a pod on a node, see `store.py`) has its running
  containers stopped (exit 137, a session runner 143; a `Killing` event), then is removed (once
  no finalizer holds it);
  a running pod removed outright (by the garbage collector, the job controller or its
  namespace going) gets a `Killing` event too.

What a container does comes from markers in its `command`/`args`, or from test hooks
(`KubeEmulator.set_exit_code`, `append_pod_log`, or `POST /_emulator/exit-code` and
`/_emulator/pod-log`), which name a pod or its Job and win over markers:

    --pier-emulator-exit=CODE       exit code (default 0)
    --pier-emulator-sleep=SECONDS   run time (default: the emulator's `pod_run_seconds`)
    --pier-emulator-log=TEXT        a log line written at start (repeatable)

A Pier session runner (a pod labelled `pier.dev/session` whose container has `PIER_SESSION_FILE`)
behaves as its session file says, read from the mounted ConfigMap when the container first
starts (`runner_sim.py`): progress lines at start, a `pier.dev/result` line when it ends, the
exit code and run time from the prompt. Markers and test hooks still win over the session.

Logs live as long as the pod (served by `logs.py`). Nodes a client creates get a ready status.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .clock import rfc3339
from .runner_sim import STOPPED_EXIT_CODE, SimulatedRunner, simulated_runner
from .scheduler import node_ip, node_ready, ready_status, set_condition

if TYPE_CHECKING:
    from .events import EventRecorder
    from .registry import ResourceType
    from .store import Txn

Obj = dict[str, Any]

EXIT_MARKER = "--pier-emulator-exit="
SLEEP_MARKER = "--pier-emulator-sleep="
LOG_MARKER = "--pier-emulator-log="
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
KILLED_EXIT_CODE = 137
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
# A failed volume mount is retried (and its FailedMount event repeated) after a back-off that
# doubles from 0.5 s to 2m2s, as the kubelet's volume operations do.
MOUNT_RETRY_SECONDS = 0.5
MAX_MOUNT_RETRY_SECONDS = 122.0


@dataclass
class Timings:
    start_delay: float = 1.0  # bound → running (image pull, container creation)
    run_seconds: float = 5.0  # how long a container runs without a sleep marker


@dataclass(frozen=True)
class Markers:
    exit_code: int | None = None
    run_seconds: float | None = None
    log_lines: tuple[str, ...] = ()


@dataclass
class ContainerRun:
    name: str
    image: str
    markers: Markers = field(default_factory=Markers)
    runner: SimulatedRunner | None = None
    exit_code: int = 0  # these three are decided when the container first starts (`_plan`)
    run_seconds: float = 0.0
    start_lines: list[str] = field(default_factory=list)
    state: str = "waiting"  # waiting | running | terminated
    started_at: float = 0.0
    finish_at: float = 0.0
    finished_at: float = 0.0
    final_code: int = 0
    restart_count: int = 0
    container_id: str = ""
    logs: list[tuple[float, str]] = field(default_factory=list)
    previous_logs: list[tuple[float, str]] | None = None
    last_state: Obj = field(default_factory=dict)


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    job_name: str
    node: str
    pod: Obj  # the pod as bound, for events after it is gone
    start_at: float
    containers: dict[str, ContainerRun]
    pod_ip: str = ""
    started: bool = False
    done: bool = False
    mount_failures: int = 0
    mount_retry_at: float = 0.0
    deadline_exceeded: bool = False
    deadline: int | None = None  # spec.activeDeadlineSeconds as last seen, and since when
    deadline_seen_at: float = 0.0


def _markers(container: Obj) -> Markers:
    exit_code: int | None = None
    run: float | None = None
    lines = []
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        if not isinstance(arg, str):
            continue
        try:
            if arg.startswith(EXIT_MARKER):
                exit_code = int(arg[len(EXIT_MARKER) :])
            elif arg.startswith(SLEEP_MARKER):
                run = max(0.0, float(arg[len(SLEEP_MARKER) :]))
        except ValueError:
            pass  # a malformed marker is an ordinary argument
        if arg.startswith(LOG_MARKER):
            lines.append(arg[len(LOG_MARKER) :])
    return Markers(exit_code, run, tuple(lines))


def _container_id() -> str:
    return "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex


class Kubelet:
    def __init__(self, recorder: EventRecorder, timings: Timings):
        self._recorder = recorder
        self.timings = timings
        self.runs: dict[str, PodRun] = {}  # pod uid → what its containers do
        self._exit_codes: dict[tuple[str, str, str], int] = {}  # (namespace, pod or job, container or "")
        self._queued_logs: dict[tuple[str, str, str], list[str]] = {}
        self._ips = itertools.count(2)

    # --- test hooks (called under the store's lock) ------------------------------------------

    def set_exit_code(self, namespace: str, name: str, code: int, container: str = "") -> None:
        self._exit_codes[(namespace, name, container)] = code

    def append_log(self, txn: Txn, namespace: str, name: str, text: str, container: str = "") -> None:
        """Write lines now to the matching running containers, else when the next one starts."""
        lines = text.splitlines() or [""]
        written = False
        for run in self.runs.values():
            if run.namespace != namespace or name not in (run.name, run.job_name):
                continue
            for container_run in run.containers.values():
                if container_run.state == "running" and container in ("", container_run.name):
                    container_run.logs += [(txn.now, line) for line in lines]
                    written = True
        if not written:
            self._queued_logs.setdefault((namespace, name, container), []).extend(lines)

    # --- the controller ------------------------------------------------------------------------

    def reset(self, txn: Txn) -> None:
        self.runs.clear()
        self._exit_codes.clear()
        self._queued_logs.clear()

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        pass

    def reconcile(self, txn: Txn) -> None:
        nodes_type, pods_type = txn.resource("", "v1", "nodes"), txn.resource("", "v1", "pods")
        nodes = {}
        for index, node in enumerate(txn.items(nodes_type), start=1):
            if not (node.get("status") or {}).get("conditions"):  # a node a client created registers
                registered = copy.deepcopy(node)
                registered["status"] = ready_status(node["metadata"]["name"], 100 + index, rfc3339(txn.now))
                txn.put(nodes_type, registered)
                node = registered
            nodes[node["metadata"]["name"]] = node
        live = set()
        for pod in txn.items(pods_type):
            node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None and pod["metadata"].get("deletionTimestamp") and not pod["metadata"].get("finalizers"):
                txn.delete(pods_type, pod)  # no kubelet will finish it: the pod GC removes it
                continue
            if node is None:
                continue
            uid = pod["metadata"]["uid"]
            live.add(uid)
            if not node_ready(node):  # a node that stopped answering: what runs there stands still
                continue
            run = self.runs.get(uid)
            if run is None:
                run = self.runs[uid] = self._admit(txn, pods_type, pod, node)
            self._advance(txn, pods_type, run)
        for uid in set(self.runs) - live:
            run = self.runs.pop(uid)
            for container in run.containers.values():
                if container.state == "running":
                    self._killing(txn, pods_type, run, container)

    def _admit(self, txn: Txn, pods_type: ResourceType, pod: Obj, node: Obj) -> PodRun:
        containers = {}
        for spec in (pod.get("spec") or {}).get("containers") or []:
            containers[spec["name"]] = ContainerRun(spec["name"], spec.get("image", ""), _markers(spec))
        metadata = pod["metadata"]
        run = PodRun(
            uid=metadata["uid"],
            namespace=metadata["namespace"],
            name=metadata["name"],
            job_name=(metadata.get("labels") or {}).get(JOB_NAME_LABEL, ""),
            node=node["metadata"]["name"],
            pod=copy.deepcopy(pod),
            start_at=txn.now + self.timings.start_delay,
            containers=containers,
        )
        admitted = copy.deepcopy(pod)
        status = admitted.setdefault("status", {})
        status.update({"phase": "Pending", "startTime": rfc3339(txn.now)})
        ip = node_ip(node)
        if ip:
            status.update({"hostIP": ip, "hostIPs": [{"ip": ip}]})
        self._write_status(txn, pods_type, run, admitted, txn.now)
        for spec in (pod.get("spec") or {}).get("containers") or []:
            image, container = spec.get("image", ""), containers[spec["name"]]
            if spec.get("imagePullPolicy") == "Always":
                self._event(txn, pods_type, run, "Normal", "Pulling", f'Pulling image "{image}"', container)
            else:
                message = f'Container image "{image}" already present on machine'
                self._event(txn, pods_type, run, "Normal", "Pulled", message, container)
        return run

    def _advance(self, txn: Txn, pods_type: ResourceType, run: PodRun) -> None:
        """Move the pod along to now, in order, each step at the time it was due."""
        now = txn.now
        pod = txn.get(pods_type, run.namespace, run.name)
        assert pod is not None
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        changed = False
        if pod["metadata"].get("deletionTimestamp") and not run.done:
            for container in run.containers.values():
                if container.state != "terminated":
                    was_running = container.state == "running"
                    runner = container.runner if was_running else None  # a runner handles SIGTERM
                    code = KILLED_EXIT_CODE if runner is None else STOPPED_EXIT_CODE
                    self._terminate(container, now, code, started=was_running)
                    if runner is not None:
                        container.logs.append((now, runner.stopped_result_line()))
                    if was_running:
                        self._killing(txn, pods_type, run, container)
            run.started = True
            changed = True
        if not run.started and now >= run.start_at:
            failures = self._mount_failures(txn, pod)
            if not failures:
                if run.mount_failures:
                    run.start_at = now  # its volumes could be set up at last: the containers start now
                self._start_all(txn, pods_type, run, pod)
                changed = True
            elif now >= run.mount_retry_at:
                for volume, error in failures:
                    message = f'MountVolume.SetUp failed for volume "{volume}" : {error}'
                    self._event(txn, pods_type, run, "Warning", "FailedMount", message)
                run.mount_failures += 1
                backoff = MOUNT_RETRY_SECONDS * 2 ** (run.mount_failures - 1)
                run.mount_retry_at = now + min(MAX_MOUNT_RETRY_SECONDS, backoff)
        start = _epoch_of((pod.get("status") or {}).get("startTime"))
        active_deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        if active_deadline != run.deadline:  # set or lowered by an update: it is enforced from now on
            run.deadline, run.deadline_seen_at = active_deadline, now
        deadline_at = (max(start + active_deadline, run.deadline_seen_at)
                       if start is not None and isinstance(active_deadline, int) else None)
        until = now if deadline_at is None else min(now, deadline_at)  # what ended before the deadline did
        while run.started and not run.done:
            running = [c for c in run.containers.values() if c.state == "running"]
            due = [c for c in running if c.finish_at <= until]
            if not due:
                if running:
                    txn.wake_at(min(c.finish_at for c in running))
                break
            container = min(due, key=lambda c: c.finish_at)
            code = self._exit_code(run, container)
            self._terminate(container, container.finish_at, code)
            if container.runner is not None:  # a runner's result is its last log line
                container.logs.append((container.finish_at, container.runner.result_line(code)))
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                self._restart(container, container.finished_at)
                self._event(txn, pods_type, run, "Normal", "Started", f"Started container {container.name}", container,
                            when=container.started_at)  # fmt: skip
            changed = True
            if all(c.state == "terminated" for c in run.containers.values()):
                break
        if run.started and all(c.state == "terminated" for c in run.containers.values()):
            run.done = True
        if deadline_at is not None and not run.done:
            if now >= deadline_at:
                self._deadline_exceeded(txn, pods_type, run, deadline_at)
                changed = True
            else:
                txn.wake_at(deadline_at)
        if not run.started:
            txn.wake_at(max(run.start_at, run.mount_retry_at))
        if changed:
            self._write_status(txn, pods_type, run, copy.deepcopy(pod), now)
        if pod["metadata"].get("deletionTimestamp") and run.done:
            current = txn.get(pods_type, run.namespace, run.name)
            if current is not None and not current["metadata"].get("finalizers"):
                txn.delete(pods_type, current)  # containers stopped: the kubelet's final delete

    def _deadline_exceeded(self, txn: Txn, pods_type: ResourceType, run: PodRun, at: float) -> None:
        """The kubelet's active deadline: stop what runs (a runner reports, as on SIGTERM), fail the pod."""
        for container in run.containers.values():
            if container.state != "terminated":
                was_running = container.state == "running"
                runner = container.runner if was_running else None
                self._terminate(container, at, KILLED_EXIT_CODE if runner is None else STOPPED_EXIT_CODE,
                                started=was_running)
                if runner is not None:
                    container.logs.append((at, runner.stopped_result_line()))
                if was_running:
                    self._killing(txn, pods_type, run, container)
        run.started = run.done = run.deadline_exceeded = True
        self._event(txn, pods_type, run, "Normal", "DeadlineExceeded", DEADLINE_MESSAGE)

    def _start_all(self, txn: Txn, pods_type: ResourceType, run: PodRun, pod: Obj) -> None:
        run.started = True
        run.pod_ip = f"10.244.{len(run.node) % 250}.{next(self._ips) % 250 + 2}"
        specs = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        config_maps = txn.resource("", "v1", "configmaps")

        def read_config_map(name: str) -> Obj | None:
            return txn.get(config_maps, run.namespace, name)

        for container in run.containers.values():
            self._plan(container, simulated_runner(pod, specs.get(container.name, {}), read_config_map))
            if specs.get(container.name, {}).get("imagePullPolicy") == "Always":
                pull = max(run.start_at - (_epoch_of(pod.get("status", {}).get("startTime")) or run.start_at), 0.0)
                message = (
                    f'Successfully pulled image "{container.image}" in {pull:.3f}s ({pull:.3f}s including waiting). '
                    "Image size: 4269694 bytes."
                )
                self._event(txn, pods_type, run, "Normal", "Pulled", message, container, when=run.start_at)
            self._event(txn, pods_type, run, "Normal", "Created", f"Created container: {container.name}", container,
                        when=run.start_at)  # fmt: skip
            self._event(txn, pods_type, run, "Normal", "Started", f"Started container {container.name}", container,
                        when=run.start_at)  # fmt: skip
            self._run(container, run.start_at)
            queued = self._take_queued_logs(run, container.name)
            container.logs += [(run.start_at, line) for line in container.start_lines + queued]

    def _plan(self, container: ContainerRun, runner: SimulatedRunner | None) -> None:
        """What the container does: its markers say, else its session runner, else the defaults."""
        markers = container.markers
        container.runner = runner
        exit_code = runner.exit_code if runner else 0
        container.exit_code = markers.exit_code if markers.exit_code is not None else exit_code
        run_seconds = runner.run_seconds if runner and runner.run_seconds is not None else self.timings.run_seconds
        container.run_seconds = markers.run_seconds if markers.run_seconds is not None else run_seconds
        container.start_lines = [*(runner.progress_lines if runner else ()), *markers.log_lines]

    @staticmethod
    def _mount_failures(txn: Txn, pod: Obj) -> list[tuple[str, str]]:
        """The configMap volumes the pod's containers mount that cannot be set up, with the
        kubelet's error (`pkg/volume/configmap`); unused volumes are not mounted at all."""
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        mounted = {mount.get("name") for container in containers for mount in container.get("volumeMounts") or []}
        config_maps = txn.resource("", "v1", "configmaps")
        failures = []
        for volume in spec.get("volumes") or []:
            source = volume.get("configMap")
            if volume.get("name") not in mounted or not isinstance(source, dict) or source.get("optional"):
                continue
            name = source.get("name") or ""
            config_map = txn.get(config_maps, pod["metadata"]["namespace"], name)
            if config_map is None:
                failures.append((volume["name"], f'configmap "{name}" not found'))
                continue
            keys = {*(config_map.get("data") or {}), *(config_map.get("binaryData") or {})}
            missing = [item.get("key") for item in source.get("items") or [] if item.get("key") not in keys]
            if missing:
                failures.append((volume["name"], f"configmap references non-existent config key: {missing[0]}"))
        return failures

    def _take_queued_logs(self, run: PodRun, container: str) -> list[str]:
        lines: list[str] = []
        for name in (run.name, run.job_name):
            for key in ((run.namespace, name, container), (run.namespace, name, "")):
                lines += self._queued_logs.pop(key, [])
        return lines

    @staticmethod
    def _run(container: ContainerRun, at: float) -> None:
        container.state = "running"
        container.started_at = at
        container.finish_at = at + container.run_seconds
        container.container_id = _container_id()

    def _restart(self, container: ContainerRun, at: float) -> None:
        container.last_state = {"terminated": self._terminated_state(container)}
        container.previous_logs, container.logs = container.logs, []
        container.restart_count += 1
        self._run(container, at)
        container.logs += [(at, line) for line in container.start_lines]

    @staticmethod
    def _terminate(container: ContainerRun, at: float, code: int, *, started: bool = True) -> None:
        if not started:
            container.started_at = at
        container.state = "terminated"
        container.finished_at = at
        container.final_code = code

    def _exit_code(self, run: PodRun, container: ContainerRun) -> int:
        for name in (run.name, run.job_name):
            for key in ((run.namespace, name, container.name), (run.namespace, name, "")):
                if name and key in self._exit_codes:
                    return self._exit_codes[key]
        return container.exit_code

    @staticmethod
    def _terminated_state(container: ContainerRun) -> Obj:
        return {
            "containerID": container.container_id,
            "exitCode": container.final_code,
            "reason": "Completed" if container.final_code == 0 else "Error",
            "startedAt": rfc3339(container.started_at),
            "finishedAt": rfc3339(container.finished_at),
        }

    def _container_status(self, container: ContainerRun) -> Obj:
        status: Obj = {
            "name": container.name,
            "image": container.image,
            "imageID": "",
            "ready": container.state == "running",
            "restartCount": container.restart_count,
            "started": container.state == "running",
            "lastState": container.last_state,
        }
        if container.state == "waiting":
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        else:
            status["imageID"] = f"{container.image}@sha256:{uuid.uuid5(uuid.NAMESPACE_URL, container.image).hex * 2}"
            status["containerID"] = container.container_id
            if container.state == "running":
                status["state"] = {"running": {"startedAt": rfc3339(container.started_at)}}
            else:
                status["state"] = {"terminated": self._terminated_state(container)}
        return status

    def _write_status(self, txn: Txn, pods_type: ResourceType, run: PodRun, pod: Obj, when: float) -> None:
        status = pod.setdefault("status", {})
        containers = list(run.containers.values())
        status["containerStatuses"] = [self._container_status(c) for c in containers]
        unready = [c.name for c in containers if c.state != "running"]
        if run.done:
            failed = any(c.final_code != 0 for c in containers)
            status["phase"] = "Failed" if failed else "Succeeded"
            reason = "PodFailed" if failed else "PodCompleted"
            ready = {"status": "False", "reason": reason}
            set_condition(pod, {"type": "PodReadyToStartContainers", "status": "False"}, when)
            if run.deadline_exceeded:
                status.update({"phase": "Failed", "reason": "DeadlineExceeded", "message": DEADLINE_MESSAGE})
        elif run.started:
            status["phase"] = "Running"
            ready = (
                {"status": "True"}
                if not unready
                else {
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "message": f"containers with unready status: [{' '.join(unready)}]",
                }
            )
            set_condition(pod, {"type": "PodReadyToStartContainers", "status": "True"}, when)
        else:
            status["phase"] = "Pending"
            ready = {
                "status": "False",
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{' '.join(unready)}]",
            }
            set_condition(pod, {"type": "PodReadyToStartContainers", "status": "False"}, when)
        set_condition(pod, {"type": "Initialized", "status": "True"}, when)
        set_condition(pod, {"type": "ContainersReady", **ready}, when)
        set_condition(pod, {"type": "Ready", **ready}, when)
        if run.pod_ip and not run.done:
            status.update({"podIP": run.pod_ip, "podIPs": [{"ip": run.pod_ip}]})
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status["conditions"].sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
        txn.put(pods_type, pod)

    def _killing(self, txn: Txn, pods_type: ResourceType, run: PodRun, container: ContainerRun) -> None:
        self._event(txn, pods_type, run, "Normal", "Killing", f"Stopping container {container.name}", container)

    def _event(
        self,
        txn: Txn,
        pods_type: ResourceType,
        run: PodRun,
        event_type: str,
        reason: str,
        message: str,
        container: ContainerRun | None = None,
        when: float | None = None,
    ) -> None:
        """An event about the pod, or about one of its containers."""
        self._recorder.record(
            txn, pods_type, run.pod, event_type, reason, message, component="kubelet", host=run.node,
            field_path=f"spec.containers{{{container.name}}}" if container else "", when=when,
        )  # fmt: skip


def _epoch_of(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
