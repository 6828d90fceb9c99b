"""Sign-in throttling: wrong passwords in a row pause signing in, per account and address and per
address, for a cool-off; never for the account everywhere (portal/throttling.py)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client, override_settings
from rest_framework.test import APIClient

from conftest import PASSWORD
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"
OWNER = "198.51.100.20"
PER_ACCOUNT = 5  # PIER_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS
PER_ADDRESS = 20  # PIER_SIGNIN_LIMIT_PER_ADDRESS


def form_sign_in(username: str, password: str, address: str = ATTACKER, *, next: str = "", forwarded: str = ""):
    meta = {"REMOTE_ADDR": address, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    return Client(**meta).post("/login", {"username": username, "password": password, "next": next})


def basic(username: str, password: str, address: str = ATTACKER, path: str = "/api/v1/tenants"):
    client = APIClient(REMOTE_ADDR=address)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client.get(path)


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


def cool_off_passes(minutes: int = 16) -> None:
    """Time moves on for the recorded failures (the cool-off is 15 minutes)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


def test_twenty_wrong_passwords_then_the_right_one_is_refused_at_the_form(users):
    answers = [form_sign_in("bob", f"wrong-{i}").status_code for i in range(20)]
    assert answers[:PER_ACCOUNT - 1] == [200] * (PER_ACCOUNT - 1)  # "didn't match", as before
    assert set(answers[PER_ACCOUNT - 1:]) == {429}
    response = form_sign_in("bob", PASSWORD, next="/t/alpha/")
    assert response.status_code == 429 and not response.wsgi_request.user.is_authenticated
    page = response.content.decode()
    assert "Too many failed sign-in attempts" in page and "try again in 15 minutes" in page
    assert 'name="username"' in page and 'value="bob"' in page and 'value="/t/alpha/"' in page  # the form, again
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60


def test_the_form_is_open_again_after_the_cool_off(users):
    for i in range(PER_ACCOUNT):
        form_sign_in("bob", f"wrong-{i}")
    assert form_sign_in("bob", PASSWORD).status_code == 429
    cool_off_passes(minutes=14)
    assert form_sign_in("bob", PASSWORD).status_code == 429  # not yet
    cool_off_passes(minutes=2)
    assert signed_in(form_sign_in("bob", PASSWORD))


@override_settings(AXES_COOLOFF_TIME=timedelta(seconds=2))
def test_a_shorter_cool_off_from_the_settings_is_announced_and_applied(users):
    for i in range(PER_ACCOUNT):
        form_sign_in("bob", f"wrong-{i}")
    response = form_sign_in("bob", PASSWORD)
    assert response.status_code == 429 and int(response["Retry-After"]) <= 2
    assert "try again in 1 minute." in response.content.decode()
    cool_off_passes(minutes=1)
    assert signed_in(form_sign_in("bob", PASSWORD))


def test_the_owner_still_signs_in_from_another_address(users):
    for i in range(PER_ACCOUNT + 3):
        form_sign_in("bob", f"wrong-{i}", address=ATTACKER)
        basic("bob", f"wrong-{i}", address=ATTACKER)
    assert form_sign_in("bob", PASSWORD, address=ATTACKER).status_code == 429
    assert basic("bob", PASSWORD, address=ATTACKER).status_code == 429
    assert signed_in(form_sign_in("bob", PASSWORD, address=OWNER))
    assert basic("bob", PASSWORD, address=OWNER).status_code == 200


def test_per_account_other_accounts_from_the_same_address_are_not_paused_yet(users):
    for i in range(PER_ACCOUNT):
        form_sign_in("bob", f"wrong-{i}")
    assert form_sign_in("bob", PASSWORD).status_code == 429
    assert signed_in(form_sign_in("carol", PASSWORD))


def test_per_address_many_accounts_tried_from_one_address_pause_that_address(users):
    names = ["alice", "bob", "carol", "dave", "staff", "nobody"]
    for i in range(PER_ADDRESS):
        response = form_sign_in(names[i % len(names)], f"wrong-{i}")
        assert response.status_code == (429 if i == PER_ADDRESS - 1 else 200), i  # never 5 on one account
    assert form_sign_in("carol", PASSWORD).status_code == 429  # no failure for carol before: the address
    assert basic("dave", PASSWORD).status_code == 429
    assert signed_in(form_sign_in("carol", PASSWORD, address=OWNER))


