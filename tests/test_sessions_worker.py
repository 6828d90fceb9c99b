"""Sessions driven by real Celery worker processes (Redis broker): a worker killed with SIGKILL in
the middle of making a session's objects leaves no duplicate, and the next worker converges; the
sync (what beat sends every few seconds) carries the run to its end."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django_tenants.utils import tenant_context

import kubehelp
from conftest import delete_now, provision_now, spawn_worker, stop_worker, wait_for
from portal import kube
from sessions import cluster
from sessions import services as session_services
from sessions.models import AgenticSession
from sessions.tasks import sync_sessions
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access

pytestmark = pytest.mark.worker


@pytest.fixture
def worker_env(worker_env):
    worker_env.update(PIER_SESSION_BACKOFF="0.2", PIER_NAMESPACE_POLL_SECONDS="0.2", CELERY_VISIBILITY_TIMEOUT="2")
    return worker_env


@pytest.fixture
def org(committed, unique_slug):
    staff = get_user_model().objects.get(username="staff")
    tenant = provision_now(unique_slug("sw"), "bob", acting_user=staff)
    bob = get_user_model().objects.get(username="bob")
    with tenant_context(tenant):
        project = project_services.project_create(tenant=tenant, slug="work", acting_user=bob)
        reconcile.run(project.pk)
        project.refresh_from_db()
    yield tenant, project, bob
    kubehelp.clear_faults()
    delete_now(tenant, acting_user=staff)


def _session(tenant, pk) -> AgenticSession:
    with tenant_context(tenant):
        return AgenticSession.objects.get(pk=pk)


def test_a_worker_killed_while_making_a_session_leaves_one_job_and_the_next_converges(worker_env, org):
    tenant, project, bob = org
    first = spawn_worker(worker_env)
    try:
        # The Job's apply hangs long enough to kill the worker between the ConfigMaps and the Job.
        kubehelp.inject_fault(verb="patch", resource="jobs", latency=4.0, times=1)
        with tenant_context(tenant), transaction.atomic():
            s, _ = session_services.session_create(tenant=tenant, project=project, acting_user=bob,
                                                   access=Access("admin", "test"), prompt="survive pier:sleep=2")
        wait_for(lambda: kube.get("ConfigMap", f"{s.name}-session", project.namespace) is not None, timeout=30,
                 message="the worker to be making the session's objects")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert _session(tenant, s.pk).job_uid == ""
    finally:
        stop_worker(first)
    # Not acknowledged by the dead worker: redelivered once older than the visibility timeout.
    time.sleep(2.5)
    second = spawn_worker(worker_env)
    try:
        def running_or_done() -> bool:
            sync_sessions.delay()  # what beat sends every PIER_SESSION_SYNC_SECONDS
            return _session(tenant, s.pk).phase in ("Running", "Completed")

        wait_for(running_or_done, timeout=60, interval=1.0, message="the session to start after the crash")
        jobs = kube.list_objects("Job", project.namespace, label_selector=f"pier.dev/session={s.name}")
        assert len(jobs) <= 1 and all(j["metadata"]["uid"] == _session(tenant, s.pk).job_uid for j in jobs)

        def completed() -> bool:
            sync_sessions.delay()
            return _session(tenant, s.pk).phase == "Completed"

        wait_for(completed, timeout=60, interval=1.0, message="the session to complete")
    finally:
        stop_worker(second)
    done = _session(tenant, s.pk)
    assert done.reason == "Completed" and "Simulated answer" in done.result
    assert kube.get("Job", cluster.job_name(done), project.namespace) is None
