"""The worker side of a tenant's lifecycle: provisioning and deletion jobs, step by step.

An attempt runs all of a job's steps in one transaction (see run_job): it completes or leaves
nothing, and running it again after a crash or a failure is safe. Each step is idempotent as well,
for the work that is not transactional (e.g. Kubernetes clean-up on deletion). Jobs run on the
controller kernel (portal/controller.py: its one task, lock and retry policy): one job per tenant
at a time (the lock is the tenant's, not the job's). Steps, attempts and errors are recorded on
the job — its steps are its conditions and the jobs its history — so the admin, the API and the
tenant's page show what happened and why.
"""

from __future__ import annotations

import logging
from typing import Callable

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_tenants.utils import schema_context

from portal import audit, controller, faults, locks, retries, tenancy
from portal.models import AuditEvent
from tenants import schema, signals
from tenants.models import JobStep, Membership, PendingMembership, ProvisioningJob, Tenant

log = logging.getLogger(__name__)


FINISHED = (ProvisioningJob.Status.SUCCEEDED, ProvisioningJob.Status.FAILED)


# --- Provisioning steps --------------------------------------------------------------------


def _create_schema(tenant: Tenant) -> None:
    schema.create_tenant_schema(tenant)


def seed_defaults_here(tenant: Tenant) -> bool:
    """The periodic repair, in the tenant's schema: the apps inside it (receivers of
    tenant_seeding) recreate what they need if it went missing; True if any did. Nothing is
    written when nothing is missing."""
    return any(created for _receiver, created in signals.tenant_seeding.send(sender=Tenant, tenant=tenant, new=False))


def _seed_defaults(tenant: Tenant) -> None:
    # A new schema (this attempt created it in the same transaction): the apps inside it (projects:
    # the settings row) seed what they need; a receiver that raises fails the step.
    with schema_context(tenant.schema_name):
        signals.tenant_seeding.send(sender=Tenant, tenant=tenant, new=True)


def _add_owner(tenant: Tenant) -> None:
    """Pending memberships of people who already have an account become memberships now; the
    others wait for their first sign-in. (Runs inside the job's transaction.)"""
    pending = list(PendingMembership.objects.filter(tenant=tenant).order_by("pk"))
    if not pending:
        return
    match = Q(pk__in=[])
    for p in pending:
        match |= Q(username=p.username) if p.username else Q(email__iexact=p.email)
    users = list(get_user_model().objects.filter(match, is_active=True).order_by("pk"))
    claimed, members = [], []
    for p in pending:
        user = next((u for u in users if (u.username == p.username if p.username else u.email.lower() == p.email)), None)
        if user is not None:
            claimed.append(p.pk)
            members.append(Membership(tenant=tenant, user=user, role=p.role))
    if members:
        Membership.objects.bulk_create(members, ignore_conflicts=True)
        PendingMembership.objects.filter(pk__in=claimed).delete()


def _activate(tenant: Tenant) -> None:
    """The tenant is served from now on, at the schema version its schema was created with."""
    Tenant.objects.filter(pk=tenant.pk).update(
        status=Tenant.Status.ACTIVE, status_message="", schema_version=tenancy.code_schema_version(),
        updated_at=timezone.now(),
    )


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


@controller.register
class TenantJobController(controller.Controller):
    """Tenants' provisioning and deletion jobs on the kernel: the lock is the tenant's (two jobs of
    one tenant never run at once), a failure is retried with backoff and, past the budget, given
    up with the reason (give_up); "still under way" is a wait (mark_waiting)."""

    model = ProvisioningJob
    max_failures_setting = "PIER_PROVISIONING_MAX_RETRIES"
    backoff_setting = "PIER_PROVISIONING_BACKOFF"
    derived_fields = ()  # the job's status is its steps' outcome, written with them by _attempt

    def lock_key(self, job_id: int) -> tuple:
        tenant_id = ProvisioningJob.objects.filter(pk=job_id).values_list("tenant_id", flat=True).first()
        return ("tenant-job", tenant_id if tenant_id is not None else f"job-{job_id}")

    def derive(self, job: ProvisioningJob) -> dict:
        return {}

    def reconcile(self, job_id: int, **context) -> ProvisioningJob:
        return _attempt(job_id)

    def failed(self, job_id: int, exc: Exception, *, final: bool) -> bool:
        if final:
            give_up(job_id, f"{type(exc).__name__}: {exc}")
            return False
        mark_retrying(job_id)
        return True

    def waiting(self, job_id: int, what: str) -> None:
        mark_waiting(job_id, what)


JOBS: TenantJobController = controller.controller_for(ProvisioningJob._meta.label_lower)


def run_job(job_id: int) -> ProvisioningJob:
    """One attempt of the job under the tenant's lock; raises locks.Busy at once if another worker
    holds it (that worker finishes the job)."""
    return JOBS.run(job_id)


