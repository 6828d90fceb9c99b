"""Agentic sessions against the emulator: the controller (sessions/controller.py) drives the
custom resource and the runner Job through their lifecycle, and says why at every step."""

import json
import time

import pytest
from django_tenants.utils import tenant_context

import kubehelp
from portal import kube
from sessions import cluster
from sessions import services as session_services
from sessions.controller import SESSIONS
from sessions.models import AgenticSession
from tenants.projects import reconcile
from tenants.projects import services as project_services
from tenants.projects.access import Access

pytestmark = pytest.mark.django_db
EDIT, ADMIN = Access("edit", "test"), Access("admin", "test")


@pytest.fixture
def project(alpha, users, unique_slug):
    with tenant_context(alpha):
        p = project_services.project_create(tenant=alpha, slug=unique_slug("sess"), acting_user=users["alice"])
        reconcile.run(p.pk)
        p.refresh_from_db()
    return p


def start(alpha, project, user, **fields) -> AgenticSession:
    with tenant_context(alpha):
        s, created = session_services.session_create(tenant=alpha, project=project, acting_user=user,
                                                     access=fields.pop("access", EDIT), **fields)
    assert created
    return s


def drive(alpha, s: AgenticSession, *, until=AgenticSession.TERMINAL, seconds: float = 30.0, step: float = 2.0):
    """Run the controller (as the sync would) while the emulator's clock moves, until a phase."""
    deadline = time.monotonic() + seconds
    while True:
        with tenant_context(alpha):
            SESSIONS.run(s.pk)
            s.refresh_from_db()
        if s.phase in until or time.monotonic() > deadline:
            return s
        kubehelp.advance_clock(step)
        time.sleep(0.3)


def test_a_session_runs_to_completion_and_its_custom_resource_says_so(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="Summarise the README", display_name="Readme summary",
              llm={"model": "m1", "temperature": 0.2}, timeout_seconds=600)
    assert s.phase == "Pending" and s.name.startswith("readme-summary-")
    s = drive(alpha, s, until=("Creating", "Running", "Completed"), seconds=10)
    job = kube.get("Job", cluster.job_name(s), project.namespace)
    assert job["spec"]["activeDeadlineSeconds"] == 600 and job["spec"]["backoffLimit"] == 0
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "AgenticSession" and owner["name"] == s.name
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["containers"][0]["envFrom"][-1] == {"secretRef": {"name": "pier-runner", "optional": True}}
    config = kube.get("ConfigMap", f"{s.name}-session", project.namespace)
    assert json.loads(config["data"]["session.json"])["spec"]["prompt"] == "Summarise the README"

    s = drive(alpha, s)
    assert s.phase == "Completed", (s.phase, s.reason, s.message)
    assert s.start_time and s.completion_time and s.exit_code == 0
    cr = kube.get(cluster.SESSION_KIND, s.name, project.namespace)
    assert cr["status"]["phase"] == "Completed" and cr["status"]["completionTime"]
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None  # nothing runs any more
    with tenant_context(alpha):
        phases = list(s.events.order_by("at", "id").values_list("phase", flat=True))
    assert phases[0] == "Creating" and phases[-1] == "Completed"


def test_a_runner_that_exits_non_zero_fails_the_session_with_its_code(alpha, users, project):
    # The simulated runner exits with the code a prompt asks for, and reports why on its last line.
    s = start(alpha, project, users["alice"], prompt="break it pier:exit=3", timeout_seconds=600)
    s = drive(alpha, s)
    assert s.phase == "Failed" and s.reason == "RunnerError" and s.exit_code == 3
    reported = json.loads(s.log.strip().splitlines()[-1])["pier.dev/result"]["message"]
    assert s.message == f"the runner exited with code 3: {reported}"


def test_a_stopped_session_has_its_runner_removed_and_says_who_stopped_it(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="long one")
    s = drive(alpha, s, until=("Creating", "Running"), seconds=10)
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"], access=EDIT)
    s = drive(alpha, s)
    assert s.phase == "Stopped" and s.reason == "StoppedByUser" and "alice" in s.message
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None
