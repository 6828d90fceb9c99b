"""Staff tenant lifecycle through the API: input errors, conflicts, state changes."""

import pytest
from django.db import connection

from portal.models import AuditEvent
from tenants.models import Membership, PendingMembership, Tenant

pytestmark = pytest.mark.django_db


def test_create_returns_202_with_job_and_queues_provisioning(api, users, unique_slug, django_capture_on_commit_callbacks):
    slug = unique_slug("gamma")
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": slug, "name": "Gamma", "owner": "bob"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["slug"] == slug and body["status"] == "provisioning" and body["invited"] is False  # bob exists
    assert body["job"]["kind"] == "provision" and body["job"]["status"] == "queued"
    assert [step["name"] for step in body["job"]["steps"]] == ["create_schema", "seed_defaults", "add_owner", "activate"]
    assert response["Location"] == f"/api/v1/admin/tenants/{slug}"
    job = api(users["staff"]).get(body["job"]["url"]).json()
    assert job["id"] == body["job"]["id"] and job["tenant"] == slug
    assert len(callbacks) == 2  # the task is enqueued only once the transaction commits (+ cache bump)
    assert AuditEvent.objects.filter(action="tenant.create", target=slug, actor="staff", outcome="success").exists()


@pytest.mark.parametrize(
    "payload, field, fragment",
    [
        ({"slug": "Bad_Slug", "name": "x", "owner": "bob"}, "slug", "lowercase letters, digits and hyphens"),
        ({"slug": "a", "name": "x", "owner": "bob"}, "slug", "2 to 41 characters"),
        ({"slug": "9lives", "name": "x", "owner": "bob"}, "slug", "starting with a letter"),
        ({"slug": "pg-data", "name": "x", "owner": "bob"}, "slug", "may not start with 'pg-'"),
        ({"slug": "admin", "name": "x", "owner": "bob"}, "slug", "'admin' is reserved"),
        ({"slug": "api", "name": "x", "owner": "bob"}, "slug", "'api' is reserved"),
        ({"slug": "public", "name": "x", "owner": "bob"}, "slug", "'public' is reserved"),
        ({"slug": "www", "name": "x", "owner": "bob"}, "slug", "'www' is reserved"),
        ({"slug": "a" * 42, "name": "x", "owner": "bob"}, "slug", "2 to 41 characters"),
        ({"name": "x", "owner": "bob"}, "slug", "This field is required."),
        ({"slug": "okslug", "owner": "bob"}, "name", "This field is required."),
        ({"slug": "okslug", "name": "x"}, "owner", "This field is required."),
        ({"slug": "okslug", "name": "x", "owner": "bob", "max_projects": "many"}, "max_projects", "A valid integer is required."),
        ({"slug": "okslug", "name": "x", "owner": "bob", "max_members": 0}, "max_members", "greater than or equal to 1"),
        ({"slug": "okslug", "name": "x", "owner": "bob", "status": "active"}, "status", "Unknown or read-only field."),
        ({"slug": "okslug", "name": "x", "owner": "not an email@"}, "owner", "neither a username nor a valid email"),
        ({"slug": ["a"], "name": "x", "owner": "bob"}, "slug", "Not a valid string."),
    ],
)
def test_create_rejects_bad_input_naming_the_field(api, users, payload, field, fragment):
    response = api(users["staff"]).post("/api/v1/admin/tenants", payload, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert fragment in " ".join(error["details"][field])
    assert error["message"].startswith(f"{field}:")
    assert not Tenant.objects.filter(slug=payload.get("slug") if isinstance(payload.get("slug"), str) else "-").exclude(slug__in=["alpha", "beta"]).exists()


@pytest.mark.parametrize("owner", ["alcie", "alcie@example.com"])
def test_an_owner_that_matches_nobody_is_answered_as_invited(api, users, unique_slug, owner):
    slug = unique_slug("typo")
    response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": slug, "name": "Typo", "owner": owner},
                                        format="json")
    assert response.status_code == 202 and response.json()["invited"] is True
    assert PendingMembership.objects.filter(tenant__slug=slug, role="owner").count() == 1
    response = api(users["staff"]).post("/api/v1/admin/tenants",
                                        {"slug": unique_slug("found"), "name": "Found", "owner": "carol@example.com"},
                                        format="json")
    assert response.status_code == 202 and response.json()["invited"] is False


def test_the_schema_documents_the_invited_flag(api, users):
    schema = api(users["staff"]).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    for name in ("TenantCreated", "MemberAdded"):
        assert "invited" in components[name]["properties"], name
        assert "first sign-in" in components[name]["properties"]["invited"]["description"]
    assert "TenantCreated" in str(schema["paths"]["/api/v1/admin/tenants"]["post"]["responses"]["202"])
    assert "MemberAdded" in str(schema["paths"]["/api/v1/tenants/{tenant_slug}/members"]["post"]["responses"]["201"])


