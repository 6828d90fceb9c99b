"""No input, however long or strange, produces a 500; every refusal is audited and stored safely.

The endpoints are read from the URLconf (tests/routes.py) plus the admin's pages for every
registered model, so a new endpoint is covered without an edit here. Each hostile input is sent
to each endpoint, for each method it serves, anonymously, as a member of alpha and as staff; each
request runs in a savepoint that is rolled back, so no caller changes the next one's world.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from conftest import PASSWORD
from portal import audit
from portal.errors import InvalidInput
from portal.input_guard import MAX_JSON_DEPTH, json_depth_exceeds, json_unstorable
from portal.models import AuditEvent
from portal.parsers import MergePatchJSONParser, PierJSONParser
from routes import MUTATING, pier_routes

pytestmark = pytest.mark.django_db

CALLERS = ("anonymous", "bob", "staff")  # bob: a member (not an admin) of alpha
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
KWARGS = {"tenant_slug": "alpha", "slug": "alpha", "username": "bob", "project_slug": "site", "pk": 1,
          "access_id": 1, "key_id": 1}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[..., str]  # path(**overrides)
    params: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.path().startswith("/api/")

    def __str__(self) -> str:
        return f"{self.name}-{self.method}"


def _serves_get(view) -> bool:
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    return cls is None or ("get" in getattr(cls, "http_method_names", []) and hasattr(cls, "get"))


def _pier_endpoints() -> list[Endpoint]:
    found = []
    for route in pier_routes():
        methods = (["GET"] if _serves_get(route.view) else []) + list(route.methods)
        for method in methods:
            found.append(Endpoint(route.name, method, lambda r=route, **o: r.path(**{**KWARGS, **o}), route.params))
    return found


def _admin_endpoints() -> list[Endpoint]:
    """The admin's list and change pages of every registered model (the object id is a URL parameter)."""
    found = []
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        found.append(Endpoint(f"admin:{model._meta.model_name}-list", "GET", lambda b=base, **o: b, ()))
        for method in ("GET", "POST"):
            found.append(Endpoint(f"admin:{model._meta.model_name}-change", method,
                                  lambda b=base, **o: f"{b}{quote(str(o.get('object_id', '1')))}/change/",
                                  ("object_id",)))
    return found


ENDPOINTS = _pier_endpoints() + _admin_endpoints()


@dataclass(frozen=True)
class Hostile:
    name: str
    part: str  # what the refusal must name
    applies: Callable[[Endpoint], bool]
    request: Callable[[Endpoint], dict]  # keyword arguments for Client.generic


def _json(raw: bytes) -> Callable[[Endpoint], dict]:
    return lambda e: {"path": e.path(), "data": raw, "content_type": "application/json"}


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


EVERYWHERE = lambda e: True  # noqa: E731
WITH_BODY = lambda e: e.method in BODY_METHODS  # noqa: E731

HOSTILE = [
    Hostile("nul-in-path", "path", EVERYWHERE, lambda e: {"path": e.path() + "%00"}),
    Hostile("nul-in-url-parameter", "path", lambda e: bool({"username", "object_id"} & set(e.params)),
            lambda e: {"path": e.path(username="a\x00b", object_id="a\x00b")}),
    Hostile("long-tenant-slug", "URL parameter", lambda e: bool({"tenant_slug", "slug"} & set(e.params)),
            lambda e: {"path": e.path(tenant_slug="a" * 100, slug="a" * 100)}),
    Hostile("long-username-in-url", "URL parameter username", lambda e: "username" in e.params,
            lambda e: {"path": e.path(username="u" * 254)}),
    Hostile("id-beyond-bigint", "URL parameter", lambda e: bool({"pk", "access_id", "key_id"} & set(e.params)),
            lambda e: {"path": e.path(pk=2**64, access_id=2**64, key_id=2**64)}),
    Hostile("nul-in-query", "query field", EVERYWHERE, lambda e: {"path": e.path() + "?q=a%00b&a%00=1"}),
    Hostile("long-query-value", "query field", EVERYWHERE, lambda e: {"path": e.path() + "?q=" + "x" * 10_001}),
    Hostile("nul-in-basic-credentials", "Basic credentials", EVERYWHERE,
            lambda e: {"path": e.path(), "HTTP_AUTHORIZATION": _basic(f"a\x00b:{PASSWORD}")}),
    Hostile("nul-in-session-cookie", "cookie", EVERYWHERE,
            lambda e: {"path": e.path(), "HTTP_COOKIE": 'sessionid="abcdefgh\\000ijkl"'}),
    Hostile("nul-in-form-field", "form field", lambda e: e.method == "POST",
            lambda e: {"path": e.path(), "data": "username=a%00b&role=member&slug=a%00b&name=x",
                       "content_type": "application/x-www-form-urlencoded"}),
    Hostile("nul-in-json-key", 'config_overrides["quota.\\u0000"]', WITH_BODY,
            _json(b'{"config_overrides": {"quota.\\u0000": "1"}}')),
    Hostile("lone-surrogate-json-key", '["\\ud800"]', WITH_BODY, _json(b'{"\\ud800": 1}')),
    Hostile("lone-surrogate-json-value", "name", WITH_BODY, _json(b'{"name": "ok\\udfff"}')),
    Hostile("json-nested-100000-deep", f"limit of {MAX_JSON_DEPTH} levels", WITH_BODY,
            _json(b"[" * 100_000 + b"]" * 100_000)),
]


