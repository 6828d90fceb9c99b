"""schemathesis over the whole OpenAPI schema (/api/v1/schema), in-process against Django's WSGI app
and the suite's real PostgreSQL, as three callers: platform staff, an organization's owner and an
access key. Each caller gets its own organization, project, people and keys (made once for the
module in a transaction that is rolled back, never committed), and every test runs in its own
savepoint, so what one caller's cases delete or suspend is never another caller's data.

What must hold for every generated request (schemathesis' coverage and fuzzing phases, then its
stateful phase following the links it infers): no server error, a status code the schema
describes for that operation, a JSON body (and headers) matching what the schema says for that
status. The budget is fixed and deterministic (seed, derandomized Hypothesis, no example database).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import time

import hypothesis
import pytest
import schemathesis
import schemathesis.openapi
from django.contrib.auth import get_user_model
from django.core import signals
from django.db import close_old_connections, connection, transaction
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import PASSWORD, make_user, provision_now
from portal.wsgi import application

pytestmark = pytest.mark.django_db

SEED = 20261202
MAX_EXAMPLES = 5  # fuzzing examples per operation and caller; the coverage phase adds its own fixed set
STATEFUL_EXAMPLES = 6
STATEFUL_STEPS = 8


def _basic(username: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=_basic(user.username))
    return client


def _post(user, path: str, body: dict) -> dict:
    response = _client(user).post(path, body, format="json")
    assert response.status_code in (201, 202), (path, response.status_code, response.content)
    return response.json()


def _organization(prefix: str, staff) -> dict:
    """An organization of the caller's own, set up through the API as people would: its owner, a
    member, an invitation, a ready project with a group grant and an admin key."""
    from tenants.projects import reconcile
    from tenants.projects.models import Project

    owner = make_user(f"{prefix}-owner")
    member = make_user(f"{prefix}-member")
    tenant = provision_now(f"{prefix}-org", owner.username, acting_user=staff)
    base = f"/api/v1/tenants/{tenant.slug}"
    _post(owner, f"{base}/members", {"username": member.username, "role": "member"})
    pending = _post(owner, f"{base}/members", {"username": f"{prefix}-new@example.com", "role": "member"})
    _post(owner, f"{base}/projects", {"slug": "web"})
    with tenant_context(tenant):
        reconcile.run(Project.objects.get(slug="web").pk)
    grant = _post(owner, f"{base}/projects/web/grants", {"kind": "group", "name": f"{prefix}-team", "role": "view"})
    key = _post(owner, f"{base}/projects/web/keys", {"name": "ci", "role": "admin"})
    other_key = _post(owner, f"{base}/projects/web/keys", {"name": "other", "role": "view"})
    connection.set_schema_to_public()
    return {"tenant": tenant, "owner": owner, "member": member, "pending_id": pending["id"], "project": "web",
            "grant_id": grant["id"], "key": key, "other_key": other_key}


def _generated_schema() -> dict:
    """The schema /api/v1/schema serves (the same generator; the served one is compared below).
    Built at collection, when no database is open yet: serving it needs a signed-in caller."""
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


SCHEMA = _generated_schema()
schema = schemathesis.openapi.from_dict(copy.deepcopy(SCHEMA), config=schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "suppress-health-check": ["all"],
    "phases": {
        "examples": {"enabled": False},
        # One method the API never serves (PUT) probes each path for a 405; the other methods the
        # coverage phase would try too are answered by the same Django/DRF code.
        "coverage": {"enabled": True, "unexpected-methods": ["PUT"]},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
    },
}))
schema.app = application  # in-process: schemathesis calls the WSGI app, no server, no network


def _error_code(response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "(not Pier's error shape)"


TENANT_NOT_READY = {"tenant_not_ready", "tenant_failed", "tenant_migrating", "tenant_unavailable", "cluster_unavailable"}


@schemathesis.check
def no_server_error(ctx, response, case):
    """No 5xx, except the documented 503 of an organization that is not ready or a cluster that
    cannot be reached (schemathesis' own not_a_server_error counts every 5xx)."""
    if response.status_code >= 500 and not (response.status_code == 503 and _error_code(response) in TENANT_NOT_READY):
        raise AssertionError(f"Server error {response.status_code}: {response.text[:500]}")
    return None


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


class Run:
    """What one caller's run answered: printed (with how long it took) and checked to be real."""

    def __init__(self, name: str):
        self.name = name
        self.statuses: collections.Counter[int] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}  # the first request answered with each error code
        self.seconds = 0.0

    def record(self, case, response, seconds: float) -> None:
        self.seconds += seconds
        self.statuses[response.status_code] += 1
        if response.status_code >= 400:
            code = f"{response.status_code} {_error_code(response)}"
            self.codes[code] += 1
            self.examples.setdefault(code, f"{case.method} {case.formatted_path}")

    def report(self) -> None:
        print(f"\nschemathesis as {self.name}: {sum(self.statuses.values())} requests in {self.seconds:.1f} s, "
              f"statuses {dict(sorted(self.statuses.items()))}")
        for code, count in self.codes.most_common():
            print(f"  {count:5} {code:32} e.g. {self.examples[code]}")

    def check(self) -> None:
        if self.statuses:  # this caller's tests ran (not deselected)
            # The run was real: the caller's credentials worked and requests reached the views.
            assert self.statuses[200] + self.statuses[201] + self.statuses[202] >= 20, (self.name, self.statuses)


