"""Agentic sessions against the emulator: the controller (sessions/controller.py) drives the
custom resource and the runner Job through their lifecycle, and says why at every step."""

import json
import time

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

import kubehelp
from portal import kube
from sessions import cluster, controller
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


def stops_audited(alpha, project, s) -> list[tuple[str, str]]:
    from portal.models import AuditEvent

    return [(e.actor, e.details.get("reason")) for e in AuditEvent.objects.filter(
        tenant=alpha.slug, action="session.stop", target=f"{project.slug}/{s.name}", outcome="success")]


def test_a_session_runs_to_completion_and_its_custom_resource_says_so(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="Summarise the README", display_name="Readme summary",
              llm={"model": "m1", "temperature": 0.2}, timeout_seconds=600)
    assert s.phase == "Pending" and s.name.startswith("readme-summary-")
    s = drive(alpha, s, until=("Creating", "Running", "Completed"), seconds=10)
    job = kube.get("Job", cluster.job_name(s), project.namespace)
    assert job["spec"]["backoffLimit"] == 0
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "AgenticSession" and owner["name"] == s.name
    pod_spec = job["spec"]["template"]["spec"]
    # The pod's deadline is the timeout (it keeps the pod and its log); the Job's is the backstop.
    assert pod_spec["activeDeadlineSeconds"] == 600 and job["spec"]["activeDeadlineSeconds"] == 660
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


def wait_for_pod(s: AgenticSession, namespace: str, *phases: str, seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while (pod := kube.get("Pod", s.runner_pod_name, namespace))["status"]["phase"] not in phases:
        assert time.monotonic() < deadline, pod["status"]
        time.sleep(0.1)
    return pod


def test_a_stopped_runner_is_sent_sigterm_and_what_it_wrote_as_it_ended_is_kept(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="long one pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"], access=EDIT)
        SESSIONS.run(s.pk)
        s.refresh_from_db()
    # Asked, as its timeout would: the pod's deadline lowered, so the kubelet stops the runner
    # and keeps the pod (and its log), where deleting the Job would take both at once.
    assert (s.phase, s.reason) == ("Running", "Stopping") and "alice" in s.message and "SIGTERM" in s.message
    assert kube.get("Pod", s.runner_pod_name, project.namespace)["spec"]["activeDeadlineSeconds"] == 1
    assert kube.get("Job", cluster.job_name(s), project.namespace) is not None  # its slot stays taken meanwhile
    s = drive(alpha, s)
    assert s.phase == "Stopped" and s.reason == "StoppedByUser" and "alice" in s.message and s.exit_code == 143
    assert "stopped (SIGTERM)" in s.log.strip().splitlines()[-1]  # the runner's last words
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None
    assert kube.get(cluster.SESSION_KIND, s.name, project.namespace)["status"]["phase"] == "Stopped"


def test_a_stop_that_comes_after_the_runner_ended_keeps_its_result(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="nearly done pier:sleep=20")
    s = drive(alpha, s, until=("Running",), seconds=15)
    kubehelp.advance_clock(30)  # it finishes before anyone looks again
    wait_for_pod(s, project.namespace, "Succeeded")
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"], access=EDIT)
    s = drive(alpha, s)
    assert (s.phase, s.reason, s.exit_code) == ("Completed", "Completed", 0)  # not Stopped, its answer lost
    assert s.result and s.result in s.log
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None


def test_a_stopped_runner_that_does_not_end_is_deleted_after_the_stop_grace(
        alpha, users, project, settings, monkeypatch, django_capture_on_commit_callbacks):
    from kubernetes import client

    from portal.controller import reconcile_object
    from sessions import tasks

    s = start(alpha, project, users["alice"], prompt="stuck pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    core = client.CoreV1Api(kube.api_client())
    node = kube.get("Pod", s.runner_pod_name, project.namespace)["spec"]["nodeName"]

    def node_ready(status: str) -> None:  # a node that stops answering: its kubelet acts on nothing
        conditions = [{**c, "status": status} if c["type"] == "Ready" else c
                      for c in core.read_node_status(node).to_dict()["status"]["conditions"]]
        core.patch_node_status(node, {"status": {"conditions": [
            {"type": c["type"], "status": c["status"], "reason": c["reason"] or "", "message": c["message"] or ""}
            for c in conditions]}})

    node_ready("False")
    try:
        with tenant_context(alpha):
            session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"],
                                          access=EDIT)
            SESSIONS.run(s.pk)
            time.sleep(0.5)
            SESSIONS.run(s.pk)  # the runner has its grace period: still asked, still running
            s.refresh_from_db()
            assert (s.phase, s.reason) == ("Running", "Stopping")
            assert kube.get("Pod", s.runner_pod_name, project.namespace)["status"]["phase"] == "Running"
        passes = []
        monkeypatch.setattr(reconcile_object, "apply_async", lambda args, **kw: passes.append(args[1]))
        _logs_sent(monkeypatch)
        with django_capture_on_commit_callbacks(execute=True):
            tasks.sync_sessions()
        assert s.pk not in passes  # within its grace: the sync leaves it to end
        settings.PIER_SESSION_STOP_SECONDS = 0  # past it
        with django_capture_on_commit_callbacks(execute=True):
            tasks.sync_sessions()
        assert s.pk in passes  # the sync sends the pass that deletes it
        with tenant_context(alpha):
            SESSIONS.run(s.pk)
            s.refresh_from_db()
        assert (s.phase, s.reason) == ("Stopped", "StoppedByUser") and s.exit_code is None
        assert kube.get("Job", cluster.job_name(s), project.namespace) is None
        assert "prompt of" in s.log  # what it wrote before it was asked is kept
    finally:
        node_ready("True")


