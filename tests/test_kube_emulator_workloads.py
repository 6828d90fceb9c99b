"""Contract tests of the emulator's workloads: Jobs and their pods, nodes and scheduling, the
simulated kubelet, garbage collection, pod logs and events (tests/kube_emulator/controllers.py).

Observed as Pier will observe a session's runner Job: through the official client's BatchV1Api
and CoreV1Api. The emulator here runs pods fast (they start 0.05 s after binding and run 0.3 s
unless their arguments say otherwise); every wait is a `wait_until` with a generous timeout,
never an assertion on timing.
"""

from __future__ import annotations

import json
import re
import threading
import uuid

import pytest
from kube_emulator import KubeEmulator
from kubecontract import *
from kubecontract import AUTHORIZATION, AUTHORIZATION_IDS, NAMESPACE_DELETION_DELAY, failure, raw, status_of, wait_until
from kubernetes import client

POD_SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z ")
TIMEOUT = 10.0
NOT_HELPFUL = "no new claims to deallocate, preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."


@pytest.fixture(scope="module", params=AUTHORIZATION, ids=AUTHORIZATION_IDS)
def emulator(request):
    emu = KubeEmulator(
        authorization=request.param,
        namespace_deletion_delay=NAMESPACE_DELETION_DELAY,
        pod_start_delay=0.05,
        pod_run_seconds=0.3,
        job_backoff_seconds=0.05,
    ).start()
    yield emu
    emu.stop()


def job(name: str, *args: str, containers: list | None = None, **spec) -> dict:
    containers = containers or [{"name": "main", "image": "registry.example/runner:1.0", "args": list(args)}]
    return {
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}, **spec},
    }


def pods_of(core, ns, job_name: str) -> list:
    return core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={job_name}").items


def the_pod(core, ns, job_name: str):
    wait_until(lambda: len(pods_of(core, ns, job_name)) >= 1, TIMEOUT)
    return pods_of(core, ns, job_name)[0]


def condition(obj, kind: str):
    return next((c for c in obj.status.conditions or [] if c.type == kind), None)


def job_condition(batch, ns, name: str, kind: str):
    return condition(batch.read_namespaced_job(name, ns), kind)


def wait_phase(core, ns, name: str, *phases: str):
    wait_until(lambda: core.read_namespaced_pod(name, ns).status.phase in phases, TIMEOUT)
    return core.read_namespaced_pod(name, ns)


def events_for(core, ns, obj) -> list:
    return core.list_namespaced_event(ns, field_selector=f"involvedObject.uid={obj.metadata.uid}").items


def reasons(core, ns, obj) -> list[str]:
    return [event.reason for event in events_for(core, ns, obj)]


def log(core, pod: str, ns: str, **options) -> str:
    """The log as the server sent it. (The client's own str decoding would hand back the repr of
    the bytes, and a log that happens to be JSON parsed, so read the raw body, as Pier must.)"""
    return core.read_namespaced_pod_log(pod, ns, _preload_content=False, **options).data.decode()


# --- Jobs and the kubelet ------------------------------------------------------------------------


def test_a_job_creates_its_pod_and_completes(batch, core, ns):
    created = batch.create_namespaced_job(ns, job("run-1"))
    pod = the_pod(core, ns, "run-1")
    uid = created.metadata.uid
    assert re.fullmatch(rf"run-1-{POD_SUFFIX}", pod.metadata.name)
    assert {
        "job-name": "run-1",
        "batch.kubernetes.io/job-name": "run-1",
        "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid,
    }.items() <= pod.metadata.labels.items()
    (owner,) = pod.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid, owner.controller, owner.block_owner_deletion) == (
        "batch/v1", "Job", "run-1", uid, True, True,
    )  # fmt: skip
    assert pod.spec.node_name in {"emulator-node-1", "emulator-node-2"}

    wait_until(lambda: job_condition(batch, ns, "run-1", "Complete") is not None, TIMEOUT)
    finished = batch.read_namespaced_job("run-1", ns)
    assert [(c.type, c.status, c.reason) for c in finished.status.conditions] == [
        ("SuccessCriteriaMet", "True", "CompletionsReached"),
        ("Complete", "True", "CompletionsReached"),
    ]
    status = finished.status
    assert (status.succeeded, status.failed, status.active, status.ready) == (1, None, None, 0)
    assert status.start_time is not None and status.completion_time >= status.start_time

    pod = core.read_namespaced_pod(pod.metadata.name, ns)
    assert pod.status.phase == "Succeeded" and pod.status.start_time is not None
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.finished_at >= terminated.started_at
    assert (condition(pod, "Ready").status, condition(pod, "Ready").reason) == ("False", "PodCompleted")
    assert condition(pod, "PodScheduled").status == "True"
    assert not pod.metadata.finalizers  # the job-tracking finalizer goes once the pod is counted
    assert {"SuccessfulCreate", "Completed"} <= set(reasons(core, ns, finished))
    assert ["Scheduled", "Pulled", "Created", "Started"] == reasons(core, ns, pod)


