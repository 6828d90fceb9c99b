"""Access keys: issued with a real TokenRequest (all or nothing), stored as a hash, shown once,
acting only in their project and role, refused at once when revoked or expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

import kubehelp
from portal import kube
from tenants.projects import reconcile
from tenants.projects.models import AccessKey, Project

pytestmark = pytest.mark.django_db

KEYS_NS = "pier-keys"  # the default PIER_KEYS_NAMESPACE


def _key_accounts(slug: str, tenant: str = "alpha") -> list[str]:
    """The names of the keys' ServiceAccounts of a project in the keys namespace."""
    selector = f"pier.dev/tenant={tenant},pier.dev/project={slug},pier.dev/access-key=true"
    return [sa["metadata"]["name"] for sa in kube.list_objects("ServiceAccount", KEYS_NS, label_selector=selector)]


@pytest.fixture(autouse=True)
def _no_faults_left():
    yield
    kubehelp.clear_faults()


@pytest.fixture
def ready_project(api, users, alpha, unique_slug):
    def make(owner="bob"):
        slug = unique_slug("keys")
        assert api(users[owner]).post("/api/v1/tenants/alpha/projects", {"slug": slug}, format="json").status_code == 202
        with tenant_context(alpha):
            reconcile.run(Project.objects.get(slug=slug).pk)
        return slug

    return make


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _cluster_accepts(token: str) -> bool:
    """Ask the cluster (TokenReview) whether it still accepts the token."""
    from kubernetes import client

    review = client.AuthenticationV1Api(kube.api_client()).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    return bool(review.status.authenticated)


def _issue(api, user, slug, **body):
    return api(user).post(f"/api/v1/tenants/alpha/projects/{slug}/keys", {"name": "ci", "role": "view", **body},
                          format="json")


def test_a_key_is_issued_once_stored_as_a_hash_and_works_for_its_project_and_role(api, users, alpha, ready_project):
    slug = ready_project()
    response = _issue(api, users["bob"], slug, role="edit", expires_in=30 * 86400)
    assert response.status_code == 201, response.json()
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    token = body["token"]
    assert token.count(".") == 2 and body["token_hint"] == f"…{token[-4:]}"
    expires = timezone.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - timezone.now()) - timedelta(days=30)) < timedelta(minutes=5)
    with tenant_context(alpha):
        key = AccessKey.objects.get(pk=body["id"])
        assert token not in (key.token_hash, key.token_last4) and len(key.token_hash) == 64
    ns = f"alpha-{slug}"
    # Its ServiceAccount is in the keys namespace, bound into the project's namespace only.
    assert body["service_account_namespace"] == KEYS_NS and body["legacy"] is False
    assert kube.get("ServiceAccount", body["service_account"], ns) is None
    sa = kube.get("ServiceAccount", body["service_account"], KEYS_NS)
    binding = kube.get("RoleBinding", body["service_account"], ns)
    assert sa is not None and binding["roleRef"]["name"] == "pier-project-edit"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": body["service_account"], "namespace": KEYS_NS}]
    assert kube.get("RoleBinding", body["service_account"], KEYS_NS) is None  # no rights where it lives
    # The list shows the name and the last four characters, never the token.
    listed = api(users["bob"]).get(f"/api/v1/tenants/alpha/projects/{slug}/keys").json()["results"]
    assert listed[0]["name"] == "ci" and "token" not in listed[0] and listed[0]["legacy"] is False

    client = bearer(token)
    assert client.get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 200
    assert client.get(f"/api/v1/tenants/alpha/projects/{slug}/access").json()["source"] == "access key ci"
    assert client.patch(f"/api/v1/tenants/alpha/projects/{slug}", {"description": "by ci"}, format="json").status_code == 200
    assert client.patch(f"/api/v1/tenants/alpha/projects/{slug}", {"config_overrides": {"quota.pods": "1"}},
                        format="json").status_code == 403
    assert [p["slug"] for p in client.get("/api/v1/tenants/alpha/projects").json()["results"]] == [slug]
    other = ready_project()
    assert client.get(f"/api/v1/tenants/alpha/projects/{other}").status_code == 404
    assert client.get("/api/v1/tenants/alpha/members").status_code == 403
    assert client.post("/api/v1/tenants/alpha/projects", {"slug": "bykey"}, format="json").status_code == 403
    assert client.get(f"/api/v1/tenants/beta/projects/{slug}").status_code == 401  # unknown in beta's schema
    assert client.get("/api/v1/admin/tenants").status_code == 401
    with tenant_context(alpha):
        assert AccessKey.objects.get(pk=body["id"]).last_used_at is not None


