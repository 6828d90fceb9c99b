"""Every tenant API endpoint and page × every kind of caller, with the status each must get, and
what a refused caller sees: the error shape only (API) or an error page or the sign-in page with
`next` back (pages), never the object's names, emails or namespaces.

The endpoint list is read from the URLconf: a new endpoint under /api/v1/tenants/ without a rule
in EXPECTED fails `test_every_tenant_endpoint_has_rules`. Each request runs in a savepoint that is
rolled back, so one caller's change (a deletion, a revoked grant) does not affect the next.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from conftest import PASSWORD
from portal import tenancy
from portal.services import user_set_groups
from routes import pier_routes
from sessions import services as session_services
from tenants.models import Membership, PendingMembership, Tenant
from tenants.projects import reconcile, services
from tenants.projects.access import Access
from tenants.projects.models import AccessKey, ProjectGrant

pytestmark = pytest.mark.django_db

ACTORS = [
    "anonymous", "other_tenant", "no_access", "viewer", "editor", "project_admin", "tenant_admin",
    "key_view", "key_edit", "key_admin", "key_other_project", "key_expired", "key_revoked",
    "staff", "suspended_member", "deactivated", "key_other_org",
]
# Callers who get nothing of the organization: signed out, or not of it (or not any more).
UNAUTHENTICATED = {"anonymous", "key_expired", "key_revoked", "deactivated", "key_other_org"}
# What a refused caller must not learn: the organization's name, people's emails, the invitee,
# namespaces, groups and key names (slugs in the URL the caller typed are not secrets).
SECRETS = ["Alpha Org", "@example.com", "ghost", "alpha-site", "alpha-other", "g-view", "g-edit", "g-admin", "k-view"]
# What each role may do in the project: read, edit (description), admin (configure, share, delete).
PROJECT_RANK = {"no_access": 0, "viewer": 1, "editor": 2, "project_admin": 3, "tenant_admin": 3, "staff": 3,
                "key_view": 1, "key_edit": 2, "key_admin": 3, "key_other_project": 0}


def _project_rule(needed: int, ok: int, *, people_only: bool = False):
    def rule(actor: str) -> int:
        rank = PROJECT_RANK[actor]
        if rank == 0:
            return 404  # a project you cannot see does not exist for you
        if people_only and actor.startswith("key_"):
            return 403  # keys do not share projects or issue keys
        return ok if rank >= needed else 403
    return rule


def _tenant_rule(ok: int, *, admin_only: bool = False, keys_ok: bool = False):
    def rule(actor: str) -> int:
        if actor.startswith("key_"):
            return ok if keys_ok else 403  # a key acts only on its own project
        if admin_only and actor not in ("tenant_admin", "staff"):
            return 403
        return ok
    return rule


# (route name, method) → (payload, rule giving the status for a caller of this tenant)
EXPECTED = {
    ("api:tenant-detail", "GET"): (None, _tenant_rule(200)),
    ("api:member-list", "GET"): (None, _tenant_rule(200)),
    ("api:member-list", "POST"): ({"username": "newbie@example.com"}, _tenant_rule(201, admin_only=True)),
    ("api:member-detail", "GET"): (None, _tenant_rule(200)),
    ("api:member-detail", "PATCH"): ({"role": "member"}, _tenant_rule(200, admin_only=True)),
    ("api:member-detail", "DELETE"): (None, _tenant_rule(204, admin_only=True)),
    ("api:invitation-list", "GET"): (None, _tenant_rule(200, admin_only=True)),  # invitees' emails
    ("api:invitation-detail", "DELETE"): (None, _tenant_rule(204, admin_only=True)),
    ("api:invitation-resend", "POST"): (None, _tenant_rule(202, admin_only=True)),
    ("api:tenant-audit", "GET"): (None, _tenant_rule(200, admin_only=True)),
    ("api:project-defaults", "GET"): (None, _tenant_rule(200)),
    ("api:project-defaults", "PATCH"): ({"project_defaults": {"quota.pods": "9"}}, _tenant_rule(200, admin_only=True)),
    ("api:project-list", "GET"): (None, _tenant_rule(200, keys_ok=True)),
    ("api:project-list", "POST"): ({"slug": "fresh"}, _tenant_rule(202)),
    ("api:project-detail", "GET"): (None, _project_rule(1, 200)),
    ("api:project-detail", "PATCH"): ({"description": "changed"}, _project_rule(2, 200)),
    ("api:project-detail", "DELETE"): (None, _project_rule(3, 202)),
    ("api:project-access", "GET"): (None, _project_rule(1, 200)),
    ("api:project-grant-list", "GET"): (None, _project_rule(1, 200)),
    ("api:project-grant-list", "POST"): ({"kind": "group", "name": "newcomers", "role": "view"},
                                         _project_rule(3, 201, people_only=True)),
    ("api:project-grant-detail", "GET"): (None, _project_rule(1, 200)),
    ("api:project-grant-detail", "PATCH"): ({"role": "view"}, _project_rule(3, 200, people_only=True)),
    ("api:project-grant-detail", "DELETE"): (None, _project_rule(3, 204, people_only=True)),
    ("api:project-key-list", "GET"): (None, _project_rule(1, 200)),
    ("api:project-key-list", "POST"): ({"name": "matrix", "role": "view"}, _project_rule(3, 201, people_only=True)),
    ("api:project-key-detail", "DELETE"): (None, _project_rule(3, 204, people_only=True)),
    ("api:session-list", "GET"): (None, _project_rule(1, 200)),
    ("api:session-list", "POST"): ({"prompt": "matrix"}, _project_rule(2, 201)),
    ("api:session-detail", "GET"): (None, _project_rule(1, 200)),
    ("api:session-detail", "DELETE"): (None, _project_rule(3, 202)),
    # The session is dave's: an editor (person or key) stops only their own.
    ("api:session-stop", "POST"): (None, _project_rule(3, 202)),
    ("api:session-clone", "POST"): ({}, _project_rule(2, 201)),
    ("api:session-logs", "GET"): (None, _project_rule(1, 200)),
    ("api:project-runner-secret", "GET"): (None, _project_rule(1, 200)),  # which keys are set, never values
    ("api:project-runner-secret", "PUT"): ({"data": {"OPENAI_API_KEY": "sk-matrix"}}, _project_rule(3, 200)),
    ("api:project-runner-secret", "DELETE"): (None, _project_rule(3, 204)),
}

def _methods(route) -> list[str]:
    view_class = getattr(route.view, "view_class", None) or getattr(route.view, "cls", None)
    serves_get = hasattr(view_class, "get") and "get" in getattr(view_class, "http_method_names", [])
    return (["GET"] if serves_get else []) + list(route.methods)


TENANT_API = [(route, method) for route in pier_routes() if route.is_tenant_route and route.name.startswith("api:")
              for method in _methods(route)]


def test_every_tenant_endpoint_has_rules():
    assert {(route.name, method) for route, method in TENANT_API} == set(EXPECTED)


@pytest.fixture
def world(users, alpha, beta):
    """Project `site` in alpha, shared with groups by role, and keys of every kind."""
    User = get_user_model()
    people = {}
    for name, group in (("vic", "g-view"), ("ed", "g-edit"), ("ada", "g-admin")):
        person, _ = User.objects.get_or_create(username=name, defaults={"email": f"{name}@example.com"})
        person.set_password(PASSWORD)
        person.save()
        Membership.objects.get_or_create(tenant=alpha, user=person, defaults={"role": "member"})
        user_set_groups(user=person, groups=[group], acting_user=users["staff"])
        people[group] = person
    with tenant_context(alpha):
        admin = Access("admin", "test")
        site = services.project_create(tenant=alpha, slug="site", acting_user=users["dave"])
        other = services.project_create(tenant=alpha, slug="other", acting_user=users["dave"])
        for role in ("view", "edit", "admin"):
            services.grant_add(tenant=alpha, project=site, kind="group", name=f"g-{role}", role=role,
                               acting_user=users["dave"], access=admin)
        reconcile.run(site.pk)
        reconcile.run(other.pk)
        site.refresh_from_db()
        other.refresh_from_db()
        tokens = {}
        for role in ("view", "edit", "admin"):
            tokens[f"key_{role}"] = services.key_create(tenant=alpha, project=site, name=f"k-{role}", role=role,
                                                    acting_user=users["dave"], access=admin)[1]
        tokens["key_other_project"] = services.key_create(tenant=alpha, project=other, name="k-other", role="admin",
                                                      acting_user=users["dave"], access=admin)[1]
        expired, tokens["key_expired"] = services.key_create(tenant=alpha, project=site, name="k-expired", role="admin",
                                                         acting_user=users["dave"], access=admin)
        AccessKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        revoked, tokens["key_revoked"] = services.key_create(tenant=alpha, project=site, name="k-revoked", role="admin",
                                                         acting_user=users["dave"], access=admin)
        AccessKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
        session, _ = session_services.session_create(tenant=alpha, project=site, acting_user=users["dave"],
                                                     access=admin, prompt="the matrix's session")
        grant_id = ProjectGrant.objects.get(project=site, subject="g-view").pk
        key_id = AccessKey.objects.get(name="k-view").pk
    with tenant_context(beta):
        admin = Access("admin", "test")
        elsewhere = services.project_create(tenant=beta, slug="elsewhere", acting_user=users["carol"])
        reconcile.run(elsewhere.pk)
        elsewhere.refresh_from_db()
        tokens["key_other_org"] = services.key_create(tenant=beta, project=elsewhere, name="k-beta", role="admin",
                                                  acting_user=users["carol"], access=admin)[1]
    gone = User.objects.create_user("gone", email="gone@example.com", password=PASSWORD, is_active=False)
    Membership.objects.create(tenant=alpha, user=gone, role="admin")
    invitation = PendingMembership.objects.create(tenant=alpha, email="ghost@example.com")
    return {
        "people": {"other_tenant": users["carol"], "no_access": users["bob"], "viewer": people["g-view"],
                   "editor": people["g-edit"], "project_admin": people["g-admin"], "tenant_admin": users["dave"],
                   "staff": users["staff"], "suspended_member": users["dave"], "deactivated": gone},
        "tokens": tokens,
        "kwargs": {"tenant_slug": "alpha", "project_slug": "site", "username": "bob", "pk": invitation.pk,
                   "grant_id": grant_id, "key_id": key_id, "session_name": session.name},
    }


def _client(world, actor: str) -> APIClient:
    client = APIClient()
    if actor in world["tokens"]:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['tokens'][actor]}")
    elif actor != "anonymous":
        credentials = base64.b64encode(f"{world['people'][actor].username}:{PASSWORD}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    return client


def _expected(route_name: str, method: str, actor: str) -> int:
    if actor in UNAUTHENTICATED:
        return 401
    if actor == "other_tenant":
        return 404
    if actor == "suspended_member":
        return 403  # even the organization's admin, until staff resume it
    return EXPECTED[(route_name, method)][1](actor)


@contextlib.contextmanager
def _as_seen_by(actor: str):
    """Each call in a savepoint rolled back afterwards; alpha suspended for `suspended_member`."""
    with transaction.atomic():
        if actor == "suspended_member":
            Tenant.objects.filter(slug="alpha").update(status="suspended")
            tenancy.invalidate("alpha")
        try:
            yield
        finally:
            transaction.set_rollback(True)  # the next caller finds the same world
    if actor == "suspended_member":
        tenancy.invalidate("alpha")


def _leaks(text: str, secrets=SECRETS) -> list[str]:
    return [secret for secret in secrets if secret in text]


def _check_api_refusal(actor: str, response) -> str | None:
    """A refused caller gets the error shape and nothing of the object."""
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    if set(body) != {"error"} or set(body["error"]) != {"code", "message", "details"}:
        return f"not the error shape: {body}"
    if actor == "suspended_member" and body["error"]["code"] != "tenant_suspended":
        return f"code {body['error']['code']}"
    outsider = response.status_code in (401, 404) or actor in ("other_tenant", "suspended_member")
    # A 403 may name the caller's own role and where it comes from (their group, their key);
    # never other people, the invitee or the organization's name.
    leaked = _leaks(response.content.decode(), SECRETS if outsider else ["@example.com", "ghost", "Alpha Org"])
    return f"leaks {leaked}" if leaked else None


@pytest.mark.parametrize("route, method", TENANT_API, ids=lambda v: getattr(v, "name", v))
def test_endpoint_answers_each_caller_as_expected(route, method, world):
    payload = EXPECTED[(route.name, method)][0]
    path = route.path(**world["kwargs"])
    got, bodies = {}, {}
    for actor in ACTORS:
        client = _client(world, actor)
        with _as_seen_by(actor):
            response = getattr(client, method.lower())(path, payload, format="json")
        got[actor] = response.status_code
        if response.status_code >= 400:
            bodies[actor] = _check_api_refusal(actor, response)
    expected = {actor: _expected(route.name, method, actor) for actor in ACTORS}
    assert got == expected
    assert {actor: problem for actor, problem in bodies.items() if problem} == {}


# The pages: people sign in with a session; a key is not a way into the HTML (a Bearer header is
# ignored there), so callers with keys are anonymous to the pages and sent to sign in.
HTML_EXPECTED = {
    ("tenants:home", "GET"): (None, _tenant_rule(200)),
    ("tenants:members", "GET"): (None, _tenant_rule(200)),
    ("tenants:members", "POST"): ({"username": "newbie@example.com", "role": "member"}, _tenant_rule(302, admin_only=True)),
    ("tenants:member_role", "POST"): ({"role": "admin"}, _tenant_rule(302, admin_only=True)),
    ("tenants:member_remove", "POST"): (None, _tenant_rule(302, admin_only=True)),
    ("tenants:invitation_remove", "POST"): (None, _tenant_rule(302, admin_only=True)),
    ("tenants:invitation_resend", "POST"): (None, _tenant_rule(302, admin_only=True)),
    ("tenants:audit", "GET"): (None, _tenant_rule(200, admin_only=True)),
    ("projects:list", "GET"): (None, _tenant_rule(200)),
    ("projects:list", "POST"): ({"slug": "fresh"}, _tenant_rule(302)),
    ("projects:detail", "GET"): (None, _project_rule(1, 200)),
    ("projects:config", "POST"): ({"quota.pods": "3"}, _project_rule(3, 302)),
    ("projects:edit", "POST"): ({"description": "from the page"}, _project_rule(2, 302)),
    ("projects:history", "GET"): (None, _project_rule(1, 200)),
    ("projects:status", "GET"): (None, _project_rule(1, 286)),  # ready: htmx stops polling
    ("projects:settings", "GET"): (None, _tenant_rule(200)),
    ("projects:settings", "POST"): ({"quota.pods": "9"}, _tenant_rule(302, admin_only=True)),
    ("projects:delete", "POST"): (None, _project_rule(3, 302)),
    ("projects:sharing", "GET"): (None, _project_rule(1, 200)),
    ("projects:sharing", "POST"): ({"kind": "group", "name": "newcomers", "role": "view"}, _project_rule(3, 302)),
    ("projects:sharing_role", "POST"): ({"role": "view"}, _project_rule(3, 302)),
    ("projects:sharing_remove", "POST"): (None, _project_rule(3, 302)),
    ("projects:keys", "GET"): (None, _project_rule(1, 200)),
    ("projects:keys", "POST"): ({"name": "page", "role": "view", "expires_in_days": "30"}, _project_rule(3, 201)),
    ("projects:key_revoke", "POST"): (None, _project_rule(3, 302)),
    ("sessions:list", "GET"): (None, _project_rule(1, 200)),
    ("sessions:list", "POST"): ({"prompt": "from the page"}, _project_rule(2, 302)),
    ("sessions:detail", "GET"): (None, _project_rule(1, 200)),
    ("sessions:status", "GET"): (None, _project_rule(1, 200)),  # pending: the page keeps polling
    ("sessions:log", "GET"): (None, _project_rule(1, 200)),
    # The session is dave's: an editor stops only their own.
    ("sessions:stop", "POST"): (None, _project_rule(3, 302)),
    ("sessions:clone", "POST"): (None, _project_rule(2, 302)),
    ("sessions:delete", "POST"): (None, _project_rule(3, 302)),
    ("sessions:runner_secret", "POST"): ({"values": "OPENAI_API_KEY=sk-matrix"}, _project_rule(3, 302)),
    ("sessions:runner_secret_delete", "POST"): (None, _project_rule(3, 302)),
}
PEOPLE = [a for a in ACTORS if not a.startswith("key_")]
TENANT_PAGES = [(route, method) for route in pier_routes() if route.is_tenant_route and not route.name.startswith("api:")
                for method in _methods(route)]


def test_every_tenant_page_has_rules():
    assert {(route.name, method) for route, method in TENANT_PAGES} == set(HTML_EXPECTED)


@pytest.mark.parametrize("route, method", TENANT_PAGES, ids=lambda v: getattr(v, "name", v))
def test_page_answers_each_caller_as_expected(route, method, world):
    from django.test import Client

    payload = HTML_EXPECTED[(route.name, method)][0]
    membership_pk = Membership.objects.get(tenant__slug="alpha", user__username="bob").pk
    path = route.path(**{**world["kwargs"], "pk": world["kwargs"]["pk"] if "invitation" in route.name else membership_pk})
    got, expected, problems = {}, {}, {}
    for actor in ACTORS:
        client = Client()
        if actor in world["tokens"]:
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][actor]}"
        elif actor != "anonymous":
            client.force_login(world["people"][actor])  # a deactivated person's session is not honoured
        with _as_seen_by(actor):
            response = getattr(client, method.lower())(path, payload or {})
        got[actor] = response.status_code
        sign_in = f"/login?next={quote(path)}"
        text = response.content.decode()
        if actor in UNAUTHENTICATED or actor.startswith("key_"):
            expected[actor] = 302  # to the sign-in page, and back here after it
            if response.get("Location") != sign_in:
                problems[actor] = f"sent to {response.get('Location')}, not {sign_in}"
        elif actor == "other_tenant":
            expected[actor] = 404
        elif actor == "suspended_member":
            expected[actor] = 403
            if 'data-code="tenant_suspended"' not in text:
                problems[actor] = "no suspension message"
        else:
            expected[actor] = HTML_EXPECTED[(route.name, method)][1](actor)
            if response.status_code == 302 and response["Location"].startswith("/login"):
                problems[actor] = "a permitted caller sent to sign in"
        if actor in UNAUTHENTICATED or actor in ("other_tenant", "suspended_member") or actor.startswith("key_"):
            if _leaks(text):
                problems[actor] = f"leaks {_leaks(text)}"
    assert got == expected
    assert problems == {}