def test_a_pod_goes_from_pending_to_running_to_succeeded_on_the_clock():
    with KubeEmulator(pod_start_delay=3600, pod_run_seconds=60) as emu:
        core = client.CoreV1Api(emu.api_client())
        batch = client.BatchV1Api(emu.api_client())
        batch.create_namespaced_job("default", job("slow"))
        pod = the_pod(core, "default", "slow")
        wait_until(lambda: core.read_namespaced_pod(pod.metadata.name, "default").status.container_statuses, TIMEOUT)
        pending = core.read_namespaced_pod(pod.metadata.name, "default")
        assert pending.status.phase == "Pending" and pending.status.host_ip.startswith("10.")
        assert pending.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
        assert condition(pending, "Ready").reason == "ContainersNotReady"
        code, body = failure(core.read_namespaced_pod_log, pod.metadata.name, "default")
        assert (code, body["reason"], body["message"]) == (
            400, "BadRequest", f'container "main" in pod "{pod.metadata.name}" is waiting to start: ContainerCreating',
        )  # fmt: skip

        emu.advance_clock(3600)  # pulled and started; the container runs for a minute
        running = core.read_namespaced_pod(pod.metadata.name, "default")
        assert running.status.phase == "Running" and running.status.pod_ip
        container = running.status.container_statuses[0]
        assert (container.ready, container.started, container.state.running is not None) == (True, True, True)
        assert condition(running, "Ready").status == "True"
        wait_until(lambda: batch.read_namespaced_job("slow", "default").status.ready == 1, TIMEOUT)
        assert batch.read_namespaced_job("slow", "default").status.active == 1

        emu.advance_clock(60)
        assert core.read_namespaced_pod(pod.metadata.name, "default").status.phase == "Succeeded"
        wait_until(lambda: job_condition(batch, "default", "slow", "Complete") is not None, TIMEOUT)


def test_a_failing_pod_is_retried_until_the_backoff_limit(batch, core, ns):
    batch.create_namespaced_job(ns, job("flaky", "--pier-emulator-exit=3", backoffLimit=1))
    wait_until(lambda: job_condition(batch, ns, "flaky", "Failed") is not None, TIMEOUT)
    failed = batch.read_namespaced_job("flaky", ns)
    assert [(c.type, c.reason, c.message) for c in failed.status.conditions] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ]
    assert (failed.status.failed, failed.status.succeeded, failed.status.completion_time) == (2, None, None)
    pods = pods_of(core, ns, "flaky")
    assert len(pods) == 2  # the first try and one retry, each a new pod
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 3, "Error")
        assert condition(pod, "Ready").reason == "PodFailed"
    warning = [e for e in events_for(core, ns, failed) if e.reason == "BackoffLimitExceeded"]
    assert [(e.type, e.source.component) for e in warning] == [("Warning", "job-controller")]


def test_restarts_of_an_on_failure_pod_count_against_the_backoff_limit(batch, core, ns):
    body = job("restarting", "--pier-emulator-exit=1", backoffLimit=2)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    batch.create_namespaced_job(ns, body)
    wait_until(lambda: job_condition(batch, ns, "restarting", "Failed") is not None, TIMEOUT)
    assert job_condition(batch, ns, "restarting", "Failed").reason == "BackoffLimitExceeded"
    wait_until(lambda: pods_of(core, ns, "restarting") == [], TIMEOUT)  # the restarting pod is deleted


def test_exit_codes_set_by_a_test_hook_win_over_markers(batch, core, emulator, ns):
    emulator.set_exit_code(ns, "hooked", 2)
    batch.create_namespaced_job(ns, job("hooked", "--pier-emulator-exit=0", backoffLimit=0))
    wait_until(lambda: job_condition(batch, ns, "hooked", "Failed") is not None, TIMEOUT)
    assert the_pod(core, ns, "hooked").status.container_statuses[0].state.terminated.exit_code == 2

    code, _ = control(emulator, "POST", "/_emulator/exit-code", {"namespace": ns, "name": "over-http", "code": 7})
    assert code == 200
    batch.create_namespaced_job(ns, job("over-http", backoffLimit=0))
    wait_until(lambda: job_condition(batch, ns, "over-http", "Failed") is not None, TIMEOUT)
    assert the_pod(core, ns, "over-http").status.container_statuses[0].state.terminated.exit_code == 7
    assert control(emulator, "POST", "/_emulator/exit-code", {"namespace": ns, "name": "x", "code": 300})[0] == 400


