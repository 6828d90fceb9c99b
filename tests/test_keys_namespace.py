"""Access keys' ServiceAccounts live in Pier's keys namespace, outside every project: the namespace
is Pier's and no project can be named into it; keys issued before the move (in their project's
namespace) keep working, show as legacy, and every removal (revocation, the sweep, a project's or
an organization's deletion) finds a key's ServiceAccount wherever it lives."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_tenants.utils import tenant_context

from conftest import provision_now, wait_for
from portal import kube
from tenants import provisioning
from tenants import services as tenant_services
from tenants.projects import reconcile
from tenants.projects.authentication import token_hash
from tenants.projects.models import AccessKey, Project
from tenants.validators import validate_namespace_name, validate_tenant_slug
from test_keys import KEYS_NS, _cluster_accepts, _issue, _key_accounts, bearer, ready_project  # noqa: F401

pytestmark = pytest.mark.django_db


def legacy_key(tenant, slug: str, user, *, role: str = "view", name: str = "old") -> tuple[AccessKey, str]:
    """A key as Pier issued them before the move: its ServiceAccount in the project's namespace."""
    with tenant_context(tenant):
        project = Project.objects.get(slug=slug)
        account = f"pier-key-{secrets.token_hex(5)}"
        token, expires = reconcile.issue_key(project, name, account, role, tenant_slug=tenant.slug,
                                             expiration_seconds=86400, namespace=project.namespace)
        key = AccessKey.objects.create(
            project=project, name=name, role=role, service_account=account,
            service_account_namespace=project.namespace, token_hash=token_hash(token), token_last4=token[-4:],
            expires_at=datetime.fromisoformat(expires.replace("Z", "+00:00")), created_by=user)
    return key, token


def test_the_keys_namespace_is_pier_s_and_holds_no_pods():
    namespace = kube.get("Namespace", KEYS_NS)
    assert namespace is not None and kube.is_managed(namespace)
    assert namespace["metadata"]["labels"]["pier.dev/keys"] == "true"
    assert "pier.dev/tenant" not in namespace["metadata"]["labels"]  # no organization's
    assert kube.get("ResourceQuota", "pier-no-pods", KEYS_NS)["spec"]["hard"]["pods"] == "0"


