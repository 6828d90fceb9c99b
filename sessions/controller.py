"""The sessions controller, on the kernel (portal/controller.py): Pier is the operator.

A pass over one session, under its lock:

1. gone or finished: clean up what is left (the runner Job of a finished session; everything, then
   the row, for a deleted one) and stop;
2. asked to stop (a person, a key's revocation, the tenant's suspension): a running runner is
   sent SIGTERM first (its pod's deadline lowered, condition `Stopping`) and the next pass, once
   it ended, keeps its whole log; then the runner Job is deleted (its pod goes with it) and the
   session finishes with the reason (a runner that had ended on its own keeps its outcome);
3. not yet admitted: take a slot if the running limits allow (oldest first), or wait as
   `Pending` saying why;
4. make the custom resource, then (once) the runner's ConfigMap, ServiceAccount and Job, owned by
   the custom resource; a Job already there from a crashed pass and owned by this custom resource
   is adopted, never duplicated;
5. follow the Job and its pod (matched by the Job's uid): Running, Unschedulable (with the
   scheduler's message; a failure after PIER_SESSION_UNSCHEDULABLE_SECONDS), finished (the result
   from the pod's last log line, the exit code, DeadlineExceeded for the timeout); keep the log;
   a Job that vanished is a failure, not recreated;
6. write the custom resource's status (only when it changed).

Conditions: `Admitted` (WaitingForSlot), `Started` (Creating, Unschedulable, Error, Running),
`Stopping` (while a stopped runner ends) and `Finished` (reasons in FINISH_REASONS).
The phase is derived from them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import operator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Case, F, Q, TextField, Value, When
from django.db.models.functions import MD5
from django.utils import timezone

from portal import audit, controller, kube
from portal.controller import FALSE, TRUE, condition
from sessions import cluster, limits
from sessions.models import AgenticSession, SessionEvent
from tenants.models import Tenant

log = logging.getLogger(__name__)
Phase = AgenticSession.Phase

# Reasons of the `Finished` condition and the phase each one means.
FINISH_REASONS = {
    "Completed": Phase.COMPLETED,
    "StoppedByUser": Phase.STOPPED,
    "TenantSuspended": Phase.STOPPED,
    "KeyRevoked": Phase.STOPPED,
    "RunnerError": Phase.FAILED,
    "DeadlineExceeded": Phase.FAILED,
    "RunnerVanished": Phase.FAILED,
    "RunnerTampered": Phase.FAILED,
    "Unschedulable": Phase.FAILED,
    "GaveUp": Phase.FAILED,
}
RESULT_KEY = "pier.dev/result"
# A new session's reason and message, before the controller looked at it.
QUEUED = ("Queued", "waiting for the controller to take it")
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def safe_log(text: str) -> tuple[str, bool]:
    """The end of a log as Pier keeps it: at most PIER_SESSION_LOG_BYTES of UTF-8, NUL bytes
    replaced (PostgreSQL text refuses them). Returns (text, truncated)."""
    text = text.replace("\x00", "\ufffd")
    data = text.encode("utf-8")
    limit = settings.PIER_SESSION_LOG_BYTES
    if len(data) <= limit:
        return text, False
    tail = data[-limit:].decode("utf-8", "ignore")
    return tail[tail.find("\n") + 1:] if "\n" in tail else tail, True


def runner_log(namespace: str, pod: str, *, tail: int | None = None) -> tuple[str, bool]:
    """The end of a runner pod's log as Pier keeps it (safe_log), read so that no more than
    PIER_SESSION_LOG_BYTES is held however much the runner wrote. `tail`: its last lines only."""
    limit = settings.PIER_SESSION_LOG_BYTES
    return safe_log(kube.pod_log(namespace, pod, container="runner", tail_lines=tail, last_bytes=limit + 1))


def log_due_before(now: datetime) -> datetime:
    """A running session whose log was last kept at or before this (or never) is due to have it kept."""
    return now - timedelta(seconds=settings.PIER_SESSION_LOG_SECONDS)


def runner_left(s: AgenticSession) -> bool:
    """Was a runner Job made for `s` and not yet removed?"""
    done = condition(s.conditions, "RunnerRemoved")
    return bool(s.job_uid) and not (done and done["status"] == TRUE)


# Rows (finished) whose runner Job may still exist: the net pass removes it.
RUNNER_REMOVED = [{"type": "RunnerRemoved", "status": TRUE}]


def result_of(text: str) -> dict | None:
    """The runner's report: its last non-empty log line, if that is {"pier.dev/result": {…}}."""
    for line in reversed(text.splitlines()):
        if line.strip():
            try:
                report = json.loads(line)
            except ValueError:
                return None
            found = report.get(RESULT_KEY) if isinstance(report, dict) else None
            return found if isinstance(found, dict) else None
    return None