def test_active_deadline_fails_the_job_and_deletes_its_running_pods(batch, core, emulator, ns):
    batch.create_namespaced_job(ns, job("stuck", "--pier-emulator-sleep=3600", activeDeadlineSeconds=30))
    pod = the_pod(core, ns, "stuck")
    wait_phase(core, ns, pod.metadata.name, "Running")
    emulator.advance_clock(31)
    wait_until(lambda: job_condition(batch, ns, "stuck", "Failed") is not None, TIMEOUT)
    failed = batch.read_namespaced_job("stuck", ns)
    assert [(c.type, c.reason, c.message) for c in failed.status.conditions] == [
        ("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"),
        ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
    ]
    assert (failed.status.active, failed.status.failed) == (None, 1)
    wait_until(lambda: pods_of(core, ns, "stuck") == [], TIMEOUT)
    assert {"SuccessfulCreate", "DeadlineExceeded", "SuccessfulDelete"} <= set(reasons(core, ns, failed))
    wait_until(lambda: "Killing" in reasons(core, ns, pod), TIMEOUT)


def test_a_pods_active_deadline_fails_it_and_keeps_it_with_its_log(batch, core, emulator, ns):
    """The kubelet's deadline (pod spec.activeDeadlineSeconds), unlike the Job's, leaves the pod
    and its log: with backoffLimit 0 the Job fails on that pod (BackoffLimitExceeded)."""
    template = job("pod-deadline", "--pier-emulator-sleep=3600", "--pier-emulator-log=working",
                   backoffLimit=0)
    template["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 30
    batch.create_namespaced_job(ns, template)
    pod = the_pod(core, ns, "pod-deadline")
    wait_phase(core, ns, pod.metadata.name, "Running")
    emulator.advance_clock(31)
    failed = wait_phase(core, ns, pod.metadata.name, "Failed")
    assert (failed.status.reason, failed.status.message) == (
        "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 137
    assert "working" in log(core, pod.metadata.name, ns)  # the pod and its log stay
    wait_until(lambda: job_condition(batch, ns, "pod-deadline", "Failed") is not None, TIMEOUT)
    assert job_condition(batch, ns, "pod-deadline", "Failed").reason == "BackoffLimitExceeded"
    assert [p.metadata.name for p in pods_of(core, ns, "pod-deadline")] == [pod.metadata.name]
    assert "DeadlineExceeded" in reasons(core, ns, failed) and "Killing" in reasons(core, ns, failed)


def test_a_pods_spec_is_immutable_but_its_deadline_may_be_lowered_which_stops_it_now_with_its_log(batch, core, emulator, ns):
    """ValidatePodUpdate: of a pod's spec only the images, added tolerations and a lower
    `activeDeadlineSeconds` may change. Lowering the deadline of a pod that has run longer stops
    it at once (not back in time), and it stays, with its log, as for any deadline."""
    template = job("lowered", "--pier-emulator-sleep=3600", "--pier-emulator-log=working", backoffLimit=0)
    template["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 600
    batch.create_namespaced_job(ns, template)
    name = the_pod(core, ns, "lowered").metadata.name
    wait_phase(core, ns, name, "Running")
    for change, field, detail in [
        ({"restartPolicy": "Always"}, "spec", "pod updates may not change fields other than `spec.containers[*].image`"),
        ({"activeDeadlineSeconds": 601}, "spec.activeDeadlineSeconds", "must be less than or equal to previous value"),
        ({"activeDeadlineSeconds": None}, "spec.activeDeadlineSeconds", "must not update from a positive integer to nil value"),
        ({"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds", "must be between 1 and 4294967295, inclusive"),
    ]:
        status, body = failure(core.patch_namespaced_pod, name, ns, {"spec": change})
        assert status == 422 and body["reason"] == "Invalid", change
        assert [c["field"] for c in body["details"]["causes"]] == [field] and detail in body["message"], body["message"]
    assert core.read_namespaced_pod(name, ns).status.phase == "Running"

    emulator.advance_clock(120)
    core.patch_namespaced_pod(name, ns, {"spec": {"activeDeadlineSeconds": 1}})
    failed = wait_phase(core, ns, name, "Failed")
    assert failed.status.reason == "DeadlineExceeded"
    terminated = failed.status.container_statuses[0].state.terminated
    assert (terminated.finished_at - terminated.started_at).total_seconds() >= 120  # stopped now, not at start + 1 s
    assert "working" in log(core, name, ns)
    wait_until(lambda: job_condition(batch, ns, "lowered", "Failed") is not None, TIMEOUT)
    assert job_condition(batch, ns, "lowered", "Failed").reason == "BackoffLimitExceeded"


def test_a_job_whose_status_has_not_changed_is_not_written_again(batch, core, ns):
    """The job controller writes a Job only when its status changes, as the real one does, so a
    watcher of a running Job sees no MODIFIED events while nothing happens to it."""
    batch.create_namespaced_job(ns, job("steady", "--pier-emulator-sleep=3600"))
    pod = the_pod(core, ns, "steady")
    wait_phase(core, ns, pod.metadata.name, "Running")
    wait_until(lambda: batch.read_namespaced_job("steady", ns).status.ready == 1, TIMEOUT)
    before = batch.read_namespaced_job("steady", ns).metadata.resource_version
    for n in range(3):  # every write starts a controller pass over the whole store
        batch.create_namespaced_job(ns, job(f"other-{n}"))
        the_pod(core, ns, f"other-{n}")
    wait_until(lambda: job_condition(batch, ns, "other-2", "Complete") is not None, TIMEOUT)
    assert batch.read_namespaced_job("steady", ns).metadata.resource_version == before


def test_a_running_pod_deleted_by_hand_is_replaced(batch, core, ns):
    batch.create_namespaced_job(ns, job("replaced", "--pier-emulator-sleep=3600"))
    first = the_pod(core, ns, "replaced")
    wait_phase(core, ns, first.metadata.name, "Running")
    core.delete_namespaced_pod(first.metadata.name, ns)
    wait_until(lambda: status_of(core.read_namespaced_pod, first.metadata.name, ns) == 404, TIMEOUT)
    wait_until(lambda: [p.metadata.name for p in pods_of(core, ns, "replaced")] not in ([], [first.metadata.name]), TIMEOUT)
    wait_until(lambda: batch.read_namespaced_job("replaced", ns).status.failed == 1, TIMEOUT)


def test_deleting_a_pod_on_a_node_is_graceful(core, ns):
    core.create_namespaced_pod(ns, bare_pod("graceful"))
    wait_phase(core, ns, "graceful", "Running")
    answer = raw(core.delete_namespaced_pod, "graceful", ns)
    assert answer["metadata"]["deletionTimestamp"] and answer["metadata"]["deletionGracePeriodSeconds"] == 30
    wait_until(lambda: gone(core.read_namespaced_pod, "graceful", ns), TIMEOUT)  # the kubelet stopped it
    killing = core.list_namespaced_event(ns, field_selector="involvedObject.name=graceful,reason=Killing").items
    assert [e.message for e in killing] == ["Stopping container main"]

    core.create_namespaced_pod(ns, bare_pod("unbound", nodeSelector={"nowhere": "true"}))
    core.delete_namespaced_pod("unbound", ns)  # not on a node: deleted at once
    assert gone(core.read_namespaced_pod, "unbound", ns)


# --- nodes and scheduling --------------------------------------------------------------------


def test_two_ready_nodes_are_seeded(core):
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == ["emulator-node-1", "emulator-node-2"]
    for node in nodes:
        assert condition(node, "Ready").status == "True"
        assert node.metadata.labels["kubernetes.io/hostname"] == node.metadata.name
        assert node.status.node_info.kubelet_version.startswith("v1.")


def bare_pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec}}


def test_a_node_reported_not_ready_gets_no_new_pods_and_its_pods_stand_still(core, emulator, ns):
    """`nodes/status` is where a node's kubelet reports it; one that says NotReady (as a node
    that stopped answering looks) is given no new pods, and the pods on it no longer move on."""
    sleeper = [{"name": "main", "image": "busybox:1.36", "args": ["--pier-emulator-sleep=60"]}]
    core.create_namespaced_pod(ns, bare_pod("stranded", nodeName="emulator-node-1", containers=sleeper))
    wait_phase(core, ns, "stranded", "Running")
    status = core.read_node_status("emulator-node-1").to_dict()["status"]
    conditions = [{"type": c["type"], "status": "False" if c["type"] == "Ready" else c["status"],
                   "reason": c["reason"] or "", "message": c["message"] or ""} for c in status["conditions"]]
    core.patch_node_status("emulator-node-1", {"status": {"conditions": conditions}})
    assert condition(core.read_node("emulator-node-1"), "Ready").status == "False"
    emulator.advance_clock(120)
    core.create_namespaced_pod(ns, bare_pod("elsewhere"))
    wait_until(lambda: core.read_namespaced_pod("elsewhere", ns).spec.node_name is not None, TIMEOUT)
    assert core.read_namespaced_pod("elsewhere", ns).spec.node_name == "emulator-node-2"
    assert core.read_namespaced_pod("stranded", ns).status.phase == "Running"  # past its run time: nobody ends it
    status, body = failure(core.read_namespaced_pod_log, "stranded", ns)  # nor serves its log
    assert status == 500 and ":10250/containerLogs/" in body["message"] and "i/o timeout" in body["message"]


def test_a_pod_no_node_fits_stays_pending_and_says_why(core, ns):
    core.create_namespaced_pod(ns, bare_pod("picky", nodeSelector={"disk": "ssd"}))
    wait_until(lambda: condition(core.read_namespaced_pod("picky", ns), "PodScheduled") is not None, TIMEOUT)
    pod = core.read_namespaced_pod("picky", ns)
    message = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. " + NOT_HELPFUL.format(n=2)
    scheduled = condition(pod, "PodScheduled")
    assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)
    assert (scheduled.status, scheduled.reason, scheduled.message) == ("False", "Unschedulable", message)
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=picky").items
    assert [(e.type, e.reason, e.message, e.source.component, e.count) for e in events] == [
        ("Warning", "FailedScheduling", message, "default-scheduler", 1)
    ]
    assert events[0].first_timestamp is not None and events[0].last_timestamp is not None
    assert events[0].involved_object.kind == "Pod" and events[0].involved_object.uid == pod.metadata.uid

    core.patch_node("emulator-node-2", {"metadata": {"labels": {"disk": "ssd"}}})  # nodes changed: tried again
    wait_until(lambda: core.read_namespaced_pod("picky", ns).spec.node_name == "emulator-node-2", TIMEOUT)
    assert condition(core.read_namespaced_pod("picky", ns), "PodScheduled").status == "True"
    wait_phase(core, ns, "picky", "Running")


def test_taints_keep_pods_off_unless_tolerated(core, ns):
    core.create_node(
        {
            "metadata": {"name": "runner-node", "labels": {"pool": "runners"}},
            "spec": {"taints": [{"key": "dedicated", "value": "runners", "effect": "NoSchedule"}]},
        }
    )
    wait_until(lambda: condition(core.read_node("runner-node"), "Ready") is not None, TIMEOUT)  # its kubelet registers
    core.create_namespaced_pod(ns, bare_pod("intolerant"))
    core.create_namespaced_pod(ns, bare_pod("lost", nodeSelector={"pool": "runners"}))
    toleration = {"key": "dedicated", "operator": "Equal", "value": "runners", "effect": "NoSchedule"}
    core.create_namespaced_pod(ns, bare_pod("runner", nodeSelector={"pool": "runners"}, tolerations=[toleration]))
    wait_until(lambda: core.read_namespaced_pod("runner", ns).spec.node_name == "runner-node", TIMEOUT)
    wait_until(lambda: core.read_namespaced_pod("intolerant", ns).spec.node_name is not None, TIMEOUT)
    assert core.read_namespaced_pod("intolerant", ns).spec.node_name != "runner-node"
    wait_until(lambda: condition(core.read_namespaced_pod("lost", ns), "PodScheduled") is not None, TIMEOUT)
    assert condition(core.read_namespaced_pod("lost", ns), "PodScheduled").message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), "
        "2 node(s) didn't match Pod's node affinity/selector. " + NOT_HELPFUL.format(n=3)
    )


