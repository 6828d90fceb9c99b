"""Celery tasks for tenants: thin, they take ids and call tenants.provisioning."""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.db import connection

from portal import audit, retries
from tenants import invitations, provisioning

log = logging.getLogger(__name__)


def backoff_seconds(failures: int) -> float:
    return retries.backoff(failures, base=settings.PIER_PROVISIONING_BACKOFF)


def enqueue_job(job_id: int) -> None:
    """Tenant jobs run in the public schema, whatever schema the caller is in."""
    run_tenant_job.apply_async(args=[job_id], headers={"_schema_name": "public"})


def enqueue_invitation(pending_id: int) -> None:
    send_invitation.apply_async(args=[pending_id], headers={"_schema_name": "public"})


@shared_task(bind=True, max_retries=None, acks_late=True)
def send_invitation(self, pending_id: int) -> bool:
    """Mail an invitation; a mail server that fails is tried again with backoff, then the error
    stays on the invitation for the members page to show."""
    try:
        return invitations.invitation_send(pending_id)
    except Exception as exc:
        if self.request.retries >= settings.PIER_PROVISIONING_MAX_RETRIES:
            log.warning("invitation %s: giving up on mailing it: %s", pending_id, exc)
            return False
        raise self.retry(countdown=backoff_seconds(self.request.retries), exc=exc) from exc


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def run_tenant_job(self, job_id: int, failures: int = 0) -> None:
    """Provision or delete a tenant; retried with exponential backoff, then given up with the reason.
    `failures` counts failed attempts only: a step still under way (namespaces still emptying) is
    waited for, however long it takes."""
    with audit.source("task"):
        try:
            provisioning.run_job(job_id)
        except provisioning.JobBusy:
            log.info("job %s: another worker holds the tenant; leaving it to that worker", job_id)
        except retries.NotDoneYet as exc:
            _note(provisioning.mark_waiting, job_id, str(exc))
            raise self.retry(args=[job_id], kwargs={"failures": failures},
                             countdown=settings.PIER_NAMESPACE_POLL_SECONDS) from exc
        except Exception as exc:  # any failed step: retry, then give up
            if failures >= settings.PIER_PROVISIONING_MAX_RETRIES:
                provisioning.give_up(job_id, f"{type(exc).__name__}: {exc}")
                return
            _note(provisioning.mark_retrying, job_id)
            raise self.retry(args=[job_id], kwargs={"failures": failures + 1},
                             countdown=backoff_seconds(failures), exc=exc) from exc


def _note(record, *args) -> None:
    """Bookkeeping before a retry: if it fails (the database went away), the retry still goes out;
    the stuck-job pass is the net for what it did not record."""
    try:
        record(*args)
    except Exception:
        log.exception("could not record the retry of %s; retrying anyway", args[0])


@shared_task
def resume_stuck_jobs() -> int:
    """Beat: jobs left queued/running after a crash (or a lost message) run again."""
    stuck = list(provisioning.stuck_jobs(older_than_seconds=settings.PIER_PROVISIONING_STUCK_AFTER).values_list("pk", flat=True))
    for job_id in stuck:
        log.info("job %s looks stuck; enqueueing it again", job_id)
        enqueue_job(job_id)
    return len(stuck)


@shared_task
def fan_out_to_active_tenants(task_name: str) -> int:
    """Beat: enqueue `task_name` once per active tenant whose schema is current; each copy runs in
    that tenant's schema (tenant-schemas-celery's header). Suspended, failed and half-made tenants
    are skipped."""
    from portal.tenancy import code_schema_version
    from tenants.models import Tenant

    task = current_app.tasks[task_name]
    schemas = list(
        Tenant.objects.filter(status=Tenant.Status.ACTIVE, schema_version=code_schema_version())
        .values_list("schema_name", flat=True)
    )
    for schema_name in schemas:
        task.apply_async(headers={"_schema_name": schema_name})
    return len(schemas)


@shared_task
def ensure_tenant_defaults() -> bool:
    """Per tenant (runs in its schema): the apps inside it repair what went missing (projects: the
    settings row). Writes nothing when nothing is missing."""
    if connection.schema_name == "public":
        raise RuntimeError("ensure_tenant_defaults runs in a tenant schema (enqueue it per tenant)")
    created = provisioning.seed_defaults_here(connection.tenant)
    if created:
        log.warning("tenant schema %s had lost rows its apps need; recreated", connection.schema_name)
    return created
