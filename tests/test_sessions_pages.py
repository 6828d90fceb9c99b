"""The sessions pages as people use them (Django's test client, signed in with a session): the
list and a session's page, the start form with errors at their fields, stop, clone and delete
with who may do which, the fragments the pages poll, and a key's sessions from the keys page.
Sessions run on the emulator's simulated runner, driven by the controller in the test."""

from __future__ import annotations

import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

import kubehelp
from conftest import make_user
from portal.models import AuditEvent
from sessions import services as session_services
from sessions.controller import SESSIONS
from sessions.models import AgenticSession
from tenants.models import Membership
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access

pytestmark = pytest.mark.django_db
ADMIN, EDIT = Access("admin", "test"), Access("edit", "test")


@pytest.fixture
def world(alpha, users, unique_slug):
    """A ready project bob created (admin by creation); viv views it, eddie and edna edit it."""
    people = {"bob": users["bob"], "alice": users["alice"]}
    for name in ("viv", "eddie", "edna"):
        people[name] = make_user(name)
        Membership.objects.create(tenant=alpha, user=people[name], role="member")
    slug = unique_slug("pages")
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug=slug, acting_user=users["bob"])
        for name, role in (("viv", "view"), ("eddie", "edit"), ("edna", "edit")):
            project_services.grant_add(tenant=alpha, project=project, kind="user", name=name, role=role,
                                       acting_user=users["bob"], access=ADMIN)
        reconcile.run(project.pk)
        project.refresh_from_db()
    return {"tenant": alpha, "project": project, "people": people, "base": f"/t/alpha/projects/{slug}/sessions"}


def start(world, who: str, **fields) -> AgenticSession:
    with tenant_context(world["tenant"]):
        s, _ = session_services.session_create(tenant=world["tenant"], project=world["project"],
                                               acting_user=world["people"][who], access=EDIT,
                                               **{"prompt": "Summarise the README", **fields})
    return s


def drive(world, s: AgenticSession, *, until=AgenticSession.TERMINAL, seconds: float = 30.0) -> AgenticSession:
    """Run the controller (as the sync would) while the emulator's clock moves, until a phase."""
    deadline = time.monotonic() + seconds
    while True:
        with tenant_context(world["tenant"]):
            SESSIONS.run(s.pk)
            s.refresh_from_db()
        if s.phase in until or time.monotonic() > deadline:
            return s
        kubehelp.advance_clock(2)
        time.sleep(0.2)


def signed_in(client, world, who: str):
    client.force_login(world["people"][who])
    return client


def field_error(html: str, field_id: str) -> str:
    """The error shown at a field: the field is marked invalid and its error list is tied to it."""
    field = re.search(rf'<(?:input|textarea|select)[^>]*id="{field_id}"[^>]*>', html)
    assert field, f"no field {field_id}"
    assert 'aria-invalid="true"' in field.group(0), f"{field_id} is not marked invalid"
    assert f"{field_id}_error" in field.group(0), f"{field_id}'s error is not tied to it"
    errors = re.search(rf'<ul[^>]*id="{field_id}_error"[^>]*>(.*?)</ul>', html, re.S)
    assert errors, f"no error list for {field_id}"
    return re.sub(r"<[^>]+>", "", errors.group(1))