def test_a_namespace_node_selector_is_merged_into_its_pods(core):
    annotation = {"scheduler.alpha.kubernetes.io/node-selector": "pool=runners"}
    core.create_namespace({"metadata": {"name": "pinned", "annotations": annotation}})
    pod = core.create_namespaced_pod("pinned", bare_pod("p", nodeSelector={"disk": "ssd"}))
    assert pod.spec.node_selector == {"disk": "ssd", "pool": "runners"}
    code, body = failure(core.create_namespaced_pod, "pinned", bare_pod("q", nodeSelector={"pool": "gpus"}))
    assert (code, body["reason"]) == (403, "Forbidden")
    assert "pod node label selector conflicts with its namespace node label selector" in body["message"]
    wait_until(lambda: condition(core.read_namespaced_pod("p", "pinned"), "PodScheduled") is not None, TIMEOUT)
    assert condition(core.read_namespaced_pod("p", "pinned"), "PodScheduled").reason == "Unschedulable"


# --- garbage collection --------------------------------------------------------------------------


def owned_config_map(name: str, owner, block: bool = False, **metadata) -> dict:
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    if block:
        reference["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [reference], **metadata}}


def gone(read, *args) -> bool:
    return status_of(read, *args) == 404


def test_background_deletion_collects_dependents(core, ns):
    owner = core.create_namespaced_config_map(ns, config_map("owner"))
    core.create_namespaced_config_map(ns, owned_config_map("dependent", owner))
    core.delete_namespaced_config_map("owner", ns)  # Background: the default for ConfigMaps
    assert gone(core.read_namespaced_config_map, "owner", ns)
    wait_until(lambda: gone(core.read_namespaced_config_map, "dependent", ns), TIMEOUT)


def test_foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone(core, ns):
    owner = core.create_namespaced_config_map(ns, config_map("owner"))
    core.create_namespaced_config_map(ns, owned_config_map("blocker", owner, block=True, finalizers=["pier.dev/hold"]))
    answer = raw(core.delete_namespaced_config_map, "owner", ns, propagation_policy="Foreground")
    assert answer["metadata"]["deletionTimestamp"] and "foregroundDeletion" in answer["metadata"]["finalizers"]
    wait_until(lambda: core.read_namespaced_config_map("blocker", ns).metadata.deletion_timestamp is not None, TIMEOUT)
    held = core.read_namespaced_config_map("owner", ns)  # still there: the blocker is being deleted, not gone
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["foregroundDeletion"]
    core.patch_namespaced_config_map("blocker", ns, {"metadata": {"finalizers": None}})
    wait_until(lambda: gone(core.read_namespaced_config_map, "owner", ns), TIMEOUT)


def test_orphan_deletion_removes_the_owner_reference(core, ns):
    owner = core.create_namespaced_config_map(ns, config_map("owner"))
    core.create_namespaced_config_map(ns, owned_config_map("dependent", owner))
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan")
    wait_until(lambda: gone(core.read_namespaced_config_map, "owner", ns), TIMEOUT)
    assert core.read_namespaced_config_map("dependent", ns).metadata.owner_references is None


def test_batch_v1_jobs_orphan_their_pods_unless_told_otherwise(batch, core, ns):
    batch.create_namespaced_job(ns, job("kept", "--pier-emulator-sleep=3600"))
    kept = the_pod(core, ns, "kept")
    batch.delete_namespaced_job("kept", ns)  # no policy: batch/v1 orphans
    wait_until(lambda: gone(batch.read_namespaced_job, "kept", ns), TIMEOUT)
    wait_until(lambda: core.read_namespaced_pod(kept.metadata.name, ns).metadata.owner_references is None, TIMEOUT)
    wait_until(lambda: not core.read_namespaced_pod(kept.metadata.name, ns).metadata.finalizers, TIMEOUT)

    batch.create_namespaced_job(ns, job("cascade", "--pier-emulator-sleep=3600"))
    pod = the_pod(core, ns, "cascade")
    batch.delete_namespaced_job("cascade", ns, propagation_policy="Background")
    wait_until(lambda: gone(core.read_namespaced_pod, pod.metadata.name, ns), TIMEOUT)
    assert core.read_namespaced_pod(kept.metadata.name, ns).status.phase == "Running"  # the orphan runs on

    batch.create_namespaced_job(ns, job("front", "--pier-emulator-sleep=3600"))
    pod = the_pod(core, ns, "front")
    batch.delete_namespaced_job("front", ns, propagation_policy="Foreground")
    wait_until(lambda: gone(batch.read_namespaced_job, "front", ns), TIMEOUT)
    assert gone(core.read_namespaced_pod, pod.metadata.name, ns)  # the owner went only after its pod


def test_dependents_of_an_owner_that_does_not_exist_are_collected(core, ns):
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "6f1e2bd2-0000-4000-8000-000000000000"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "stray", "ownerReferences": [reference]}})
    wait_until(lambda: gone(core.read_namespaced_config_map, "stray", ns), TIMEOUT)