def test_no_organization_and_project_can_be_named_into_the_keys_namespace(api, users, settings):
    # The default, `pier-keys`, splits only as organization `pier` (reserved) and project `keys`.
    with pytest.raises(Exception, match="reserved"):
        validate_tenant_slug("pier")
    with pytest.raises(Exception, match="reserved for Pier's access keys"):
        validate_namespace_name(KEYS_NS)
    # Whatever the operator chooses: here, one an organization's project would otherwise get.
    settings.PIER_KEYS_NAMESPACE = "alpha-vault"
    response = api(users["bob"]).post("/api/v1/tenants/alpha/projects", {"slug": "vault"}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert "slug" in error["details"] and "reserved for Pier's access keys" in error["message"]
    assert api(users["bob"]).post("/api/v1/tenants/alpha/projects", {"slug": "vault2"},
                                  format="json").status_code == 202  # its neighbours are fine


def test_install_refuses_a_keys_namespace_that_is_a_project_s(alpha, ready_project, settings):
    slug = ready_project()
    settings.PIER_KEYS_NAMESPACE = f"alpha-{slug}"
    with pytest.raises(CommandError, match="is a project's namespace already"):
        call_command("install_cluster_objects", stdout=open("/dev/null", "w"))


def test_a_legacy_key_keeps_working_shows_as_legacy_and_goes_from_where_it_lives(
        api, users, alpha, client, ready_project):
    from portal.controller import reconcile_object

    slug = ready_project()
    ns = f"alpha-{slug}"
    key, token = legacy_key(alpha, slug, users["bob"])
    new = _issue(api, users["bob"], slug, name="new").json()
    assert bearer(token).get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 200  # until re-issued
    listed = {k["name"]: k for k in api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}/keys").json()["results"]}
    assert (listed["old"]["legacy"], listed["old"]["service_account_namespace"]) == (True, ns)
    assert (listed["new"]["legacy"], listed["new"]["service_account_namespace"]) == (False, KEYS_NS)
    client.force_login(users["bob"])
    page = client.get(f"/t/alpha/projects/{slug}/keys").content.decode()
    assert page.count("issued in the project's namespace: re-issue it") == 1
    assert page.split('data-key="old"')[1].split("</tr>")[0].count("re-issue it") == 1

    # Revoked: its clean-up removes the ServiceAccount from the project's namespace.
    assert api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{slug}/keys/{key.pk}").status_code == 204
    reconcile_object.apply(args=["projects.accesskey", key.pk, alpha.schema_name]).get()
    assert kube.get("ServiceAccount", key.service_account, ns) is None
    assert kube.get("RoleBinding", key.service_account, ns) is None
    assert not _cluster_accepts(token)
    assert kube.get("ServiceAccount", new["service_account"], KEYS_NS) is not None  # the other one stays

    # Expired, with its clean-up lost: the sweep finds it in the project's namespace too.
    expired, _ = legacy_key(alpha, slug, users["bob"], name="older")
    with tenant_context(alpha):
        AccessKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        outcomes = reconcile.run(Project.objects.get(slug=slug).pk)
    assert outcomes[f"ServiceAccount/{expired.service_account}"] == "deleted"
    assert kube.get("ServiceAccount", expired.service_account, ns) is None


def test_the_periodic_pass_sweeps_dead_keys_in_the_keys_namespace(api, users, alpha, ready_project):
    slug = ready_project()
    body = _issue(api, users["bob"], slug).json()
    live = _issue(api, users["bob"], slug, name="live").json()
    with tenant_context(alpha):
        AccessKey.objects.filter(pk=body["id"]).update(revoked_at=timezone.now())  # its clean-up task was lost
        reconcile.reconcile_all()  # from its one LIST per kind of the tenant's objects
    assert _key_accounts(slug) == [live["service_account"]]
    assert kube.get("RoleBinding", body["service_account"], f"alpha-{slug}") is None


def _until_gone(run) -> None:
    def attempt() -> bool:
        try:
            run()
            return True
        except Exception:  # still terminating: a later pass finishes it, as the task's retries do
            return False

    wait_for(attempt, timeout=30, interval=0.2, message="the namespaces to go")


def test_deleting_a_project_leaves_none_of_its_keys_behind(api, users, alpha, ready_project):
    slug = ready_project()
    tokens = [_issue(api, users["bob"], slug, name=name).json()["token"] for name in ("a", "b")]
    _, old_token = legacy_key(alpha, slug, users["bob"])
    other = ready_project()
    kept = _issue(api, users["bob"], other).json()
    assert len(_key_accounts(slug)) == 2
    assert api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 202
    with tenant_context(alpha):
        pk = Project.objects.get(slug=slug).pk
        _until_gone(lambda: reconcile.run(pk) and not Project.objects.filter(pk=pk).exists())
        assert not Project.objects.filter(pk=pk).exists()
    assert _key_accounts(slug) == []
    assert not any(_cluster_accepts(token) for token in (*tokens, old_token))
    assert _key_accounts(other) == [kept["service_account"]]  # another project's keys stay


def test_deleting_an_organization_leaves_none_of_its_keys_behind(api, users, unique_slug):
    from tenants.models import Tenant

    tenant = provision_now(unique_slug("gone"), "bob")
    with tenant_context(tenant):
        from tenants.projects import services as project_services

        project = project_services.project_create(tenant=tenant, slug="p", acting_user=users["bob"])
        reconcile.run(project.pk)
    response = api(users["bob"]).post(f"/api/v1/tenants/{tenant.slug}/projects/p/keys",
                                      {"name": "ci", "role": "edit"}, format="json")
    assert response.status_code == 201, response.json()
    assert _key_accounts("p", tenant.slug) == [response.json()["service_account"]]
    _, job = tenant_services.tenant_delete(tenant=tenant, acting_user=users["staff"])
    _until_gone(lambda: provisioning.run_job(job.pk))
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert _key_accounts("p", tenant.slug) == []
    assert not _cluster_accepts(response.json()["token"])


def test_the_migration_records_keys_issued_before_the_move_in_their_project_s_namespace(
        api, users, alpha, ready_project):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("tenants.projects.migrations.0008_accesskey_service_account_namespace")
    slug = ready_project()
    body = _issue(api, users["bob"], slug).json()
    with tenant_context(alpha):
        AccessKey.objects.filter(pk=body["id"]).update(service_account_namespace="")  # as before the column
        migration.legacy_keys_are_in_their_project(apps, None)
        key = AccessKey.objects.select_related("project").get(pk=body["id"])
    assert key.service_account_namespace == f"alpha-{slug}" and key.is_legacy
