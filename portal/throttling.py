"""Sign-in throttling: django-axes, with Pier's limits, client address and answers.

Failed password sign-ins (the /login form, the admin's login, HTTP Basic on the API) are
counted by django-axes per account and address, and per address. Past either limit the
sign-in is refused, even with the right password, until the cool-off has passed since the last
counted failure. Nothing is locked by account alone: failures from an attacker's address never
stop the account's owner signing in from theirs.

The form is answered with the sign-in page and the message (HTTP 429); the API with 429
`too_many_attempts` in Pier's error shape. Both carry Retry-After. Each refused attempt is a
failed sign-in for Django, so `portal.receivers` audits it (reason "too many attempts").
"""

from __future__ import annotations

import ipaddress
import math

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit, get_lockout_parameters
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Sum
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from drf_spectacular.authentication import BasicScheme
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication

from portal.errors import error_body, wants_json

CODE = "too_many_attempts"


def _limit_for(parameter) -> int:
    names = (parameter,) if isinstance(parameter, str) else tuple(parameter)
    if names == ("ip_address",):
        return settings.PIER_SIGNIN_LIMIT_PER_ADDRESS
    if set(names) == {"username", "ip_address"}:
        return settings.PIER_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS
    raise ValueError(f"No sign-in limit for the lockout parameter {parameter!r}.")


class SignInAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler with one limit per lockout parameter.

    Axes compares one number of failures with one AXES_FAILURE_LIMIT. Pier has a limit per
    parameter (per account and address, per address), so each count is reported on the scale
    of AXES_FAILURE_LIMIT: count × scale // limit reaches the scale exactly when the count
    reaches its own limit."""

    def get_failures(self, request, credentials=None) -> int:
        scale = get_failure_limit(request, credentials)
        parameters = get_lockout_parameters(request, credentials)
        worst = 0
        for parameter, attempts in zip(parameters, self.get_user_attempts(request, credentials)):
            failures = attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            worst = max(worst, failures * scale // _limit_for(parameter))
        return worst


def client_address(request) -> str | None:
    """The client's address as the deployment sees it (AXES_CLIENT_IP_CALLABLE).

    Without trusted proxies, REMOTE_ADDR. Behind PIER_TRUSTED_PROXY_COUNT proxies that each
    append the address they were reached from to X-Forwarded-For, the entry the outermost one
    added; what a client wrote into the header itself lies further left and is ignored."""
    remote = _valid_ip(request.META.get("REMOTE_ADDR", ""))
    hops = settings.PIER_TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    chain = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(chain) < hops:
        return remote  # not through the proxies the deployment declared
    return _valid_ip(chain[-hops]) or remote


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def seconds_until_allowed(request, credentials=None) -> int:
    """An upper bound of the wait: the cool-off after the last counted failure that matches."""
    AxesProxyHandler.update_request(request)
    handler = AxesProxyHandler.get_implementation()
    latest = [
        attempts.aggregate(at=Max("attempt_time"))["at"] for attempts in handler.get_user_attempts(request, credentials)
    ]
    latest = [at for at in latest if at is not None]
    cool_off = get_cool_off(request)
    if not latest or cool_off is None:
        return 1
    return max(1, math.ceil((max(latest) + cool_off - timezone.now()).total_seconds()))


def lockout_message(wait_seconds: int) -> str:
    minutes = max(1, math.ceil(wait_seconds / 60))
    return (
        "Too many failed sign-in attempts. Signing in is paused for this account from your address "
        f"(or for your address); try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE, for sign-ins through Django's own request (the login pages):
    the sign-in page again, with the message where the form is, and status 429."""
    wait = seconds_until_allowed(request, credentials)
    message = lockout_message(wait)
    request.pier_refusal = {"code": CODE, "message": message}
    if wants_json(request):
        response = JsonResponse(error_body(CODE, message), status=429)
    else:
        username = (credentials or {}).get("username") or request.POST.get("username", "")
        form = AuthenticationForm(request, initial={"username": str(username)[:150]})
        next_url = request.POST.get("next") or request.GET.get("next", "")
        response = render(request, "registration/login.html",
                          {"form": form, "throttled": message, "next": next_url}, status=429)
    response["Retry-After"] = str(wait)
    return response


class TooManyAttempts(exceptions.APIException):
    status_code = 429
    default_code = CODE

    def __init__(self, wait_seconds: int):
        super().__init__(lockout_message(wait_seconds), code=CODE)
        self.wait = wait_seconds  # the API's exception handler turns it into Retry-After


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic on the API, refused with 429 while the sign-in is throttled.

    Axes counts and refuses inside `authenticate()` (its backend and signal handler); DRF
    passes its own Request there, so the verdict is read from that object here, not by the
    middleware."""

    def authenticate_credentials(self, userid, password, request=None):
        max_length = get_user_model()._meta.get_field("username").max_length
        if len(userid) > max_length or "\x00" in userid:
            # No account has such a name; refused before it reaches the database.
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if request is not None and getattr(request, "axes_locked_out", False):
                raise TooManyAttempts(seconds_until_allowed(request, {"username": userid}))
            raise


class ThrottledBasicScheme(BasicScheme):
    """HTTP Basic in the OpenAPI schema, as for DRF's own class."""

    target_class = "portal.throttling.ThrottledBasicAuthentication"