def test_namespace_termination_removes_running_pods(batch, core):
    core.create_namespace({"metadata": {"name": "doomed"}})
    batch.create_namespaced_job("doomed", job("long", "--pier-emulator-sleep=3600"))
    pod = the_pod(core, "doomed", "long")
    wait_phase(core, "doomed", pod.metadata.name, "Running")
    core.delete_namespace("doomed")
    wait_until(lambda: gone(core.read_namespace, "doomed"), TIMEOUT)
    assert core.list_pod_for_all_namespaces(field_selector="metadata.namespace=doomed").items == []


# --- logs ----------------------------------------------------------------------------------------


def test_logs_from_markers_with_tail_limit_and_timestamps(batch, core, ns):
    lines = [f"--pier-emulator-log=line {i}" for i in range(1, 5)]
    batch.create_namespaced_job(ns, job("talk", *lines))
    pod = the_pod(core, ns, "talk").metadata.name
    wait_phase(core, ns, pod, "Succeeded")
    assert log(core, pod, ns) == "line 1\nline 2\nline 3\nline 4\n"
    assert log(core, pod, ns, container="main", tail_lines=2) == "line 3\nline 4\n"
    assert log(core, pod, ns, limit_bytes=9) == "line 1\nli"
    assert log(core, pod, ns, since_seconds=3600).count("\n") == 4
    stamped = log(core, pod, ns, timestamps=True).splitlines()
    assert len(stamped) == 4 and all(RFC3339_NANO.match(line) for line in stamped)
    assert stamped[0].endswith(" line 1")
    code, body = failure(core.read_namespaced_pod_log, pod, ns, previous=True)
    assert (code, body["message"]) == (400, f'previous terminated container "main" in pod "{pod}" not found')
    code, body = failure(core.read_namespaced_pod_log, pod, ns, container="other")
    assert (code, body["message"]) == (400, f"container other is not valid for pod {pod}")
    assert failure(core.read_namespaced_pod_log, "nope", ns)[0] == 404