def test_a_stop_whose_runner_delete_fails_keeps_its_slot_and_is_retried_until_nothing_runs(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="long one pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"], access=EDIT)
        SESSIONS.run(s.pk)  # asks the runner to end
    wait_for_pod(s, project.namespace, "Failed")
    kubehelp.inject_fault(verb="delete", resource="jobs", status=503, times=1)
    with tenant_context(alpha):
        with pytest.raises(kube.KubeError) as failure:
            SESSIONS.run(s.pk)
        s.refresh_from_db()
        assert s.phase == "Running"  # not Stopped while its runner may still run: the slot stays taken
        assert kube.get("Job", cluster.job_name(s), project.namespace) is not None
        assert SESSIONS.failed(s.pk, failure.value, final=False) is True  # the kernel retries it
    s = drive(alpha, s)
    assert s.phase == "Stopped" and s.reason == "StoppedByUser"
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None
    assert kube.get(cluster.SESSION_KIND, s.name, project.namespace)["status"]["phase"] == "Stopped"


def test_a_session_that_gave_up_has_its_runner_removed_by_the_net_pass(alpha, users, project):
    from sessions.tasks import reconcile_live_sessions

    s = start(alpha, project, users["alice"], prompt="stubborn pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        SESSIONS.failed(s.pk, RuntimeError("the cluster kept refusing"), final=True)
        s.refresh_from_db()
        assert (s.phase, s.reason) == ("Failed", "GaveUp")
        assert kube.get("Job", cluster.job_name(s), project.namespace) is not None
        reconcile_live_sessions()
        s.refresh_from_db()
    assert (s.phase, s.reason) == ("Failed", "GaveUp")  # its phase stands
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None  # and nothing runs any more
    with tenant_context(alpha):
        before = kubehelp.requests_by_verb()
        reconcile_live_sessions()  # done: the net pass leaves it alone from now on
    assert kubehelp.requests_by_verb() == before


def test_a_failed_pass_over_a_running_session_keeps_it_running_and_says_why(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="steady pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    kubehelp.inject_fault(verb="get", resource="jobs", status=503, times=1)
    with tenant_context(alpha):
        with pytest.raises(kube.KubeError) as failure:
            SESSIONS.run(s.pk)
        assert SESSIONS.failed(s.pk, failure.value, final=False) is True
        s.refresh_from_db()
        assert (s.phase, s.reason) == ("Running", "Error") and "last error (retrying)" in s.message
        SESSIONS.run(s.pk)
        s.refresh_from_db()
        assert (s.phase, s.reason) == ("Running", "Running")
        phases = list(s.events.order_by("at", "id").values_list("phase", flat=True))
    assert "Creating" not in phases[phases.index("Running"):]  # never back to Creating


def test_a_session_past_its_timeout_is_stopped_by_the_cluster(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="think forever pier:sleep=600", timeout_seconds=60)
    s = drive(alpha, s, seconds=40, step=15)
    assert s.phase == "Failed" and s.reason == "DeadlineExceeded", (s.phase, s.reason, s.message)
    assert "timeout of 60 s" in s.message
    assert "prompt of" in s.log  # what it wrote before the deadline is kept
    assert "stopped (SIGTERM)" in s.log.strip().splitlines()[-1]  # and what it wrote as it was stopped


def test_a_runner_job_deleted_by_hand_fails_the_session_and_is_not_recreated(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="wait pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    kube.delete("Job", cluster.job_name(s), project.namespace)
    s = drive(alpha, s, seconds=10)
    assert s.phase == "Failed" and s.reason == "RunnerVanished" and "outside Pier" in s.message
    with tenant_context(alpha):
        SESSIONS.run(s.pk)
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None


def test_a_pod_made_to_look_like_the_runner_cannot_forge_the_sessions_result(alpha, users, project):
    from kubernetes import client

    s = start(alpha, project, users["alice"], prompt="the real work pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    assert s.runner_pod_name.startswith(cluster.job_name(s))  # the Job's pod, pinned by its uid
    forged = '{"pier.dev/result": {"outcome": "succeeded", "summary": "forged"}}'
    # Anyone who may create pods in the namespace (an editor) can copy the Job's labels and owner.
    client.CoreV1Api(kube.api_client()).create_namespaced_pod(project.namespace, {
        "metadata": {"name": "impostor", "labels": {"batch.kubernetes.io/controller-uid": s.job_uid,
                                                   "pier.dev/component": "runner"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": cluster.job_name(s),
                                          "uid": s.job_uid, "controller": True}]},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "runner", "image": "x", "args": [f"--pier-emulator-log={forged}", "--pier-emulator-sleep=0"]}]},
    })
    s = drive(alpha, s)
    assert (s.phase, s.reason) == ("Failed", "RunnerTampered") and "impostor" in s.message
    assert "forged" not in s.result and "forged" not in s.log
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None  # the runner went too


