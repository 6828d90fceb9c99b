"""The job controller (`pkg/controller/job`), for NonIndexed Jobs.

- Pods: created from the template, named `<job>-<5 random>` (generateName), with the template's
  labels (the server put `job-name`, `controller-uid` and their `batch.kubernetes.io/` forms
  there), an ownerReference to the Job (controller and blockOwnerDeletion true) and the
  `batch.kubernetes.io/job-tracking` finalizer, removed once the pod is counted. Up to
  `parallelism` at a time, until `completions` pods succeeded. Event `SuccessfulCreate`.
- Status: `startTime` on the first sync, `active`, `ready`, `terminating`, `succeeded`,
  `failed`, `uncountedTerminatedPods`, and on success `completionTime`.
- Success: conditions `SuccessCriteriaMet` then `Complete` (reason `CompletionsReached`), event
  `Completed`.
- Failure: a failed pod is replaced after a back-off (`job_backoff_seconds`, doubling per
  failure, at most 6 minutes; the real controller starts at 10s) until more than
  `backoffLimit` pods failed: conditions `FailureTarget` then `Failed`, reason
  `BackoffLimitExceeded`. With `activeDeadlineSeconds`, once the Job has been active that
  long: reason `DeadlineExceeded`, its running pods deleted (`SuccessfulDelete`). Warning events
  by the reason, with the real controller's messages.
- A pod deleted before it ended counts as failed and is replaced (podReplacementPolicy
  TerminatingOrFailed, the default). Suspended Jobs and Jobs being deleted start no pods. Pods
  whose Job is gone lose the tracking finalizer (orphans).

  With restartPolicy OnFailure, the restarts of its running pods count against `backoffLimit`.

Not modelled: Indexed completion, podFailurePolicy, successPolicy, ttlSecondsAfterFinished,
managedBy.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from datetime import datetime

from .clock import rfc3339
from .errors import ApiError

if TYPE_CHECKING:
    from .events import EventRecorder
    from .registry import ResourceType
    from .store import Txn

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPONENT = "job-controller"
MAX_BACKOFF_SECONDS = 360.0

BACKOFF_LIMIT_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETIONS_MESSAGE = "Reached expected number of succeeded pods"


def controller_uid(obj: Obj) -> str | None:
    for reference in obj["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return reference.get("uid")
    return None


def _condition(status: Obj, kind: str, reason: str, message: str, when: float) -> None:
    conditions = status.setdefault("conditions", [])
    if any(c.get("type") == kind for c in conditions):
        return
    stamp = rfc3339(when)
    conditions.append(
        {"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp,
         "reason": reason, "message": message}
    )  # fmt: skip


def _has_condition(job: Obj, *kinds: str) -> bool:
    return any(
        c.get("type") in kinds and c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or []
    )


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class JobController:
    def __init__(self, recorder: EventRecorder, backoff_seconds: float):
        self._recorder = recorder
        self.backoff_seconds = backoff_seconds
        self._last_failure: dict[str, float] = {}  # job uid → when a pod last failed

    def reset(self, txn: Txn) -> None:
        self._last_failure.clear()

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        pass

    def reconcile(self, txn: Txn) -> None:
        jobs_type, pods_type = txn.resource("batch", "v1", "jobs"), txn.resource("", "v1", "pods")
        jobs = {job["metadata"]["uid"]: job for job in txn.items(jobs_type)}
        owned: dict[str, list[Obj]] = {uid: [] for uid in jobs}
        for pod in txn.items(pods_type):
            uid = controller_uid(pod)
            if uid in owned and pod["metadata"].get("namespace") == jobs[uid]["metadata"]["namespace"]:
                owned[uid].append(pod)
            elif TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
                self._untrack(txn, pods_type, pod)  # an orphan: nothing will count it
        for uid, job in jobs.items():
            self._sync(txn, jobs_type, pods_type, job, owned[uid])
        for uid in set(self._last_failure) - set(jobs):
            del self._last_failure[uid]

    def _sync(self, txn: Txn, jobs_type: ResourceType, pods_type: ResourceType, job: Obj, pods: list[Obj]) -> None:
        now = txn.now
        spec = job.get("spec") or {}
        old_status = job.get("status") or {}
        status = copy.deepcopy(old_status)
        uid = job["metadata"]["uid"]
        finished = _has_condition(job, "Complete", "Failed")

        # Count terminated pods once, then let them go.
        active = []
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            tracked = TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])
            if phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
                if tracked:
                    kind = "succeeded" if phase == "Succeeded" else "failed"
                    status[kind] = status.get(kind, 0) + 1
                    if kind == "failed":
                        self._last_failure[uid] = now
                    self._untrack(txn, pods_type, pod)
            else:
                active.append(pod)

        if job["metadata"].get("deletionTimestamp") or spec.get("suspend"):
            self._write(txn, jobs_type, job, status, active)
            return
        if not finished:
            status.setdefault("startTime", rfc3339(now))
            started = _epoch(status["startTime"])
            completions = spec.get("completions")
            deadline = spec.get("activeDeadlineSeconds")
            failure = None
            if status.get("failed", 0) > spec.get("backoffLimit", 6) or _past_backoff_limit_on_failure(spec, active):
                failure = ("BackoffLimitExceeded", BACKOFF_LIMIT_MESSAGE)
            elif deadline is not None and now >= started + deadline:
                failure = ("DeadlineExceeded", DEADLINE_MESSAGE)
            elif deadline is not None:
                txn.wake_at(started + deadline)
            if failure is not None:
                reason, message = failure
                _condition(status, "FailureTarget", reason, message, now)
                for pod in active:
                    self._delete_pod(txn, pods_type, job, pod)
                    status["failed"] = status.get("failed", 0) + 1
                active = []
                _condition(status, "Failed", reason, message, now)
                self._recorder.record(txn, jobs_type, job, "Warning", reason, message, component=COMPONENT)
            elif completions is not None and status.get("succeeded", 0) >= completions:
                _condition(status, "SuccessCriteriaMet", "CompletionsReached", COMPLETIONS_MESSAGE, now)
                for pod in active:
                    self._delete_pod(txn, pods_type, job, pod)
                active = []
                _condition(status, "Complete", "CompletionsReached", COMPLETIONS_MESSAGE, now)
                status["completionTime"] = rfc3339(now)
                self._recorder.record(txn, jobs_type, job, "Normal", "Completed", "Job completed", component=COMPONENT)
            else:
                wanted = spec.get("parallelism", 1)
                if completions is not None:
                    wanted = min(wanted, completions - status.get("succeeded", 0))
                missing = wanted - len(active)
                if missing > 0 and status.get("failed", 0):
                    retry_at = self._last_failure.get(uid, 0.0) + min(
                        MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (status["failed"] - 1)
                    )
                    if now < retry_at:
                        txn.wake_at(retry_at)
                        missing = 0
                for _ in range(max(0, missing)):
                    pod = self._create_pod(txn, jobs_type, pods_type, job)
                    if pod is not None:
                        active.append(pod)
        self._write(txn, jobs_type, job, status, active)

    @staticmethod
    def _write(txn: Txn, jobs_type: ResourceType, job: Obj, status: Obj, active: list[Obj]) -> None:
        status["active"] = len(active)
        for count in ("active", "succeeded", "failed"):  # omitted when zero, as the Go types do
            if not status.get(count):
                status.pop(count, None)
        status["ready"] = sum(1 for pod in active if _ready(pod))
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        current = txn.get(jobs_type, job["metadata"]["namespace"], job["metadata"]["name"])
        if current is None or current.get("status") == status:
            return  # unchanged: no write (as the real controller), and no copy of the Job
        updated = copy.deepcopy(current)
        updated["status"] = status
        txn.put(jobs_type, updated)

    def _create_pod(self, txn: Txn, jobs_type: ResourceType, pods_type: ResourceType, job: Obj) -> Obj | None:
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        metadata = template.get("metadata") or {}
        name = job["metadata"]["name"]
        pod = {
            "metadata": {
                "generateName": f"{name}-",
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "finalizers": [TRACKING_FINALIZER],
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}
                ],
            },
            "spec": template.get("spec") or {},
        }  # fmt: skip
        try:
            created = txn.create(pods_type, job["metadata"]["namespace"], pod)
        except ApiError as error:
            self._recorder.record(
                txn, jobs_type, job, "Warning", "FailedCreate", f"Error creating: {error.message}", component=COMPONENT
            )
            return None
        message = f"Created pod: {created['metadata']['name']}"
        self._recorder.record(txn, jobs_type, job, "Normal", "SuccessfulCreate", message, component=COMPONENT)
        return created

    def _delete_pod(self, txn: Txn, pods_type: ResourceType, job: Obj, pod: Obj) -> None:
        self._untrack(txn, pods_type, pod)
        current = txn.get(pods_type, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if current is not None:
            txn.delete(pods_type, current)
        jobs_type = txn.resource("batch", "v1", "jobs")
        message = f"Deleted pod: {pod['metadata']['name']}"
        self._recorder.record(txn, jobs_type, job, "Normal", "SuccessfulDelete", message, component=COMPONENT)

    @staticmethod
    def _untrack(txn: Txn, pods_type: ResourceType, pod: Obj) -> None:
        current = txn.get(pods_type, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if current is None or TRACKING_FINALIZER not in (current["metadata"].get("finalizers") or []):
            return
        changed = copy.deepcopy(current)
        finalizers = [f for f in changed["metadata"]["finalizers"] if f != TRACKING_FINALIZER]
        if finalizers:
            changed["metadata"]["finalizers"] = finalizers
        else:
            del changed["metadata"]["finalizers"]
        txn.put(pods_type, changed)


def _past_backoff_limit_on_failure(spec: Obj, active: list[Obj]) -> bool:
    """With restartPolicy OnFailure, the restarts of the pods still running count as failures."""
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(
        container.get("restartCount", 0)
        for pod in active
        for field in ("initContainerStatuses", "containerStatuses")
        for container in (pod.get("status") or {}).get(field) or []
    )
    limit = spec.get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
