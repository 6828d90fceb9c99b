"""Celery tasks for tenants: thin, they take ids. Provisioning and deletion jobs run on the
kernel's one task (tenants.provisioning.TenantJobController); here are the beat tasks and mail."""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.db import connection

from portal import controller, retries
from portal.tenancy import require_tenant_schema
from tenants import invitations, provisioning

log = logging.getLogger(__name__)


def backoff_seconds(failures: int) -> float:
    return retries.backoff(failures, base=settings.PIER_PROVISIONING_BACKOFF)


def enqueue_job(job_id: int) -> None:
    """A job is run by its tenant's controller on the kernel's task (portal.controller.reconcile_object),
    in the public schema whatever schema the caller is in, after the current transaction commits."""
    from tenants.models import ProvisioningJob

    tenant_id = ProvisioningJob.objects.filter(pk=job_id).values_list("tenant_id", flat=True).first()
    if tenant_id is not None:
        controller.enqueue(provisioning.TENANTS.label, tenant_id, schema="public")


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
    are skipped. A copy not started within one interval expires (the worker drops it): the next
    cycle does the same work, so a cycle slower than the interval never piles up in the queue."""
    from portal.tenancy import code_schema_version
    from tenants.models import Tenant

    task = current_app.tasks[task_name]
    schemas = list(
        Tenant.objects.filter(status=Tenant.Status.ACTIVE, schema_version=code_schema_version())
        .values_list("schema_name", flat=True)
    )
    for schema_name in schemas:
        task.apply_async(headers={"_schema_name": schema_name}, expires=settings.PIER_RECONCILE_INTERVAL)
    return len(schemas)


@shared_task
def ensure_tenant_defaults() -> bool:
    """Per tenant (runs in its schema): the apps inside it repair what went missing (projects: the
    settings row). Writes nothing when nothing is missing."""
    require_tenant_schema("ensure_tenant_defaults")
    created = provisioning.seed_defaults_here(connection.tenant)
    if created:
        log.warning("tenant schema %s had lost rows its apps need; recreated", connection.schema_name)
    return created
