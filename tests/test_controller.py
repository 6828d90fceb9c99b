"""The controller kernel (portal/controller.py) as projects, keys and tenant jobs use it: one task
taking (label, key, schema), a task delivered twice changes nothing the second time, the status is
derived from the conditions the controller recorded, and the pages and the API show them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

import kubehelp
from portal import controller, kube
from portal.controller import reconcile_object
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access
from tenants.projects.models import AccessKey, Project, ProjectEvent

pytestmark = pytest.mark.django_db

KUBE_WRITES = ("create", "update", "patch", "delete", "deletecollection")
SQL_WRITES = ("INSERT", "UPDATE", "DELETE")


def _deliver(label: str, pk, schema: str) -> tuple[dict[str, int], list[str]]:
    """Run the kernel's task as a worker would; (Kubernetes requests by verb, SQL writes) it made."""
    before = kubehelp.requests_by_verb()
    with CaptureQueriesContext(connection) as queries:
        reconcile_object.apply(args=[label, pk, schema]).get()
    after = kubehelp.requests_by_verb()
    requests = {v: after.get(v, 0) - before.get(v, 0) for v in after if after.get(v, 0) != before.get(v, 0)}
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(SQL_WRITES)]
    return requests, writes


def test_a_project_reconcile_delivered_twice_changes_nothing_the_second_time(alpha, users):
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="twice", acting_user=users["alice"])
    first, _ = _deliver("projects.project", project.pk, alpha.schema_name)
    assert any(first.get(v) for v in KUBE_WRITES)  # the first delivery made the namespace and its objects
    with tenant_context(alpha):
        project.refresh_from_db()
        history = ProjectEvent.objects.filter(project=project).count()
    assert project.status == Project.Status.READY and project.observed_generation == project.generation

    again, writes = _deliver("projects.project", project.pk, alpha.schema_name)  # a redelivery
    assert not any(again.get(v) for v in KUBE_WRITES), again
    assert writes == []
    with tenant_context(alpha):
        assert ProjectEvent.objects.filter(project=project).count() == history


def test_a_key_revocation_delivered_twice_removes_its_objects_once_and_then_changes_nothing(alpha, users):
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="keytwice", acting_user=users["alice"])
        reconcile.run(project.pk)
        project.refresh_from_db()
        key, _token = project_services.key_create(tenant=alpha, project=project, name="ci", role="view",
                                                  acting_user=users["alice"], access=Access("admin", "test"))
        project_services.key_revoke(tenant=alpha, project=project, key=key, acting_user=users["alice"],
                                    access=Access("admin", "test"))
        key.refresh_from_db()
    assert key.state == "revoked" and key.generation == 2  # the revocation is a new desired state
    first, _ = _deliver("projects.accesskey", key.pk, alpha.schema_name)
    assert first.get("delete") == 2  # its RoleBinding and ServiceAccount
    with tenant_context(alpha):
        key.refresh_from_db()
    removed = controller.condition(key.conditions, "Removed")
    assert removed["status"] == "True" and key.observed_generation == key.generation

    again, writes = _deliver("projects.accesskey", key.pk, alpha.schema_name)
    assert not any(again.get(v) for v in KUBE_WRITES) and writes == []


