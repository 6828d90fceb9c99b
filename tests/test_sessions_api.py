"""The sessions API as people and keys use it: start (with Idempotency-Key), read, stop, clone,
delete, logs; who may do which; bad input named by its field."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from portal.models import AuditEvent
from sessions.models import AgenticSession
from tenants.projects import reconcile
from tenants.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(api, users, alpha, unique_slug):
    """A ready project bob created (admin by creation), alice owns the organization; carol is
    outside it; dave (an organization admin) is a project admin."""
    slug = unique_slug("sapi")
    assert api(users["bob"]).post("/api/v1/tenants/alpha/projects", {"slug": slug}, format="json").status_code == 202
    with tenant_context(alpha):
        reconcile.run(Project.objects.get(slug=slug).pk)
    return slug


def url(slug: str, tail: str = "") -> str:
    return f"/api/v1/tenants/alpha/projects/{slug}/sessions{tail}"


def grant(api, users, slug, who, role):
    r = api(users["bob"]).post(f"/api/v1/tenants/alpha/projects/{slug}/grants",
                               {"kind": "user", "name": who, "role": role}, format="json")
    assert r.status_code == 201, r.content


def key(api, users, slug, role) -> APIClient:
    r = api(users["bob"]).post(f"/api/v1/tenants/alpha/projects/{slug}/keys", {"name": f"k-{role}", "role": role},
                               format="json")
    assert r.status_code == 201, r.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['token']}")
    return client


def test_an_editor_starts_a_session_and_reads_it_back(api, users, alpha, project):
    r = api(users["bob"]).post(url(project), {"prompt": "Fix the login bug", "display_name": "Login fix",
                                              "llm": {"model": "m", "temperature": 0.5, "max_tokens": 300},
                                              "timeout_seconds": 900}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["phase"] == "Pending" and body["name"].startswith("login-fix-")
    assert body["created_by"] == {"kind": "user", "name": "bob"}
    assert body["llm"] == {"model": "m", "temperature": 0.5, "max_tokens": 300}
    assert r["Location"].endswith(f"/sessions/{body['name']}")
    listed = api(users["bob"]).get(url(project)).json()
    assert [s["name"] for s in listed["results"]] == [body["name"]]
    assert api(users["bob"]).get(url(project, f"/{body['name']}")).json()["timeout_seconds"] == 900
    assert AuditEvent.objects.filter(action="session.create", target=f"{project}/{body['name']}",
                                     outcome="success").exists()


def test_a_retry_with_the_same_idempotency_key_gets_the_first_session(api, users, project):
    client = api(users["bob"])
    first = client.post(url(project), {"prompt": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post(url(project), {"prompt": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["name"] == first.json()["name"] and again["Idempotent-Replayed"] == "true"
    other = client.post(url(project), {"prompt": "something else"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get(url(project)).json()["count"] == 1


@pytest.mark.parametrize("body, field", [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 7}, "prompt"),
    ({"prompt": "x" * 100_001}, "prompt"),
    ({"prompt": "p", "timeout_seconds": 10**9}, "timeout_seconds"),
    ({"prompt": "p", "timeout_seconds": "soon"}, "timeout_seconds"),
    ({"prompt": "p", "llm": {"temperature": 9}}, "llm.temperature"),
    ({"prompt": "p", "llm": {"max_tokens": 0}}, "llm.max_tokens"),
    ({"prompt": "p", "llm": "gpt"}, "llm"),
    ({"prompt": "p", "repos": [{"url": "not a url"}]}, "repos[0].url"),
    ({"prompt": "p", "repos": [{"url": "https://x/y.git", "branch": "../etc"}]}, "repos[0].branch"),
    ({"prompt": "p", "env": [{"name": "PIER_SESSION_FILE", "value": "/x"}]}, "env[0].name"),
    ({"prompt": "p", "env": [{"name": "1BAD"}]}, "env[0].name"),
    ({"prompt": "p", "env": "A=B"}, "env"),
    ({"prompt": "p", "colour": "red"}, "colour"),
    ({"prompt": "p", "repos": [{"url": "https://x/y.git", "token": "t"}]}, "repos[0]"),
    # Credentials in a URL would be shown to every viewer: they belong in the runner secret.
    ({"prompt": "p", "repos": [{"url": "https://user:tok@github.com/a/b.git"}]}, "repos[0].url"),
    ({"prompt": "p", "repos": [{"url": "https://ghp_token@github.com/a/b.git"}]}, "repos[0].url"),
    ({"prompt": "p", "repos": [{"url": "ssh://git:pw@example.com/a/b.git"}]}, "repos[0].url"),
    ({"prompt": "p", "repos": [{"url": "http://169.254.169.254/latest"}]}, "repos[0].url"),
])
def test_bad_input_names_the_field_and_starts_nothing(api, users, project, body, field):
    r = api(users["bob"]).post(url(project), body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["error"]["details"] or r.json()["error"]["message"].startswith(field), r.json()
    assert api(users["bob"]).get(url(project)).json()["count"] == 0


def test_every_bad_field_is_named_at_once(api, users, project):
    body = {"prompt": "  ", "timeout_seconds": 10**9, "llm": {"temperature": 9, "max_tokens": 0},
            "repos": [{"url": "https://x/y.git"}, {"url": "nope"}, {"url": "https://x/z.git", "branch": "../etc"}],
            "env": [{"name": "1BAD"}, {"name": "OK", "value": "1"}, {"name": "PIER_X"}]}
    r = api(users["bob"]).post(url(project), body, format="json")
    assert r.status_code == 400, r.content
    assert set(r.json()["error"]["details"]) == {"prompt", "timeout_seconds", "llm.temperature", "llm.max_tokens",
                                                  "repos[1].url", "repos[2].branch", "env[0].name", "env[2].name"}
    assert api(users["bob"]).get(url(project)).json()["count"] == 0


def test_git_urls_with_a_user_but_no_secret_are_accepted():
    from sessions.services import clean_repos

    urls = ["ssh://git@example.com/a/b.git", "git@github.com:a/b.git", "https://github.com/a/b.git",
            "git://example.com/a/b.git"]
    assert [r["url"] for r in clean_repos([{"url": u} for u in urls])] == urls


def test_a_timeout_above_the_maximum_is_refused_naming_the_maximum(api, users, project):
    bob = api(users["bob"])
    r = bob.patch(f"/api/v1/tenants/alpha/projects/{project}", {"config_overrides": {"sessions.max_timeout": "3600"}},
                  format="json")
    assert r.status_code == 200, r.content
    r = bob.post(url(project), {"prompt": "p", "timeout_seconds": 3601}, format="json")
    assert r.status_code == 400 and "3600" in r.json()["error"]["message"]
    assert bob.post(url(project), {"prompt": "p", "timeout_seconds": 3600}, format="json").status_code == 201
    r = bob.patch(f"/api/v1/tenants/alpha/projects/{project}",
                  {"config_overrides": {"sessions.max_timeout": "4000", "sessions.running": "2"}}, format="json")
    assert r.status_code == 200, r.content
    r = bob.post(url(project), {"prompt": "p", "timeout_seconds": 4001}, format="json")
    assert r.status_code == 400 and "4000" in r.json()["error"]["message"]
    assert bob.post(url(project), {"prompt": "p", "timeout_seconds": 4000}, format="json").status_code == 201
    # Pier's own counts are plain whole numbers, and none leaves a project where no session can
    # run or be given a timeout (the shortest timeout is 60 s).
    for key, value in [("sessions.max_timeout", "59"), ("sessions.max_timeout", "0"), ("sessions.max_timeout", "4k"),
                       ("sessions.max_timeout", "1e2"), ("sessions.running", "0"), ("sessions.running", "1Ki")]:
        r = bob.patch(f"/api/v1/tenants/alpha/projects/{project}", {"config_overrides": {key: value}}, format="json")
        assert r.status_code == 400 and f"config_overrides.{key}" in r.json()["error"]["details"], (key, value)
    # Above the platform's ceiling, the project cannot even raise its maximum.
    r = bob.patch(f"/api/v1/tenants/alpha/projects/{project}", {"config_overrides": {"sessions.max_timeout": "99999999"}},
                  format="json")
    assert r.status_code == 400 and "sessions.max_timeout" in str(r.json()["error"])


def test_who_may_start_stop_and_delete(api, users, alpha, project):
    grant(api, users, project, "alice", "view")  # alice owns the organization: admin anyway
    bob = api(users["bob"])
    s = bob.post(url(project), {"prompt": "mine"}, format="json").json()["name"]
    # carol is not in the organization: the project does not exist for her.
    assert api(users["carol"]).get(url(project)).status_code == 404
    viewer = key(api, users, project, "view")
    assert viewer.get(url(project)).status_code == 200
    assert viewer.post(url(project), {"prompt": "no"}, format="json").status_code == 403
    editor = key(api, users, project, "edit")
    theirs = editor.post(url(project), {"prompt": "by a key"}, format="json")
    assert theirs.status_code == 201 and theirs.json()["created_by"] == {"kind": "key", "name": "k-edit"}
    # An editor key stops only what it started; bob (project admin) may stop anything.
    assert editor.post(url(project, f"/{s}/stop")).status_code == 403
    assert editor.post(url(project, f"/{theirs.json()['name']}/stop")).status_code == 202
    assert bob.post(url(project, f"/{s}/stop")).status_code == 202
    assert AuditEvent.objects.filter(action="session.stop", target=f"{project}/{s}", actor="bob").exists()
    assert AuditEvent.objects.filter(action="session.stop", outcome="denied").exists()
    # Deleting needs admin.
    assert editor.delete(url(project, f"/{s}")).status_code == 403
    assert bob.delete(url(project, f"/{s}")).status_code == 202
    assert bob.get(url(project, f"/{s}")).status_code == 404


def test_an_editor_person_stops_only_their_own_sessions(api, users, alpha, project):
    grant(api, users, project, "dave", "edit")  # dave is an organization admin: project admin anyway
    with tenant_context(alpha):
        from tenants.models import Membership

        Membership.objects.filter(tenant=alpha, user=users["dave"]).update(role="member")
    grant(api, users, project, "alice", "edit")
    s = api(users["bob"]).post(url(project), {"prompt": "bob's"}, format="json").json()["name"]
    dave = api(users["dave"])
    r = dave.post(url(project, f"/{s}/stop"))
    assert r.status_code == 403 and "started" in r.json()["error"]["message"]
    own = dave.post(url(project), {"prompt": "dave's"}, format="json").json()["name"]
    assert dave.post(url(project, f"/{own}/stop")).status_code == 202
    assert dave.post(url(project, f"/{own}/stop")).status_code == 202  # asking twice changes nothing


def test_clone_into_another_project_the_caller_may_edit(api, users, alpha, project, unique_slug):
    bob = api(users["bob"])
    s = bob.post(url(project), {"prompt": "clone me", "display_name": "Orig", "repos": [
        {"url": "https://example.com/a.git", "branch": "main"}]}, format="json").json()
    other = unique_slug("sapi2")
    assert bob.post("/api/v1/tenants/alpha/projects", {"slug": other}, format="json").status_code == 202
    with tenant_context(alpha):
        reconcile.run(Project.objects.get(slug=other).pk)
    r = bob.post(url(project, f"/{s['name']}/clone"), {"project": other}, format="json")
    assert r.status_code == 201, r.content
    clone = r.json()
    assert clone["project"] == other and clone["name"] != s["name"] and clone["prompt"] == "clone me"
    assert clone["repos"] == s["repos"] and clone["cloned_from"] == f"{project}/{s['name']}"
    again = bob.post(url(project, f"/{s['name']}/clone"), {}, format="json").json()
    assert again["project"] == project and again["name"] not in (s["name"], clone["name"])
    # Into a project the caller cannot see: 404, as any other tenant's object.
    assert api(users["carol"]).post(url(project, f"/{s['name']}/clone"), {"project": other},
                                    format="json").status_code == 404


def test_logs_while_running_come_from_the_cluster_and_afterwards_from_pier(api, users, alpha, project, settings):
    import time

    import kubehelp
    from test_sessions import drive

    bob = api(users["bob"])
    name = bob.post(url(project), {"prompt": "say hello pier:sleep=30"}, format="json").json()["name"]
    with tenant_context(alpha):
        s = AgenticSession.objects.get(name=name)
    s = drive(alpha, s, until=("Running",), seconds=15, step=1)
    assert s.phase == "Running"
    live = bob.get(url(project, f"/{name}/logs")).json()
    assert live["source"] == "live" and "prompt of" in live["text"]
    viewer = key(api, users, project, "view")
    assert len(viewer.get(url(project, f"/{name}/logs?tail=1")).json()["text"].splitlines()) == 1
    kubehelp.inject_fault(verb="get", resource="pods/log", status=503, times=1)
    down = bob.get(url(project, f"/{name}/logs"))
    assert down.status_code == 503 and down.json()["error"]["code"] == "cluster_unavailable"
    # A cluster slower than the in-request timeout (a task would wait for it): 503, not a hung page.
    settings.PIER_KUBE_REQUEST_TIMEOUT = (1.0, 0.3)
    kubehelp.inject_fault(verb="get", resource="pods/log", latency=1.0, times=2)  # the call and its one retry
    slow = bob.get(url(project, f"/{name}/logs"))
    assert slow.status_code == 503 and slow.json()["error"]["code"] == "cluster_unavailable"
    kubehelp.clear_faults()
    from portal import kube

    assert kube.list_objects("Pod", f"alpha-{project}", label_selector=f"pier.dev/session={name}")
    assert bob.post(url(project, f"/{name}/stop")).status_code == 202
    s = drive(alpha, s, until=("Stopped",), seconds=15, step=1)  # asked to end; once it has, its Job is deleted
    for _ in range(50):  # its pod (and the cluster's copy of the log) goes with the Job
        if not kube.list_objects("Pod", f"alpha-{project}", label_selector=f"pier.dev/session={name}"):
            break
        time.sleep(0.1)
    assert kube.list_objects("Pod", f"alpha-{project}", label_selector=f"pier.dev/session={name}") == []
    after = bob.get(url(project, f"/{name}/logs")).json()
    assert after["source"] == "captured" and "prompt of" in after["text"]
    assert "stopped (SIGTERM)" in after["text"].strip().splitlines()[-1]  # what the runner said as it ended
    for bad in ("x", "\u00b2", "-1", "9" * 40):  # "²" passes str.isdigit(), not int()
        assert bob.get(url(project, f"/{name}/logs"), {"tail": bad}).status_code == 400, bad


def test_the_runner_secret_is_write_only_and_never_echoed_or_logged(api, users, alpha, project, caplog):
    import base64
    import logging

    import kubehelp
    from portal import kube

    caplog.set_level(logging.DEBUG)
    secret_url = f"/api/v1/tenants/alpha/projects/{project}/runner-secret"
    bob = api(users["bob"])
    value = "sk-very-secret-value-123"
    r = bob.put(secret_url, {"data": {"OPENAI_API_KEY": value, "OPENAI_BASE_URL": "https://llm.example/v1"}},
                format="json")
    assert r.status_code == 200 and r.json()["keys"] == ["OPENAI_API_KEY", "OPENAI_BASE_URL"]
    assert value not in r.content.decode() and r["Cache-Control"] == "no-store"
    assert bob.get(secret_url).json()["keys"] == ["OPENAI_API_KEY", "OPENAI_BASE_URL"]
    namespace = f"alpha-{project}"
    stored = kube.get("Secret", "pier-runner", namespace)
    assert base64.b64decode(stored["data"]["OPENAI_API_KEY"]).decode() == value
    # Replacing drops the keys not given; the cluster failing changes nothing and says 503.
    assert bob.put(secret_url, {"data": {"OPENAI_API_KEY": "sk-2"}}, format="json").json()["keys"] == ["OPENAI_API_KEY"]
    assert set(kube.get("Secret", "pier-runner", namespace)["data"]) == {"OPENAI_API_KEY"}
    kubehelp.inject_fault(verb="patch", resource="secrets", status=503, times=1)
    down = bob.put(secret_url, {"data": {"OTHER": "sk-3"}}, format="json")
    assert down.status_code == 503 and down.json()["error"]["code"] == "cluster_unavailable"
    assert bob.get(secret_url).json()["keys"] == ["OPENAI_API_KEY"]
    assert set(kube.get("Secret", "pier-runner", namespace)["data"]) == {"OPENAI_API_KEY"}
    # Bad input names the field and never echoes a value.
    bad = bob.put(secret_url, {"data": {"PIER_X": value}}, format="json")
    assert bad.status_code == 400 and value not in bad.content.decode()
    pasted = "c2stdmVyeS1zZWNyZXQ+dmFsdWU/MTIz"  # a value pasted where a name belongs
    bad = bob.put(secret_url, {"data": {"OK": "1", pasted: ""}}, format="json")
    assert bad.status_code == 400 and "key number 2" in bad.json()["error"]["message"]
    assert pasted[:8] not in bad.content.decode()
    # Editors cannot write it through Pier; they see which keys are set.
    editor = key(api, users, project, "edit")
    assert editor.put(secret_url, {"data": {"OPENAI_API_KEY": "mine"}}, format="json").status_code == 403
    assert editor.get(secret_url).json()["keys"] == ["OPENAI_API_KEY"]
    from portal.models import AuditEvent

    events = list(AuditEvent.objects.filter(action__startswith="project.runner_secret").values_list("details", flat=True))
    assert events and value not in str(events)
    assert value not in caplog.text and "sk-2" not in caplog.text
    assert bob.delete(secret_url).status_code == 204
    assert kube.get("Secret", "pier-runner", namespace) is None and bob.get(secret_url).json()["keys"] == []