@controller.register
class SessionController(controller.Controller):
    model = AgenticSession
    max_failures_setting = "PIER_SESSION_MAX_RETRIES"
    backoff_setting = "PIER_SESSION_BACKOFF"
    derived_fields = ("phase", "reason", "message")

    def derive(self, s: AgenticSession) -> dict[str, str]:
        finished = condition(s.conditions, "Finished")
        if finished and finished["status"] == TRUE:
            return {"phase": FINISH_REASONS.get(finished["reason"], Phase.FAILED), "reason": finished["reason"],
                    "message": finished["message"]}
        started = condition(s.conditions, "Started")
        admitted = condition(s.conditions, "Admitted")
        if started and started["status"] == TRUE:
            stopping = condition(s.conditions, "Stopping")
            said = stopping if stopping and stopping["status"] == TRUE else started
            return {"phase": Phase.RUNNING, "reason": said["reason"], "message": said["message"]}
        if admitted and admitted["status"] == TRUE:
            said = started or admitted
            return {"phase": Phase.CREATING, "reason": said["reason"], "message": said["message"]}
        return {"phase": Phase.PENDING, "reason": (admitted or {}).get("reason", QUEUED[0]),
                "message": (admitted or {}).get("message", QUEUED[1])}

    def history(self, s: AgenticSession, fields: dict, text: str) -> None:
        SessionEvent.objects.create(session=s, phase=fields.get("phase", s.phase), reason=fields.get("reason", s.reason),
                                    message=fields.get("message", text))

    def lock_key(self, pk) -> tuple:
        return (self.label, connection.schema_name, pk)

    # -- the pass --

    def reconcile(self, session_id: int, **context) -> str:
        s = AgenticSession.objects.select_related("project").filter(pk=session_id).first()
        if s is None:
            return "gone"
        tenant = Tenant.objects.filter(pk=connection.tenant.pk).first()
        if tenant is None or tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
            return "tenant going"  # its namespaces and schema go with it
        if s.deletion_requested_at is not None:
            return self._remove(s)
        if s.is_finished:  # a retry after the runner's removal or the status write failed
            self._clean_up(s)
            if s.job_uid:
                self._mirror_status(s, tenant)
            self._observed(s)
            return "finished"
        if tenant.status == Tenant.Status.SUSPENDED and s.stop_requested_at is None:
            # The suspension's own stop (audited), in case its hook was lost.
            stop_all(tenant=tenant, reason="TenantSuspended", by="the organization was suspended",
                     rows=AgenticSession.objects.filter(pk=s.pk))
            s.refresh_from_db()
        if s.stop_requested_at is not None or s.stop_reason:
            stopped = self._stop(s, tenant)
            if stopped is not None:
                return stopped
        admitted = condition(s.conditions, "Admitted")
        if not (admitted and admitted["status"] == TRUE):
            if not self._admit(s, tenant):
                return "waiting"
        owner = self._custom_resource(s, tenant)
        if owner is None:
            return "vanished"
        if not s.job_uid:
            self._create_runner(s, tenant, owner)
        outcome = self._follow(s, tenant)
        if s.is_finished:
            self._clean_up(s)
        self._write_status(s, tenant, owner)
        if s.is_finished:
            limits.wake_waiting(s)
        self._observed(s)
        return outcome

    def _observed(self, s: AgenticSession) -> None:
        """This pass carried out the row's generation (a stop asked for later is a new one)."""
        self.record(s, only_generation=s.generation, observed_generation=s.generation)

    def failed(self, session_id: int, exc: Exception, *, final: bool) -> bool:
        s = AgenticSession.objects.filter(pk=session_id).first()
        if s is None:
            return False
        message = f"{type(exc).__name__}: {exc}"
        attempts = s.reconcile_attempts + 1
        if s.is_finished:  # its phase stands; what is left (remove the runner, mirror the status) is retried
            self.record(s, reconcile_attempts=attempts)
            if final:  # the net pass (reconcile_live_sessions) still removes a runner left behind
                log.error("session %s: finishing up failed for good: %s", s.name, message)
            return not final
        if final:
            self.record(s, "Finished", TRUE, "GaveUp", f"gave up after {attempts} attempts: {message}",
                        reconcile_attempts=attempts, completion_time=timezone.now())
            limits.wake_waiting(s)
            return False
        started = condition(s.conditions, "Started")
        running = bool(started and started["status"] == TRUE)  # a running session stays Running, saying so
        self.record(s, "Started", TRUE if running else FALSE, "Error", f"last error (retrying): {message}",
                    reconcile_attempts=attempts)
        return True

    # -- steps --

    def _admit(self, s: AgenticSession, tenant: Tenant) -> bool:
        """Take a running slot, oldest first (limits.waiting_reason says why two workers admitting
        at once never pass a limit together)."""
        waiting = limits.waiting_reason(s, tenant)
        if waiting:
            self.record(s, "Admitted", FALSE, "WaitingForSlot", waiting)
            return False
        mode = limits.runtime_mode(tenant)
        self.record(s, "Admitted", TRUE, "Admitted", "a running slot is free", runtime_mode=mode,
                    runner_image=limits.runner_image(mode, tenant),
                    runner_resources=limits.runner_resources(s.project, tenant))
        limits.wake_waiting(s, project_only=True)  # the next in line: another slot may be free too
        return True

    def _custom_resource(self, s: AgenticSession, tenant: Tenant) -> dict | None:
        desired = cluster.custom_resource(s, tenant_slug=tenant.slug)
        current = kube.get(cluster.SESSION_KIND, s.name, s.project.namespace)
        if current is None and s.job_uid:
            # Made before and gone now: its Job and pod went with it (garbage collection).
            self._finish(s, "RunnerVanished", "the session's custom resource was deleted outside Pier; "
                         "its runner went with it and is not recreated")
            return None
        if current is None or kube.drifted(desired, current):
            current = kube.apply(desired)
        return current

    def _create_runner(self, s: AgenticSession, tenant: Tenant, owner: dict) -> None:
        objects = cluster.runner_objects(s, owner, tenant_slug=tenant.slug, placement=limits.placement(s, tenant))
        job = None
        for desired in objects:
            if desired["kind"] == "Job":
                job = kube.get("Job", desired["metadata"]["name"], s.project.namespace)
                owners = {ref.get("uid") for ref in (job or {}).get("metadata", {}).get("ownerReferences") or ()}
                if job is not None and owner["metadata"]["uid"] not in owners:
                    raise kube.KubeError(f"Job {desired['metadata']['name']} exists and is not this session's",
                                         reason="AlreadyExists")
                if job is None:  # a crashed pass may have made it: adopt that one instead
                    job = kube.apply(desired)
            else:
                kube.reconcile(desired)
        self.record(s, "Started", FALSE, "Creating", "the runner Job was created; waiting for its pod",
                    job_uid=job["metadata"]["uid"])

    def _pods(self, s: AgenticSession) -> list[dict]:
        pods = kube.list_objects("Pod", s.project.namespace, label_selector=f"{JOB_UID_LABEL}={s.job_uid}")
        mine = [p for p in pods if any(ref.get("uid") == s.job_uid and ref.get("controller")
                                       for ref in p["metadata"].get("ownerReferences") or ())]
        return sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def runner_pod(self, s: AgenticSession, pods: list[dict]) -> tuple[dict | None, list[str]]:
        """The runner's pod among those claiming its Job, and the names of any others. The Job
        makes one pod (backoffLimit 0); Pier pins it (uid and name) the first time it sees it.
        Anyone who may create pods in the namespace can make one with the Job's labels and owner,
        so another claimant means the log and the result cannot be trusted."""
        if s.runner_pod_uid:
            mine = next((p for p in pods if p["metadata"].get("uid") == s.runner_pod_uid), None)
            return mine, [p["metadata"]["name"] for p in pods if p is not mine]
        if len(pods) > 1:
            return None, [p["metadata"]["name"] for p in pods]
        if pods:
            self.record(s, runner_pod_uid=pods[0]["metadata"]["uid"], runner_pod_name=pods[0]["metadata"]["name"])
            return pods[0], []
        return None, []

    def _follow(self, s: AgenticSession, tenant: Tenant) -> str:
        job = kube.get("Job", cluster.job_name(s), s.project.namespace)
        if job is None or job["metadata"].get("uid") != s.job_uid:
            self._finish(s, "RunnerVanished", "the runner Job was deleted outside Pier; it is not recreated")
            return "vanished"
        pod, others = self.runner_pod(s, self._pods(s))
        if others:
            self._finish(s, "RunnerTampered", f"another pod claims the runner Job ({', '.join(sorted(others))[:500]}): "
                         "the session's log and result cannot be trusted, so it failed and its runner was removed")
            return "tampered"
        self._capture(s, pod)
        job_conditions = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or ()
                          if c.get("status") == "True"}
        container = _runner_state(pod)
        if "Complete" in job_conditions or "Failed" in job_conditions:
            return self._finished_job(s, job_conditions, container, pod)
        if pod is not None and pod.get("status", {}).get("phase") == "Running":
            started = parse_time((container.get("running") or {}).get("startedAt")) or timezone.now()
            self.record(s, "Started", TRUE, "Running", f"running in pod {pod['metadata']['name']}",
                        start_time=s.start_time or started, reconcile_attempts=0)
            return "running"
        unschedulable = _unschedulable(pod)
        if unschedulable is not None:
            # How long it has not started, by Pier's clock (the runner Job was made then): a
            # cluster whose clock is off cannot fail it early or keep it waiting forever.
            started = condition(s.conditions, "Started") or {}
            since = (parse_time(started.get("lastTransitionTime")) if started.get("status") == FALSE else None
                     ) or timezone.now()
            message = f"the cluster cannot place the runner: {unschedulable.get('message', '')}".strip()
            if timezone.now() - since >= timedelta(seconds=settings.PIER_SESSION_UNSCHEDULABLE_SECONDS):
                self._finish(s, "Unschedulable", message)
                return "unschedulable"
            self.record(s, "Started", FALSE, "Unschedulable", message, reconcile_attempts=0)
            return "unschedulable"
        if pod is None:  # the Job controller could not make it (admission refused it): say why
            warning = self._job_warning(s)
            if warning:
                self.record(s, "Started", FALSE, warning.get("reason") or "FailedCreate", warning.get("message", ""),
                            reconcile_attempts=0)
            return "creating"
        waiting = (container.get("waiting") or {})
        if waiting:
            self.record(s, "Started", FALSE, "Creating",
                        f"{waiting.get('reason', 'waiting')}: {waiting.get('message', '')}".rstrip(": "),
                        reconcile_attempts=0)
        return "creating"

    def _job_warning(self, s: AgenticSession) -> dict | None:
        events = kube.list_objects("Event", s.project.namespace, field_selector=f"involvedObject.uid={s.job_uid}")
        warnings = [e for e in events if e.get("type") == "Warning"]
        return max(warnings, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", default=None)

    def _finished_job(self, s: AgenticSession, job_conditions: dict, container: dict, pod: dict | None) -> str:
        terminated = container.get("terminated") or {}
        code = terminated.get("exitCode")
        report = result_of(s.log) or {}
        # The pod's clock for both ends of the run (start_time is the container's startedAt too).
        ended = parse_time(terminated.get("finishedAt"))
        if "Complete" in job_conditions and report.get("outcome", "succeeded") == "succeeded":
            self._finish(s, "Completed", "the runner finished", result=str(report.get("summary", ""))[:20000],
                         exit_code=code, ended=ended)
            return "completed"
        failed = job_conditions.get("Failed") or {}
        pod_reason = ((pod or {}).get("status") or {}).get("reason")
        if "DeadlineExceeded" in (failed.get("reason"), pod_reason):  # the pod's deadline, or the Job's
            self._finish(s, "DeadlineExceeded",
                         f"the session ran past its timeout of {s.timeout_seconds} s; the cluster stopped it",
                         exit_code=code, ended=ended)
            return "timeout"
        said = str(report.get("message", "")).strip()
        text = f"the runner exited with code {code}" if code is not None else "the runner failed"
        self._finish(s, "RunnerError", f"{text}: {said}" if said else text, exit_code=code, ended=ended)
        return "failed"

    def _capture(self, s: AgenticSession, pod: dict | None) -> bool:
        """Keep the end of the runner's log while its pod exists (it goes with the pod). False:
        there was no log to read."""
        if pod is None or pod.get("status", {}).get("phase") == "Pending":
            return False
        try:
            kept, truncated = runner_log(s.project.namespace, pod["metadata"]["name"])
        except kube.KubeError as exc:
            if exc.status == 404:
                return False
            raise
        now = timezone.now()
        if kept != s.log or truncated != s.log_truncated:
            AgenticSession.objects.filter(pk=s.pk).update(log=kept, log_truncated=truncated, log_captured_at=now)
        else:  # unchanged: only when it was looked at, so the sync waits a log period again
            AgenticSession.objects.filter(pk=s.pk).update(log_captured_at=now)
        s.log, s.log_truncated, s.log_captured_at = kept, truncated, now
        return True

    def _finish(self, s: AgenticSession, reason: str, message: str, *, ended=None, **fields) -> None:
        """`ended`: when the runner ended by the pod's clock (else now, by Pier's)."""
        self.record(s, "Finished", TRUE, reason, message, completion_time=s.completion_time or ended or timezone.now(),
                    reconcile_attempts=0, **fields)

    def _stop(self, s: AgenticSession, tenant: Tenant) -> str | None:
        """Stop the runner, keeping all it wrote, then say Stopped. A runner whose pod runs is
        asked first (`_ask_to_stop`); once its pod ended, or PIER_SESSION_STOP_SECONDS after
        asking whatever the pod does, the log is kept and the runner Job deleted. The slot frees
        only once nothing runs (a failed delete is retried with the session occupying its slot).
        None: the runner had ended on its own before the stop reached it, so its own outcome
        (its result, its exit code) stands and the pass goes on to record it."""
        ended = code = None
        if s.job_uid:
            pod, others = self.runner_pod(s, self._pods(s))
            if (not others and (pod or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")
                    and _asked_to_stop_at(s) is None):
                return None
            if not others:
                if self._ask_to_stop(s, tenant, pod):
                    return "stopping"
                try:
                    self._capture(s, pod)
                except kube.KubeError as exc:
                    if not self._waited_for(s):
                        raise  # its pod ended and its log is there to read: read it on a retry
                    # Its node does not answer: what was kept stands, and the stop goes on.
                    log.warning("session %s: stopping without its last log lines: %s", s.name, exc)
                terminated = _runner_state(pod).get("terminated") or {}
                ended, code = parse_time(terminated.get("finishedAt")), terminated.get("exitCode")
            kube.delete("Job", cluster.job_name(s), s.project.namespace)  # Background: its pod goes too
        reason = s.stop_reason or "StoppedByUser"
        self._finish(s, reason, self._stop_message(s), stop_reason=reason, ended=ended,
                     **({"exit_code": code} if code is not None else {}))
        if s.job_uid:
            self.record(s, "RunnerRemoved", TRUE, "Deleted", "the runner Job was removed")
        self._mirror_status(s, tenant)
        limits.wake_waiting(s)
        self._observed(s)
        return "stopped"

    @staticmethod
    def _stop_message(s: AgenticSession) -> str:
        who = s.stopped_by or "someone"
        return {"TenantSuspended": "stopped: the organization was suspended",
                "KeyRevoked": f"stopped: {who}"}.get(s.stop_reason or "StoppedByUser", f"stopped by {who}")

    @staticmethod
    def _waited_for(s: AgenticSession) -> bool:
        """Was the runner asked to stop PIER_SESSION_STOP_SECONDS ago or more?"""
        since = _asked_to_stop_at(s)
        return since is not None and timezone.now() - since >= timedelta(seconds=settings.PIER_SESSION_STOP_SECONDS)

    def _ask_to_stop(self, s: AgenticSession, tenant: Tenant, pod: dict | None) -> bool:
        """Ask a running runner to end, as its timeout does: its pod's deadline lowered to 1 s
        (a pod update the API server allows), so the kubelet sends SIGTERM, gives the runner its
        grace period to report, and, unlike a delete, keeps the pod and its log. True while
        that is under way (this pass asked, or the runner has had less than
        PIER_SESSION_STOP_SECONDS); False: nothing runs, or waiting is over."""
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return False  # not started (nothing to say), or ended (its log is complete)
        if _asked_to_stop_at(s) is not None:
            if self._waited_for(s):
                return False  # the runner did not end (its node may be gone): delete it anyway
            self._capture_if_answered(s, pod)
            return True
        try:
            kube.merge_patch("Pod", pod["metadata"]["name"], s.project.namespace,
                             {"spec": {"activeDeadlineSeconds": 1}})
        except kube.KubeError as exc:
            if exc.status in (404, 422):  # gone, or ending already: the delete finishes the stop
                return False
            raise
        self.record(s, "Stopping", TRUE, "Stopping",
                    f"{self._stop_message(s)}: the runner was sent SIGTERM and has "
                    f"{settings.PIER_SESSION_STOP_SECONDS} s to end")
        self._mirror_status(s, tenant)
        self._capture_if_answered(s, pod)
        return True

    def _capture_if_answered(self, s: AgenticSession, pod: dict) -> None:
        """Keep the log of a runner that is stopping, if its node answers (the read once it
        ended is the one that matters; one that never ends is deleted with what was kept)."""
        try:
            self._capture(s, pod)
        except kube.KubeError as exc:
            log.warning("session %s: the log of the stopping runner could not be read: %s", s.name, exc)

    def _clean_up(self, s: AgenticSession) -> str:
        """A finished session keeps its custom resource (with its status) and nothing that runs."""
        if runner_left(s):
            kube.delete("Job", cluster.job_name(s), s.project.namespace)  # Background: its pod goes too
            self.record(s, "RunnerRemoved", TRUE, "Deleted", "the runner Job was removed")
        return "finished"

    def _remove(self, s: AgenticSession) -> str:
        """Deleting a session: its custom resource (and with it everything it owns), then the row."""
        if s.project.namespace:
            kube.delete(cluster.SESSION_KIND, s.name, s.project.namespace)
        AgenticSession.objects.filter(pk=s.pk).delete()
        limits.wake_waiting(s)
        return "deleted"

    def _mirror_status(self, s: AgenticSession, tenant: Tenant) -> None:
        """Write the row's status on the custom resource, if it (still) exists."""
        current = kube.get(cluster.SESSION_KIND, s.name, s.project.namespace)
        if current is not None:
            self._write_status(s, tenant, current)

    def _write_status(self, s: AgenticSession, tenant: Tenant, current: dict) -> None:
        status = {"phase": s.phase, "reason": s.reason, "message": s.message, "observedGeneration":
                  (current.get("metadata") or {}).get("generation", 1),
                  "conditions": [{k: c[k] for k in ("type", "status", "reason", "message", "lastTransitionTime")}
                                 for c in s.conditions]}
        if s.start_time:
            status["startTime"] = s.start_time.isoformat().replace("+00:00", "Z")
        if s.completion_time:
            status["completionTime"] = s.completion_time.isoformat().replace("+00:00", "Z")
        if s.result:
            status["result"] = s.result[:4000]
        if (current.get("status") or {}) != status:
            kube.apply_status({"apiVersion": cluster.API_VERSION, "kind": cluster.KIND,
                               "metadata": {"name": s.name, "namespace": s.project.namespace}, "status": status})


def stop_all(*, tenant: Tenant, reason: str, by: str, rows=None) -> int:
    """Ask every live session (of `rows`, default all in this schema) to stop, with `reason`;
    each stop is audited (the system's, on behalf of what happened: `by`)."""
    rows = (rows if rows is not None else AgenticSession.objects.all()).exclude(
        phase__in=AgenticSession.TERMINAL).filter(stop_requested_at__isnull=True)
    stopping = list(rows.values_list("pk", "project__slug", "name", "phase"))
    if stopping:
        ids = [pk for pk, *_ in stopping]
        AgenticSession.objects.filter(pk__in=ids).update(stop_requested_at=timezone.now(), stop_reason=reason,
                                                         stopped_by=by)
        for _pk, project, name, phase in stopping:
            audit.record(action="session.stop", actor=None, tenant=tenant, target_type="session",
                         target=f"{project}/{name}", details={"phase": phase, "reason": reason, "by": by})
        SESSIONS.bump(AgenticSession.objects.filter(pk__in=ids))
    return len(stopping)


# keep_logs writes what it read once this much changed log text waits (and at the end), so a
# worker holds, and one statement carries, no more than this (plus one log) however many run.
LOG_WRITE_BYTES = 8 * 1024 * 1024


def keep_logs(pods: dict[int, str]) -> dict:
    """Keep the log of running sessions whose log is due (`pods`: a session's key -> the name of
    its runner pod as the sync saw it), for one tenant, in its schema: one SELECT, one log read
    per session, one UPDATE for them all (one per LOG_WRITE_BYTES of changed logs), so the
    database work of keeping logs is a constant per tenant whatever its number of running
    sessions. No lock and no pass: a log is read only from the pod the session pinned, and
    written only if the row is still Running and its log was not kept since the SELECT (by a
    whole pass, which may have read a newer one): `log_captured_at` is the compare-and-set
    guard. A row that changed (stopped, finished) is its own pass's, and one whose log is no
    longer due (a copy of this message that ran first kept it) is skipped."""
    due = Q(log_captured_at__isnull=True) | Q(log_captured_at__lte=log_due_before(timezone.now()))  # not kept by a copy since
    rows = list(AgenticSession.objects.filter(due, pk__in=list(pods), phase=Phase.RUNNING,
                                              deletion_requested_at__isnull=True)
                .annotate(digest=MD5("log"))
                .values("pk", "project__namespace", "runner_pod_name", "log_truncated", "log_captured_at", "digest"))
    changed: dict[int, tuple[str, bool]] = {}
    looked: list[Q] = []
    waiting = 0  # bytes of changed log text not yet written
    outcome = {"read": 0, "written": 0, "skipped": len(pods) - len(rows)}

    def write() -> None:
        nonlocal waiting
        if not looked:
            return
        written = AgenticSession.objects.filter(functools.reduce(operator.or_, looked), phase=Phase.RUNNING).update(
            log=Case(*(When(pk=pk, then=Value(kept)) for pk, (kept, _) in changed.items()), default=F("log"),
                     output_field=TextField()),
            log_truncated=Case(*(When(pk=pk, then=Value(truncated)) for pk, (_, truncated) in changed.items()),
                               default=F("log_truncated"), output_field=BooleanField()),
            log_captured_at=timezone.now())
        outcome["read"] += len(looked)
        outcome["written"] += written  # fewer written: kept by a pass meanwhile
        looked.clear()
        changed.clear()
        waiting = 0

    for row in rows:
        if not row["runner_pod_name"] or row["runner_pod_name"] != pods[row["pk"]]:
            outcome["skipped"] += 1  # not the pod this session pinned: its own pass decides
            continue
        try:
            kept, truncated = runner_log(row["project__namespace"], row["runner_pod_name"])
        except kube.KubeError as exc:
            if exc.status != 404:  # the cluster is not answering: the next log period tries again
                log.warning("keeping runner logs: %s; the rest wait for the next period", exc)
                outcome["error"] = str(exc)[:200]
                break
            outcome["skipped"] += 1  # the pod is gone: the session's own pass sees why
            continue
        data = kept.encode()
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()  # PostgreSQL's md5() of the text
        if digest != row["digest"] or truncated != row["log_truncated"]:
            changed[row["pk"]] = (kept, truncated)
            waiting += len(data)
        captured = row["log_captured_at"]
        looked.append(Q(pk=row["pk"], log_captured_at=captured) if captured else
                      Q(pk=row["pk"], log_captured_at__isnull=True))
        if waiting >= LOG_WRITE_BYTES:
            write()
    write()
    return outcome


def remove_cluster_objects(project) -> None:
    """Delete every session's custom resource in the project's namespace (what each owns goes with
    it); for a project being deleted."""
    selector = f"{kube.MANAGED_BY[0]}={kube.MANAGED_BY[1]},{kube.LABEL_PROJECT}={project.slug}"
    try:
        found = kube.list_objects(cluster.SESSION_KIND, project.namespace, label_selector=selector)
    except kube.UnknownKind:
        return  # the CRD is not installed: there are none
    for obj in found:
        kube.delete(cluster.SESSION_KIND, obj["metadata"]["name"], project.namespace)


def _asked_to_stop_at(s: AgenticSession) -> datetime | None:
    """When Pier sent the runner SIGTERM (condition Stopping), or None if it has not."""
    asked = condition(s.conditions, "Stopping")
    if not (asked and asked["status"] == TRUE):
        return None
    return parse_time(asked.get("lastTransitionTime")) or timezone.now()


def _runner_state(pod: dict | None) -> dict:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == "runner":
            return status.get("state") or {}
    return {}


def _unschedulable(pod: dict | None) -> dict | None:
    for c in ((pod or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return c
    return None


SESSIONS: SessionController = controller.controller_for(AgenticSession._meta.label_lower)
