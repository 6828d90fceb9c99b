"""The worker side of a tenant's lifecycle: provisioning and deletion jobs, step by step.

An attempt runs all of a job's steps in one transaction (see run_job): it completes or leaves
nothing, and running it again after a crash or a failure is safe. Each step is idempotent as well,
for the work that is not transactional (e.g. Kubernetes clean-up on deletion). Tenants run on
the controller kernel (portal/controller.py: its one task, lock and retry policy; TenantController
below): one job per tenant at a time (the lock is the tenant's). Each attempt records the tenant's
conditions (its status is derived from them) and, on the job, its steps, attempts and errors — the
jobs are the tenant's history — so the admin, the API and the tenant's page show what happened
and why.
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
    """The tenant is served from now on (Provisioned: active, or suspended if staff suspended it),
    at the schema version its schema was created with."""
    TENANTS.record(tenant, PROVISIONED, controller.TRUE, "Provisioned", "its schema is created and seeded",
                   schema_version=tenancy.code_schema_version(), observed_generation=tenant.generation)


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


PROVISIONED, REMOVED = "Provisioned", "Removed"
GAVE_UP = "GaveUp"


@controller.register
class TenantController(controller.Controller):
    """A tenant's controller. Its desired state: provisioned (suspended or not: `suspended_at`) or
    gone (`deletion_requested_at`); each request for it (provision, retry, delete) is a job,
    ProvisioningJob, whose steps say what each attempt did: the jobs are the tenant's history.
    Conditions: `Provisioned` (reasons Requested, Error, Provisioned, GaveUp) and, once its
    deletion is asked for, `Removed` (Requested, Waiting, Error, GaveUp); `status` is derived from
    them. The lock is the tenant's, so two jobs of one tenant never run at once."""

    model = Tenant
    max_failures_setting = "PIER_PROVISIONING_MAX_RETRIES"
    backoff_setting = "PIER_PROVISIONING_BACKOFF"

    def derive(self, t: Tenant) -> dict[str, str]:
        S = Tenant.Status
        if removing := self.while_removed(t, S.DELETING):
            return removing
        provisioned = controller.condition(t.conditions, PROVISIONED)
        if provisioned is not None and provisioned["status"] == controller.TRUE:
            return {"status": S.SUSPENDED if t.suspended_at else S.ACTIVE, "status_message": ""}
        if provisioned is not None and provisioned["reason"] == GAVE_UP:
            return {"status": S.FAILED, "status_message": provisioned["message"]}
        return {"status": S.PROVISIONING, "status_message": provisioned["message"] if provisioned else ""}

    def reconcile(self, tenant_id: int, *, job_id: int | None = None) -> ProvisioningJob | None:
        job_id = job_id or _pending_job(tenant_id)
        return _attempt(job_id) if job_id is not None else None

    def failed(self, tenant_id: int, exc: Exception, *, final: bool) -> bool:
        job_id = _pending_job(tenant_id)
        if job_id is None:
            return False
        if final:
            give_up(job_id, f"{type(exc).__name__}: {exc}")
            return False
        mark_retrying(job_id)
        return True

    def waiting(self, tenant_id: int, what: str) -> None:
        job_id = _pending_job(tenant_id)
        if job_id is not None:
            mark_waiting(job_id, what)


TENANTS: TenantController = controller.controller_for(Tenant._meta.label_lower)


def _pending_job(tenant_id: int) -> int | None:
    """The tenant's oldest unfinished job: what its reconcile runs."""
    return (ProvisioningJob.objects.filter(tenant_id=tenant_id).exclude(status__in=FINISHED)
            .order_by("created_at", "id").values_list("pk", flat=True).first())


def _condition_of(job: ProvisioningJob) -> str:
    return PROVISIONED if job.kind == ProvisioningJob.Kind.PROVISION else REMOVED


def run_job(job_id: int) -> ProvisioningJob:
    """One attempt of the job under its tenant's lock; raises locks.Busy at once if another worker
    holds it (that worker finishes the job)."""
    tenant_id = ProvisioningJob.objects.filter(pk=job_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:  # the tenant is gone: the attempt records that the job cannot run
        return _attempt(job_id)
    return TENANTS.run(tenant_id, job_id=job_id)


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
    tenant = Tenant.objects.get(pk=tenant.pk)  # as stored: the failed attempt's changes were rolled back
    with transaction.atomic():
        if step is not None:
            JobStep.objects.filter(pk=step.pk).update(
                status=JobStep.Status.FAILED, error=message, attempts=step.attempts, started_at=step.started_at,
                finished_at=now,
            )
        ProvisioningJob.objects.filter(pk=job.pk).update(
            attempts=attempt, started_at=started, error=f"{name}: {message}", updated_at=now,
        )
        TENANTS.record(tenant, _condition_of(job), controller.FALSE, "Error", f"{name} failed: {message}")
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
    ProvisioningJob.objects.filter(pk=job_id).update(status=ProvisioningJob.Status.RETRYING, error="",
                                                     updated_at=timezone.now())
    job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
    if job.tenant is not None:
        TENANTS.record(job.tenant, _condition_of(job), controller.FALSE, "Waiting", f"waiting for {what}")


def mark_retrying(job_id: int) -> None:
    ProvisioningJob.objects.filter(pk=job_id).update(status=ProvisioningJob.Status.RETRYING, updated_at=timezone.now())


def give_up(job_id: int, error: str) -> None:
    """Retries are exhausted. A provisioning leaves no half-made schema and the tenant `failed`
    with the reason; a deletion leaves the tenant `deleting` with the reason (staff retry it)."""
    with transaction.atomic():
        job = ProvisioningJob.objects.select_related("tenant").get(pk=job_id)
        tenant = job.tenant
        if tenant is not None:
            locks.xact_lock(*TENANTS.lock_key(tenant.pk))  # not while an attempt runs (it holds the tenant's lock)
        job.refresh_from_db()
        if job.is_finished:
            return
        _give_up(job, tenant, error)
    tenancy.invalidate(job.tenant_slug)


def _give_up(job: ProvisioningJob, tenant: Tenant | None, error: str) -> None:
    if tenant is not None:
        tenant.refresh_from_db()
        fields = {}
        if job.kind == ProvisioningJob.Kind.PROVISION:  # no half-made schema stays
            schema.drop_tenant_schema(tenant.schema_name)
            fields["schema_version"] = ""
        TENANTS.record(tenant, _condition_of(job), controller.FALSE, GAVE_UP, job.error or error, **fields)
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