def test_logs_of_a_pod_with_several_containers_need_a_container_name(core, ns):
    containers = [
        {"name": "agent", "image": "busybox", "args": ["--pier-emulator-log=from agent"]},
        {"name": "sidecar", "image": "busybox", "args": ["--pier-emulator-log=from sidecar"]},
    ]
    core.create_namespaced_pod(ns, {"metadata": {"name": "two"}, "spec": {"containers": containers, "restartPolicy": "Never"}})
    code, body = failure(core.read_namespaced_pod_log, "two", ns)
    assert (code, body["reason"], body["message"]) == (
        400, "BadRequest", "a container name must be specified for pod two, choose one of: [agent sidecar]",
    )  # fmt: skip
    wait_phase(core, ns, "two", "Running", "Succeeded")
    assert log(core, "two", ns, container="sidecar") == "from sidecar\n"


def test_lines_written_by_a_test_and_followed_until_the_container_ends(batch, core, emulator, ns):
    emulator.append_pod_log(ns, "live", "queued before start")  # written when its container starts
    batch.create_namespaced_job(ns, job("live", "--pier-emulator-sleep=3600"))
    pod = the_pod(core, ns, "live").metadata.name
    wait_phase(core, ns, pod, "Running")
    stream = core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(stream.stream(64)), daemon=True)
    reader.start()
    wait_until(lambda: b"queued before start\n" in b"".join(received), TIMEOUT)
    emulator.append_pod_log(ns, pod, "one\ntwo")
    code, _ = control(emulator, "POST", "/_emulator/pod-log", {"namespace": ns, "name": "live", "text": "three"})
    assert code == 200
    wait_until(lambda: b"".join(received).endswith(b"one\ntwo\nthree\n"), TIMEOUT)
    assert reader.is_alive()  # still following: the container runs
    emulator.advance_clock(3600)  # the container ends, and with it the stream
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    assert b"".join(received) == b"queued before start\none\ntwo\nthree\n"