def _attempt(job_id: int) -> ProvisioningJob:
    """Run the job's steps in one transaction, so an attempt either completes or leaves nothing
    behind (PostgreSQL DDL is transactional: a failed provisioning leaves no half-made schema).
    The steps' statuses and times are written with the work; a failed attempt records the failing
    step and its error in a transaction of its own, then raises (the task retries)."""
    job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
    if job.is_finished:
        return job
    tenant = job.tenant
    if tenant is None:
        _finish(job, status=ProvisioningJob.Status.FAILED, error="The tenant no longer exists.")
        return job
    attempt, started = job.attempts + 1, job.started_at or timezone.now()
    current: JobStep | None = None
    try:
        with transaction.atomic():
            # A duplicate message may arrive just after another worker finished this job.
            if ProvisioningJob.objects.filter(pk=job.pk, status__in=FINISHED).exists():
                return job
            steps = list(JobStep.objects.filter(job_id=job.pk).order_by("position"))
            for step in steps:
                if step.status == JobStep.Status.SUCCEEDED:
                    continue
                current = step
                step.started_at, step.attempts = timezone.now(), step.attempts + 1
                faults.check(f"provisioning.{step.name}")
                STEPS[step.name](tenant)
                step.status, step.error, step.finished_at = JobStep.Status.SUCCEEDED, "", timezone.now()
            current = None
            _save_steps(steps)
            now = timezone.now()
            ProvisioningJob.objects.filter(pk=job.pk).update(
                status=ProvisioningJob.Status.SUCCEEDED, attempts=attempt, started_at=started, finished_at=now,
                updated_at=now, error="",
            )
            audit.record(
                action=f"tenant.{job.kind}", actor=None, tenant=tenant, target_type="tenant",
                target=job.tenant_slug, source="task", details={"job": job.pk, "attempts": attempt},
            )
    except retries.NotDoneYet:
        raise  # not a failure: a step is under way (mark_waiting)
    except Exception as exc:
        _record_failure(job, tenant, current, attempt=attempt, started=started, message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        tenancy.invalidate(job.tenant_slug)
    return job


def _save_steps(steps: list[JobStep]) -> None:
    """Write the steps' outcomes in one round trip (psycopg pipelines executemany). Django's
    bulk_update builds a CASE expression per field and costs more than the provisioning itself."""
    table = connection.ops.quote_name(JobStep._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = %s, attempts = %s, error = %s, started_at = %s, finished_at = %s WHERE id = %s",
            [(s.status, s.attempts, s.error, s.started_at, s.finished_at, s.pk) for s in steps],
        )


def _record_failure(job: ProvisioningJob, tenant: Tenant, step: JobStep | None, *, attempt: int, started, message: str) -> None:
    name = step.name if step else "finish"
    now = timezone.now()
    with transaction.atomic():
        if step is not None:
            JobStep.objects.filter(pk=step.pk).update(
                status=JobStep.Status.FAILED, error=message, attempts=step.attempts, started_at=step.started_at,
                finished_at=now,
            )
        ProvisioningJob.objects.filter(pk=job.pk).update(
            attempts=attempt, started_at=started, error=f"{name}: {message}", updated_at=now,
        )
        Tenant.objects.filter(pk=tenant.pk).update(status_message=f"{name} failed: {message}")
    log.warning("tenant %s: step %s failed: %s", tenant.slug, name, message)


def _finish(job: ProvisioningJob, *, status: str, error: str | None = None) -> None:
    fields = {"status": status, "finished_at": timezone.now(), "updated_at": timezone.now()}
    if error is not None:
        fields["error"] = error
    elif status == ProvisioningJob.Status.SUCCEEDED:
        fields["error"] = ""
    ProvisioningJob.objects.filter(pk=job.pk).update(**fields)


def mark_waiting(job_id: int, what: str) -> None:
    """A step is under way (a namespace still emptying): said on the job and the tenant, no error."""
    now = timezone.now()
    job = ProvisioningJob.objects.filter(pk=job_id)
    job.update(status=ProvisioningJob.Status.RETRYING, error="", updated_at=now)
    Tenant.objects.filter(jobs__pk=job_id).update(status_message=f"waiting for {what}", updated_at=now)


def mark_retrying(job_id: int) -> None:
    ProvisioningJob.objects.filter(pk=job_id).update(status=ProvisioningJob.Status.RETRYING, updated_at=timezone.now())


def give_up(job_id: int, error: str) -> None:
    """Retries are exhausted. A provisioning leaves no half-made schema and the tenant `failed`
    with the reason; a deletion leaves the tenant `deleting` with the reason (staff retry it)."""
    with transaction.atomic():
        job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
        tenant = job.tenant
        if tenant is not None:
            locks.xact_lock(*JOBS.lock_key(job_id))  # not while an attempt runs (it holds the tenant's lock)
        job.refresh_from_db()
        if job.is_finished:
            return
        _give_up(job, tenant, error)
    tenancy.invalidate(job.tenant_slug)


def _give_up(job: ProvisioningJob, tenant: Tenant | None, error: str) -> None:
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
        action=f"tenant.{job.kind}", actor=None, tenant=tenant or job.tenant_slug, target_type="tenant", target=job.tenant_slug,
        outcome=AuditEvent.Outcome.FAILED, source="task",
        details={"job": job.pk, "error": job.error or error, "attempts": job.attempts},
    )


def stuck_jobs(*, older_than_seconds: int):
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return ProvisioningJob.objects.filter(
        status__in=[ProvisioningJob.Status.QUEUED, ProvisioningJob.Status.RETRYING],
        updated_at__lt=cutoff,
    )