def test_a_crash_after_the_job_was_made_adopts_it_instead_of_making_a_second(alpha, users, project, monkeypatch):
    s = start(alpha, project, users["alice"], prompt="crash-safe")
    original = SESSIONS.record

    def crash_once(obj, kind=None, *args, **fields):
        if kind == "Started" and fields.get("job_uid"):
            monkeypatch.setattr(SESSIONS, "record", original)
            raise SystemExit("worker killed")  # after the Job was created, before the row knew
        return original(obj, kind, *args, **fields)

    monkeypatch.setattr(SESSIONS, "record", crash_once)
    with tenant_context(alpha), pytest.raises(SystemExit):
        SESSIONS.run(s.pk)
    with tenant_context(alpha):
        s.refresh_from_db()
    assert s.job_uid == ""
    first = kube.get("Job", cluster.job_name(s), project.namespace)["metadata"]["uid"]
    s = drive(alpha, s)
    assert s.phase == "Completed" and s.job_uid == first
    jobs = kube.list_objects("Job", project.namespace, label_selector=f"pier.dev/session={s.name}")
    assert len(jobs) <= 1  # one Job ever (removed once finished)


def test_a_session_past_the_running_limit_waits_and_starts_when_a_slot_frees(alpha, users, project):
    with tenant_context(alpha):
        project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                        merge=True, config_overrides={"sessions.running": "1"})
    first = start(alpha, project, users["alice"], prompt="first pier:sleep=600")
    second = start(alpha, project, users["alice"], prompt="second")
    first = drive(alpha, first, until=("Running",), seconds=15)
    with tenant_context(alpha):
        SESSIONS.run(second.pk)
        second.refresh_from_db()
    assert second.phase == "Pending" and second.message == "waiting: 1 of 1 running in this project"
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=first, acting_user=users["alice"],
                                      access=ADMIN)
    drive(alpha, first)
    second = drive(alpha, second)
    assert second.phase == "Completed"


def test_the_organization_limit_is_shared_in_order_and_one_projects_queue_holds_back_no_other(
        alpha, users, project, unique_slug):
    from tenants.models import Tenant

    with tenant_context(alpha):
        other = project_services.project_create(tenant=alpha, slug=unique_slug("sess"), acting_user=users["alice"])
        reconcile.run(other.pk)
        other.refresh_from_db()
        project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                        merge=True, config_overrides={"sessions.running": "1"})
    Tenant.objects.filter(pk=alpha.pk).update(max_running_sessions=3)  # staff's limit (rolled back after)
    a1, a2, a3 = (start(alpha, project, users["alice"], prompt=f"a{n} pier:sleep=600") for n in (1, 2, 3))

    def run(*sessions):
        with tenant_context(alpha):
            for s in sessions:
                SESSIONS.run(s.pk)
                s.refresh_from_db()

    run(a1, a2, a3)
    assert (a1.phase, a2.phase, a3.phase) == ("Creating", "Pending", "Pending")
    assert a3.message == "waiting: 1 of 1 running in this project, 1 waiting before it"
    # a2 and a3 wait for their project's slot, not the organization's: b1 and b2 start.
    b1, b2, b3 = (start(alpha, other, users["alice"], prompt=f"b{n} pier:sleep=600") for n in (1, 2, 3))
    run(b1, b2, b3)
    assert (b1.phase, b2.phase, b3.phase) == ("Creating", "Creating", "Pending")
    assert b3.message == "waiting: 3 of 3 running in this organization"
    # a1 stops: a2, older than b3, takes the organization's slot it frees.
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=a1, acting_user=users["alice"],
                                      access=ADMIN)
    drive(alpha, a1)
    run(a1, b3)
    assert (a1.phase, b3.phase) == ("Stopped", "Pending")  # even when b3 looks first
    assert b3.message == "waiting: 2 of 3 running in this organization, 1 waiting before it"
    run(a2, a3, b3)
    assert (a2.phase, a3.phase, b3.phase) == ("Creating", "Pending", "Pending")
    assert b3.message == "waiting: 3 of 3 running in this organization"


