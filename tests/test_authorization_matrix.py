"""Every tenant API endpoint × every kind of caller, with the status each must get.

The endpoint list is read from the URLconf: a new endpoint under /api/v1/tenants/ without a rule
in EXPECTED fails `test_every_tenant_endpoint_has_rules`. Each request runs in a savepoint that is
rolled back, so one caller's change (a deletion, a revoked grant) does not affect the next.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from conftest import PASSWORD
from portal.services import user_set_groups
from routes import pier_routes
from tenants.models import Membership, PendingMembership
from tenants.projects import keys, reconcile, services
from tenants.projects.access import Access
from tenants.projects.models import AccessKey, GroupAccess

pytestmark = pytest.mark.django_db

ACTORS = [
    "anonymous", "other_tenant", "no_access", "viewer", "editor", "project_admin", "tenant_admin",
    "key_view", "key_edit", "key_admin", "key_other_project", "key_expired", "key_revoked",
]
# What each role may do in the project: read, edit (description), admin (configure, share, delete).
PROJECT_RANK = {"no_access": 0, "viewer": 1, "editor": 2, "project_admin": 3, "tenant_admin": 3,
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
        if admin_only and actor != "tenant_admin":
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
    ("api:tenant-audit", "GET"): (None, _tenant_rule(200, admin_only=True)),
    ("api:project-defaults", "GET"): (None, _tenant_rule(200)),
    ("api:project-defaults", "PATCH"): ({"project_defaults": {"quota.pods": "9"}}, _tenant_rule(200, admin_only=True)),
    ("api:project-list", "GET"): (None, _tenant_rule(200, keys_ok=True)),
    ("api:project-list", "POST"): ({"slug": "fresh"}, _tenant_rule(202)),
    ("api:project-detail", "GET"): (None, _project_rule(1, 200)),
    ("api:project-detail", "PATCH"): ({"description": "changed"}, _project_rule(2, 200)),
    ("api:project-detail", "DELETE"): (None, _project_rule(3, 202)),
    ("api:project-access", "GET"): (None, _project_rule(1, 200)),
    ("api:project-group-list", "GET"): (None, _project_rule(1, 200)),
    ("api:project-group-list", "POST"): ({"group": "newcomers", "role": "view"}, _project_rule(3, 201, people_only=True)),
    ("api:project-group-detail", "DELETE"): (None, _project_rule(3, 204, people_only=True)),
    ("api:project-key-list", "GET"): (None, _project_rule(1, 200)),
    ("api:project-key-list", "POST"): ({"name": "matrix", "role": "view"}, _project_rule(3, 201, people_only=True)),
    ("api:project-key-detail", "DELETE"): (None, _project_rule(3, 204, people_only=True)),
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
            services.group_grant(tenant=alpha, project=site, group=f"g-{role}", role=role, acting_user=users["dave"],
                                 access=admin)
        reconcile.run(site.pk)
        reconcile.run(other.pk)
        site.refresh_from_db()
        other.refresh_from_db()
        tokens = {}
        for role in ("view", "edit", "admin"):
            tokens[f"key_{role}"] = keys.key_create(tenant=alpha, project=site, name=f"k-{role}", role=role,
                                                    acting_user=users["dave"], access=admin)[1]
        tokens["key_other_project"] = keys.key_create(tenant=alpha, project=other, name="k-other", role="admin",
                                                      acting_user=users["dave"], access=admin)[1]
        expired, tokens["key_expired"] = keys.key_create(tenant=alpha, project=site, name="k-expired", role="admin",
                                                         acting_user=users["dave"], access=admin)
        AccessKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        revoked, tokens["key_revoked"] = keys.key_create(tenant=alpha, project=site, name="k-revoked", role="admin",
                                                         acting_user=users["dave"], access=admin)
        AccessKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
        grant_id = GroupAccess.objects.get(project=site, group="g-view").pk
        key_id = AccessKey.objects.get(name="k-view").pk
    invitation = PendingMembership.objects.create(tenant=alpha, username="ghost")
    return {
        "people": {"other_tenant": users["carol"], "no_access": users["bob"], "viewer": people["g-view"],
                   "editor": people["g-edit"], "project_admin": people["g-admin"], "tenant_admin": users["dave"]},
        "tokens": tokens,
        "kwargs": {"tenant_slug": "alpha", "project_slug": "site", "username": "bob", "pk": invitation.pk,
                   "access_id": grant_id, "key_id": key_id},
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
    if actor == "anonymous" or actor in ("key_expired", "key_revoked"):
        return 401
    if actor == "other_tenant":
        return 404
    return EXPECTED[(route_name, method)][1](actor)


@pytest.mark.parametrize("route, method", TENANT_API, ids=lambda v: getattr(v, "name", v))
def test_endpoint_answers_each_caller_as_expected(route, method, world):
    payload = EXPECTED[(route.name, method)][0]
    path = route.path(**world["kwargs"])
    got = {}
    for actor in ACTORS:
        client = _client(world, actor)
        with transaction.atomic():
            response = getattr(client, method.lower())(path, payload, format="json")
            transaction.set_rollback(True)  # the next caller finds the same world
        got[actor] = response.status_code
    expected = {actor: _expected(route.name, method, actor) for actor in ACTORS}
    assert got == expected


# The pages: people sign in with a session; a key is not a way into the HTML (a Bearer header is
# ignored there), so callers with keys are anonymous to the pages and sent to sign in.
HTML_EXPECTED = {
    ("tenants:home", "GET"): (None, _tenant_rule(200)),
    ("tenants:members", "GET"): (None, _tenant_rule(200)),
    ("tenants:members", "POST"): ({"username": "newbie@example.com", "role": "member"}, _tenant_rule(302, admin_only=True)),
    ("tenants:member_role", "POST"): ({"role": "admin"}, _tenant_rule(302, admin_only=True)),
    ("tenants:member_remove", "POST"): (None, _tenant_rule(302, admin_only=True)),
    ("tenants:invitation_remove", "POST"): (None, _tenant_rule(302, admin_only=True)),
    ("tenants:audit", "GET"): (None, _tenant_rule(200, admin_only=True)),
    ("projects:list", "GET"): (None, _tenant_rule(200)),
    ("projects:list", "POST"): ({"slug": "fresh"}, _tenant_rule(302)),
    ("projects:detail", "GET"): (None, _project_rule(1, 200)),
    ("projects:config", "POST"): ({"quota.pods": "3"}, _project_rule(3, 302)),
    ("projects:delete", "POST"): (None, _project_rule(3, 302)),
    ("projects:sharing", "GET"): (None, _project_rule(1, 200)),
    ("projects:sharing", "POST"): ({"group": "newcomers", "role": "view"}, _project_rule(3, 302)),
    ("projects:sharing_remove", "POST"): (None, _project_rule(3, 302)),
    ("projects:keys", "GET"): (None, _project_rule(1, 200)),
    ("projects:keys", "POST"): ({"name": "page", "role": "view", "expires_in_days": "30"}, _project_rule(3, 201)),
    ("projects:key_revoke", "POST"): (None, _project_rule(3, 302)),
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
    got, expected = {}, {}
    for actor in ACTORS:
        client = Client()
        if actor in world["tokens"]:
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][actor]}"
        elif actor != "anonymous":
            client.force_login(world["people"][actor])
        with transaction.atomic():
            response = getattr(client, method.lower())(path, payload or {})
            transaction.set_rollback(True)
        got[actor] = response.status_code
        if actor == "anonymous" or actor.startswith("key_"):
            expected[actor] = 302  # to the sign-in page
        elif actor == "other_tenant":
            expected[actor] = 404
        else:
            expected[actor] = HTML_EXPECTED[(route.name, method)][1](actor)
    assert got == expected
