"""Tenant owners and admins manage members, in the browser and through the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

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
    # At the field in plain words; the banner points there instead of repeating "username: …".
    assert response.context["form"].errors["username"] == ["'bob' is already a member."]
    assert "username: " not in response.content.decode()
    assert "Nothing was changed: see the field marked below." in response.content.decode()
    alice = Membership.objects.get(tenant=alpha, user=users["alice"])
    response = client.post(f"/t/alpha/members/{alice.pk}/remove")
    assert response.status_code == 409 and "at least one owner" in response.content.decode()


def test_plain_members_see_no_management_controls(client, users):
    client.force_login(users["bob"])
    page = client.get("/t/alpha/members").content.decode()
    assert "Add a member" not in page and "Remove" not in page
    refused = client.get("/t/alpha/audit")
    assert refused.status_code == 403
    refused = refused.content.decode()
    assert "This needs the admin role in &#x27;alpha&#x27;; you are a member." in refused
    assert 'href="/t/alpha/members"' in refused  # the organization's menu stays on its 403 page
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


# --- Invitations by email: sent by the worker, resent on request, withdrawn --------------------


def _invite(client, who: str, django_capture_on_commit_callbacks) -> PendingMembership:
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/api/v1/tenants/alpha/members", {"username": who, "role": "admin"}, format="json")
    assert response.status_code == 201 and response.json()["invited"] is True
    pending = PendingMembership.objects.get(pk=response.json()["id"])
    return pending, callbacks


def test_an_invitation_by_email_is_mailed_by_the_worker_and_listed_with_who_sent_it(
        api, users, alpha, mailoutbox, django_capture_on_commit_callbacks, settings):
    from tenants.tasks import send_invitation

    settings.PIER_BASE_URL = "https://pier.example.com"
    client = api(users["dave"])
    pending, callbacks = _invite(client, "zoe@example.com", django_capture_on_commit_callbacks)
    assert len(callbacks) == 1 and mailoutbox == []  # nothing is mailed inside the request
    assert send_invitation.apply(args=[pending.pk]).get() is True
    (mail,) = mailoutbox
    assert mail.to == ["zoe@example.com"] and "Alpha Org" in mail.subject
    assert "dave invited you" in mail.body and "as admin" in mail.body
    assert "https://pier.example.com/login" in mail.body
    (row,) = client.get("/api/v1/tenants/alpha/invitations").json()["results"]
    assert row["invited_by"] == "dave" and row["send_count"] == 1 and row["sent_at"] and row["send_error"] == ""


def test_an_invitation_is_resent_at_most_once_a_minute_and_only_to_an_address(
        api, users, alpha, mailoutbox, django_capture_on_commit_callbacks):
    from tenants.tasks import send_invitation

    client = api(users["alice"])
    pending, _ = _invite(client, "zoe@example.com", django_capture_on_commit_callbacks)
    send_invitation.apply(args=[pending.pk]).get()
    url = f"/api/v1/tenants/alpha/invitations/{pending.pk}/resend"
    response = client.post(url)
    assert response.status_code == 409 and response.json()["error"]["code"] == "recently_sent"
    PendingMembership.objects.filter(pk=pending.pk).update(sent_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)
    assert response.status_code == 202 and len(callbacks) == 1
    assert client.post(url).status_code == 409  # a second press sends nothing more
    callbacks[0]()  # the worker's turn (enqueued after commit)
    send_invitation.apply(args=[pending.pk]).get()
    assert [m.to for m in mailoutbox] == [["zoe@example.com"], ["zoe@example.com"]]
    assert PendingMembership.objects.get(pk=pending.pk).send_count == 2
    assert AuditEvent.objects.filter(action="invitation.resend", target="zoe@example.com", outcome="success").count() == 1

    by_name, callbacks = _invite(client, "nobody-yet", django_capture_on_commit_callbacks)
    assert callbacks == []  # no address: nothing to mail
    response = client.post(f"/api/v1/tenants/alpha/invitations/{by_name.pk}/resend")
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_email"
    assert "invited by username" in response.json()["error"]["message"]
    assert api(users["bob"]).post(url).status_code == 403  # plain members cannot
    assert api(users["carol"]).post(url).status_code in (403, 404)  # another organization's owner


def test_a_mail_server_failure_is_kept_on_the_invitation_and_retried(api, users, alpha, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    import smtplib

    from tenants import invitations

    def refuse(**kwargs):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    pending, _ = _invite(api(users["alice"]), "zoe@example.com", django_capture_on_commit_callbacks)
    monkeypatch.setattr("django.core.mail.send_mail", refuse)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        invitations.invitation_send(pending.pk)
    pending.refresh_from_db()
    assert "Connection unexpectedly closed" in pending.send_error and pending.sent_at is None
    (row,) = api(users["alice"]).get("/api/v1/tenants/alpha/invitations").json()["results"]
    assert "SMTPServerDisconnected" in row["send_error"]


def test_the_members_page_shows_invitations_with_resend_and_withdraw(client, users, alpha):
    PendingMembership.objects.create(tenant=alpha, email="zoe@example.com", role="member", invited_by=users["dave"],
                                     sent_at=timezone.now(), send_count=2)
    PendingMembership.objects.create(tenant=alpha, username="nobody-yet", role="member")
    client.force_login(users["alice"])
    page = client.get("/t/alpha/members").content.decode()
    zoe = page[page.index('data-invitation="zoe@example.com"'):]
    zoe = zoe[:zoe.index("</tr>")]
    assert "dave" in zoe and "(2 times)" in zoe and "Resend" in zoe and "Withdraw" in zoe and "UTC" in zoe
    nobody = page[page.index('data-invitation="nobody-yet"'):]
    nobody = nobody[:nobody.index("</tr>")]
    assert "Resend" not in nobody and "invited by username" in nobody
    pending = PendingMembership.objects.get(email="zoe@example.com")
    PendingMembership.objects.filter(pk=pending.pk).update(sent_at=timezone.now() - timedelta(minutes=5))
    response = client.post(f"/t/alpha/invitations/{pending.pk}/resend", follow=True)
    assert "is being sent again" in response.content.decode()
    response = client.post(f"/t/alpha/invitations/{pending.pk}/resend")  # pressed again at once
    assert response.status_code == 409 and "less than 60 seconds ago" in response.content.decode()


def test_the_organization_home_counts_projects_and_members(client, users, alpha):
    from django_tenants.utils import tenant_context

    from tenants.projects.models import Project, ProjectGrant

    with tenant_context(alpha):
        for slug, status in (("web", "ready"), ("db", "ready"), ("batch", "failed")):
            Project.objects.create(slug=slug, namespace=f"alpha-{slug}", status=status, created_by=users["alice"])
        ProjectGrant.objects.create(project=Project.objects.get(slug="web"), kind="user", subject="bob",
                                    user=users["bob"], role="view", created_by=users["alice"])
    PendingMembership.objects.create(tenant=alpha, email="zoe@example.com", role="member")
    client.force_login(users["alice"])
    page = client.get("/t/alpha/").content.decode()
    summary = page[page.index('id="projects-summary"'):page.index('id="members-summary"')]
    assert "<strong>3</strong> of at most" in summary
    assert "2 ready" in summary and "1 failed" in summary and 'data-project="batch"' in summary
    members = page[page.index('id="members-summary"'):]
    assert f"<strong>{alpha.memberships.count()}</strong> members and 1 invited" in members and ">manage<" in members

    client.force_login(users["bob"])  # a plain member: sees what they may open, and no "manage"
    page = client.get("/t/alpha/").content.decode()
    summary = page[page.index('id="projects-summary"'):page.index('id="members-summary"')]
    assert "<strong>3</strong> of at most" in summary and "1 you can open" in summary
    assert 'data-project="web"' in summary and 'data-project="batch"' not in summary
    members = page[page.index('id="members-summary"'):]
    assert ">manage<" not in members and "all members" in members and "invited" not in members