def test_duplicate_slug_is_409(api, users):
    response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": "alpha", "name": "Again", "owner": "bob"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slug_taken"
    assert "alpha" in response.json()["error"]["message"]


def test_owner_who_never_signed_in_becomes_member_at_first_sign_in(api, users, unique_slug, client):
    from conftest import provision_now
    from django.contrib.auth import get_user_model

    slug = unique_slug("invite")
    tenant = provision_now(slug, "newcomer@example.com", acting_user=users["staff"])
    assert tenant.status == "active"
    assert PendingMembership.objects.filter(tenant=tenant, email="newcomer@example.com", role="owner").exists()
    newcomer = get_user_model().objects.create_user("newcomer", email="Newcomer@Example.com", password="pw-123456-x")
    assert client.post("/login", {"username": "newcomer", "password": "pw-123456-x"}).status_code == 302
    assert Membership.objects.get(tenant=tenant, user=newcomer).role == "owner"
    assert not PendingMembership.objects.filter(tenant=tenant).exists()
    assert slug in client.get("/").content.decode()


def test_only_staff_use_the_admin_api(api, users, alpha):
    assert api().get("/api/v1/admin/tenants").status_code == 401
    for name in ("alice", "bob"):
        response = api(users[name]).get("/api/v1/admin/tenants")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert api(users[name]).post(f"/api/v1/admin/tenants/{alpha.slug}/suspend").status_code == 403
    alpha.refresh_from_db()
    assert alpha.status == "active"


def test_list_is_paginated_and_filters_by_status(api, users, alpha, beta, django_capture_on_commit_callbacks):
    from tenants import services

    with django_capture_on_commit_callbacks(execute=True):
        services.tenant_suspend(tenant=beta, acting_user=users["staff"])
    client = api(users["staff"])
    body = client.get("/api/v1/admin/tenants?status=suspended").json()
    assert [t["slug"] for t in body["results"]] == ["beta"]
    body = client.get("/api/v1/admin/tenants?page_size=1").json()
    assert body["count"] >= 2 and len(body["results"]) == 1 and body["next"]
    assert client.get("/api/v1/admin/tenants?status=bogus").status_code == 400


def test_patch_updates_quota_and_refuses_unknown_fields(api, users, alpha):
    client = api(users["staff"])
    response = client.patch("/api/v1/admin/tenants/alpha", {"max_projects": 3, "name": "Alpha Renamed"}, format="json")
    assert response.status_code == 200
    assert response.json()["max_projects"] == 3 and response.json()["effective_max_projects"] == 3
    assert response.json()["name"] == "Alpha Renamed"
    response = client.patch("/api/v1/admin/tenants/alpha", {"slug": "other"}, format="json")
    assert response.status_code == 400 and "slug" in response.json()["error"]["details"]
    response = client.patch("/api/v1/admin/tenants/alpha", {"max_projects": -1}, format="json")
    assert response.status_code == 400 and "max_projects" in response.json()["error"]["details"]
    assert client.patch("/api/v1/admin/tenants/nope", {"name": "x"}, format="json").status_code == 404


def test_suspend_resume_state_conflicts(api, users, alpha, django_capture_on_commit_callbacks):
    client = api(users["staff"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/v1/admin/tenants/alpha/resume").status_code == 409
        response = client.post("/api/v1/admin/tenants/alpha/suspend")
        assert response.status_code == 200 and response.json()["status"] == "suspended"
        again = client.post("/api/v1/admin/tenants/alpha/suspend")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "invalid_state"
        assert client.post("/api/v1/admin/tenants/alpha/resume").json()["status"] == "active"
    outcomes = list(AuditEvent.objects.filter(tenant="alpha", action__in=["tenant.suspend", "tenant.resume"]).values_list("action", "outcome"))
    assert ("tenant.suspend", "success") in outcomes and ("tenant.resume", "success") in outcomes
    refused = AuditEvent.objects.filter(tenant="alpha", outcome="conflict")
    assert refused.count() == 2


def test_unknown_api_route_and_tenant_answer_json_404(api, users):
    response = api(users["staff"]).get("/api/v1/tenants/no-such-org/members")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api(users["staff"]).get("/api/v1/admin/jobs/999999").json()["error"]["code"] == "not_found"


def test_schema_exists_for_session_tenants(alpha):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'projects_tenantsettings'", [alpha.schema_name])
        assert cursor.fetchone()
