"""Every mutating endpoint is audited, on success and when refused. The endpoint list is read from
the URLconf: a new mutating endpoint without an entry in CASES fails `test_every_mutating_endpoint_has_a_case`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from conftest import PASSWORD
from portal.models import AuditEvent
from routes import pier_routes
from tenants.models import Membership, PendingMembership, Tenant

pytestmark = pytest.mark.django_db


@dataclass
class Case:
    actor: str | None  # username, or None for anonymous
    status: int
    action: str
    data: dict | None = None
    prepare: Callable[[dict], dict] = field(default=lambda users: {})  # returns URL kwargs


def _bob_in_beta(users):
    membership = Membership.objects.create(tenant=Tenant.objects.get(slug="beta"), user=users["bob"], role="member")
    return {"username": "bob", "pk": membership.pk}


def _ghost_invited(users):
    return {"pk": PendingMembership.objects.create(tenant=Tenant.objects.get(slug="beta"), username="ghost").pk}


def _ghost_mailed(users):
    return {"pk": PendingMembership.objects.create(tenant=Tenant.objects.get(slug="beta"), email="ghost@example.com").pk}


def _site_in_beta(users):
    from django_tenants.utils import tenant_context

    from tenants.projects import services as project_services

    beta = Tenant.objects.get(slug="beta")
    with tenant_context(beta):
        project_services.project_create(tenant=beta, slug="site", acting_user=users["carol"])
    return {"project_slug": "site"}


def _site_shared(users):
    from django_tenants.utils import tenant_context

    from tenants.projects import services as project_services
    from tenants.projects.access import Access

    kwargs = _site_in_beta(users)
    beta = Tenant.objects.get(slug="beta")
    with tenant_context(beta):
        from tenants.projects.models import Project

        grant = project_services.grant_add(tenant=beta, project=Project.objects.get(slug="site"), kind="group",
                                           name="ops", role="view", acting_user=users["carol"],
                                           access=Access("admin", "test"))
    return {**kwargs, "grant_id": grant.pk}


def _site_ready_in_beta(users):
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile
    from tenants.projects.models import Project

    kwargs = _site_in_beta(users)
    with tenant_context(Tenant.objects.get(slug="beta")):
        reconcile.run(Project.objects.get(slug="site").pk)
    return kwargs


def _site_key(users):
    from django_tenants.utils import tenant_context

    from tenants.projects import services as project_services
    from tenants.projects.access import Access
    from tenants.projects.models import Project

    kwargs = _site_ready_in_beta(users)
    beta = Tenant.objects.get(slug="beta")
    with tenant_context(beta):
        key, _token = project_services.key_create(tenant=beta, project=Project.objects.get(slug="site"), name="k", role="view",
                                      acting_user=users["carol"], access=Access("admin", "test"))
    return {**kwargs, "key_id": key.pk}


def _site_session(users):
    from django_tenants.utils import tenant_context

    from sessions import services as session_services
    from tenants.projects.access import Access
    from tenants.projects.models import Project

    kwargs = _site_ready_in_beta(users)
    beta = Tenant.objects.get(slug="beta")
    with tenant_context(beta):
        session, _ = session_services.session_create(tenant=beta, project=Project.objects.get(slug="site"),
                                                     acting_user=users["carol"], access=Access("admin", "test"),
                                                     prompt="audit me")
    return {**kwargs, "session_name": session.name}


def _beta_status(status):
    def prepare(users):
        Tenant.objects.filter(slug="beta").update(status=status)
        return {}
    return prepare


CASES: dict[tuple[str, str], Case] = {
    ("login", "POST"): Case(None, 302, "auth.login", {"username": "bob", "password": PASSWORD}),
    ("logout", "POST"): Case("bob", 302, "auth.logout"),
    ("api:admin-tenant-list", "POST"): Case("staff", 202, "tenant.create", {"slug": "newco", "name": "New", "owner": "bob"}),
    ("api:admin-tenant-detail", "PATCH"): Case("staff", 200, "tenant.update", {"name": "Beta Renamed"}),
    ("api:admin-tenant-detail", "DELETE"): Case("staff", 202, "tenant.delete"),
    ("api:admin-tenant-suspend", "POST"): Case("staff", 200, "tenant.suspend"),
    ("api:admin-tenant-resume", "POST"): Case("staff", 200, "tenant.resume", prepare=_beta_status("suspended")),
    ("api:admin-tenant-policy", "PATCH"): Case("staff", 200, "tenant.policy", {"ceilings": {"quota.pods": "100"}}),
    ("api:admin-tenant-retry", "POST"): Case("staff", 202, "tenant.retry", prepare=_beta_status("failed")),
    ("api:member-list", "POST"): Case("carol", 201, "member.add", {"username": "bob", "role": "member"}),
    ("api:member-detail", "PATCH"): Case("carol", 200, "member.change_role", {"role": "admin"}, _bob_in_beta),
    ("api:member-detail", "DELETE"): Case("carol", 204, "member.remove", prepare=_bob_in_beta),
    ("api:invitation-detail", "DELETE"): Case("carol", 204, "member.remove", prepare=_ghost_invited),
    ("api:invitation-resend", "POST"): Case("carol", 202, "invitation.resend", prepare=_ghost_mailed),
    ("tenants:members", "POST"): Case("carol", 302, "member.add", {"username": "bob", "role": "member"}),
    ("tenants:member_role", "POST"): Case("carol", 302, "member.change_role", {"role": "admin"}, _bob_in_beta),
    ("tenants:member_remove", "POST"): Case("carol", 302, "member.remove", prepare=_bob_in_beta),
    ("tenants:invitation_remove", "POST"): Case("carol", 302, "member.remove", prepare=_ghost_invited),
    ("tenants:invitation_resend", "POST"): Case("carol", 302, "invitation.resend", prepare=_ghost_mailed),
    ("api:project-list", "POST"): Case("carol", 202, "project.create", {"slug": "shop"}),
    ("api:project-detail", "PATCH"): Case("carol", 200, "project.update", {"description": "x"}, _site_in_beta),
    ("api:project-detail", "DELETE"): Case("carol", 202, "project.delete", prepare=_site_in_beta),
    ("api:project-defaults", "PATCH"): Case("carol", 200, "tenant.project_defaults", {"project_defaults": {"quota.pods": "9"}}),
    ("projects:list", "POST"): Case("carol", 302, "project.create", {"slug": "shop"}),
    ("projects:edit", "POST"): Case("carol", 302, "project.update", {"description": "x"}, _site_in_beta),
    ("projects:settings", "POST"): Case("carol", 302, "tenant.project_defaults", {"quota.pods": "9"}),
    ("projects:config", "POST"): Case("carol", 302, "project.update", {"quota.pods": "3"}, _site_in_beta),
    ("projects:delete", "POST"): Case("carol", 302, "project.delete", prepare=_site_in_beta),
    ("api:project-grant-list", "POST"): Case("carol", 201, "project.share", {"kind": "group", "name": "devs", "role": "edit"},
                                             _site_in_beta),
    ("api:project-grant-detail", "PATCH"): Case("carol", 200, "project.share_change", {"role": "edit"}, _site_shared),
    ("api:project-grant-detail", "DELETE"): Case("carol", 204, "project.unshare", prepare=_site_shared),
    ("projects:sharing", "POST"): Case("carol", 302, "project.share", {"kind": "group", "name": "devs", "role": "edit"},
                                       _site_in_beta),
    ("projects:sharing_role", "POST"): Case("carol", 302, "project.share_change", {"role": "edit"}, _site_shared),
    ("projects:sharing_remove", "POST"): Case("carol", 302, "project.unshare", prepare=_site_shared),
    ("api:admin-user-list", "POST"): Case("staff", 201, "user.create",
                                          {"username": "newperson", "email": "n@example.com", "groups": ["devs"]}),
    ("api:admin-user-detail", "PATCH"): Case("staff", 200, "user.set_groups", {"groups": ["devs"]}),
    ("api:project-key-list", "POST"): Case("carol", 201, "key.create", {"name": "ci", "role": "view"}, _site_ready_in_beta),
    ("api:project-key-detail", "DELETE"): Case("carol", 204, "key.revoke", prepare=_site_key),
    ("projects:keys", "POST"): Case("carol", 201, "key.create", {"name": "ci", "role": "view", "expires_in_days": "30"},
                                    _site_ready_in_beta),
    ("projects:key_revoke", "POST"): Case("carol", 302, "key.revoke", prepare=_site_key),
    ("api:session-list", "POST"): Case("carol", 201, "session.create", {"prompt": "hello"}, _site_ready_in_beta),
    ("api:session-detail", "DELETE"): Case("carol", 202, "session.delete", prepare=_site_session),
    ("api:session-stop", "POST"): Case("carol", 202, "session.stop", prepare=_site_session),
    ("api:session-clone", "POST"): Case("carol", 201, "session.create", prepare=_site_session),
    ("sessions:list", "POST"): Case("carol", 302, "session.create", {"prompt": "hello"}, _site_ready_in_beta),
    ("sessions:stop", "POST"): Case("carol", 302, "session.stop", prepare=_site_session),
    ("sessions:clone", "POST"): Case("carol", 302, "session.create", prepare=_site_session),
    ("sessions:delete", "POST"): Case("carol", 302, "session.delete", prepare=_site_session),
    ("api:project-runner-secret", "PUT"): Case("carol", 200, "project.runner_secret",
                                              {"data": {"OPENAI_API_KEY": "sk-x"}}, _site_ready_in_beta),
    ("api:project-runner-secret", "DELETE"): Case("carol", 204, "project.runner_secret_delete",
                                                 prepare=_site_ready_in_beta),
    ("sessions:runner_secret", "POST"): Case("carol", 302, "project.runner_secret",
                                             {"values": "OPENAI_API_KEY=sk-x"}, _site_ready_in_beta),
    ("sessions:runner_secret_delete", "POST"): Case("carol", 302, "project.runner_secret_delete",
                                                    prepare=_site_ready_in_beta),
}

MUTATING = [(route, method) for route in pier_routes() for method in route.methods]


def test_every_mutating_endpoint_has_a_case():
    assert {(route.name, method) for route, method in MUTATING} == set(CASES)


def test_function_views_refuse_post(client, users):
    client.force_login(users["bob"])
    for route in pier_routes():
        if not hasattr(route.view, "view_class") and not hasattr(route.view, "cls"):
            assert client.post(route.path()).status_code == 405, route.name


def _send(client_for, route, method, case, kwargs, actor):
    path = route.path(**{"tenant_slug": "beta", "slug": "beta", **kwargs})
    client = client_for(actor)
    if route.name.startswith("api:"):
        return getattr(client, method.lower())(path, case.data or {}, format="json")
    return getattr(client, method.lower())(path, case.data or {})


@pytest.fixture
def client_for(users, api):
    from django.test import Client

    def make(actor):
        if actor is None:
            return Client()
        return _ClientPair(api(users[actor]), users[actor])

    return make


class _ClientPair:
    """An API client with Basic auth and a browser client with a session, for the same user."""

    def __init__(self, api_client, user):
        from django.test import Client

        self.api = api_client
        self.browser = Client()
        self.browser.force_login(user)

    def __getattr__(self, method):
        def send(path, data=None, format=None):
            if path.startswith("/api/"):
                return getattr(self.api, method)(path, data, format=format)
            return getattr(self.browser, method)(path, data)
        return send


@pytest.mark.parametrize("route, method", MUTATING, ids=lambda v: getattr(v, "name", v))
def test_success_is_audited(route, method, users, client_for, django_capture_on_commit_callbacks):
    case = CASES[(route.name, method)]
    kwargs = case.prepare(users)
    with django_capture_on_commit_callbacks():
        response = _send(client_for, route, method, case, kwargs, case.actor)
    assert response.status_code == case.status, response.content[:500]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"], action=case.action)
    assert event.outcome == "success"
    assert event.actor == (case.actor or "bob")
    assert event.source == ("api" if route.name.startswith("api:") else "html")


@pytest.mark.parametrize("route, method", [m for m in MUTATING if m[0].name != "logout"], ids=lambda v: getattr(v, "name", v))
def test_refused_attempt_is_audited(route, method, users, client_for):
    """Refused by: a wrong password (login); a non-staff user (staff API); a non-member (tenant routes)."""
    case = CASES[(route.name, method)]
    kwargs = case.prepare(users)
    if route.name == "login":
        response = client_for(None).post("/login", {"username": "bob", "password": "wrong"})
        actor, outcomes = "anonymous", {"denied"}
    elif route.name.startswith("api:admin-"):
        response = _send(client_for, route, method, case, kwargs, "bob")  # not staff
        actor, outcomes = "bob", {"denied"}
        assert response.status_code == 403
    else:
        response = _send(client_for, route, method, case, kwargs, "dave")  # not a member of beta
        actor, outcomes = "dave", {"not_found"}
        assert response.status_code == 404
    events = AuditEvent.objects.filter(request_id=response["X-Request-ID"]).exclude(outcome="success")
    assert events.count() == 1, list(events.values())
    assert events[0].actor == actor and events[0].outcome in outcomes
    assert events[0].action == case.action  # named like the action it tried, one naming for both