def test_previous_logs_of_a_restarted_container(core, emulator, ns):
    spec = {"containers": [{"name": "main", "image": "busybox", "args": ["--pier-emulator-exit=1", "--pier-emulator-log=try"]}],
            "restartPolicy": "OnFailure"}  # fmt: skip
    core.create_namespaced_pod(ns, {"metadata": {"name": "crashy"}, "spec": spec})
    wait_until(lambda: (core.read_namespaced_pod("crashy", ns).status.container_statuses or [None])[0] is not None
               and core.read_namespaced_pod("crashy", ns).status.container_statuses[0].restart_count >= 1, TIMEOUT)  # fmt: skip
    status = core.read_namespaced_pod("crashy", ns).status.container_statuses[0]
    assert (status.last_state.terminated.exit_code, status.last_state.terminated.reason) == (1, "Error")
    assert log(core, "crashy", ns, previous=True) == "try\n"


def test_stop_ends_followed_log_streams():
    before = set(threading.enumerate())
    emu = KubeEmulator(pod_start_delay=0, pod_run_seconds=3600).start()
    core = client.CoreV1Api(emu.api_client())
    core.create_namespaced_pod("default", bare_pod("forever"))
    wait_phase(core, "default", "forever", "Running")
    stream = core.read_namespaced_pod_log("forever", "default", follow=True, _preload_content=False)
    stopped = threading.Thread(target=emu.stop)
    stopped.start()
    stopped.join(TIMEOUT)
    assert not stopped.is_alive()
    stream.release_conn()
    assert set(threading.enumerate()) <= before