def test_revoked_and_expired_keys_are_refused_at_once(api, users, alpha, ready_project, django_capture_on_commit_callbacks):
    slug = ready_project()
    body = _issue(api, users["bob"], slug).json()
    client = bearer(body["token"])
    assert client.get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 200
    assert _cluster_accepts(body["token"])
    with django_capture_on_commit_callbacks() as callbacks:
        assert api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{slug}/keys/{body['id']}").status_code == 204
    response = client.get(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]  # at once
    assert len(callbacks) == 1  # the clean-up task, enqueued after the commit
    from portal.controller import reconcile_object as reconcile_task

    # What the worker does: the key's controller follows its new desired state (revoked).
    reconcile_task.apply(args=["projects.accesskey", body["id"], alpha.schema_name]).get()
    # Its ServiceAccount is gone, and with it the token's validity in the cluster.
    assert kube.get("ServiceAccount", body["service_account"], KEYS_NS) is None
    assert kube.get("RoleBinding", body["service_account"], f"alpha-{slug}") is None
    assert not _cluster_accepts(body["token"])

    second = _issue(api, users["bob"], slug, name="old").json()
    with tenant_context(alpha):
        AccessKey.objects.filter(pk=second["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(second["token"]).get(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
    assert bearer("not-a-key").get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 401
    lower = APIClient()
    lower.credentials(HTTP_AUTHORIZATION=f"bearer {second['token']}")  # schemes are case-insensitive
    assert "expired" in lower.get(f"/api/v1/tenants/alpha/projects/{slug}").json()["error"]["message"]


def test_a_key_is_all_or_nothing_when_the_cluster_fails(api, users, alpha, ready_project):
    slug = ready_project()
    ns = f"alpha-{slug}"
    before = {sa["metadata"]["name"] for sa in kube.list_objects("ServiceAccount", ns)}
    kubehelp.inject_fault(verb="create", resource="serviceaccounts/token", status=503, times=1)
    response = _issue(api, users["bob"], slug)
    assert response.status_code == 503 and response.json()["error"]["code"] == "cluster_unavailable"
    assert {sa["metadata"]["name"] for sa in kube.list_objects("ServiceAccount", ns)} == before
    assert _key_accounts(slug) == []
    assert kube.list_objects("RoleBinding", ns, label_selector="pier.dev/access-key=true") == []
    with tenant_context(alpha):
        assert not AccessKey.objects.filter(project__slug=slug).exists()
    assert _issue(api, users["bob"], slug).status_code == 201  # the cluster is back


@pytest.mark.parametrize("body, field, status", [
    ({"expires_in": 599}, "expires_in", 400),
    ({"expires_in": 366 * 86400}, "expires_in", 400),
    ({"expires_in": "soon"}, "expires_in", 400),
    ({"role": "owner"}, "role", 400),
    ({"name": ""}, "name", 400),
])
def test_bad_key_requests_name_the_field(api, users, ready_project, body, field, status):
    response = _issue(api, users["bob"], ready_project(), **body)
    assert response.status_code == status and field in response.json()["error"]["details"]


def test_keys_cannot_outrank_their_issuer_or_be_issued_by_viewers(api, users, alpha, ready_project):
    from portal.services import user_set_groups

    slug = ready_project(owner="dave")
    user_set_groups(user=users["bob"], groups=["qa"], acting_user=users["staff"])
    api(users["dave"]).post(f"/api/v1/tenants/alpha/projects/{slug}/grants", {"kind": "group", "name": "qa", "role": "view"}, format="json")
    response = _issue(api, users["bob"], slug)
    assert response.status_code == 403 and "admin role" in response.json()["error"]["message"]
    assert _issue(api, users["dave"], slug, name="dup").status_code == 201
    response = _issue(api, users["dave"], slug, name="dup")
    assert response.status_code == 409 and response.json()["error"]["code"] == "key_exists"


def test_the_tenant_caps_key_lifetime(api, users, alpha, ready_project):
    alpha.max_key_days = 7
    alpha.save()
    from portal import tenancy

    tenancy.invalidate("alpha")
    slug = ready_project()
    response = _issue(api, users["bob"], slug, expires_in=30 * 86400)
    assert response.status_code == 400 and "7 days" in response.json()["error"]["message"]
    assert _issue(api, users["bob"], slug, expires_in=7 * 86400).status_code == 201


def test_keys_page_shows_a_new_token_once(client, users, alpha, ready_project):
    slug = ready_project()
    client.force_login(users["bob"])
    response = client.post(f"/t/alpha/projects/{slug}/keys", {"name": "deploy", "role": "edit", "expires_in_days": "30"})
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert "the only time Pier shows it" in page
    with tenant_context(alpha):
        key = AccessKey.objects.get(project__slug=slug, name="deploy")
    token = page.split('id="new-token" readonly rows="4" style="width:100%" class="mono">')[1].split("<")[0]
    assert token.endswith(key.token_last4) and len(token) > 100
    again = client.get(f"/t/alpha/projects/{slug}/keys").content.decode()
    assert token not in again and f"…{key.token_last4}" in again
    assert "deploy" not in str(client.session.items())
    assert bearer(token).get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 200


def test_group_and_key_lists_cost_the_same_queries_however_many_rows(api, users, alpha, ready_project):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    slug = ready_project()
    client = api(users["bob"])
    base = f"/api/v1/tenants/alpha/projects/{slug}"
    counts = {}
    for n in (1, 6):
        while len(client.get(f"{base}/grants").json()) < n:
            client.post(f"{base}/grants", {"kind": "group", "name": f"g{len(client.get(f'{base}/grants').json())}", "role": "view"}, format="json")
        while client.get(f"{base}/keys").json()["count"] < n:
            _issue(api, users["bob"], slug, name=f"k{client.get(f'{base}/keys').json()['count']}")
        with CaptureQueriesContext(connection) as groups_q:
            client.get(f"{base}/grants")
        with CaptureQueriesContext(connection) as keys_q:
            client.get(f"{base}/keys")
        with CaptureQueriesContext(connection) as projects_q:
            client.get("/api/v1/tenants/alpha/projects")
        counts[n] = (len(groups_q), len(keys_q), len(projects_q))
    assert counts[1] == counts[6], counts


def test_the_openapi_schema_validates():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_keys_leave_with_their_issuer(api, users, alpha, ready_project):
    slug = ready_project()
    body = _issue(api, users["bob"], slug).json()
    client = bearer(body["token"])
    assert client.get(f"/api/v1/tenants/alpha/projects/{slug}").status_code == 200
    assert api(users["alice"]).delete("/api/v1/tenants/alpha/members/bob").status_code == 204
    response = client.get(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_a_deactivated_issuers_keys_stop_working(api, users, alpha, ready_project):
    slug = ready_project()
    body = _issue(api, users["bob"], slug).json()
    users["bob"].is_active = False
    users["bob"].save()
    response = bearer(body["token"]).get(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 401 and "deactivated" in response.json()["error"]["message"]


def test_the_periodic_pass_sweeps_objects_of_dead_keys(api, users, alpha, ready_project):
    slug = ready_project()
    ns = f"alpha-{slug}"
    body = _issue(api, users["bob"], slug).json()
    with tenant_context(alpha):
        AccessKey.objects.filter(pk=body["id"]).update(revoked_at=timezone.now())  # its clean-up task was lost
        outcomes = reconcile.run(Project.objects.get(slug=slug).pk)
    assert outcomes[f"ServiceAccount/{body['service_account']}"] == "deleted"
    assert kube.get("ServiceAccount", body["service_account"], KEYS_NS) is None
    assert kube.get("RoleBinding", body["service_account"], ns) is None


def test_a_revoked_keys_name_can_be_used_again_and_the_default_fits_the_cap(api, users, alpha, ready_project):
    slug = ready_project()
    first = _issue(api, users["bob"], slug).json()
    assert api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{slug}/keys/{first['id']}").status_code == 204
    alpha.max_key_days = 30
    alpha.save()
    from portal import tenancy

    tenancy.invalidate("alpha")
    second = api(users["bob"]).post(f"/api/v1/tenants/alpha/projects/{slug}/keys", {"name": "ci", "role": "view"},
                                    format="json")
    assert second.status_code == 201
    expires = timezone.datetime.fromisoformat(second.json()["expires_at"].replace("Z", "+00:00"))
    assert expires - timezone.now() < timedelta(days=30, minutes=5)


def test_a_key_for_a_tenant_being_upgraded_gets_503_not_an_error(api, users, alpha, ready_project):
    from portal import tenancy
    from tenants.models import Tenant

    slug = ready_project()
    token = _issue(api, users["bob"], slug).json()["token"]
    Tenant.objects.filter(pk=alpha.pk).update(schema_version="older")
    tenancy.invalidate("alpha")
    response = bearer(token).get(f"/api/v1/tenants/alpha/projects/{slug}")
    assert response.status_code == 503 and response.json()["error"]["code"] == "tenant_unavailable"


def test_the_key_page_answers_in_days_at_the_field(client, users, ready_project):
    slug = ready_project()
    client.force_login(users["bob"])
    response = client.post(f"/t/alpha/projects/{slug}/keys", {"name": "ci", "role": "view", "expires_in_days": "400"})
    assert response.status_code == 400
    assert response.context["form"].errors["expires_in_days"] == ["At most 365 days (this organization's limit)."]
    assert "seconds" not in response.content.decode()


def test_a_project_without_a_role_answers_pier_s_404_page(client, users, ready_project, settings):
    settings.DEBUG = True  # where Django would show its debug 404 with the URL list
    slug = ready_project(owner="dave")
    client.force_login(users["bob"])  # a member without a role in that project
    response = client.get(f"/t/alpha/projects/{slug}")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and "Back to Alpha Org" in page and "URLconf" not in page
