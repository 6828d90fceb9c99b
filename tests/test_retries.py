"""The one retry policy (portal/retries.py): waits are not failures, a retry survives failed
bookkeeping, and no countdown reaches the broker's redelivery timeout."""

import pytest
from django.conf import settings

from portal import retries
from portal.controller import reconcile_object as reconcile_task
from tenants import provisioning, services
from tenants.models import ProvisioningJob

TENANT = provisioning.TENANTS.label

pytestmark = pytest.mark.django_db


class Retried(Exception):
    pass


@pytest.fixture
def retry_calls(monkeypatch):
    """What a task asked to be retried with (the retry itself is not sent)."""
    calls = []

    def retry(task):
        def record(*args, **kwargs):
            calls.append(kwargs)
            raise Retried()
        monkeypatch.setattr(task, "retry", record)
    return calls, retry


@pytest.fixture
def deletion(users, beta):
    return services.tenant_delete(tenant=beta, acting_user=users["staff"])[1]


def test_a_step_still_under_way_is_waited_for_however_many_failures_came_before(
        deletion, beta, monkeypatch, retry_calls):
    calls, patch_retry = retry_calls
    patch_retry(reconcile_task)

    def still_terminating(job_id):
        raise retries.NotDoneYet("namespace beta-site to finish terminating")

    monkeypatch.setattr(provisioning, "_attempt", still_terminating)
    failures = settings.PIER_PROVISIONING_MAX_RETRIES  # the failure budget is spent already
    with pytest.raises(Retried):
        reconcile_task.apply(args=[TENANT, deletion.tenant_id, "public"], kwargs={"failures": failures})
    assert calls == [{"args": [TENANT, deletion.tenant_id, "public"], "kwargs": {"failures": failures},
                      "countdown": settings.PIER_NAMESPACE_POLL_SECONDS}]
    deletion.refresh_from_db()
    beta.refresh_from_db()
    assert deletion.status == ProvisioningJob.Status.RETRYING and deletion.error == ""  # not given up, no error
    assert beta.status_message == "waiting for namespace beta-site to finish terminating"


def test_a_failure_past_the_budget_gives_up_and_one_within_it_is_retried_with_backoff(
        deletion, monkeypatch, retry_calls):
    calls, patch_retry = retry_calls
    patch_retry(reconcile_task)

    def broken(job_id):
        raise RuntimeError("the cluster said no")

    monkeypatch.setattr(provisioning, "_attempt", broken)
    with pytest.raises(Retried):
        reconcile_task.apply(args=[TENANT, deletion.tenant_id, "public"], kwargs={"failures": 1})
    assert calls[0]["kwargs"] == {"failures": 2} and calls[0]["countdown"] == retries.backoff(1, base=settings.PIER_PROVISIONING_BACKOFF)
    reconcile_task.apply(args=[TENANT, deletion.tenant_id, "public"], kwargs={"failures": settings.PIER_PROVISIONING_MAX_RETRIES})
    assert len(calls) == 1  # given up, not retried
    deletion.refresh_from_db()
    assert deletion.status == ProvisioningJob.Status.FAILED and "the cluster said no" in deletion.error


def test_a_retry_is_not_lost_when_recording_it_fails(deletion, monkeypatch, retry_calls):
    calls, patch_retry = retry_calls
    patch_retry(reconcile_task)

    def broken(job_id):
        raise RuntimeError("the cluster said no")

    def database_gone(job_id):
        raise ConnectionError("the database refused the connection")

    monkeypatch.setattr(provisioning, "_attempt", broken)
    monkeypatch.setattr(provisioning, "mark_retrying", database_gone)
    with pytest.raises(Retried):
        reconcile_task.apply(args=[TENANT, deletion.tenant_id, "public"], kwargs={"failures": 0})
    assert [c["kwargs"] for c in calls] == [{"failures": 1}]


def test_a_project_retry_is_not_lost_when_recording_the_error_fails(alpha, monkeypatch, retry_calls):
    from tenants.projects import reconcile

    calls, patch_retry = retry_calls
    patch_retry(reconcile_task)
    project = reconcile.PROJECTS.label

    def broken(project_id, **context):
        raise RuntimeError("the cluster said no")

    def database_gone(*args, **kwargs):
        raise ConnectionError("the database refused the connection")

    monkeypatch.setattr(reconcile.PROJECTS, "reconcile", broken)
    monkeypatch.setattr(reconcile.PROJECTS, "failed", database_gone)
    with pytest.raises(Retried):
        reconcile_task.apply(args=[project, 42, alpha.schema_name], kwargs={"failures": 3})
    assert [c["kwargs"] for c in calls] == [{"failures": 4}]
    assert calls[0]["countdown"] == retries.backoff(3, base=settings.PIER_PROJECT_BACKOFF)

    def terminating(project_id, **context):
        raise reconcile.StillTerminating("beta-site")

    monkeypatch.setattr(reconcile.PROJECTS, "reconcile", terminating)
    with pytest.raises(Retried):
        reconcile_task.apply(args=[project, 42, alpha.schema_name], kwargs={"failures": 3})
    assert calls[-1]["kwargs"] == {"failures": 3}  # a wait keeps the count
    assert calls[-1]["countdown"] == settings.PIER_NAMESPACE_POLL_SECONDS


def test_no_countdown_reaches_the_brokers_redelivery_timeout():
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    longest = max(retries.backoff(n, base=settings.PIER_PROVISIONING_BACKOFF) for n in range(40))
    assert longest == settings.PIER_MAX_BACKOFF < visibility
    assert retries.backoff(0, base=2.0) == 2.0 and retries.backoff(3, base=2.0) == 16.0
