"""The worker side of a tenant's lifecycle: provisioning and deletion jobs, step by step.

Each step is idempotent, so a job can run again after a crash or a failed attempt and pick up
where it stopped. One job per tenant runs at a time (a session-level advisory lock). Steps and
their errors are recorded on the job as they happen (each in its own transaction), so the admin,
the API and the tenant's page show progress and reasons.
"""

from __future__ import annotations

import logging
from typing import Callable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_tenants.utils import schema_context

from portal import audit, faults, tenancy
from portal.models import AuditEvent
from tenants import schema, signals
from tenants.models import JobStep, Membership, PendingMembership, ProvisioningJob, Tenant

log = logging.getLogger(__name__)


class JobBusy(Exception):
    """Another worker holds this tenant's lock; that worker will finish the job."""


# --- Provisioning steps --------------------------------------------------------------------


def _create_schema(tenant: Tenant) -> None:
    schema.create_tenant_schema(tenant)


def seed_defaults_here() -> bool:
    """Create the tenant's settings row in the current schema if it is missing. True if created."""
    from django.apps import apps

    TenantSettings = apps.get_model("projects", "TenantSettings")
    return TenantSettings.objects.get_or_create(singleton=True)[1]


def _seed_defaults(tenant: Tenant) -> None:
    with schema_context(tenant.schema_name):
        seed_defaults_here()


def _add_owner(tenant: Tenant) -> None:
    """Pending memberships of people who already have an account become memberships now."""
    User = get_user_model()
    with transaction.atomic():
        for pending in PendingMembership.objects.select_for_update().filter(tenant=tenant):
            match = Q(username=pending.username) if pending.username else Q(email__iexact=pending.email)
            user = User.objects.filter(match, is_active=True).order_by("pk").first()
            if user is None:
                continue  # becomes a member at first sign-in
            Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": pending.role})
            pending.delete()


def _activate(tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.ACTIVE, status_message="", updated_at=timezone.now())


# --- Deletion steps ------------------------------------------------------------------------


def _release_resources(tenant: Tenant) -> None:
    # Receivers (projects, sessions) remove what they made outside the database; a receiver that
    # raises makes the step fail and retry.
    signals.tenant_deleting.send(sender=Tenant, tenant=tenant)


def _drop_schema(tenant: Tenant) -> None:
    schema.drop_tenant_schema(tenant.schema_name)


def _remove_tenant(tenant: Tenant) -> None:
    with transaction.atomic():
        PendingMembership.objects.filter(tenant=tenant).delete()
        Membership.objects.filter(tenant=tenant).delete()
        Tenant.objects.filter(pk=tenant.pk).delete()


STEPS: dict[str, Callable[[Tenant], None]] = {
    "create_schema": _create_schema,
    "seed_defaults": _seed_defaults,
    "add_owner": _add_owner,
    "activate": _activate,
    "release_resources": _release_resources,
    "drop_schema": _drop_schema,
    "remove_tenant": _remove_tenant,
}


# --- Running a job -------------------------------------------------------------------------


def run_job(job_id: int) -> ProvisioningJob:
    """Run the job's remaining steps. Raises the step's error (the caller retries); raises JobBusy
    if another worker holds the tenant."""
    job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
    if job.is_finished:
        return job
    tenant = job.tenant
    if tenant is None:
        _finish(job, status=ProvisioningJob.Status.FAILED, error="The tenant no longer exists.")
        return job
    if not schema.try_advisory_lock("tenant-job", tenant.pk):
        raise JobBusy(tenant.slug)
    try:
        ProvisioningJob.objects.filter(pk=job.pk).update(
            status=ProvisioningJob.Status.RUNNING, attempts=job.attempts + 1,
            started_at=job.started_at or timezone.now(), updated_at=timezone.now(),
        )
        for step in job.steps.order_by("position"):
            if step.status == JobStep.Status.SUCCEEDED:
                continue
            _run_step(job, step, tenant)
        _finish(job, status=ProvisioningJob.Status.SUCCEEDED)
        with transaction.atomic():
            audit.record(
                action=f"tenant.{job.kind}", actor=None, tenant=job.tenant_slug, target_type="tenant",
                target=job.tenant_slug, source="task", details={"job": job.pk, "attempts": job.attempts + 1},
            )
    finally:
        schema.advisory_unlock("tenant-job", tenant.pk)
        tenancy.invalidate(job.tenant_slug)
    return job


def _run_step(job: ProvisioningJob, step: JobStep, tenant: Tenant) -> None:
    now = timezone.now()
    JobStep.objects.filter(pk=step.pk).update(
        status=JobStep.Status.RUNNING, attempts=step.attempts + 1, started_at=now, error=""
    )
    try:
        faults.check(f"provisioning.{step.name}")
        STEPS[step.name](tenant)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        JobStep.objects.filter(pk=step.pk).update(status=JobStep.Status.FAILED, error=message, finished_at=timezone.now())
        ProvisioningJob.objects.filter(pk=job.pk).update(error=f"{step.name}: {message}", updated_at=timezone.now())
        Tenant.objects.filter(pk=tenant.pk).update(status_message=f"{step.name} failed: {message}")
        log.warning("tenant %s: step %s failed: %s", tenant.slug, step.name, message)
        raise
    JobStep.objects.filter(pk=step.pk).update(status=JobStep.Status.SUCCEEDED, finished_at=timezone.now())


def _finish(job: ProvisioningJob, *, status: str, error: str | None = None) -> None:
    fields = {"status": status, "finished_at": timezone.now(), "updated_at": timezone.now()}
    if error is not None:
        fields["error"] = error
    elif status == ProvisioningJob.Status.SUCCEEDED:
        fields["error"] = ""
    ProvisioningJob.objects.filter(pk=job.pk).update(**fields)


def mark_retrying(job_id: int) -> None:
    ProvisioningJob.objects.filter(pk=job_id).update(status=ProvisioningJob.Status.RETRYING, updated_at=timezone.now())


def give_up(job_id: int, error: str) -> None:
    """Retries are exhausted. A provisioning leaves no half-made schema and the tenant `failed`
    with the reason; a deletion leaves the tenant `deleting` with the reason (staff retry it)."""
    job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
    tenant = job.tenant
    if tenant is not None and job.kind == ProvisioningJob.Kind.PROVISION:
        schema.drop_tenant_schema(tenant.schema_name)
        Tenant.objects.filter(pk=tenant.pk).update(
            status=Tenant.Status.FAILED, schema_version="", status_message=job.error or error,
            updated_at=timezone.now(),
        )
    elif tenant is not None:
        Tenant.objects.filter(pk=tenant.pk).update(status_message=job.error or error, updated_at=timezone.now())
    _finish(job, status=ProvisioningJob.Status.FAILED, error=job.error or error)
    audit.record(
        action=f"tenant.{job.kind}", actor=None, tenant=job.tenant_slug, target_type="tenant", target=job.tenant_slug,
        outcome=AuditEvent.Outcome.FAILED, source="task",
        details={"job": job.pk, "error": job.error or error, "attempts": job.attempts},
    )
    tenancy.invalidate(job.tenant_slug)


def stuck_jobs(*, older_than_seconds: int):
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return ProvisioningJob.objects.filter(
        status__in=[ProvisioningJob.Status.QUEUED, ProvisioningJob.Status.RUNNING, ProvisioningJob.Status.RETRYING],
        updated_at__lt=cutoff,
    )