# --- the callers: each its own organization, project, people and keys -------------------------


def _staff():
    staff = make_user("st-staff", staff=True)
    org = _organization("st-s", staff)
    make_user("st-s-person")
    job = org["tenant"].jobs.order_by("-id").first()
    return _basic(staff.username), {
        "slug": org["tenant"].slug,
        "id": org["pending_id"],
        "/api/v1/admin/jobs/{id}": {"id": job.pk},
        "tenant_slug": org["tenant"].slug,
        "project_slug": org["project"],
        "grant_id": org["grant_id"],
        "key_id": org["other_key"]["id"],
        "username": "st-s-person",  # not the caller: a PATCH is_active=false must not lock staff out
        "/api/v1/admin/users/{username}": {"username": "st-s-person"},
    }


def _owner():
    org = _organization("st-o", get_user_model().objects.get(username="staff"))
    return _basic(org["owner"].username), {
        "tenant_slug": org["tenant"].slug,
        "project_slug": org["project"],
        "username": org["member"].username,  # not the caller: removing it must not end the run
        "id": org["pending_id"],
        "grant_id": org["grant_id"],
        "key_id": org["other_key"]["id"],
    }


def _key():
    org = _organization("st-k", get_user_model().objects.get(username="staff"))
    return f"Bearer {org['key']['token']}", {
        "tenant_slug": org["tenant"].slug,
        "project_slug": org["project"],
        "username": org["member"].username,
        "id": org["pending_id"],
        "grant_id": org["grant_id"],
        "key_id": org["other_key"]["id"],  # not the caller's own key: revoking it would end the run
    }


@contextlib.contextmanager
def _in_test_transaction():
    """schemathesis calls the WSGI app directly, not through Django's test client: like that client,
    keep Django from closing the connection at each request's start and end, which would drop the
    test's transaction (and with it the caller's fixtures). (Django's test client connects the
    receiver again after each of its requests, so this goes after the set-up.)"""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def _callers(django_db_setup, django_db_blocker):
    """The three callers' organizations, made once for the module inside one transaction that is
    rolled back at its end (nothing is committed). Each test runs in a savepoint inside it (the
    usual per-test transaction), so what one operation's cases create or delete is undone before
    the next one, and no caller ever sees another's data."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            callers = {name: Caller(name, *make()) for name, make in
                       (("staff", _staff), ("organization owner", _owner), ("access key", _key))}
            yield callers
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            connection.set_schema_to_public()


def _caller_fixture(name):
    @pytest.fixture
    def fixture(_callers, db):
        # Thousands of expected 4xx would each log a warning; server errors still log.
        request_log = logging.getLogger("django.request")
        level = request_log.level
        request_log.setLevel(logging.ERROR)
        try:
            with _in_test_transaction():
                yield _callers[name]
        finally:
            request_log.setLevel(level)

    return fixture


# In sequences, ids and names come from earlier answers (the links schemathesis infers); only the
# caller's own organization and project stay fixed, and staff's own account is never the one edited.
STATEFUL_PINS = {"tenant_slug", "project_slug", "/api/v1/admin/users/{username}"}


class Caller:
    def __init__(self, name: str, authorization: str, pins: dict):
        self.name = name
        self.authorization = authorization
        self.pins = pins

    def pin(self, case, *, only: set[str] | None = None) -> None:
        """The caller's own objects in the path, so requests reach the views instead of a 404."""
        pins = {k: v for k, v in self.pins.items() if only is None or k in only}
        pins = {**pins, **pins.get(case.path, {})}
        for name in case.path_parameters:
            if name in pins:
                case.path_parameters[name] = pins[name]

    def call_and_check(self, case):
        self.pin(case)
        started = time.monotonic()
        response = case.call(headers={"Authorization": self.authorization})
        RUNS[self.name].record(case, response, time.monotonic() - started)
        case.validate_response(response, checks=CHECKS, headers={"Authorization": self.authorization})
        return response


staff = _caller_fixture("staff")
owner = _caller_fixture("organization owner")
key = _caller_fixture("access key")
RUNS = {name: Run(name) for name in ("staff", "organization owner", "access key")}


