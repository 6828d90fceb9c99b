"""Security properties a reviewer probed: existence oracles, CSRF, audit isolation across a reused
slug, staff-only endpoints, admin edits going through the services."""

import re

import pytest
from django.test import Client

from conftest import provision_now
from portal import tenancy
from portal.models import AuditEvent
from routes import pier_routes
from tenants import services
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_anonymous_callers_cannot_tell_which_organizations_exist(api, client):
    for path in ("/api/v1/tenants/beta/members", "/api/v1/tenants/no-such-org/members"):
        response = api().get(path)
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    for path in ("/t/beta/", "/t/no-such-org/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login")


def test_unknown_slugs_do_not_grow_the_tenant_cache(api, users):
    before = len(tenancy._entries)
    client = api(users["bob"])
    # Longer than any slug: refused by the input guard (400) before the tenant lookup.
    for path, status in (("/api/v1/tenants/" + "x" * 300 + "/members", 400), ("/api/v1/tenants/UPPER/members", 404)):
        assert client.get(path).status_code == status
    assert len(tenancy._entries) == before


def test_html_forms_need_the_csrf_token(users):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["alice"])
    response = browser.post("/t/alpha/members", {"username": "carol", "role": "member"})
    assert response.status_code == 403 and "Form expired" in response.content.decode()
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"], outcome="denied").exists()


def test_the_api_takes_json_only_so_cross_site_forms_cannot_post(api, users):
    response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": "formco", "name": "F", "owner": "bob"})
    assert response.status_code == 415
    assert not Tenant.objects.filter(slug="formco").exists()


@pytest.mark.parametrize("route", [r for r in pier_routes() if r.name.startswith("api:admin-") or r.name.startswith("api:job-")],
                         ids=lambda r: r.name)
def test_staff_endpoints_refuse_everyone_else(route, api, users):
    path = route.path()
    for method in ("GET", *route.methods):
        response = getattr(api(users["alice"]), method.lower())(path, {}, format="json")
        assert response.status_code in (403, 405), (method, path)
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "permission_denied"
        assert getattr(api(), method.lower())(path, {}, format="json").status_code in (401, 405)


def test_a_reused_slug_does_not_inherit_the_old_audit_trail(api, users, django_capture_on_commit_callbacks):
    from tenants import provisioning

    first = provision_now("reused", "alice", acting_user=users["staff"])
    services.member_add(tenant=first, person="carol@example.com", role="member", acting_user=users["alice"],
                        acting_role="owner")
    _t, job = services.tenant_delete(tenant=first, acting_user=users["staff"])
    provisioning.run_job(job.pk)
    second = provision_now("reused", "bob", acting_user=users["staff"])
    events = api(users["bob"]).get("/api/v1/tenants/reused/audit").json()["results"]
    assert events, "the new tenant has its own history"
    assert all(e["target"] != "carol@example.com" for e in events)
    assert {e["details"].get("job") for e in events if e["action"] == "tenant.provision"} == {
        second.jobs.get(kind="provision").pk}


def test_admin_changes_go_through_the_service(client, users, alpha, api):
    client.force_login(users["staff"])
    assert api(users["bob"]).get("/api/v1/tenants/alpha/members").status_code == 200  # cached now
    url = f"/admin/tenants/tenant/{alpha.pk}/change/"
    page = client.get(url).content.decode()
    # The inlines' hidden fields (management forms, ids), as the browser would send them.
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    form.update({"name": "Alpha Renamed", "max_projects": "", "max_members": "3", "max_running_sessions": "",
                 "runtime_mode": "shared", "runner_image": ""})
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="tenant.update", target="alpha")
    assert event.source == "admin" and event.details["after"] == {"name": "Alpha Renamed", "max_members": 3}
    # Every process sees the new limit at once (the cache was told): alpha has 3 members.
    response = api(users["alice"]).post("/api/v1/tenants/alpha/members", {"username": "carol"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "quota_exceeded"


def test_memberships_cannot_be_edited_around_the_last_owner_rule_in_the_admin(client, users, alpha):
    client.force_login(users["staff"])
    membership = alpha.memberships.get(user=users["alice"])
    assert client.get(f"/admin/tenants/membership/{membership.pk}/change/").status_code in (200, 403)
    response = client.post(f"/admin/tenants/membership/{membership.pk}/change/",
                           {"tenant": alpha.pk, "user": users["alice"].pk, "role": "member"})
    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.role == "owner"
