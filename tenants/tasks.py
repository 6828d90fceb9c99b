"""Celery tasks for tenants: thin, they take ids and call tenants.provisioning."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from portal import audit
from tenants import provisioning

log = logging.getLogger(__name__)


def backoff_seconds(retries: int) -> float:
    return min(settings.PIER_PROVISIONING_BACKOFF * (2**retries), 300.0)


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def run_tenant_job(self, job_id: int) -> None:
    """Provision or delete a tenant; retried with exponential backoff, then given up with the reason."""
    audit.set_source("task")
    try:
        provisioning.run_job(job_id)
    except provisioning.JobBusy:
        log.info("job %s: another worker holds the tenant; leaving it to that worker", job_id)
    except Exception as exc:  # any failed step: retry, then give up
        if self.request.retries >= settings.PIER_PROVISIONING_MAX_RETRIES:
            provisioning.give_up(job_id, f"{type(exc).__name__}: {exc}")
            return
        provisioning.mark_retrying(job_id)
        raise self.retry(countdown=backoff_seconds(self.request.retries), exc=exc)


@shared_task
def resume_stuck_jobs() -> int:
    """Beat: jobs left queued/running after a crash (or a lost message) run again."""
    audit.set_source("task")
    stuck = list(provisioning.stuck_jobs(older_than_seconds=settings.PIER_PROVISIONING_STUCK_AFTER).values_list("pk", flat=True))
    for job_id in stuck:
        log.info("job %s looks stuck; enqueueing it again", job_id)
        run_tenant_job.delay(job_id)
    return len(stuck)