def test_a_freed_slot_wakes_each_projects_oldest_waiting_session_past_a_long_queue(
        alpha, users, project, unique_slug, monkeypatch):
    from sessions import limits

    with tenant_context(alpha):
        other = project_services.project_create(tenant=alpha, slug=unique_slug("sess"), acting_user=users["alice"])
        reconcile.run(other.pk)
        other.refresh_from_db()
    queue = [start(alpha, project, users["alice"], prompt=f"a{n}") for n in range(12)]  # more than the oldest ten
    late = start(alpha, other, users["alice"], prompt="b, behind them all")
    woken = []
    monkeypatch.setattr(limits.controller, "enqueue", lambda label, pk, **kw: woken.append(pk))
    with tenant_context(alpha):
        limits.wake_waiting(queue[0])
    # One per project, the oldest: no other of a project may start before it, so waking the rest
    # of a long queue would only be passes that find it waiting.
    assert sorted(woken) == sorted([queue[1].pk, late.pk])
    woken.clear()
    with tenant_context(alpha):  # one took a slot: the next in its project looks, in case another is free
        limits.wake_waiting(queue[0], project_only=True)
    assert woken == [queue[1].pk]  # not the other project's: its head was woken already


def test_suspending_the_organization_stops_its_sessions_and_refuses_new_ones(alpha, users, project):
    from tenants import services as tenant_services

    s = start(alpha, project, users["alice"], prompt="long pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    tenant_services.tenant_suspend(tenant=alpha, acting_user=users["staff"])
    try:
        s = drive(alpha, s, seconds=10)
        assert s.phase == "Stopped" and s.reason == "TenantSuspended"
        assert stops_audited(alpha, project, s) == [("system", "TenantSuspended")]
        alpha.refresh_from_db()
        with tenant_context(alpha), pytest.raises(Exception) as refused:
            session_services.session_create(tenant=alpha, project=project, acting_user=users["alice"], access=EDIT,
                                            prompt="no")
        assert getattr(refused.value, "code", "") == "tenant_suspended"
    finally:
        tenant_services.tenant_resume(tenant=alpha, acting_user=users["staff"])
    with tenant_context(alpha):
        s.refresh_from_db()
    assert s.phase == "Stopped"  # resuming restarts nothing


def test_revoking_a_key_stops_the_sessions_it_started(alpha, users, project):
    with tenant_context(alpha):
        key, _token = project_services.key_create(tenant=alpha, project=project, name="bot", role="edit",
                                                  acting_user=users["alice"], access=ADMIN)
        from tenants.projects.authentication import KeyPrincipal

        s, _ = session_services.session_create(tenant=alpha, project=project, acting_user=KeyPrincipal(key),
                                               access=Access("edit", "key", is_key=True), prompt="bot work pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    assert s.created_by_kind == "key" and s.created_by_key_id == key.pk
    with tenant_context(alpha):
        project_services.key_revoke(tenant=alpha, project=project, key=key, acting_user=users["alice"], access=ADMIN)
        assert list(key.sessions.values_list("name", flat=True)) == [s.name]
    s = drive(alpha, s, seconds=10)
    assert s.phase == "Stopped" and s.reason == "KeyRevoked" and "bot was revoked by alice" in s.message
    assert stops_audited(alpha, project, s) == [("system", "KeyRevoked")]


def test_a_dedicated_organization_runs_new_sessions_on_its_own_nodes(alpha, users, project):
    from kubernetes import client

    from tenants import services as tenant_services

    core = client.CoreV1Api(kube.api_client())
    node = client.V1Node(metadata=client.V1ObjectMeta(name="alpha-node-1", labels={"pier.dev/tenant": "alpha"}),
                         spec=client.V1NodeSpec(taints=[client.V1Taint(key="pier.dev/tenant", value="alpha",
                                                                       effect="NoSchedule")]))
    tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="dedicated")
    alpha.refresh_from_db()
    try:
        with tenant_context(alpha):
            reconcile.run(project.pk)
        ns = kube.get("Namespace", project.namespace)
        assert ns["metadata"]["annotations"]["scheduler.alpha.kubernetes.io/node-selector"] == "pier.dev/tenant=alpha"
        # No node of its own yet: the runner cannot be placed, and the session says why.
        s = start(alpha, project, users["alice"], prompt="where am I pier:sleep=600")
        s = drive(alpha, s, until=("Running",), seconds=6)
        assert s.phase == "Creating" and s.reason == "Unschedulable" and "node" in s.message
        assert s.runtime_mode == "dedicated"
        core.create_node(node)
        s = drive(alpha, s, until=("Running",), seconds=15)
        pods = core.list_namespaced_pod(project.namespace, label_selector=f"pier.dev/session={s.name}").items
        assert [p.spec.node_name for p in pods] == ["alpha-node-1"]
        assert s.phase == "Running"
        # Back to shared: new sessions are shared; the running one finishes where it is.
        tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="shared")
        alpha.refresh_from_db()
        with tenant_context(alpha):
            reconcile.run(project.pk)
        annotations = kube.get("Namespace", project.namespace)["metadata"].get("annotations") or {}
        assert "scheduler.alpha.kubernetes.io/node-selector" not in annotations
        later = start(alpha, project, users["alice"], prompt="shared now")
        later = drive(alpha, later, until=("Creating", "Running", "Completed"), seconds=10)
        assert later.runtime_mode == "shared"
        with tenant_context(alpha):
            s.refresh_from_db()
        assert s.runtime_mode == "dedicated" and s.phase == "Running"
        assert core.read_namespaced_pod(pods[0].metadata.name, project.namespace).spec.node_name == "alpha-node-1"
    finally:
        tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="shared")
        try:
            core.delete_node("alpha-node-1")
        except client.ApiException:
            pass


