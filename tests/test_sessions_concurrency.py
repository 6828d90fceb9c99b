"""Sessions under concurrency (committed data, real transactions in threads): 50 creates at once
give 50 sessions with 50 names, and two admissions at once never pass a running limit."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django_tenants.utils import tenant_context

from conftest import delete_now, provision_now
from sessions import limits, services
from sessions.controller import SESSIONS
from sessions.models import AgenticSession
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access

ADMIN = Access("admin", "test")


@pytest.fixture
def org(committed, unique_slug):
    slug = unique_slug("conc")
    tenant = provision_now(slug, "bob")
    bob = get_user_model().objects.get(username="bob")
    with tenant_context(tenant):
        project = project_services.project_create(tenant=tenant, slug="work", acting_user=bob)
        reconcile.run(project.pk)
        project.refresh_from_db()
    yield tenant, project, bob
    delete_now(tenant)


def _in_threads(count: int, work) -> list:
    outcomes: list = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            outcomes.append(work(i))
        except Exception as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_fifty_concurrent_creates_give_fifty_distinct_sessions(org, monkeypatch):
    tenant, project, bob = org
    real = services.new_name
    drawn = set()

    def clashing(base: str) -> str:
        # Every create first draws the same name, as timestamp names did for a peer: the unique
        # name and the retry must sort it out.
        if threading.get_ident() not in drawn:
            drawn.add(threading.get_ident())
            return "same-name-000000"
        return real(base)

    monkeypatch.setattr(services, "new_name", clashing)

    def create(i: int):
        connection.set_tenant(tenant)
        session, created = services.session_create(tenant=tenant, project=project, acting_user=bob, access=ADMIN,
                                                   prompt=f"task {i}")
        return session.name

    names = _in_threads(50, create)
    assert all(isinstance(n, str) for n in names), [n for n in names if not isinstance(n, str)][:3]
    assert len(set(names)) == 50
    with tenant_context(tenant):
        assert AgenticSession.objects.count() == 50


def _admit_both_at_once(tenant, a, b, monkeypatch) -> list:
    """Two workers admit `a` and `b` at the same moment; each stops right after its admission
    decision (raising Admitted if it took a slot). Returns the outcomes, sorted."""
    real = limits.waiting_reason

    def slow(s, t):
        answer = real(s, t)
        threading.Event().wait(0.5)  # both decide before either commits: only counting the other as
        # older-and-waiting (or running) keeps the second from taking the same slot
        return answer

    class Admitted(Exception):
        pass

    def stop_after_admission(self, s, t):
        raise Admitted()

    monkeypatch.setattr(limits, "waiting_reason", slow)
    monkeypatch.setattr(type(SESSIONS), "_custom_resource", stop_after_admission)

    def admit(i: int):
        connection.set_tenant(tenant)
        SESSIONS.run([a.pk, b.pk][i])
        return "waiting"

    return sorted(type(o).__name__ if isinstance(o, Exception) else o for o in _in_threads(2, admit))


def test_two_admissions_at_once_never_pass_the_running_limit(org, monkeypatch):
    tenant, project, bob = org
    with tenant_context(tenant):
        project_services.project_update(tenant=tenant, project=project, acting_user=bob, access=ADMIN, merge=True,
                                        config_overrides={"sessions.running": "1"})
        a, _ = services.session_create(tenant=tenant, project=project, acting_user=bob, access=ADMIN, prompt="a")
        b, _ = services.session_create(tenant=tenant, project=project, acting_user=bob, access=ADMIN, prompt="b")
    assert _admit_both_at_once(tenant, a, b, monkeypatch) == ["Admitted", "waiting"]
    with tenant_context(tenant):
        phases = sorted(AgenticSession.objects.values_list("phase", flat=True))
    assert phases == ["Creating", "Pending"]


def test_two_admissions_at_once_in_two_projects_never_pass_the_organizations_limit(org, monkeypatch):
    from tenants.models import Tenant

    tenant, project, bob = org
    Tenant.objects.filter(pk=tenant.pk).update(max_running_sessions=1)
    with tenant_context(tenant):
        other = project_services.project_create(tenant=tenant, slug="other", acting_user=bob)
        reconcile.run(other.pk)
        other.refresh_from_db()
        a, _ = services.session_create(tenant=tenant, project=project, acting_user=bob, access=ADMIN, prompt="a")
        b, _ = services.session_create(tenant=tenant, project=other, acting_user=bob, access=ADMIN, prompt="b")
    assert _admit_both_at_once(tenant, a, b, monkeypatch) == ["Admitted", "waiting"]
    with tenant_context(tenant):
        waiting = AgenticSession.objects.get(phase="Pending")
    assert waiting.message.startswith("waiting: ") and "in this organization" in waiting.message


def test_deleting_an_organization_removes_its_sessions_custom_resources_before_its_namespaces(
        committed, unique_slug, monkeypatch):
    from portal import kube
    from sessions import cluster
    from test_sessions import drive

    tenant = provision_now(unique_slug("gone"), "bob")
    bob = get_user_model().objects.get(username="bob")
    with tenant_context(tenant):
        project = project_services.project_create(tenant=tenant, slug="work", acting_user=bob)
        reconcile.run(project.pk)
        project.refresh_from_db()
        s, _ = services.session_create(tenant=tenant, project=project, acting_user=bob, access=ADMIN,
                                       prompt="still running pier:sleep=600")
    s = drive(tenant, s, until=("Running",), seconds=15)
    assert s.phase == "Running"
    deleted = []
    real_delete = kube.delete

    def recording(kind, name, namespace=None, **kwargs):
        deleted.append((kind, name))
        return real_delete(kind, name, namespace, **kwargs)

    monkeypatch.setattr(kube, "delete", recording)
    delete_now(tenant)
    assert deleted.index((cluster.SESSION_KIND, s.name)) < deleted.index(("Namespace", project.namespace))
    assert kube.get(cluster.SESSION_KIND, s.name, project.namespace) is None