def test_a_viewer_reads_the_list_and_a_session_but_cannot_start_one(client, world):
    s = start(world, "eddie", display_name="Readme summary", llm={"model": "m1", "temperature": 0.2},
              repos=[{"url": "https://git.example.com/team/app.git", "branch": "main"}],
              env=[{"name": "MODE", "value": "fast"}])
    signed_in(client, world, "viv")
    page = client.get(world["base"])
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-session="{s.name}"' in html and "Readme summary" in html
    assert 'data-phase="Pending"' in html and "eddie" in html
    assert "local simulated cluster" in html and "pier:sleep=N" in html
    assert 'aria-current="page">Sessions</a>' in html  # the project's Sessions tab
    assert 'id="start-session"' not in html and 'name="prompt"' not in html

    detail = client.get(f"{world['base']}/{s.name}")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "Summarise the README" in html and "m1" in html and "0.2" in html
    assert "https://git.example.com/team/app.git (branch main)" in html and "MODE=fast" in html
    assert f"{s.timeout_seconds} seconds" in html and "shared nodes" in html
    assert 'id="log-text"' in html and "Conditions" in html and "History" in html
    assert "Stop session" not in html and "Delete session" not in html and "Clone session" not in html

    refused = client.post(world["base"], {"prompt": "let me"})
    assert refused.status_code == 403
    assert "This needs the edit role" in refused.content.decode()
    assert 'name="prompt"' not in refused.content.decode()
    with tenant_context(world["tenant"]):
        assert AgenticSession.objects.filter(project=world["project"]).count() == 1
    assert AuditEvent.objects.filter(action="session.create", actor="viv", outcome="denied", source="html").exists()