def test_a_runner_no_node_can_take_fails_its_session_after_the_wait_with_the_schedulers_message(
        alpha, users, project, settings):
    from tenants import services as tenant_services

    settings.PIER_SESSION_UNSCHEDULABLE_SECONDS = 2
    kubehelp.advance_clock(3600)  # the cluster's clock an hour ahead of Pier's: the wait is by Pier's
    tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="dedicated")
    try:
        with tenant_context(alpha):
            reconcile.run(project.pk)  # its namespace's pods now need the organization's own nodes: none
        s = drive(alpha, start(alpha, project, users["alice"], prompt="nowhere to go"), seconds=20, step=1)
    finally:
        tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="shared")
    assert (s.phase, s.reason) == ("Failed", "Unschedulable"), (s.phase, s.reason, s.message)
    assert "the cluster cannot place the runner" in s.message and "nodes are available" in s.message
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None


def test_runner_image_and_resources_come_from_the_configuration_and_stay_with_the_session(alpha, users, project):
    from portal.errors import InvalidInput
    from tenants import services as tenant_services

    def runner(s):
        job = kube.get("Job", cluster.job_name(s), project.namespace)
        return job["spec"]["template"]["spec"]["containers"][0]

    first = drive(alpha, start(alpha, project, users["alice"], prompt="defaults pier:sleep=600"),
                  until=("Creating", "Running"), seconds=10)
    assert runner(first)["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                          "limits": {"cpu": "1", "memory": "1Gi"}}
    assert runner(first)["image"] == settings_image()
    with tenant_context(alpha):
        # A project admin asks for more, within the platform's ceilings; a request above its
        # limit, or a limit above the ceiling, is refused naming the setting.
        with pytest.raises(InvalidInput) as refused:
            project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                            merge=True, config_overrides={"sessions.runner.requests.memory": "2Gi"})
        assert "config_overrides.sessions.runner.requests.memory" in refused.value.details
        with pytest.raises(InvalidInput) as refused:
            project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                            merge=True, config_overrides={"sessions.runner.limits.memory": "65Gi"})
        assert "config_overrides.sessions.runner.limits.memory" in refused.value.details
        project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                        merge=True, config_overrides={"sessions.runner.limits.memory": "4Gi",
                                                                      "sessions.runner.requests.memory": "2Gi"})
    # A dedicated organization with its own image (staff).
    tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="dedicated",
                                  runner_image="registry.example.com/alpha/runner:2")
    alpha.refresh_from_db()
    try:
        second = drive(alpha, start(alpha, project, users["alice"], prompt="bigger pier:sleep=600"),
                       until=("Creating", "Running"), seconds=6)
        assert runner(second)["image"] == "registry.example.com/alpha/runner:2"
        assert runner(second)["resources"]["limits"]["memory"] == "4Gi"
        assert runner(second)["resources"]["requests"] == {"cpu": "100m", "memory": "2Gi"}
        assert second.runner_resources["limits"]["memory"] == "4Gi"
        assert second.runner_image == "registry.example.com/alpha/runner:2"
        # The first session keeps what it was admitted with.
        with tenant_context(alpha):
            first.refresh_from_db()
        assert first.runner_resources["limits"]["memory"] == "1Gi" and first.runtime_mode == "shared"
        assert runner(first)["resources"]["limits"]["memory"] == "1Gi"
    finally:
        tenant_services.tenant_update(tenant=alpha, acting_user=users["staff"], runtime_mode="shared", runner_image="")