def _clients(users) -> dict[str, dict[str, Client]]:
    """Per caller: a browser (session) for pages, Basic auth for the API (as automation does)."""
    clients = {}
    for caller in CALLERS:
        browser, api = Client(raise_request_exception=False), Client(raise_request_exception=False)
        if caller != "anonymous":
            browser.force_login(users[caller])
            api.defaults["HTTP_AUTHORIZATION"] = _basic(f"{caller}:{PASSWORD}")
        clients[caller] = {"html": browser, "api": api}
    return clients


def _send(client: Client, method: str, spec: dict):
    spec = dict(spec)
    return client.generic(method, spec.pop("path"), spec.pop("data", b""),
                          spec.pop("content_type", "application/octet-stream"), **spec)


def _problems(endpoint: Endpoint, caller: str, response, expected_part: str | None) -> list[str]:
    """What is wrong with this answer to a hostile request (empty: nothing)."""
    problems = []
    status = response.status_code
    is_api = response.wsgi_request.path.startswith("/api/")
    sign_in = status == 302 and response["Location"].startswith("/login?next=") and not is_api
    if not (400 <= status < 500 or (sign_in and expected_part is None)):
        problems.append(f"status {status}")
    if status >= 400 and is_api:
        try:
            error = json.loads(response.content)["error"]
            assert {"code", "message", "details"} <= set(error)
            if expected_part and expected_part not in error["message"]:
                problems.append(f"message {error['message']!r} does not name {expected_part!r}")
        except (ValueError, KeyError, TypeError, AssertionError):
            problems.append(f"not the JSON error shape: {response.content[:200]!r}")
    elif status >= 400 and expected_part:
        body = response.content.decode(errors="replace")
        if 'class="error-message"' not in body or "Traceback" in body:
            problems.append(f"not Pier's error page: {body[:200]!r}")
        elif expected_part not in html.unescape(body):
            problems.append(f"page does not name {expected_part!r}")
    if endpoint.method in MUTATING:
        refused = AuditEvent.objects.filter(request_id=response["X-Request-ID"]).exclude(outcome="success")
        if not refused.exists():
            problems.append("no refused-attempt audit row")
    return [f"{endpoint} as {caller}: {p}" for p in problems]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_hostile_input_is_refused_with_a_4xx_and_audited(endpoint, users):
    clients = _clients(users)
    problems = []
    for hostile in HOSTILE:
        if not hostile.applies(endpoint):
            continue
        spec = hostile.request(endpoint)
        for caller in CALLERS:
            client = clients[caller]["api" if spec["path"].startswith("/api/") else "html"]
            with transaction.atomic():
                response = _send(client, endpoint.method, spec)
                # Refused before any view, whoever asks: exactly 400 naming the part.
                found = _problems(endpoint, caller, response, hostile.part)
                if response.status_code != 400:
                    found.append(f"{endpoint} as {caller}: {hostile.name} answered {response.status_code}, not 400")
                problems += [f"[{hostile.name}] {p}" for p in found]
                transaction.set_rollback(True)
    assert not problems, "\n".join(problems)