def test_an_editor_starts_a_session_from_the_form_and_lands_on_its_page(client, world):
    signed_in(client, world, "eddie")
    assert 'id="start-session"' in client.get(world["base"]).content.decode()
    response = client.post(world["base"], {
        "prompt": "Fix the login bug\n  keep the indentation", "display_name": "Login fix", "model": "m1",
        "temperature": "0.3", "max_tokens": "500", "timeout_seconds": "600",
        "repos": "https://git.example.com/team/app.git main\n\n  git@git.example.com:team/lib.git  ",
        "env": "FOO=bar=baz\nEMPTY=",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_context(world["tenant"]):
        s = AgenticSession.objects.get(project=world["project"])
    assert response["Location"] == f"{world['base']}/{s.name}"
    assert s.name.startswith("login-fix-") and s.prompt == "Fix the login bug\n  keep the indentation"
    assert s.llm == {"model": "m1", "temperature": 0.3, "maxTokens": 500} and s.timeout_seconds == 600
    assert s.repos == [{"url": "https://git.example.com/team/app.git", "branch": "main"},
                       {"url": "git@git.example.com:team/lib.git"}]
    assert s.env == [{"name": "FOO", "value": "bar=baz"}, {"name": "EMPTY", "value": ""}]
    assert (s.created_by_kind, s.created_by_name) == ("user", "eddie")
    page = client.get(response["Location"]).content.decode()
    assert f"Session {s.name} is starting" in page and "FOO=bar=baz" in page and "500" in page
    assert AuditEvent.objects.filter(action="session.create", actor="eddie", outcome="success", source="html",
                                     target=f"{world['project'].slug}/{s.name}").exists()


def test_the_same_form_sent_twice_starts_one_session(client, world):
    signed_in(client, world, "eddie")
    page = client.get(world["base"]).content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    again = re.search(r'name="idempotency_key" value="([^"]+)"', client.get(world["base"]).content.decode()).group(1)
    assert key != again  # each form shown is a new start
    sent = {"prompt": "only once", "idempotency_key": key}
    first, second = client.post(world["base"], sent), client.post(world["base"], sent, follow=True)
    assert first.status_code == 302 and second.redirect_chain[-1][0] == first["Location"]
    assert "This form was sent before" in second.content.decode()
    with tenant_context(world["tenant"]):
        assert AgenticSession.objects.filter(project=world["project"]).count() == 1
    # The same form again (the back button) with other values: said so, shown again with a new key.
    changed = client.post(world["base"], {**sent, "prompt": "something else"})
    assert changed.status_code == 409
    html = changed.content.decode()
    assert "This form already started a session with other values" in html and "Idempotency" not in html
    fresh = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)
    assert fresh != key and "something else</textarea>" in html
    assert client.post(world["base"], {**sent, "prompt": "something else", "idempotency_key": fresh}).status_code == 302
    with tenant_context(world["tenant"]):
        assert AgenticSession.objects.filter(project=world["project"]).count() == 2


GOOD = {"prompt": "Keep what I typed", "display_name": "Typed title", "timeout_seconds": "600",
        "repos": "https://git.example.com/a.git", "env": "GOOD=1"}


@pytest.mark.parametrize("bad, field, says", [
    ({"prompt": "   "}, "id_prompt", "required"),  # the service's check (the form keeps spaces)
    ({"prompt": ""}, "id_prompt", "required"),  # the form's
    ({"timeout_seconds": "5"}, "id_timeout_seconds", "60 to"),
    ({"timeout_seconds": "soon"}, "id_timeout_seconds", "whole number"),
    ({"temperature": "7"}, "id_temperature", "0 to 2"),
    ({"max_tokens": "0"}, "id_max_tokens", "1 to 1000000"),
    ({"repos": "https://git.example.com/a.git\n\nnot-a-url"}, "id_repos", "Line 3: give a git URL"),
    ({"repos": "https://git.example.com/a.git ../etc"}, "id_repos", "Line 1: give a branch name"),
    ({"repos": "https://git.example.com/a.git main extra"}, "id_repos", "Line 1: give a URL and"),
    ({"env": "GOOD=1\nPIER_TOKEN=x"}, "id_env", "Line 2: names starting with PIER_"),
    ({"env": "GOOD=1\nGOOD=2"}, "id_env", "Line 2: GOOD is given twice"),
    ({"env": "JUST_A_NAME"}, "id_env", "Line 1: write NAME=value"),
])
def test_bad_input_is_shown_at_its_field_and_what_was_typed_is_kept(client, world, bad, field, says):
    signed_in(client, world, "eddie")
    typed = {**GOOD, **bad}
    response = client.post(world["base"], typed)
    assert response.status_code == 400
    html = response.content.decode()
    message = field_error(html, field)
    assert says in message, message
    assert "repos[" not in html and "env[" not in html and "llm." not in html  # the API's names stay out
    assert 'value="Typed title"' in html
    for name in ("prompt", "repos", "env"):  # the textareas keep what was typed, as typed
        shown = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\n?(.*?)</textarea>', html, re.S).group(1)
        assert shown == typed[name].replace("&", "&amp;"), (name, shown)
    with tenant_context(world["tenant"]):
        assert not AgenticSession.objects.filter(project=world["project"]).exists()


def test_every_bad_field_is_marked_at_once_the_forms_checks_and_the_services(client, world):
    signed_in(client, world, "eddie")
    typed = {**GOOD, "timeout_seconds": "5", "temperature": "7", "env": "JUST_A_NAME",
             "repos": "https://git.example.com/a.git\nnot-a-url"}
    response = client.post(world["base"], typed)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Line 1: write NAME=value" in field_error(html, "id_env")  # the form's own check
    assert "60 to" in field_error(html, "id_timeout_seconds")  # the service's, on the same answer
    assert "0 to 2" in field_error(html, "id_temperature")
    assert "Line 2: give a git URL" in field_error(html, "id_repos")
    with tenant_context(world["tenant"]):
        assert not AgenticSession.objects.filter(project=world["project"]).exists()


def test_an_editor_stops_their_own_session_and_not_another_editors(client, world):
    s = start(world, "eddie", prompt="long one pier:sleep=600")
    s = drive(world, s, until=("Running",))
    url = f"{world['base']}/{s.name}"

    signed_in(client, world, "edna")
    assert "Stop session" not in client.get(url).content.decode()
    refused = client.post(f"{url}/stop")
    assert refused.status_code == 403
    assert f"Only whoever started &#x27;{s.name}&#x27; or a project admin may stop it." in refused.content.decode()
    with tenant_context(world["tenant"]):
        assert AgenticSession.objects.get(pk=s.pk).stop_requested_at is None
    assert AuditEvent.objects.filter(action="session.stop", actor="edna", outcome="denied").exists()

    signed_in(client, world, "eddie")
    assert "Stop session" in client.get(url).content.decode()
    response = client.post(f"{url}/stop", follow=True)
    html = response.content.decode()
    assert f"Session {s.name} is stopping" in html and "Asked to stop by eddie" in html
    assert "Stop session" not in html
    s = drive(world, s)
    assert s.phase == "Stopped"
    summary = client.get(f"{url}/status?part=summary", HTTP_HX_REQUEST="true")
    assert summary.status_code == 286 and "stopped by eddie" in summary.content.decode()


def test_only_an_admin_deletes_a_session(client, world):
    s = start(world, "eddie")
    url = f"{world['base']}/{s.name}"
    signed_in(client, world, "eddie")
    assert "Delete session" not in client.get(url).content.decode()
    assert client.post(f"{url}/delete").status_code == 403

    signed_in(client, world, "bob")
    page = client.get(url).content.decode()
    assert "Delete session" in page and "data-confirm=" in page
    response = client.post(f"{url}/delete", follow=True)
    assert response.redirect_chain[-1][0] == world["base"]
    html = response.content.decode()
    assert f"Session {s.name} is being deleted" in html and f'data-session="{s.name}"' not in html
    assert client.get(url).status_code == 404
    gone = client.get(f"{url}/status?part=row", HTTP_HX_REQUEST="true")
    assert gone.status_code == 286 and "deleted" in gone.content.decode() and "hx-get" not in gone.content.decode()


def test_the_fragments_poll_until_the_session_finishes(client, world):
    s = start(world, "eddie", prompt="say hello")
    url = f"{world['base']}/{s.name}"
    signed_in(client, world, "viv")
    badge = client.get(f"{url}/status", HTTP_HX_REQUEST="true")
    assert badge.status_code == 200
    body = badge.content.decode().strip()
    assert body.startswith('<span class="live-status session-status"') and body.endswith("</span>")
    assert 'hx-trigger="every 2s"' in body and "Pending" in body
    assert "<html" not in body and "<main" not in body and "<table" not in body
    row = client.get(f"{url}/status?part=row", HTTP_HX_REQUEST="true").content.decode().strip()
    assert row.startswith(f'<tr data-session="{s.name}"') and "part=row" in row and 'hx-target="closest tr"' in row
    log = client.get(f"{url}/log", HTTP_HX_REQUEST="true")
    assert log.status_code == 200 and "hx-get" in log.content.decode()

    s = drive(world, s)
    assert s.phase == "Completed", (s.phase, s.reason, s.message)
    badge = client.get(f"{url}/status", HTTP_HX_REQUEST="true")
    assert badge.status_code == 286  # htmx stops polling
    body = badge.content.decode()
    assert 'data-phase="Completed"' in body and "hx-get" not in body and "hx-trigger" not in body
    row = client.get(f"{url}/status?part=row", HTTP_HX_REQUEST="true")
    assert row.status_code == 286 and "hx-get" not in row.content.decode()
    assert re.search(r'class="duration">\d+ (s|min)', row.content.decode())
    summary = client.get(f"{url}/status?part=summary", HTTP_HX_REQUEST="true")
    assert summary.status_code == 286 and "hx-get" not in summary.content.decode()
    body = summary.content.decode()
    assert "Simulated answer: say hello" in body  # the runner's summary
    # The history and conditions come along, swapped in by their ids (out of band).
    assert '<section class="card table-scroll" id="session-history"' in body and "the runner finished" in body
    assert 'id="session-conditions"' in body and body.count('hx-swap-oob="true"') == 2
    log = client.get(f"{url}/log?tail=all", HTTP_HX_REQUEST="true")
    assert log.status_code == 286 and "hx-get" not in log.content.decode()
    assert "Pier's copy" in log.content.decode() and "pier-runner (simulated)" in log.content.decode()
    listed = client.get(world["base"]).content.decode()
    assert 'data-phase="Completed"' in listed and "hx-get" not in listed.split("<tbody>")[1].split("</tbody>")[0]


def test_the_log_is_live_while_the_runner_runs_with_its_tail(client, world):
    s = drive(world, start(world, "eddie", prompt="take your time pier:sleep=600"), until=("Running",))
    url = f"{world['base']}/{s.name}"
    signed_in(client, world, "viv")
    page = client.get(url).content.decode()
    assert "Live from the runner's pod" in page and "pier-runner (simulated)" in page
    assert f'hx-get="{url}/log?tail=500"' in page
    log = client.get(f"{url}/log?tail=1", HTTP_HX_REQUEST="true")
    assert log.status_code == 200 and "the last 1 line" in log.content.decode()
    assert client.get(f"{url}/log", {"tail": "\u00b2"}, HTTP_HX_REQUEST="true").status_code == 200  # the default tail
    text = re.search(r'<pre[^>]*id="log-text"[^>]*>(.*?)</pre>', log.content.decode(), re.S).group(1)
    assert len(text.strip().splitlines()) == 1
    # The cluster does not answer: Pier's copy, saying why, and the page keeps polling.
    kubehelp.inject_fault(verb="get", resource="pods/log", status=503, times=1)
    try:
        log = client.get(f"{url}/log", HTTP_HX_REQUEST="true")
    finally:
        kubehelp.clear_faults()
    assert log.status_code == 200 and 'id="log-problem"' in log.content.decode() and "hx-get" in log.content.decode()


def test_an_editor_clones_into_this_project_or_another_they_may_edit(client, world, users, unique_slug):
    alpha, bob = world["tenant"], users["bob"]
    with tenant_context(alpha):
        other = project_services.project_create(tenant=alpha, slug=unique_slug("other"), acting_user=bob)
        project_services.grant_add(tenant=alpha, project=other, kind="user", name="eddie", role="edit",
                                   acting_user=bob, access=ADMIN)
        reconcile.run(other.pk)
        hidden = project_services.project_create(tenant=alpha, slug=unique_slug("hidden"), acting_user=bob)
    s = start(world, "eddie", display_name="Original", timeout_seconds=900, env=[{"name": "A", "value": "1"}])
    url = f"{world['base']}/{s.name}"
    signed_in(client, world, "eddie")
    page = client.get(url).content.decode()
    choices = re.findall(r'<option value="([^"]+)"', page.split('id="clone-session"')[1])
    assert choices == [world["project"].slug, other.slug]  # this project first; not one they cannot see

    response = client.post(f"{url}/clone", {"project": other.slug})
    assert response.status_code == 302
    with tenant_context(alpha):
        clone = AgenticSession.objects.get(project=other)
    assert response["Location"] == f"/t/alpha/projects/{other.slug}/sessions/{clone.name}"
    assert clone.cloned_from == f"{world['project'].slug}/{s.name}" and clone.created_by_name == "eddie"
    assert (clone.prompt, clone.timeout_seconds, clone.env) == (s.prompt, 900, s.env)
    page = client.get(response["Location"]).content.decode()
    assert f"a clone of {s.name}" in page and f'href="{url}"' in page  # "Cloned from" links back

    assert client.post(f"{url}/clone", {}).status_code == 302  # nothing chosen: this project
    assert client.post(f"{url}/clone", {"project": hidden.slug}).status_code == 400
    with tenant_context(alpha):
        assert AgenticSession.objects.filter(project=world["project"]).count() == 2
        assert not AgenticSession.objects.filter(project=hidden).exists()

    signed_in(client, world, "viv")
    assert "Clone session" not in client.get(url).content.decode()
    assert client.post(f"{url}/clone", {}).status_code == 403


def test_a_keys_sessions_are_a_link_away_and_the_list_filters(client, world, users):
    alpha, project = world["tenant"], world["project"]
    with tenant_context(alpha):
        key, token = project_services.key_create(tenant=alpha, project=project, name="ci", role="edit",
                                                 acting_user=users["bob"], access=ADMIN)
    automation = APIClient()
    automation.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    by_key = automation.post(f"/api/v1/tenants/alpha/projects/{project.slug}/sessions", {"prompt": "from ci"},
                             format="json").json()["name"]
    by_person = start(world, "eddie", prompt="from eddie").name

    signed_in(client, world, "bob")
    keys = client.get(f"/t/alpha/projects/{project.slug}/keys").content.decode()
    assert f'href="{world["base"]}?key={key.pk}"' in keys
    listed = client.get(f"{world['base']}?key={key.pk}").content.decode()
    assert f'data-session="{by_key}"' in listed and f'data-session="{by_person}"' not in listed
    assert 'id="key-filter"' in listed
    row = listed.split(f'data-session="{by_key}"')[1].split("</tr>")[0]
    assert "creator-key" in row and ">key</span>" in row and "ci" in row and "issued by bob" in row
    assert client.get(f"{world['base']}?key=999999").status_code == 404
    assert client.get(world["base"], {"key": "\u00b2"}).status_code == 404  # "²" is no key's number

    everyone = client.get(world["base"]).content.decode()
    assert f'data-session="{by_key}"' in everyone and f'data-session="{by_person}"' in everyone
    mine = client.get(f"{world['base']}?created_by=eddie").content.decode()
    assert f'data-session="{by_person}"' in mine and f'data-session="{by_key}"' not in mine
    assert "No session matches." in client.get(f"{world['base']}?phase=Completed").content.decode()


def test_the_list_reads_the_same_number_of_rows_whatever_the_page_holds(client, world, users):
    signed_in(client, world, "bob")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(world["base"]).status_code == 200
        # Not counted: the schema switch after the test's own tenant_context.
        return sum(1 for q in captured.captured_queries if not q["sql"].startswith("SET search_path"))

    start(world, "eddie")
    queries()  # the first request also fills caches (the organization, the session)
    few = queries()
    for i in range(5):
        start(world, "edna" if i % 2 else "eddie", prompt=f"more {i}")
    assert queries() == few


def test_the_runner_secret_page_is_write_only(client, world):
    """Project admins set and replace it; the page shows which keys it holds, never a value, not
    even next to an error; viewers see only whether it is set."""
    from portal import kube

    base, namespace = world["base"], world["project"].namespace
    secret_url = base.removesuffix("/sessions") + "/runner-secret"
    bob = signed_in(client, world, "bob")
    value = "sk-page-secret-42"
    r = bob.post(secret_url, {"values": f"OPENAI_API_KEY={value}\nOPENAI_BASE_URL=https://llm.example/v1\n"})
    assert r.status_code == 302
    shown = bob.get(base).content.decode()
    assert "OPENAI_API_KEY, OPENAI_BASE_URL" in shown and value not in shown
    assert kube.get("Secret", "pier-runner", namespace) is not None
    bad = bob.post(secret_url, {"values": f"PIER_X={value}"})
    body = bad.content.decode()
    assert bad.status_code == 400 and value not in body
    assert "not a usable variable name" in field_error(body, "id_values")
    broken = bob.post(secret_url, {"values": f"no equals sign {value}"})
    assert broken.status_code == 400 and value not in broken.content.decode()
    assert "Line 1" in field_error(broken.content.decode(), "id_values")
    viewer = signed_in(client, world, "viv")
    seen = viewer.get(base).content.decode()
    assert "OPENAI_API_KEY" in seen and 'name="values"' not in seen
    assert viewer.post(secret_url, {"values": "A=b"}).status_code == 403
    bob = signed_in(client, world, "bob")
    assert bob.post(secret_url.replace("runner-secret", "runner-secret/delete")).status_code == 302
    assert kube.get("Secret", "pier-runner", namespace) is None
    assert "Not set" in bob.get(base).content.decode()