def settings_image() -> str:
    from django.conf import settings

    return settings.PIER_RUNNER_IMAGE


def test_the_sync_enqueues_what_changed_and_finished_sessions_cost_nothing(alpha, users, project, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    from portal.controller import reconcile_object
    from sessions import tasks

    s = start(alpha, project, users["alice"], prompt="synced pier:sleep=8")
    s = drive(alpha, s, until=("Creating", "Running"), seconds=10)
    sent = []
    monkeypatch.setattr(reconcile_object, "apply_async", lambda args, **kw: sent.append(tuple(args)))
    s = drive(alpha, s, until=("Running",), seconds=10)
    # Running, its log just kept: nothing to do until the log is due again (PIER_SESSION_LOG_SECONDS).
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_sessions()
    assert not any(args[1] == s.pk for args in sent)
    kubehelp.advance_clock(10)  # the runner finishes; only the cluster knows yet
    for _ in range(30):
        job = kube.get("Job", cluster.job_name(s), project.namespace)
        if any(c["type"] == "Complete" for c in (job.get("status") or {}).get("conditions") or ()):
            break
        time.sleep(0.2)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_sessions()["enqueued"] >= 1
    assert ("agentic_sessions.agenticsession", s.pk, alpha.schema_name) in sent  # in the tenant's schema
    s = drive(alpha, s)
    assert s.phase == "Completed"
    sent.clear()
    before = kubehelp.requests_by_verb()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_sessions()
    after = kubehelp.requests_by_verb()
    assert not any(args[1] == s.pk for args in sent)  # finished: never looked at again
    assert after.get("list", 0) - before.get("list", 0) <= 2 and after.get("get", 0) == before.get("get", 0)


def _logs_sent(monkeypatch) -> list[list]:
    """What sync_sessions hands keep_runner_logs, per tenant: ([session key, pod name] pairs, schema)."""
    from sessions import tasks

    sent = []
    monkeypatch.setattr(tasks.keep_runner_logs, "apply_async",
                        lambda args, headers, **kw: sent.append((args[0], headers["_schema_name"])))
    return sent


def test_running_sessions_logs_are_kept_per_tenant_with_one_read_each_and_one_update(
        alpha, users, project, monkeypatch, django_capture_on_commit_callbacks):
    from django.db import connection

    from portal.controller import reconcile_object
    from sessions import tasks

    first = start(alpha, project, users["alice"], prompt="logged pier:sleep=600")
    second = start(alpha, project, users["alice"], prompt="logged too pier:sleep=600")
    first, second = (drive(alpha, s, until=("Running",), seconds=15) for s in (first, second))
    pods = {}
    for s in (first, second):
        pod = kube.list_objects("Pod", project.namespace, label_selector=f"pier.dev/session={s.name}")[0]
        pods[s.pk] = pod["metadata"]["name"]
        kubehelp.append_pod_log(project.namespace, pod["metadata"]["name"], f"agent: a later line of {s.name}")
    with tenant_context(alpha):
        AgenticSession.objects.filter(pk__in=pods).update(log_captured_at=None)  # their logs are due
    passes = []
    monkeypatch.setattr(reconcile_object, "apply_async", lambda args, **kw: passes.append(tuple(args)))
    sent = _logs_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_sessions()
    assert not any(args[1] in pods for args in passes)  # no whole pass: nothing but the logs changed
    [(pairs, schema)] = sent
    assert schema == alpha.schema_name and dict(pairs) == pods

    before = kubehelp.requests_by_resource()
    with tenant_context(alpha):
        statements = []
        with connection.execute_wrapper(lambda execute, sql, *a: (statements.append(sql), execute(sql, *a))[1]):
            outcome = tasks.keep_runner_logs(pairs)
        first.refresh_from_db()
        second.refresh_from_db()
    after = kubehelp.requests_by_resource()
    assert {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)} == {"get pods/log": 2}
    queries = [q.split()[0] for q in statements if not q.startswith("SET search_path")]  # the schema's own
    assert queries == ["SELECT", "UPDATE"] and outcome["written"] == 2  # one of each, for both
    for s in (first, second):
        assert f"agent: a later line of {s.name}" in s.log and s.log_captured_at is not None and s.phase == "Running"
    # A second copy of the message (the sync ran again before the first copy did): nothing is due.
    with tenant_context(alpha):
        assert tasks.keep_runner_logs(pairs)["skipped"] == 2
    assert kubehelp.requests_by_resource().get("get pods/log", 0) == after.get("get pods/log", 0)
    # However many logs changed, no statement carries (and no worker holds) more than
    # LOG_WRITE_BYTES of them: past it, what was read is written and the rest follows.
    monkeypatch.setattr(controller, "LOG_WRITE_BYTES", 1)
    for s in (first, second):
        kubehelp.append_pod_log(project.namespace, pods[s.pk], f"agent: one more line of {s.name}")
    with tenant_context(alpha):
        AgenticSession.objects.filter(pk__in=pods).update(log_captured_at=None)
        statements.clear()
        with connection.execute_wrapper(lambda execute, sql, *a: (statements.append(sql), execute(sql, *a))[1]):
            outcome = tasks.keep_runner_logs(pairs)
        logs = dict(AgenticSession.objects.filter(pk__in=pods).values_list("pk", "log"))
    queries = [q.split()[0] for q in statements if not q.startswith("SET search_path")]
    assert queries == ["SELECT", "UPDATE", "UPDATE"] and outcome == {"read": 2, "written": 2, "skipped": 0}
    assert all(f"agent: one more line of {s.name}" in logs[s.pk] for s in (first, second))


