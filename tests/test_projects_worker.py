"""Projects reconciled by real Celery worker processes (Redis broker): cluster faults during
provisioning, a worker killed with SIGKILL mid-provisioning, deletion leaving nothing behind."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django_tenants.utils import tenant_context

import kubehelp
from conftest import provision_now, spawn_worker, stop_worker, wait_for
from portal import kube
from tenants import provisioning, services
from tenants.models import NamespaceRegistry, Tenant
from tenants.projects import services as project_services
from tenants.projects.access import Access
from tenants.projects.models import Project

PIER = "app.kubernetes.io/managed-by=pier"

pytestmark = pytest.mark.worker


@pytest.fixture
def worker_env(worker_env):
    worker_env.update(PIER_PROJECT_BACKOFF="0.2", PIER_PROJECT_MAX_RETRIES="8", PIER_NAMESPACE_POLL_SECONDS="0.2",
                      CELERY_VISIBILITY_TIMEOUT="2")
    return worker_env


@pytest.fixture
def org(committed, unique_slug):
    staff = get_user_model().objects.get(username="staff")
    tenant = provision_now(unique_slug("kp"), "bob", acting_user=staff)
    yield tenant
    kubehelp.clear_faults()
    with transaction.atomic():
        _t, job = services.tenant_delete(tenant=Tenant.objects.get(pk=tenant.pk), acting_user=staff)
    for _ in range(50):  # namespaces take a moment to go; the step retries
        try:
            provisioning.run_job(job.pk)
            break
        except Exception:
            time.sleep(0.2)


def _create(tenant, slug: str) -> None:
    bob = get_user_model().objects.get(username="bob")
    with tenant_context(tenant), transaction.atomic():
        project_services.project_create(tenant=tenant, slug=slug, acting_user=bob)


def _project(tenant, slug: str):
    with tenant_context(tenant):
        return Project.objects.filter(slug=slug).first()


def test_faults_during_provisioning_are_retried_shown_and_converge(celery_worker_process, org):
    ns = f"{org.slug}-app"
    kubehelp.inject_fault(verb="patch", resource="networkpolicies", status=500, times=3)
    kubehelp.inject_fault(verb="get", resource="resourcequotas", latency=0.3, times=2)
    _create(org, "app")
    seen_error = wait_for(lambda: "last error" in (_project(org, "app").status_message or ""), timeout=30,
                          message="the last error to show")
    assert seen_error
    wait_for(lambda: _project(org, "app").status == "ready", timeout=60, message="the project to converge")
    project = _project(org, "app")
    assert project.status_message == ""
    with tenant_context(org):
        messages = list(project.events.values_list("message", flat=True))
    assert any("InternalError" in m or "500" in m or "Internal" in m for m in messages), messages
    assert len(kube.list_objects("NetworkPolicy", ns, label_selector=PIER)) == 2  # isolation, runner egress
    assert len(kube.list_objects("RoleBinding", ns, label_selector=PIER)) == 2  # the creator's, the managers'; no duplicate


def test_a_worker_killed_mid_provisioning_is_survived(worker_env, committed, org):
    ns = f"{org.slug}-crash"
    first = spawn_worker(worker_env)
    try:
        kubehelp.inject_fault(verb="patch", resource="networkpolicies", latency=4.0, times=1)
        _create(org, "crash")
        wait_for(lambda: kube.get("LimitRange", "pier-limits", ns) is not None, timeout=30,
                 message="the worker to be mid-provisioning")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert _project(org, "crash").status in ("pending", "provisioning")
    finally:
        stop_worker(first)
    # The message the dead worker had taken was never acknowledged: once it is older than the
    # visibility timeout (2 s here), the next worker to start takes it back from Redis.
    time.sleep(2.5)
    second = spawn_worker(worker_env)
    try:
        wait_for(lambda: _project(org, "crash").status == "ready", timeout=60,
                 message="the project to converge after the crash")
    finally:
        stop_worker(second)
    for kind, count in (("ResourceQuota", 1), ("LimitRange", 1), ("NetworkPolicy", 2), ("RoleBinding", 2),
                        ("ServiceAccount", 1)):
        assert len(kube.list_objects(kind, ns, label_selector=PIER)) == count, kind


def test_deleting_a_project_leaves_nothing_behind(celery_worker_process, org):
    ns = f"{org.slug}-tmp"
    _create(org, "tmp")
    wait_for(lambda: _project(org, "tmp").status == "ready", timeout=30, message="the project to be ready")
    bob = get_user_model().objects.get(username="bob")
    with tenant_context(org), transaction.atomic():
        project_services.project_delete(tenant=org, project=Project.objects.get(slug="tmp"), acting_user=bob,
                                        access=Access("admin", "organization owner"))
    wait_for(lambda: _project(org, "tmp") is None, timeout=30, message="the project row to go")
    assert kube.get("Namespace", ns) is None
    for kind in ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding", "ServiceAccount"):
        assert kube.list_objects(kind, ns, label_selector=PIER) == [], kind
    assert not NamespaceRegistry.objects.filter(name=ns).exists()


def test_a_deleted_binding_is_back_within_one_periodic_pass(celery_worker_process, org):
    from tenants.tasks import fan_out_to_active_tenants

    ns = f"{org.slug}-keep"
    _create(org, "keep")
    wait_for(lambda: _project(org, "keep").status == "ready", timeout=30, message="the project to be ready")
    kube.delete("RoleBinding", "pier-creator-admin", ns)
    fan_out_to_active_tenants.delay("tenants.projects.tasks.reconcile_all_projects")  # what beat sends
    wait_for(lambda: kube.get("RoleBinding", "pier-creator-admin", ns) is not None, timeout=30,
             message="the binding to be repaired")
