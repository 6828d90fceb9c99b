"""The sessions' periodic work. A session's own reconcile runs on the kernel's one task
(portal.controller.reconcile_object).

- `sync_sessions` (beat, every PIER_SESSION_SYNC_SECONDS, in the public schema): one
  label-selected LIST of runner Jobs and one of runner pods across the cluster, answered from the
  API server's cache; a session whose Job or pod shows what its row does not (a pod running, a Job
  finished, a stopped runner still running PIER_SESSION_STOP_SECONDS after its stop) gets its
  reconcile enqueued. Running sessions whose log was last kept
  PIER_SESSION_LOG_SECONDS ago go, one message per tenant, to `keep_runner_logs`, which reads
  each one's log (one Kubernetes call, which no API batches) and writes them all with one UPDATE
  (sessions.controller.keep_logs): the database work is a constant per tenant. Finished sessions
  have no Job left, so they cost nothing.
- `reconcile_live_sessions` (per tenant, every PIER_RECONCILE_INTERVAL): every session not yet
  finished is reconciled, and every finished one whose runner Job is not yet removed (its removal
  failed past its retries): the net for what a sync cannot see (a Job deleted by hand, a session
  waiting for a slot whose wake-up was lost, a runner left behind).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_tenants.utils import schema_context

from portal import audit, controller, kube, locks
from portal.tenancy import require_tenant_schema
from sessions import cluster
from sessions.controller import RUNNER_REMOVED, SESSIONS, keep_logs, log_due_before
from sessions.models import AgenticSession
from tenants.models import Tenant

log = logging.getLogger(__name__)
LABEL = AgenticSession._meta.label_lower
Phase = AgenticSession.Phase


def _observed_phase(job: dict, pod: dict | None) -> str:
    """The phase the cluster shows (what the controller would record)."""
    finished = {c.get("type") for c in (job.get("status") or {}).get("conditions") or () if c.get("status") == "True"}
    if finished & {"Complete", "Failed"}:
        return "Finished"
    if pod is not None and (pod.get("status") or {}).get("phase") == "Running":
        return Phase.RUNNING
    return Phase.CREATING


LOG_ONLY = "log"


def due(row: dict, job: dict, pod: dict | None, *, now) -> bool | str:
    """Does this live session need its reconcile now? True: a whole pass; LOG_ONLY: nothing
    changed but its log is due; False: nothing to do."""
    seen = _observed_phase(job, pod)
    if seen == "Finished" or seen != row["phase"]:
        return True
    stop = row["stop_requested_at"]
    if stop is not None and now - stop >= timedelta(seconds=settings.PIER_SESSION_STOP_SECONDS):
        return True  # a stopped runner that has not ended: its pass deletes it
    if seen == Phase.RUNNING:  # keep its log while the pod exists, every PIER_SESSION_LOG_SECONDS
        captured = row["log_captured_at"]
        if captured is None or captured <= log_due_before(now):
            return LOG_ONLY
        return False
    return seen == Phase.CREATING  # short-lived: say why it waits (unschedulable, pulling)


@shared_task
def sync_sessions() -> dict:
    selector = f"{kube.MANAGED_BY[0]}={kube.MANAGED_BY[1]},{cluster.LABEL_COMPONENT}={cluster.RUNNER_COMPONENT}"
    jobs = kube.list_objects("Job", None, label_selector=selector, cached=True)
    if not jobs:
        return {"jobs": 0, "enqueued": 0, "logs": 0}
    pods = kube.list_objects("Pod", None, label_selector=selector, cached=True)
    claimants: dict[str, list[dict]] = {}  # Job uid -> the pods claiming it (one, unless someone made another)
    for pod in pods:
        for ref in pod["metadata"].get("ownerReferences") or ():
            if ref.get("controller"):
                claimants.setdefault(ref.get("uid"), []).append(pod)
    by_tenant: dict[str, dict[str, dict]] = {}
    for job in jobs:
        labels = job["metadata"].get("labels") or {}
        if labels.get(kube.LABEL_TENANT) and labels.get(cluster.LABEL_SESSION):
            by_tenant.setdefault(labels[kube.LABEL_TENANT], {})[labels[cluster.LABEL_SESSION]] = job
    tenants = Tenant.objects.filter(slug__in=by_tenant, status__in=(Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED))
    enqueued, logs_due, now = 0, 0, timezone.now()
    for tenant in tenants:
        found = by_tenant[tenant.slug]
        logs: dict[int, str] = {}
        with schema_context(tenant.schema_name):
            rows = (AgenticSession.objects.filter(name__in=list(found)).exclude(phase__in=AgenticSession.TERMINAL)
                    .values("pk", "name", "phase", "job_uid", "log_captured_at", "stop_requested_at"))
            for row in rows:
                job = found[row["name"]]
                if row["job_uid"] != job["metadata"].get("uid"):
                    continue  # not the Job this row made (the controller's own pass decides)
                claiming = claimants.get(row["job_uid"], [])
                pod = claiming[0] if claiming else None
                needed = True if len(claiming) > 1 else due(row, job, pod, now=now)
                # Only the log is due: batched per tenant. A suspended tenant's running session
                # gets a whole pass instead, which stops it.
                if needed == LOG_ONLY and tenant.status == Tenant.Status.ACTIVE:
                    logs[row["pk"]] = pod["metadata"]["name"]
                elif needed:
                    controller.enqueue(LABEL, row["pk"], schema=tenant.schema_name)
                    enqueued += 1
        if logs:
            keep_runner_logs.apply_async(args=[list(logs.items())], headers={"_schema_name": tenant.schema_name},
                                         expires=settings.PIER_SESSION_LOG_SECONDS)
            logs_due += len(logs)
    return {"jobs": len(jobs), "enqueued": enqueued, "logs": logs_due}


@shared_task
def keep_runner_logs(pods: list[list]) -> dict:
    """Per tenant (in its schema): keep these running sessions' logs ([session key, pod name]
    pairs, from sync_sessions)."""
    require_tenant_schema("keep_runner_logs")
    return keep_logs({int(pk): str(pod) for pk, pod in pods})


@shared_task
def reconcile_live_sessions() -> dict:
    """Per tenant (fan-out from beat, in its schema): every unfinished session, and finished ones
    whose runner is not yet removed."""
    require_tenant_schema("reconcile_live_sessions")
    outcomes: dict[str, int] = {}
    with audit.source("task"):
        runner_left = (Q(phase__in=AgenticSession.TERMINAL) & ~Q(job_uid="")
                       & ~Q(conditions__contains=RUNNER_REMOVED))
        rows = AgenticSession.objects.filter(~Q(phase__in=AgenticSession.TERMINAL) | runner_left)
        for pk in rows.values_list("pk", flat=True):
            try:
                outcome = SESSIONS.run(pk)
            except locks.Busy:
                outcome = "busy"
            except Exception:  # its own task records the failure and retries with backoff
                log.exception("session %s: reconcile failed; retrying on its own task", pk)
                controller.enqueue(LABEL, pk)
                outcome = "error"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