def test_a_runner_log_of_any_size_is_read_as_a_stream_and_only_its_end_kept(alpha, users, project, settings):
    s = start(alpha, project, users["alice"], prompt="chatty pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    line = "agent: " + "x" * 92  # 100 bytes with its newline
    kubehelp.append_pod_log(project.namespace, s.runner_pod_name, "\n".join([line] * 30000 + ["the very last line"]))
    text = kube.pod_log(project.namespace, s.runner_pod_name, container="runner", last_bytes=1000)
    assert len(text.encode()) <= 1002 and text.rstrip("\n").endswith("\n".join([line] * 5 + ["the very last line"]))
    settings.PIER_SESSION_LOG_BYTES = 64 * 1024
    with tenant_context(alpha):
        SESSIONS.run(s.pk)
        s.refresh_from_db()
    assert s.log_truncated and len(s.log.encode()) <= 64 * 1024
    assert s.log.splitlines()[0] == line and s.log.rstrip("\n").endswith("the very last line")  # whole lines only


def test_a_batched_log_never_overwrites_one_a_pass_kept_meanwhile_nor_reads_a_pod_the_session_did_not_pin(
        alpha, users, project, monkeypatch):
    from sessions import tasks

    s = start(alpha, project, users["alice"], prompt="raced pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        AgenticSession.objects.filter(pk=s.pk).update(log_captured_at=None)  # its log is due
    real_log = kube.pod_log
    read = []

    def log_while_a_pass_keeps_a_newer_one(namespace, pod, **kw):
        read.append(pod)
        text = real_log(namespace, pod, **kw)
        with tenant_context(alpha):  # a whole pass, between the batch's SELECT and its UPDATE
            AgenticSession.objects.filter(pk=s.pk).update(log="the newer log a pass kept",
                                                          log_captured_at=timezone.now())
        return text

    monkeypatch.setattr(kube, "pod_log", log_while_a_pass_keeps_a_newer_one)
    with tenant_context(alpha):
        outcome = tasks.keep_runner_logs([[s.pk, s.runner_pod_name]])
        s.refresh_from_db()
    assert read == [s.runner_pod_name] and outcome["written"] == 0
    assert s.log == "the newer log a pass kept"
    # A pod name the session did not pin (another pod claiming its Job) is not read at all.
    read.clear()
    with tenant_context(alpha):
        AgenticSession.objects.filter(pk=s.pk).update(log_captured_at=None)
        outcome = tasks.keep_runner_logs([[s.pk, "someone-elses-pod"]])
        s.refresh_from_db()
    assert read == [] and outcome["skipped"] == 1 and s.log == "the newer log a pass kept"


def test_a_stopped_session_is_a_whole_pass_and_its_log_is_not_batched(
        alpha, users, project, monkeypatch, django_capture_on_commit_callbacks):
    from portal.controller import reconcile_object
    from sessions import tasks

    s = start(alpha, project, users["alice"], prompt="stopped pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        AgenticSession.objects.filter(pk=s.pk).update(log_captured_at=None)
    sent = _logs_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_sessions()
    [(pairs, _schema)] = sent
    with tenant_context(alpha):  # stopped after the sync looked
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"],
                                      access=EDIT)
    s = drive(alpha, s)
    with tenant_context(alpha):
        outcome = tasks.keep_runner_logs(pairs)  # the batch arrives after the stop's last pass
        after = AgenticSession.objects.get(pk=s.pk)
    assert s.phase == "Stopped" and outcome["skipped"] == 1 and after.log == s.log
    assert "stopped (SIGTERM)" in after.log.strip().splitlines()[-1]
    assert kube.get("Job", cluster.job_name(s), project.namespace) is None
    monkeypatch.setattr(reconcile_object, "apply_async", lambda args, **kw: None)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_sessions()
    assert sent == []  # finished: never looked at again


def test_deleting_a_project_removes_its_sessions_first(alpha, users, project):
    s = start(alpha, project, users["alice"], prompt="doomed pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        project_services.project_delete(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN)
        with pytest.raises(Exception):
            reconcile.run(project.pk)  # the namespace terminates: a wait
    assert kube.get(cluster.SESSION_KIND, s.name, project.namespace) is None


def test_runners_may_reach_only_dns_and_the_allowed_destinations(alpha, users, project, settings):
    policy = kube.get("NetworkPolicy", "pier-runner-egress", project.namespace)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"pier.dev/component": "session-runner"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]} in policy["spec"]["egress"]
    settings.PIER_RUNNER_EGRESS_ALLOWED = ["10.0.0.0/8"]
    with tenant_context(alpha):
        with pytest.raises(Exception) as refused:
            project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                            merge=True, config_overrides={"sessions.egress": ["8.8.8.0/24:443"]})
        assert "config_overrides.sessions.egress" in refused.value.details
        project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"], access=ADMIN,
                                        merge=True, config_overrides={"sessions.egress": ["10.1.0.0/16:8443"]})
        reconcile.run(project.pk)
    rules = kube.get("NetworkPolicy", "pier-runner-egress", project.namespace)["spec"]["egress"]
    assert rules[1:] == [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 8443}]}]
    assert rules[0]["ports"][0]["port"] == 53  # DNS stays


