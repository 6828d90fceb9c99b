"""The tenant lifecycle driven by a real Celery worker process (not eager mode), and a suspension
seen by a separate web server process."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django_tenants.utils import schema_exists

from conftest import get as _get
from conftest import wait_for
from portal import faults
from tenants import services
from tenants.models import Membership, ProvisioningJob, Tenant

pytestmark = pytest.mark.worker


@pytest.fixture
def worker_env(worker_env):
    worker_env["PIER_PROVISIONING_MAX_RETRIES"] = "2"
    worker_env["PIER_PROVISIONING_BACKOFF"] = "0.2"
    worker_env["PIER_PROVISIONING_STUCK_AFTER"] = "1"
    worker_env["PIER_NAMESPACE_POLL_SECONDS"] = "0.3"
    return worker_env


def _staff():
    return get_user_model().objects.get(username="staff")


def _create(slug: str, owner: str = "bob") -> Tenant:
    with transaction.atomic():
        tenant, _job = services.tenant_create(slug=slug, name=f"Org {slug}", owner=owner, acting_user=_staff())
    return tenant


def _status(slug: str) -> str | None:
    return Tenant.objects.filter(slug=slug).values_list("status", flat=True).first()


def _delete_and_wait(slug: str) -> None:
    tenant = Tenant.objects.get(slug=slug)
    with transaction.atomic():
        services.tenant_delete(tenant=tenant, acting_user=_staff())
    wait_for(lambda: not Tenant.objects.filter(slug=slug).exists(), timeout=60, message=f"{slug} to be deleted")
    assert not schema_exists(tenant.schema_name)


def test_create_delete_and_reuse_slug_through_the_worker(celery_worker_process, unique_slug):
    from portal import request_id
    from portal.models import AuditEvent

    slug = unique_slug("wrk")
    token = request_id.set_current("req-0123456789abcdef")  # as the web request that created it would
    try:
        tenant = _create(slug)
    finally:
        request_id._current.reset(token)
    wait_for(lambda: _status(slug) == "active", timeout=60, message=f"{slug} to become active")
    # The worker's audit row names the request that caused the work.
    done = AuditEvent.objects.get(action="tenant.provision", tenant=slug)
    assert done.request_id == "req-0123456789abcdef" and done.source == "task" and done.outcome == "success"
    job = ProvisioningJob.objects.filter(tenant_slug=slug, kind="provision").get()
    assert job.status == "succeeded" and job.attempts == 1
    assert [(s.name, s.status) for s in job.steps.all()] == [
        ("create_schema", "succeeded"), ("seed_defaults", "succeeded"), ("add_owner", "succeeded"), ("activate", "succeeded"),
    ]
    assert schema_exists(tenant.schema_name)
    assert Membership.objects.get(tenant__slug=slug, user__username="bob").role == "owner"

    _delete_and_wait(slug)
    deletion = ProvisioningJob.objects.filter(tenant_slug=slug, kind="delete").get()
    assert deletion.status == "succeeded" and deletion.tenant_id is None

    # The slug is free again.
    _create(slug, owner="alice")
    wait_for(lambda: _status(slug) == "active", timeout=60, message=f"{slug} to be active again")
    assert Membership.objects.get(tenant__slug=slug, user__username="alice").role == "owner"
    _delete_and_wait(slug)


def test_failing_step_retries_then_fails_with_reason_and_no_schema(celery_worker_process, unique_slug):
    slug = unique_slug("flt")
    faults.arm("provisioning.seed_defaults", message="quota service unreachable")
    try:
        tenant = _create(slug)
        wait_for(lambda: _status(slug) == "failed", timeout=60, message=f"{slug} to fail")
    finally:
        faults.disarm("provisioning.seed_defaults")
    tenant.refresh_from_db()
    job = ProvisioningJob.objects.get(tenant_slug=slug, kind="provision")
    assert job.status == "failed"
    assert job.attempts == 3  # the first try and PIER_PROVISIONING_MAX_RETRIES=2 retries
    assert "seed_defaults" in tenant.status_message and "quota service unreachable" in tenant.status_message
    assert job.steps.get(name="seed_defaults").status == "failed"
    assert not schema_exists(tenant.schema_name), "a failed provisioning must not leave a half-made schema"

    # Once the cause is gone, a retry succeeds.
    with transaction.atomic():
        services.tenant_retry(tenant=tenant, acting_user=_staff())
    wait_for(lambda: _status(slug) == "active", timeout=60, message=f"{slug} to become active after retry")
    assert schema_exists(tenant.schema_name)
    _delete_and_wait(slug)


def test_suspension_is_seen_by_another_process_within_seconds(committed, web_process, unique_slug):
    from conftest import provision_now

    slug = unique_slug("sus")
    tenant = provision_now(slug, "bob", acting_user=_staff())
    url = f"{web_process}/api/v1/tenants/{slug}/members"
    try:
        assert _get(url, "bob")[0] == 200
        assert _get(url, "carol")[0] == 404  # not a member
        with transaction.atomic():
            services.tenant_suspend(tenant=tenant, acting_user=_staff())
        started = time.monotonic()
        wait_for(lambda: _get(url, "bob")[0] == 403, timeout=10, message="the web process to see the suspension")
        assert time.monotonic() - started < 5
        status, body = _get(url, "bob")
        assert b"tenant_suspended" in body and b"suspended" in body
        assert _get(url, "carol")[0] == 404  # non-members still learn nothing
        assert _get(url, "staff")[0] == 200  # staff still see it
        with transaction.atomic():
            services.tenant_resume(tenant=Tenant.objects.get(slug=slug), acting_user=_staff())
        wait_for(lambda: _get(url, "bob")[0] == 200, timeout=10, message="the web process to see the resume")
    finally:
        from tenants import provisioning

        with transaction.atomic():
            _t, job = services.tenant_delete(tenant=Tenant.objects.get(slug=slug), acting_user=_staff())
        provisioning.run_job(job.pk)


def test_periodic_per_tenant_work_runs_in_each_active_tenants_schema_only(celery_worker_process, unique_slug):
    from django_tenants.utils import schema_context

    from conftest import provision_now
    from tenants.projects.models import TenantSettings
    from tenants.tasks import fan_out_to_active_tenants

    active = provision_now(unique_slug("act"), "bob", acting_user=_staff())
    suspended = provision_now(unique_slug("sus"), "bob", acting_user=_staff())
    with transaction.atomic():
        services.tenant_suspend(tenant=suspended, acting_user=_staff())
    for tenant in (active, suspended):
        with schema_context(tenant.schema_name):
            TenantSettings.objects.all().delete()  # drift: someone removed the row by hand

    fan_out_to_active_tenants.delay("tenants.tasks.ensure_tenant_defaults")

    def repaired():
        with schema_context(active.schema_name):
            return TenantSettings.objects.exists()

    wait_for(repaired, timeout=30, message="the active tenant's settings row to be repaired")
    time.sleep(1.0)  # give a wrongly-sent copy time to arrive
    with schema_context(suspended.schema_name):
        assert not TenantSettings.objects.exists(), "a suspended tenant must not get periodic work"
    for tenant in (active, suspended):
        Tenant.objects.filter(pk=tenant.pk).update(status="active")
        _delete_and_wait(tenant.slug)


def test_a_job_lost_in_a_crash_is_picked_up_by_the_periodic_pass(celery_worker_process, unique_slug):
    """The message for a job was lost (a crash before it was sent, a broker wiped): the beat
    task finds the job stuck and runs it again."""
    from unittest import mock

    from tenants.tasks import resume_stuck_jobs

    slug = unique_slug("lost")
    with mock.patch("tenants.tasks.enqueue_job"):  # the message never reaches the broker
        _create(slug)
    time.sleep(1.5)  # older than PIER_PROVISIONING_STUCK_AFTER (1 s in this worker)
    assert _status(slug) == "provisioning"
    with mock.patch("django.conf.settings.PIER_PROVISIONING_STUCK_AFTER", 1):
        assert resume_stuck_jobs() >= 1  # what beat runs
    wait_for(lambda: _status(slug) == "active", timeout=60, message=f"{slug} to be picked up and become active")
    _delete_and_wait(slug)


def test_a_deletion_waits_for_a_slow_namespace_however_long_it_takes(celery_worker_process, unique_slug):
    """A namespace held in Terminating (another controller's finalizer) keeps the deletion waiting
    far past its failure budget (2 retries at 0.2 s), said on the tenant; it finishes by itself."""
    from django_tenants.utils import tenant_context
    from kubernetes import client

    from conftest import provision_now
    from portal import kube
    from tenants.projects import reconcile
    from tenants.projects import services as project_services

    slug = unique_slug("slow")
    tenant = provision_now(slug, "bob", acting_user=_staff())
    with tenant_context(tenant):
        project = project_services.project_create(tenant=tenant, slug="held",
                                                   acting_user=get_user_model().objects.get(username="bob"))
        reconcile.run(project.pk)
    core = client.CoreV1Api(kube.api_client())
    core.patch_namespace(project.namespace, {"metadata": {"finalizers": ["example.com/hold"]}})
    with transaction.atomic():
        _t, job = services.tenant_delete(tenant=tenant, acting_user=_staff())
    wait_for(lambda: "waiting for namespace" in Tenant.objects.get(pk=tenant.pk).status_message, timeout=30,
             message="the deletion to say what it waits for")
    time.sleep(3)  # ten polls: past any failure budget
    job.refresh_from_db()
    assert job.status != ProvisioningJob.Status.FAILED and job.error == ""
    assert Tenant.objects.get(pk=tenant.pk).status == "deleting"
    # The other controller is done (a JSON patch: finalizers merge under a strategic merge patch).
    core.patch_namespace(project.namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
    wait_for(lambda: not Tenant.objects.filter(pk=tenant.pk).exists(), timeout=30, message=f"{slug} to be deleted")
    assert kube.get("Namespace", project.namespace) is None
