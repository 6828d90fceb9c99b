"""What tenant A writes is invisible from tenant B: through the ORM, the HTML and the API.
A member of A gets 404 for every URL of B (the list is read from the URLconf)."""

import pytest
from django_tenants.utils import schema_context

from routes import pier_routes
from tenants.projects.models import TenantSettings

pytestmark = pytest.mark.django_db

TENANT_ROUTES = [r for r in pier_routes() if r.is_tenant_route]


def test_the_url_list_has_tenant_routes():
    names = {r.name for r in TENANT_ROUTES}
    assert {"tenants:home", "tenants:members", "api:member-list", "api:tenant-audit"} <= names


def test_orm_writes_in_one_schema_are_invisible_in_another(alpha, beta):
    with schema_context(alpha.schema_name):
        TenantSettings.objects.update(project_defaults={"cpu": "secret-alpha"})
        assert TenantSettings.objects.get().project_defaults == {"cpu": "secret-alpha"}
    with schema_context(beta.schema_name):
        assert TenantSettings.objects.count() == 1
        assert TenantSettings.objects.get().project_defaults == {}
        assert not TenantSettings.objects.filter(project_defaults__cpu="secret-alpha").exists()


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=lambda r: r.name)
def test_member_of_alpha_gets_404_for_every_url_of_beta_html_and_api(route, users, api, client):
    path = route.path(tenant_slug="beta")
    for method in ("GET", *route.methods):
        if route.name.startswith("api:"):
            response = getattr(api(users["alice"]), method.lower())(path, {}, format="json")
            assert response.status_code == 404, (method, path, response.content)
            assert response.json()["error"]["code"] == "not_found"
            assert b"Beta" not in response.content and b"carol" not in response.content
        else:
            client.force_login(users["alice"])
            response = getattr(client, method.lower())(path)
            assert response.status_code == 404, (method, path)
            assert b"Beta Org" not in response.content and b"carol" not in response.content


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=lambda r: r.name)
def test_anonymous_callers_are_asked_to_sign_in_not_shown_data(route, api, client):
    path = route.path(tenant_slug="beta")
    if route.name.startswith("api:"):
        response = api().get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
    else:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login?next=")


def test_api_member_lists_show_only_the_tenants_own_members(api, users):
    alpha_members = {m["username"] for m in api(users["alice"]).get("/api/v1/tenants/alpha/members").json()["results"]}
    beta_members = {m["username"] for m in api(users["carol"]).get("/api/v1/tenants/beta/members").json()["results"]}
    assert alpha_members == {"alice", "bob", "dave"}
    assert beta_members == {"carol"}


def test_tenant_picker_lists_only_my_tenants(users, client):
    client.force_login(users["bob"])
    page = client.get("/").content.decode()
    assert "Alpha Org" in page and "Beta Org" not in page
    mine = client.get("/api/v1/tenants").json()["results"]
    assert [(t["slug"], t["role"]) for t in mine] == [("alpha", "member")]


def test_unknown_tenant_is_a_404_page_for_people(users, client):
    client.force_login(users["alice"])
    response = client.get("/t/does-not-exist/")
    assert response.status_code == 404
    assert "No such organization" in response.content.decode()
