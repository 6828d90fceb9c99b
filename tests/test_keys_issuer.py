"""A key never has more than its issuer: when the issuer loses the role the key was issued with
(demoted in the organization, a group grant removed, a group no longer theirs), the key is
revoked at once, audited, and its cluster objects are queued for deletion."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from conftest import make_user
from portal.models import AuditEvent
from tenants.models import Membership
from tenants.projects import reconcile
from tenants.projects.models import AccessKey, Project

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def project(api, users, alpha, unique_slug):
    slug = unique_slug("iss")
    assert api(users["bob"]).post("/api/v1/tenants/alpha/projects", {"slug": slug}, format="json").status_code == 202
    with tenant_context(alpha):
        reconcile.run(Project.objects.get(slug=slug).pk)
    return slug


@pytest.fixture
def erin(alpha, api, users):
    """A plain member whose project roles come from her groups."""
    user = make_user("erin")
    Membership.objects.get_or_create(tenant=alpha, user=user, defaults={"role": "member"})
    assert api(users["staff"]).patch("/api/v1/admin/users/erin", {"groups": ["devs", "everyone"]},
                                     format="json").status_code == 200
    return user


def _issue(api, user, slug, role):
    response = api(user).post(f"/api/v1/tenants/alpha/projects/{slug}/keys", {"name": f"ci-{role}", "role": role},
                              format="json")
    assert response.status_code == 201, response.content
    return response.json()["token"]


def _grant(api, users, slug, group, role) -> int:
    response = api(users["bob"]).post(f"/api/v1/tenants/alpha/projects/{slug}/grants", {"kind": "group", "name": group, "role": role},
                                      format="json")
    assert response.status_code == 201
    return response.json()["id"]


def _reads(token, slug) -> int:
    return bearer(token).get(f"/api/v1/tenants/alpha/projects/{slug}").status_code


def _revocations(target: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="key.revoke", target=target, outcome="success"))


def test_a_demoted_organization_admin_loses_the_keys_they_issued_on_others_projects(api, users, project, alpha):
    token = _issue(api, users["dave"], project, "admin")  # dave is an organization admin, not in the project
    assert _reads(token, project) == 200
    response = api(users["alice"]).patch("/api/v1/tenants/alpha/members/dave", {"role": "member"}, format="json")
    assert response.status_code == 200
    assert _reads(token, project) == 401
    assert bearer(token).patch(f"/api/v1/tenants/alpha/projects/{project}", {"config_overrides": {"quota.pods": "3"}},
                               format="json").status_code == 401
    [event] = _revocations(f"{project}/ci-admin")
    assert event.actor == "system" and event.details["issuer"] == "dave" and event.details["issuer_role"] is None
    with tenant_context(alpha):
        assert AccessKey.objects.get(name="ci-admin", project__slug=project).revoked_at is not None


def test_a_key_the_issuer_still_holds_survives_a_demotion(api, users, project, alpha):
    token = _issue(api, users["bob"], project, "admin")  # bob created the project: still its admin
    Membership.objects.filter(tenant=alpha, user=users["bob"]).update(role="admin")
    assert api(users["alice"]).patch("/api/v1/tenants/alpha/members/bob", {"role": "member"},
                                     format="json").status_code == 200
    assert _reads(token, project) == 200
    assert _revocations(f"{project}/ci-admin") == []


def test_removing_the_group_grant_revokes_the_keys_it_carried_and_only_those(api, users, project, erin):
    admin_grant = _grant(api, users, project, "devs", "admin")
    _grant(api, users, project, "everyone", "view")
    admin_token = _issue(api, erin, project, "admin")
    view_token = _issue(api, erin, project, "view")
    response = api(users["bob"]).delete(f"/api/v1/tenants/alpha/projects/{project}/grants/{admin_grant}")
    assert response.status_code == 204
    assert _reads(admin_token, project) == 401
    assert _reads(view_token, project) == 200  # erin still has view through "everyone"
    [event] = _revocations(f"{project}/ci-admin")
    assert event.details["issuer_role"] == "view" and "group devs" in event.details["reason"]


def test_lowering_a_grant_in_place_revokes_the_keys_above_it(api, users, project, erin):
    grant = _grant(api, users, project, "devs", "admin")
    token = _issue(api, erin, project, "edit")
    response = api(users["bob"]).patch(f"/api/v1/tenants/alpha/projects/{project}/grants/{grant}", {"role": "view"},
                                       format="json")
    assert response.status_code == 200
    assert _reads(token, project) == 401
    assert "went from admin to view" in _revocations(f"{project}/ci-edit")[0].details["reason"]


def test_a_group_no_longer_theirs_revokes_the_key(api, users, project, erin):
    _grant(api, users, project, "devs", "admin")
    token = _issue(api, erin, project, "edit")
    assert _reads(token, project) == 200
    assert api(users["staff"]).patch("/api/v1/admin/users/erin", {"groups": ["everyone"]},
                                     format="json").status_code == 200
    assert _reads(token, project) == 401
    assert _revocations(f"{project}/ci-edit")[0].details["reason"] == "the issuer's groups changed"


def test_the_revocation_queues_the_cluster_clean_up(api, users, project, alpha, django_capture_on_commit_callbacks,
                                                    monkeypatch):
    from portal import controller

    _issue(api, users["dave"], project, "view")
    with tenant_context(alpha):
        key_id = AccessKey.objects.get(name="ci-view").pk
    sent = []
    monkeypatch.setattr(controller.reconcile_object, "apply_async", lambda args=None, **kw: sent.append(tuple(args)))
    with django_capture_on_commit_callbacks(execute=True):
        assert api(users["alice"]).patch("/api/v1/tenants/alpha/members/dave", {"role": "member"},
                                         format="json").status_code == 200
    # The key's controller is asked, after the commit, to remove its ServiceAccount (as for any revoked key).
    assert ("projects.accesskey", key_id, alpha.schema_name) in sent, sent