def test_a_runner_pod_the_cluster_refuses_to_create_is_shown_with_the_reason(alpha, users, project, monkeypatch):
    real = cluster.runner_objects
    # As if the ServiceAccount went missing: the API server's admission refuses the Job's pod.
    monkeypatch.setattr(cluster, "runner_objects",
                        lambda *a, **kw: [o for o in real(*a, **kw) if o["kind"] != "ServiceAccount"])
    s = start(alpha, project, users["alice"], prompt="no account")
    s = drive(alpha, s, until=("Running",), seconds=5)
    assert s.phase == "Creating" and s.reason == "FailedCreate", (s.reason, s.message)
    assert "serviceaccount" in s.message.lower()


def test_a_redelivered_reconcile_of_a_finished_session_changes_nothing(alpha, users, project):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from portal.controller import reconcile_object

    s = start(alpha, project, users["alice"], prompt="once pier:sleep=600")
    s = drive(alpha, s, until=("Running",), seconds=15)
    with tenant_context(alpha):
        session_services.session_stop(tenant=alpha, project=project, session=s, acting_user=users["alice"], access=EDIT)
    s = drive(alpha, s)
    assert s.phase == "Stopped" and s.observed_generation == s.generation == 2  # the stop was a new generation
    before = kubehelp.requests_by_verb()
    with CaptureQueriesContext(connection) as queries:
        reconcile_object.apply(args=["agentic_sessions.agenticsession", s.pk, alpha.schema_name]).get()
    after = kubehelp.requests_by_verb()
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert all(after.get(v, 0) == before.get(v, 0) for v in ("create", "patch", "update", "delete"))