# Values of the right shape but too long for their column: refused by the form or serializer,
# naming the field, once the caller may use the endpoint (others get their usual 401/403/302).
TOO_LONG = [
    ("api:member-list", "POST", {"username": "u" * 254}, "username", "at most 150 characters"),
    ("api:member-list", "POST", {"username": "a" * 250 + "@example.com"}, "username", "254 characters"),
    ("tenants:members", "POST", {"username": "u" * 254, "role": "member"}, "username", "at most 150 characters"),
    ("api:admin-tenant-list", "POST", {"slug": "newco", "name": "New", "owner": "o" * 200}, "owner",
     "at most 150 characters"),
]


@pytest.mark.parametrize("name, method, data, field, words", TOO_LONG, ids=lambda v: v if isinstance(v, str) else "")
def test_too_long_people_are_refused_naming_the_field(name, method, data, field, words, users):
    endpoint = next(e for e in ENDPOINTS if e.name == name and e.method == method)
    clients = _clients(users)
    problems = []
    for caller in CALLERS:
        with transaction.atomic():
            if endpoint.is_api:
                response = clients[caller]["api"].generic(method, endpoint.path(), json.dumps(data),
                                                          "application/json")
            else:
                response = clients[caller]["html"].post(endpoint.path(), data)
            problems += _problems(endpoint, caller, response, None)
            if caller == "staff":  # may do everything: reaches the validation
                body = response.content.decode()
                if response.status_code != 400 or field not in body or words not in body:
                    problems.append(f"{endpoint} as staff: {response.status_code} {body[:300]!r}")
            transaction.set_rollback(True)
    assert not problems, "\n".join(problems)


def test_refusals_of_unstorable_values_are_stored_escaped_and_truncated(users):
    client = Client()
    client.force_login(users["bob"])
    response = client.post("/x%00")
    assert response.status_code == 400
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.target == "/x\\u0000" and event.actor == "anonymous"  # refused before anyone is identified
    assert event.outcome == "invalid" and event.details["path"] == "/x\\u0000"

    response = Client().post("/t/" + "a" * 100 + "/members", {"username": "x"})
    assert response.status_code == 400
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.tenant == "a" * 63 + "…" and len(event.target) <= 255


def test_bodies_django_refuses_answer_in_the_error_shape_or_on_pier_page(users, settings):
    client = Client(raise_request_exception=False)
    client.force_login(users["staff"])
    too_big = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client.post("/api/v1/admin/tenants", too_big, content_type="application/json")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"], outcome="invalid").exists()

    many_fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.post("/t/alpha/members", many_fields, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and 'data-code="invalid_input"' in response.content.decode()
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"], outcome="invalid").exists()


def test_an_anonymous_write_sent_to_sign_in_is_audited(alpha):
    response = Client().post("/t/alpha/members", {"username": "u" * 254, "role": "member"})
    assert response.status_code == 302 and response["Location"].startswith("/login?next=")
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.actor, event.outcome, event.tenant) == ("anonymous", "denied", "alpha")


def test_a_sign_out_is_not_recorded_as_a_refusal(users):
    client = Client()
    client.force_login(users["bob"])
    response = client.post("/logout")
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(request_id=response["X-Request-ID"]).exclude(outcome="success").exists()


# --- the parser ------------------------------------------------------------------------------


def _parse(raw: bytes, parser=PierJSONParser):
    return parser().parse(io.BytesIO(raw), parser.media_type, {})


def test_depth_limit_counts_brackets_outside_strings_only():
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert not json_depth_exceeds(at_limit)
    assert json_depth_exceeds(b"[" + at_limit + b"]")
    assert not json_depth_exceeds(b'{"a": "' + b"[{" * 100 + b'", "b": "\\" [[[[ \\\\"}')
    assert json_depth_exceeds(b'{"a": {"b": [' * MAX_JSON_DEPTH)  # unterminated still counts


def test_parser_refuses_deep_nesting_fast_and_without_recursion():
    started = time.monotonic()
    with pytest.raises(InvalidInput) as refused:
        _parse(b"[" * 100_000 + b"]" * 100_000)
    assert time.monotonic() - started < 1
    assert refused.value.details == {"body": [f"nested deeper than the limit of {MAX_JSON_DEPTH} levels"]}
    assert _parse(b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)  # the limit itself is fine


