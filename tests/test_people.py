"""People: staff give someone an account through the API (with the groups sharing uses) and the
admin (one groups field); staff see every organization."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from portal.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_staff_create_a_person_who_then_signs_in_and_joins_their_invitation(api, users, client, alpha):
    staff = api(users["staff"])
    # Invited by email before the account exists.
    assert api(users["alice"]).post("/api/v1/tenants/alpha/members", {"username": "fay@example.com", "role": "member"},
                                    format="json").status_code == 201
    response = staff.post("/api/v1/admin/users", {"username": "fay", "email": "Fay@Example.com",
                                                  "groups": ["devs", "/org/ops"], "password": "a-long-fine-pass-42"},
                          format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "fay" and body["groups"] == ["/org/ops", "devs"] and "password" not in body
    assert response["Location"] == "/api/v1/admin/users/fay"
    assert AuditEvent.objects.filter(action="user.create", target="fay", actor="staff").exists()
    assert client.post("/login", {"username": "fay", "password": "a-long-fine-pass-42"}).status_code == 302
    assert client.get("/t/alpha/").status_code == 200  # the invitation was claimed at sign-in


def test_person_creation_is_validated_field_by_field(api, users):
    staff = api(users["staff"])
    response = staff.post("/api/v1/admin/users", {"username": "bad name!", "password": "123", "groups": ["\x01"]},
                          format="json")
    assert response.status_code == 400
    assert {"username", "password", "groups"} <= set(response.json()["error"]["details"])
    assert staff.post("/api/v1/admin/users", {"username": "alice"}, format="json").json()["error"]["code"] == \
        "username_taken"
    assert api(users["alice"]).post("/api/v1/admin/users", {"username": "sneaky"}, format="json").status_code == 403
    assert not get_user_model().objects.filter(username__in=["sneaky", "bad name!"]).exists()


def test_without_a_password_an_account_cannot_sign_in_with_one(api, users, client):
    assert api(users["staff"]).post("/api/v1/admin/users", {"username": "sso-only"}, format="json").status_code == 201
    assert not get_user_model().objects.get(username="sso-only").has_usable_password()


def test_the_admin_user_page_has_one_groups_field(client, users):
    client.force_login(users["staff"])
    page = client.get(f"/admin/auth/user/{users['bob'].pk}/change/").content.decode()
    assert "what project sharing uses" in page
    assert 'name="groups"' not in page and 'name="user_permissions"' not in page  # Django's permission groups


def test_staff_see_every_organization_on_the_front_page(client, users, alpha, beta):
    client.force_login(users["staff"])
    page = client.get("/").content.decode()
    assert "Alpha Org" in page and "Beta Org" in page and "not a member of any organization" not in page
    client.force_login(users["bob"])
    page = client.get("/").content.decode()
    assert "Alpha Org" in page and "Beta Org" not in page


def test_audit_filters_take_dates_from_the_page_and_date_times_from_the_api(client, api, users):
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.now().date()
    client.force_login(users["alice"])
    page = client.get(f"/t/alpha/audit?since={today}&until={today}")
    assert page.status_code == 200 and 'type="date"' in page.content.decode()
    assert "From (UTC)" in page.content.decode()
    owner = api(users["alice"])
    assert owner.patch("/api/v1/tenants/alpha/members/bob", {"role": "member"}, format="json").status_code == 200
    rows = owner.get(f"/api/v1/tenants/alpha/audit?since={today}&until={today}").json()["results"]
    assert any(r["action"] == "member.change_role" for r in rows), [r["action"] for r in rows][:5]  # "until" a date: to the end of that day
    earlier = (timezone.now() - timedelta(days=2)).isoformat()
    assert owner.get("/api/v1/tenants/alpha/audit", {"until": earlier}).json()["results"] == []
    bad = owner.get("/api/v1/tenants/alpha/audit?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["error"]["details"]


@pytest.mark.parametrize("value", ["0196-04-28T00:25:39+20:23", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_audit_filters_take_any_offset_python_takes_or_say_why_not(api, users, value):
    response = api(users["alice"]).get("/api/v1/tenants/alpha/audit", {"since": value})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "since" in response.json()["error"]["details"]
