"""Tenant owners and admins manage members, in the browser and through the API."""

import pytest

from portal.models import AuditEvent
from tenants.models import Membership, PendingMembership

pytestmark = pytest.mark.django_db


def test_admin_adds_changes_and_removes_a_member_through_the_api(api, users, alpha):
    client = api(users["dave"])  # alpha admin
    response = client.post("/api/v1/tenants/alpha/members", {"username": "carol"}, format="json")
    assert response.status_code == 201
    assert response.json() == {**response.json(), "username": "carol", "role": "member", "invited": False, "pending": False}
    response = client.patch("/api/v1/tenants/alpha/members/carol", {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert client.delete("/api/v1/tenants/alpha/members/carol").status_code == 204
    assert not Membership.objects.filter(tenant=alpha, user=users["carol"]).exists()
    assert client.get("/api/v1/tenants/alpha/members/carol").status_code == 404


def test_duplicates_unknown_roles_and_missing_fields(api, users):
    client = api(users["alice"])
    response = client.post("/api/v1/tenants/alpha/members", {"username": "bob"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "already_member"
    response = client.post("/api/v1/tenants/alpha/members", {"username": "carol", "role": "god"}, format="json")
    assert response.status_code == 400 and "role" in response.json()["error"]["details"]
    response = client.post("/api/v1/tenants/alpha/members", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"username": ["This field is required."]}


def test_someone_without_an_account_is_invited(api, users, alpha):
    client = api(users["alice"])
    response = client.post("/api/v1/tenants/alpha/members", {"username": "zoe@example.com", "role": "admin"}, format="json")
    assert response.status_code == 201 and response.json()["invited"] is True and response.json()["pending"] is True
    invitations = client.get("/api/v1/tenants/alpha/invitations").json()["results"]
    assert [(i["email"], i["role"]) for i in invitations] == [("zoe@example.com", "admin")]
    assert client.delete(f"/api/v1/tenants/alpha/invitations/{invitations[0]['id']}").status_code == 204
    assert not PendingMembership.objects.filter(tenant=alpha).exists()


def test_members_cannot_manage_and_admins_cannot_grant_owner(api, users):
    response = api(users["bob"]).post("/api/v1/tenants/alpha/members", {"username": "carol"}, format="json")
    assert response.status_code == 403 and "admin role" in response.json()["error"]["message"]
    response = api(users["dave"]).patch("/api/v1/tenants/alpha/members/bob", {"role": "owner"}, format="json")
    assert response.status_code == 403 and "Only an owner" in response.json()["error"]["message"]
    response = api(users["dave"]).delete("/api/v1/tenants/alpha/members/alice")
    assert response.status_code == 403
    assert api(users["bob"]).get("/api/v1/tenants/alpha/members").status_code == 200  # members can read


def test_the_last_owner_cannot_be_removed_or_demoted(api, users, alpha):
    client = api(users["alice"])
    response = client.delete("/api/v1/tenants/alpha/members/alice")
    assert response.status_code == 409 and response.json()["error"]["code"] == "last_owner"
    response = client.patch("/api/v1/tenants/alpha/members/alice", {"role": "member"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "last_owner"
    assert Membership.objects.get(tenant=alpha, user=users["alice"]).role == "owner"
    # With a second owner, the first may step down.
    assert client.patch("/api/v1/tenants/alpha/members/bob", {"role": "owner"}, format="json").status_code == 200
    assert client.patch("/api/v1/tenants/alpha/members/alice", {"role": "admin"}, format="json").status_code == 200
    assert AuditEvent.objects.filter(tenant="alpha", outcome="conflict", actor="alice").count() == 2


def test_member_quota_answers_409_naming_the_limit(api, users, alpha):
    alpha.max_members = 3
    alpha.save()
    response = api(users["alice"]).post("/api/v1/tenants/alpha/members", {"username": "carol"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert "limit of 3 members" in response.json()["error"]["message"]


def test_members_page_add_change_remove(client, users, alpha):
    client.force_login(users["alice"])
    page = client.get("/t/alpha/members")
    assert page.status_code == 200 and "Add a member" in page.content.decode()
    response = client.post("/t/alpha/members", {"username": "carol", "role": "member"}, follow=True)
    assert "carol was added as member" in response.content.decode()
    carol = Membership.objects.get(tenant=alpha, user=users["carol"])
    response = client.post(f"/t/alpha/members/{carol.pk}/role", {"role": "admin"}, follow=True)
    assert "carol is now admin" in response.content.decode()
    response = client.post(f"/t/alpha/members/{carol.pk}/remove", follow=True)
    assert "carol was removed" in response.content.decode()
    assert not Membership.objects.filter(pk=carol.pk).exists()


def test_members_page_shows_refusals_without_losing_input(client, users, alpha):
    client.force_login(users["alice"])
    response = client.post("/t/alpha/members", {"username": "bob", "role": "member"})
    assert response.status_code == 409
    assert "already a member" in response.content.decode()
    assert 'value="bob"' in response.content.decode()
    alice = Membership.objects.get(tenant=alpha, user=users["alice"])
    response = client.post(f"/t/alpha/members/{alice.pk}/remove")
    assert response.status_code == 409 and "at least one owner" in response.content.decode()


def test_plain_members_see_no_management_controls(client, users):
    client.force_login(users["bob"])
    page = client.get("/t/alpha/members").content.decode()
    assert "Add a member" not in page and "Remove" not in page
    assert client.get("/t/alpha/audit").status_code == 403
    assert client.post("/t/alpha/members", {"username": "carol", "role": "member"}).status_code == 403


def test_a_name_that_matches_nobody_is_answered_as_an_invitation(api, users, alpha):
    response = api(users["alice"]).post("/api/v1/tenants/alpha/members", {"username": "alcie"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body == {**body, "username": "alcie", "role": "member", "invited": True}
    assert PendingMembership.objects.filter(tenant=alpha, username="alcie").exists()
    response = api(users["alice"]).post("/api/v1/tenants/alpha/members", {"username": "carol@example.com"}, format="json")
    assert response.json() == {**response.json(), "username": "carol", "invited": False}  # an account, by email


def test_the_members_page_says_an_unknown_name_was_invited(client, users, alpha):
    client.force_login(users["alice"])
    response = client.post("/t/alpha/members", {"username": "alcie", "role": "member"}, follow=True)
    page = response.content.decode()
    assert "No account matches &#x27;alcie&#x27; yet: invited as member; they join at their first sign-in." in page
    assert "Waiting for first sign-in" in page and "alcie" in page


def test_invitations_are_for_owners_and_admins_only(api, client, users, alpha):
    PendingMembership.objects.create(tenant=alpha, email="secret-invitee@example.com", role="member")
    response = api(users["bob"]).get("/api/v1/tenants/alpha/invitations")  # a plain member
    assert response.status_code == 403 and "secret-invitee" not in response.content.decode()
    for name in ("alice", "dave", "staff"):  # owner, admin, platform staff
        emails = [i["email"] for i in api(users[name]).get("/api/v1/tenants/alpha/invitations").json()["results"]]
        assert emails == ["secret-invitee@example.com"], name
    client.force_login(users["bob"])
    page = client.get("/t/alpha/members").content.decode()
    assert "bob" in page and "secret-invitee" not in page and "Waiting for first sign-in" not in page
    client.force_login(users["dave"])
    assert "secret-invitee@example.com" in client.get("/t/alpha/members").content.decode()