@pytest.mark.parametrize("raw, path", [
    (b'{"config_overrides": {"quota.\\u0000": "1"}}', 'config_overrides["quota.\\u0000"]'),
    (b'{"groups": ["ok", "a\\u0000b"]}', "groups[1]"),
    (b'{"\\ud800": 1}', '["\\ud800"]'),
    (b'{"name": "\\udc00x"}', "name"),
    (b'"\\u0000"', "body"),
])
def test_parser_names_the_field_holding_a_nul_or_lone_surrogate(raw, path):
    with pytest.raises(InvalidInput) as refused:
        _parse(raw)
    assert list(refused.value.details) == [path]
    assert refused.value.message.startswith(f"{path}: the ")


def test_parser_keeps_valid_text_and_accepts_merge_patch():
    assert _parse('{"name": "caf\\u00e9 \\ud83d\\ude00 ünï"}'.encode()) == {"name": "café 😀 ünï"}
    assert MergePatchJSONParser.media_type == "application/merge-patch+json"
    assert _parse(b'{"quota.pods": null}', MergePatchJSONParser) == {"quota.pods": None}
    assert json_unstorable({"a": [{"b": "fine"}]}) is None


def test_api_accepts_merge_patch_bodies(users, alpha, api):
    client = api(users["staff"])
    response = client.generic("PATCH", "/api/v1/tenants/alpha/project-defaults",
                              json.dumps({"project_defaults": {"quota.pods": "9"}}),
                              content_type="application/merge-patch+json")
    assert response.status_code == 200, response.content
    response = client.generic("PATCH", "/api/v1/tenants/alpha/project-defaults",
                              b'{"project_defaults": {"\\u0000": 1}}',
                              content_type="application/merge-patch+json")
    assert response.status_code == 400


# --- audit sanitisation --------------------------------------------------------------------------


def test_audit_record_stores_any_value_escaped_and_truncated():
    deep: dict = {}
    cursor = deep
    for _ in range(50):
        cursor["d"] = {}
        cursor = cursor["d"]
    event = audit.record(
        action="a" * 500, actor=None, tenant="t\x00" * 100, target_type="url\ud800", target="x\x00" * 300,
        outcome=AuditEvent.Outcome.INVALID,
        details={"k\x00": ["\ud800", "v" * 10_000, float("nan")], "deep": deep, "n": 1, "ok": True},
    )
    event = AuditEvent.objects.get(pk=event.pk)
    for field in ("action", "tenant", "target_type", "target", "actor"):
        assert len(getattr(event, field)) <= AuditEvent._meta.get_field(field).max_length, field
    assert event.action == "a" * 119 + "…"
    assert event.tenant.startswith("t\\u0000t\\u0000") and event.target.startswith("x\\u0000")
    assert event.target_type == "url\\ud800"
    values = event.details["k\\u0000"]
    assert values[0] == "\\ud800" and len(values[1]) == audit.MAX_DETAIL_TEXT and values[2] == "nan"
    assert event.details["n"] == 1 and event.details["ok"] is True
    assert "d" in event.details["deep"]  # kept, cut to text past MAX_DETAIL_DEPTH


# --- the last net for database errors ------------------------------------------------------------


def _too_long_username():
    with transaction.atomic():
        get_user_model().objects.create(username="x" * 200)  # the column holds 150: DataError


def _duplicate_username():
    with transaction.atomic():
        get_user_model().objects.create(username="bob")  # IntegrityError


def page_data_error(request):
    _too_long_username()
    return HttpResponse("stored")


def page_integrity_error(request):
    _duplicate_username()
    return HttpResponse("stored")


class ApiDataError(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        _too_long_username()
        return Response({"stored": True})


urlpatterns = [
    path("t/alpha/escaped-data-error", page_data_error),
    path("t/alpha/escaped-integrity-error", page_integrity_error),
    path("api/v1/escaped-data-error", ApiDataError.as_view()),
    path("", include("portal.urls")),
]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_an_escaped_database_error_is_a_4xx_in_the_error_shape_never_a_debug_page(debug, settings, users):
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    response = client.post("/api/v1/escaped-data-error", {}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert "username" not in response.json()["error"]["message"]  # names no internals
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"], outcome="invalid").exists()

    response = client.post("/t/alpha/escaped-data-error")
    assert response.status_code == 400 and 'data-code="invalid_input"' in response.content.decode()
    response = client.post("/t/alpha/escaped-integrity-error")
    assert response.status_code == 409 and 'data-code="conflict"' in response.content.decode()
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"], outcome="conflict").exists()