# --- events and reset ----------------------------------------------------------------------------


def test_repeated_events_are_counted_on_one_event(core, ns):
    core.create_namespaced_pod(ns, bare_pod("waiting", nodeSelector={"zone": "mars"}))
    wait_until(lambda: len(core.list_namespaced_event(ns, field_selector="involvedObject.name=waiting").items) == 1, TIMEOUT)
    core.patch_node("emulator-node-1", {"metadata": {"labels": {"unrelated": "change"}}})  # tried again, same answer
    wait_until(lambda: core.list_namespaced_event(ns, field_selector="involvedObject.name=waiting").items[0].count == 2, TIMEOUT)
    (event,) = core.list_namespaced_event(ns, field_selector="involvedObject.name=waiting,reason=FailedScheduling").items
    assert event.last_timestamp >= event.first_timestamp


def test_reset_clears_workloads_and_seeds_the_nodes_again(batch, core, emulator, ns):
    batch.create_namespaced_job(ns, job("before", "--pier-emulator-sleep=3600"))
    the_pod(core, ns, "before")
    core.delete_node("emulator-node-2")
    emulator.reset()
    assert core.list_pod_for_all_namespaces().items == []
    assert batch.list_job_for_all_namespaces().items == []
    assert core.list_event_for_all_namespaces().items == []
    assert [n.metadata.name for n in core.list_node().items] == ["emulator-node-1", "emulator-node-2"]


def test_a_watcher_sees_a_pod_run_and_finish_without_asking_again(batch, core, ns):
    """The simulated kubelet writes through the store: a watch alone follows the pod to its end."""
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    stream = core.list_namespaced_pod(ns, watch=True, resource_version=rv, timeout_seconds=int(TIMEOUT),
                                      _preload_content=False)
    batch.create_namespaced_job(ns, job("watched", "--pier-emulator-exit=0"))
    phases = []
    for line in stream:
        for part in line.splitlines():
            if part.strip():
                event = json.loads(part)
                phases.append((event["type"], event["object"]["status"].get("phase")))
        if ("MODIFIED", "Succeeded") in phases:
            break
    stream.release_conn()
    assert phases[0] == ("ADDED", "Pending")
    seen = [phase for _, phase in phases]
    assert seen.index("Running") < seen.index("Succeeded")


# --- the ServiceAccount admission plugin ------------------------------------------------------


def pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "registry.example/app:1.0"}], **spec}}


def test_a_pod_runs_as_default_or_as_a_service_account_of_its_own_namespace(core, ns):
    plain = core.create_namespaced_pod(ns, pod("plain"))
    assert (plain.spec.service_account_name, plain.spec.service_account) == ("default", "default")
    core.create_namespaced_service_account(ns, {"metadata": {"name": "deployer"}})
    named = core.create_namespaced_pod(ns, pod("named", serviceAccountName="deployer"))
    assert (named.spec.service_account_name, named.spec.service_account) == ("deployer", "deployer")
    alias = core.create_namespaced_pod(ns, pod("alias", serviceAccount="deployer"))  # the deprecated field
    assert alias.spec.service_account_name == "deployer"

    other = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": other}})
    for namespace, account in ((ns, "ghost"), (other, "deployer")):  # missing, or in another namespace only
        code, body = failure(core.create_namespaced_pod, namespace, pod("x", serviceAccountName=account))
        assert (code, body["reason"]) == (403, "Forbidden")
        assert body["message"] == (f'pods "x" is forbidden: error looking up service account {namespace}/{account}: '
                                   f'serviceaccount "{account}" not found')
    assert status_of(core.read_namespaced_pod, "x", other) == 404


def test_a_job_whose_pods_name_a_missing_service_account_makes_none_and_says_why(core, batch, ns):
    manifest = job("orphan")
    manifest["spec"]["template"]["spec"]["serviceAccountName"] = "ghost"
    created = batch.create_namespaced_job(ns, manifest)
    wait_until(lambda: "FailedCreate" in reasons(core, ns, created), TIMEOUT)
    message = next(e.message for e in events_for(core, ns, created) if e.reason == "FailedCreate")
    assert f"error looking up service account {ns}/ghost" in message
    assert pods_of(core, ns, "orphan") == []