# --- coverage and fuzzing phases: every operation, each caller ----------------------------------


@schema.parametrize()
def test_as_staff_every_operation_answers_as_the_schema_says(case, staff):
    staff.call_and_check(case)


# Staff-only endpoints refuse everyone else before reading any input (IsStaff): generated inputs
# cannot reach further for those callers, so their cases are the staff's (the stateful phase still
# sends them there).
tenant_routes = schema.exclude(path_regex="^/api/v1/admin/")


@tenant_routes.parametrize()
def test_as_an_owner_every_operation_answers_as_the_schema_says(case, owner):
    owner.call_and_check(case)


@tenant_routes.parametrize()
def test_as_a_key_every_operation_answers_as_the_schema_says(case, key):
    key.call_and_check(case)


# --- stateful phase: sequences through the links schemathesis infers ---------------------------


def _run_stateful(caller: Caller) -> None:
    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            caller.pin(case, only=STATEFUL_PINS)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": caller.authorization}}

        def call(self, case, **kwargs):
            started = time.monotonic()
            response = case.call(**kwargs)
            RUNS[caller.name].record(case, response, time.monotonic() - started)
            return response

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Machine.run(settings=hypothesis.settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS, derandomize=True, database=None,
        deadline=None, suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate],  # no shrinking: the failure as found, within the budget
    ))


def test_as_staff_sequences_answer_as_the_schema_says(staff):
    _run_stateful(staff)


def test_as_an_owner_sequences_answer_as_the_schema_says(owner):
    _run_stateful(owner)


def test_as_a_key_sequences_answer_as_the_schema_says(key):
    _run_stateful(key)


def _operations():
    for path, operations in SCHEMA["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_the_schema_describes_the_shared_errors_and_limits():
    """What the layers under every view answer is in the schema, in Pier's one error shape."""
    from portal.api import Pagination

    error = {"$ref": "#/components/schemas/Error"}
    assert SCHEMA["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message", "details"]
    for method, path, operation in _operations():
        responses = operation["responses"]
        expected = {"400", "401", "403"}
        if "requestBody" in operation:
            expected |= {"413", "415"}
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            component = SCHEMA["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            assert component["additionalProperties"] is False, (method, path)  # unknown fields refused
        if "{" in path:
            expected.add("404")
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            expected.add("409")
        if path.startswith("/api/v1/tenants/{tenant_slug}"):
            expected.add("503")
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            assert responses[status]["content"]["application/json"]["schema"] == error, (method, path, status)
        parameters = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        if "page_size" in parameters:
            assert parameters["page"]["schema"]["minimum"] == 1
            assert parameters["page_size"]["schema"]["minimum"] == 1
            assert parameters["page_size"]["schema"]["maximum"] == Pagination.max_page_size == 500
            assert "404" in responses  # a page past the end


def test_empty_strings_and_unknown_fields_are_refused_as_the_schema_says(api, users):
    create = SCHEMA["components"]["schemas"]["TenantCreate"]
    assert create["properties"]["slug"]["minLength"] == 1 and create["additionalProperties"] is False
    response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": "", "name": "X", "owner": "alice"},
                                        format="json")
    assert response.status_code == 400 and "slug" in response.json()["error"]["details"]
    response = api(users["staff"]).post("/api/v1/admin/tenants", {"slug": "st-x", "name": "X", "owner": "alice",
                                                                  "colour": "red"}, format="json")
    assert response.status_code == 400 and "colour" in response.json()["error"]["details"]


def test_page_size_above_the_maximum_gives_the_maximum_as_documented(api, users):
    """The schema says `page_size` goes from 1 to 500, a larger value gives 500, and a page past the
    end answers 404: what the API does."""
    User = get_user_model()
    User.objects.bulk_create(User(username=f"st-many-{n:03}") for n in range(501))
    response = api(users["staff"]).get("/api/v1/admin/users", {"page_size": 10_000})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 500
    assert response.json()["next"]
    past_the_end = api(users["staff"]).get("/api/v1/admin/users", {"page": 1000})
    assert past_the_end.status_code == 404 and past_the_end.json()["error"]["code"] == "not_found"


def test_the_schema_tested_is_the_one_served(api, users):
    response = api(users["alice"]).get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    served = json.loads(response.content)
    for path, operations in served["paths"].items():
        for method, operation in operations.items():
            assert operation == SCHEMA["paths"][path][method], (method, path)
    assert served == SCHEMA


def test_each_caller_was_answered_for_real(capsys):
    """Printed: how many requests each caller made, how long that took and what was answered. A
    broken Authorization header or wrong fixtures would make every answer a documented 401 or
    404, and the checks above would pass on nothing."""
    with capsys.disabled():
        for run in RUNS.values():
            run.report()
    for run in RUNS.values():
        run.check()