def test_the_status_is_derived_from_the_conditions_and_both_are_shown(alpha, users, monkeypatch):
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="derived", acting_user=users["alice"])
        assert project.status == Project.Status.PENDING and project.conditions == []
        # A failed attempt: Ready False (Error), retried; the project says why.
        assert reconcile.record_error(project.pk, kube.KubeUnavailable("the API server did not answer"), final=False)
        project.refresh_from_db()
        assert project.status == Project.Status.PROVISIONING
        assert "the API server did not answer" in project.status_message
        ready = controller.condition(project.conditions, "Ready")
        assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "Error", 1)
        # Retries exhausted: GaveUp → failed.
        assert not reconcile.record_error(project.pk, kube.KubeUnavailable("still nothing"), final=True)
        project.refresh_from_db()
        assert project.status == Project.Status.FAILED
        # A change of the configuration is a new generation: no longer failed, on its way.
        project = project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"],
                                                  access=Access("admin", "test"), description="new")
        assert (project.status, project.generation) == (Project.Status.PROVISIONING, 2)
        reconcile.run(project.pk)
        project.refresh_from_db()
        ready = controller.condition(project.conditions, "Ready")
    assert project.status == Project.Status.READY and project.status_message == ""
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Applied", 2)

    client = APIClient()
    client.force_authenticate(users["alice"])
    body = client.get("/api/v1/tenants/alpha/projects/derived").json()
    assert body["status"] == "ready" and (body["generation"], body["observed_generation"]) == (2, 2)
    assert [(c["type"], c["status"], c["reason"]) for c in body["conditions"]] == [("Ready", "True", "Applied")]
    assert [e["status"] for e in body["events"]][:2] == ["ready", "provisioning"]  # the history, newest first

    client.force_login(users["alice"])
    page = client.get("/t/alpha/projects/derived/history").content.decode()
    assert "Conditions" in page and "Applied" in page and "the cluster matches" in page


def test_work_for_an_unknown_model_fails_in_the_request_not_in_the_worker():
    with pytest.raises(LookupError):
        controller.enqueue("projects.nothing", 1)


def test_a_task_for_a_tenant_that_is_gone_does_nothing(alpha):
    requests, writes = _deliver("projects.project", 1, "tenant_that_never_was")
    assert requests == {} and writes == []


def test_a_tenants_status_follows_its_desired_state_and_its_jobs_conditions(users, unique_slug, monkeypatch):
    from django.db import transaction

    from tenants import provisioning
    from tenants import services as tenant_services
    from tenants.models import Tenant

    staff = users["staff"]
    with transaction.atomic():
        tenant, job = tenant_services.tenant_create(slug=unique_slug("life"), name="Life", owner="bob",
                                                    acting_user=staff)
    assert (tenant.status, tenant.conditions) == (Tenant.Status.PROVISIONING, [])

    def refused(t):
        raise RuntimeError("the database said no")

    monkeypatch.setitem(provisioning.STEPS, "create_schema", refused)
    with pytest.raises(RuntimeError):
        provisioning.run_job(job.pk)
    tenant.refresh_from_db()
    provisioned = controller.condition(tenant.conditions, "Provisioned")
    assert (tenant.status, provisioned["reason"]) == (Tenant.Status.PROVISIONING, "Error")
    assert tenant.status_message == "create_schema failed: RuntimeError: the database said no"

    provisioning.give_up(job.pk, "retries exhausted")  # the task's last failure
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.FAILED
    assert controller.condition(tenant.conditions, "Provisioned")["reason"] == "GaveUp"

    monkeypatch.undo()
    with transaction.atomic():
        job = tenant_services.tenant_retry(tenant=tenant, acting_user=staff)
    tenant.refresh_from_db()
    assert (tenant.status, tenant.status_message, tenant.generation) == (Tenant.Status.PROVISIONING, "", 2)
    provisioning.run_job(job.pk)
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and tenant.observed_generation == tenant.generation

    tenant = tenant_services.tenant_suspend(tenant=tenant, acting_user=staff)
    assert tenant.status == Tenant.Status.SUSPENDED  # desired state: suspended_at; still Provisioned
    client = APIClient()
    client.force_authenticate(staff)
    body = client.get(f"/api/v1/admin/tenants/{tenant.slug}").json()
    assert body["status"] == "suspended" and body["suspended_at"]
    assert [(c["type"], c["status"], c["reason"]) for c in body["conditions"]] == [("Provisioned", "True", "Provisioned")]

    with transaction.atomic():
        tenant, job = tenant_services.tenant_delete(tenant=tenant, acting_user=staff)
    assert tenant.status == Tenant.Status.DELETING
    provisioning.run_job(job.pk)
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
