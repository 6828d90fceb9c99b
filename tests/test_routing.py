"""Path routing, tenant states as members see them, health endpoints, request ids."""

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal import tenancy
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_a_routed_request_costs_no_tenant_lookup_query(api, users):
    client = api(users["bob"])
    assert client.get("/api/v1/tenants/alpha/members").status_code == 200  # warms the cache
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/tenants/alpha/members")
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "tenants_tenant" in s], sql
    # The connection served this tenant last time: its search_path is already right.
    assert not [s for s in sql if s.startswith("SET search_path")], sql
    client.get("/healthz")  # a public request in between …
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/tenants/alpha/members")
    assert len([q for q in queries.captured_queries if q["sql"].startswith("SET search_path")]) == 1


def test_members_of_a_suspended_tenant_get_a_clear_message_staff_still_see_it(api, users, client):
    Tenant.objects.filter(slug="alpha").update(status="suspended")
    tenancy.invalidate("alpha")
    response = api(users["bob"]).get("/api/v1/tenants/alpha/members")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert "suspended" in response.json()["error"]["message"]
    assert api(users["carol"]).get("/api/v1/tenants/alpha/members").status_code == 404
    assert api(users["staff"]).get("/api/v1/tenants/alpha/members").status_code == 200
    client.force_login(users["bob"])
    page = client.get("/t/alpha/")
    assert page.status_code == 403 and "is suspended" in page.content.decode()


def test_members_of_a_tenant_still_provisioning_are_told_so(api, users):
    Tenant.objects.filter(slug="alpha").update(status="provisioning")
    tenancy.invalidate("alpha")
    response = api(users["bob"]).get("/api/v1/tenants/alpha")
    assert response.status_code == 503 and response.json()["error"]["code"] == "tenant_not_ready"


def test_a_schema_behind_the_code_answers_503_until_migrated(api, users, alpha):
    Tenant.objects.filter(pk=alpha.pk).update(schema_version="an-older-version")
    tenancy.invalidate("alpha")
    response = api(users["bob"]).get("/api/v1/tenants/alpha/members")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "tenant_migrating"
    assert "being upgraded" in response.json()["error"]["message"]
    assert api(users["carol"]).get("/api/v1/tenants/alpha/members").status_code == 404
    call_command("migrate_tenants", verbosity=0)
    tenancy.clear_local_cache()
    assert api(users["bob"]).get("/api/v1/tenants/alpha/members").status_code == 200


def test_request_id_is_returned_and_an_incoming_one_kept_only_from_a_trusted_proxy(client, settings):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32
    response = client.get("/healthz", HTTP_X_REQUEST_ID="client-chosen-123456")
    assert response["X-Request-ID"] != "client-chosen-123456"  # a client cannot pick it
    settings.PIER_TRUST_REQUEST_ID = True
    response = client.get("/healthz", HTTP_X_REQUEST_ID="router-abc-123456")
    assert response["X-Request-ID"] == "router-abc-123456"
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces; drop table")
    assert response["X-Request-ID"] != "bad id with spaces; drop table"


def test_health_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["ok"] and ready.json()["checks"]["broker"]["ok"]


def test_readyz_reports_an_unreachable_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"]["ok"] is False
    assert ready.json()["checks"]["database"]["ok"] is True


def test_openapi_schema_and_local_swagger_ui(client, users):
    client.force_login(users["bob"])
    schema = client.get("/api/v1/schema?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert {"/api/v1/admin/tenants", "/api/v1/tenants/{tenant_slug}/members"} <= set(paths)
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()


def test_signed_out_people_are_sent_to_sign_in_for_the_docs_and_the_schema(client):
    docs = client.get("/api/v1/docs", HTTP_ACCEPT="text/html")
    assert docs.status_code == 302 and docs["Location"] == "/login?next=/api/v1/docs"
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert schema.status_code == 302 and schema["Location"].startswith("/login?next=")
    # Automation keeps the error shape.
    api = client.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert api.status_code == 401 and api.json()["error"]["code"] == "not_authenticated"


def test_a_browser_is_shown_the_schema_not_handed_a_download(client, users):
    client.force_login(users["bob"])
    response = client.get("/api/v1/schema", HTTP_ACCEPT="text/html,*/*")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert "attachment" not in response.get("Content-Disposition", "")