def test_basic_auth_is_throttled_with_the_api_error_shape(users):
    answers = [basic("staff", f"wrong-{i}").status_code for i in range(PER_ACCOUNT + 2)]
    assert answers == [401] * (PER_ACCOUNT - 1) + [429] * 3
    response = basic("staff", PASSWORD, path="/api/v1/admin/tenants")
    assert response.status_code == 429
    body = response.json()
    assert body == {"error": {"code": "too_many_attempts", "message": body["error"]["message"], "details": {}}}
    assert "Too many failed sign-in attempts" in body["error"]["message"]
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60
    assert "results" not in response.content.decode()
    cool_off_passes()
    assert basic("staff", PASSWORD, path="/api/v1/admin/tenants").status_code == 200


def test_form_and_basic_failures_count_together(users):
    for i in range(3):
        form_sign_in("bob", f"wrong-{i}")
    for i in range(2):
        basic("bob", f"wrong-{i}")
    assert form_sign_in("bob", PASSWORD).status_code == 429
    assert basic("bob", PASSWORD).status_code == 429


def test_every_refused_attempt_is_audited_with_its_reason_and_address(users):
    for i in range(PER_ACCOUNT):
        form_sign_in("bob", f"wrong-{i}")
    form_response = form_sign_in("bob", PASSWORD)
    api_response = basic("bob", PASSWORD)
    rows = AuditEvent.objects.filter(action="auth.login", target="bob").order_by("id")
    assert [r.outcome for r in rows] == ["denied"] * (PER_ACCOUNT + 2)
    assert [r.details["reason"] for r in rows] == ["bad credentials"] * PER_ACCOUNT + ["too many attempts"] * 2
    assert {r.details["address"] for r in rows} == {ATTACKER}
    assert rows[PER_ACCOUNT].request_id == form_response["X-Request-ID"]
    assert rows[PER_ACCOUNT + 1].request_id == api_response["X-Request-ID"]
    assert rows[PER_ACCOUNT + 1].source == "api"
    # One row per refused attempt: the refused-attempt middleware does not add a second.
    assert AuditEvent.objects.filter(request_id=form_response["X-Request-ID"]).count() == 1


def test_the_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(users):
    # No trusted proxy (the default here): the header is the client's own words, ignored.
    for i in range(PER_ACCOUNT):
        form_sign_in("bob", f"wrong-{i}", address=ATTACKER, forwarded=f"192.0.2.{i}")
    assert form_sign_in("bob", PASSWORD, address=ATTACKER, forwarded="192.0.2.99").status_code == 429
    AccessAttempt.objects.all().delete()
    router = "10.128.0.5"
    with override_settings(PIER_TRUSTED_PROXY_COUNT=1):
        for i in range(PER_ACCOUNT):
            # The router appends the address it was reached from; what the client wrote is left of it.
            form_sign_in("bob", f"wrong-{i}", address=router, forwarded=f"1.2.3.{i}, {ATTACKER}")
        assert form_sign_in("bob", PASSWORD, address=router, forwarded=ATTACKER).status_code == 429
        assert signed_in(form_sign_in("bob", PASSWORD, address=router, forwarded=OWNER))
        # A header that is not an address falls back to the proxy's, and answers no 500.
        assert form_sign_in("bob", "wrong", address=router, forwarded="not-an-ip").status_code == 200
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER, router}


def test_hostile_basic_usernames_are_refused_without_a_server_error(users):
    # The input guard refuses unstorable credentials first (400); what passes it, the Basic class
    # refuses (401). Never a 500, never an insert that fails.
    assert basic("a" * 5000, "x").status_code in (400, 401)
    assert basic("bo\x00b", "x").status_code in (400, 401)
    assert basic("bob", "x" * 5000).status_code in (400, 401)
    assert basic("a" * 151, "x").status_code == 401


def test_the_admin_login_page_is_throttled_too(users):
    client = Client(REMOTE_ADDR=ATTACKER)
    for i in range(PER_ACCOUNT):
        client.post("/admin/login/", {"username": "staff", "password": f"wrong-{i}", "next": "/admin/"})
    response = client.post("/admin/login/", {"username": "staff", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 429 and "Too many failed sign-in attempts" in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated
    assert Client(REMOTE_ADDR=OWNER).post("/admin/login/", {"username": "staff", "password": PASSWORD,
                                                           "next": "/admin/"}).status_code == 302
