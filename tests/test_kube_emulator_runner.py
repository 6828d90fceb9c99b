"""Contract tests of the simulated session runner (tests/kube_emulator/runner_sim.py): a Pier runner
Job on the simulated cluster runs, logs and reports a result as Pier's reference runner would.

Observed as Pier's session controller observes it: a ConfigMap with `session.json` and a Job
whose pod is labelled `pier.dev/session` and mounts it, through the official client. Pods start
0.05 s after binding and run 0.3 s by default; longer runs are moved along with the emulator's
clock, and every wait is a `wait_until` with a generous timeout.
"""

from __future__ import annotations

import json

import pytest
from kube_emulator import KubeEmulator
from kubecontract import *
from kubecontract import AUTHORIZATION, AUTHORIZATION_IDS, NAMESPACE_DELETION_DELAY, wait_until

TIMEOUT = 10.0
SESSION_FILE = "/etc/pier/session/session.json"
PREFIX = "pier-runner (simulated): "


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


def session(name: str, ns: str, prompt: str, **spec) -> dict:
    return {
        "apiVersion": "pier.dev/v1alpha1",
        "kind": "AgenticSession",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "prompt": prompt,
            "displayName": f"Session {name}",
            "llm": {"model": "claude-sonnet-4", "temperature": 0.2, "maxTokens": 4000},
            "timeoutSeconds": 3600,
            "repos": [{"url": "https://git.example/team/app.git", "branch": "main"}],
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            "createdBy": {"username": "alice", "tenant": "alpha"},
            **spec,
        },
    }


def session_config_map(name: str, body: dict, key: str = "session.json") -> dict:
    return {"metadata": {"name": f"{name}-session"}, "data": {key: json.dumps(body)}}


def runner_job(name: str, *args: str, volume: dict | None = None, **spec) -> dict:
    """A runner Job shaped as Pier's session controller makes it."""
    container = {
        "name": "runner",
        "image": "registry.example/pier-runner:1.0",
        "args": list(args),
        "env": [{"name": "PIER_SESSION_FILE", "value": SESSION_FILE}],
        "envFrom": [{"secretRef": {"name": f"{name}-llm", "optional": True}}],  # no such Secret: fine
        "volumeMounts": [{"name": "session", "mountPath": "/etc/pier/session", "readOnly": True}],
    }
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"pier.dev/session": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "session", "configMap": volume or {"name": f"{name}-session"}}],
                },
            },
            **spec,
        },
    }


def start_session(batch, core, ns: str, name: str, prompt: str, *args: str, **spec):
    core.create_namespaced_config_map(ns, session_config_map(name, session(name, ns, prompt)))
    batch.create_namespaced_job(ns, runner_job(name, *args, **spec))
    return the_pod(core, ns, name)


def the_pod(core, ns: str, job_name: str):
    selector = f"batch.kubernetes.io/job-name={job_name}"
    wait_until(lambda: core.list_namespaced_pod(ns, label_selector=selector).items, TIMEOUT)
    return core.list_namespaced_pod(ns, label_selector=selector).items[0]


def wait_phase(core, ns: str, name: str, *phases: str):
    wait_until(lambda: core.read_namespaced_pod(name, ns).status.phase in phases, TIMEOUT)
    return core.read_namespaced_pod(name, ns)


def job_condition(batch, ns: str, name: str, kind: str):
    job = batch.read_namespaced_job(name, ns)
    return next((c for c in job.status.conditions or [] if c.type == kind), None)


def log_lines(core, pod: str, ns: str) -> list[str]:
    """The log as the server sent it (raw: the client would parse a JSON body), line by line."""
    return core.read_namespaced_pod_log(pod, ns, _preload_content=False).data.decode().splitlines()


def result(line: str) -> dict:
    return json.loads(line)["pier.dev/result"]


def test_a_session_runner_logs_its_progress_and_ends_with_a_succeeded_result(batch, core, ns):
    prompt = "Summarise the README.\n" + "Then explain each module in turn. " * 10
    pod = start_session(batch, core, ns, "s-ok", prompt).metadata.name
    wait_until(lambda: job_condition(batch, ns, "s-ok", "Complete") is not None, TIMEOUT)
    finished = wait_phase(core, ns, pod, "Succeeded")
    terminated = finished.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")

    answer = "Simulated answer: " + prompt[:200]
    lines = log_lines(core, pod, ns)
    assert lines[:-1] == [
        f"{PREFIX}session s-ok: model claude-sonnet-4",
        f"{PREFIX}would clone https://git.example/team/app.git (branch main)",
        f"{PREFIX}prompt of {len(prompt)} characters",
        *answer.splitlines(),
    ]
    assert json.loads(lines[-1]) == {
        "pier.dev/result": {"outcome": "succeeded", "summary": answer, "model": "claude-sonnet-4"}
    }


def test_optional_keys_may_be_missing_from_the_session(batch, core, ns):
    minimal = {"apiVersion": "pier.dev/v1alpha1", "kind": "AgenticSession",
               "metadata": {"name": "s-min", "namespace": ns}, "spec": {"prompt": "Hello"}}  # fmt: skip
    core.create_namespaced_config_map(ns, session_config_map("s-min", minimal))
    batch.create_namespaced_job(ns, runner_job("s-min"))
    pod = the_pod(core, ns, "s-min").metadata.name
    wait_phase(core, ns, pod, "Succeeded")
    assert log_lines(core, pod, ns) == [
        f"{PREFIX}session s-min: model simulated",
        f"{PREFIX}prompt of 5 characters",
        "Simulated answer: Hello",
        '{"pier.dev/result": {"outcome": "succeeded", "summary": "Simulated answer: Hello", "model": "simulated"}}',
    ]


@pytest.mark.parametrize(
    ("prompt", "code", "message"),
    [
        ("Please FAIL this one", 4, "simulated failure: the prompt asked for one"),
        ("Crash the runner pier:exit=3", 3, "simulated failure: exit code 3"),
    ],
    ids=["fail", "exit-code"],
)
def test_a_prompt_can_make_the_runner_fail(batch, core, ns, prompt, code, message):
    pod = start_session(batch, core, ns, "s-bad", prompt).metadata.name
    wait_until(lambda: job_condition(batch, ns, "s-bad", "Failed") is not None, TIMEOUT)
    assert job_condition(batch, ns, "s-bad", "Failed").reason == "BackoffLimitExceeded"
    failed = wait_phase(core, ns, pod, "Failed")
    terminated = failed.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (code, "Error")
    lines = log_lines(core, pod, ns)
    assert lines[0] == f"{PREFIX}session s-bad: model claude-sonnet-4"
    assert not any(line.startswith("Simulated answer") for line in lines)
    assert json.loads(lines[-1]) == {"pier.dev/result": {"outcome": "failed", "message": message}}


def test_a_sleeping_session_runs_past_the_default_and_reports_only_when_it_ends(batch, core, emulator, ns):
    pod = start_session(batch, core, ns, "s-long", "Take your time pier:sleep=600").metadata.name
    wait_phase(core, ns, pod, "Running")
    emulator.advance_clock(60)  # far past the default run time
    assert core.read_namespaced_pod(pod, ns).status.phase == "Running"
    running = log_lines(core, pod, ns)
    assert running[-1] == "Simulated answer: Take your time pier:sleep=600"
    assert not any("pier.dev/result" in line for line in running)  # the result comes at the end

    emulator.advance_clock(600)
    wait_phase(core, ns, pod, "Succeeded")
    lines = log_lines(core, pod, ns)
    assert lines[:-1] == running
    assert result(lines[-1])["outcome"] == "succeeded"
    wait_until(lambda: job_condition(batch, ns, "s-long", "Complete") is not None, TIMEOUT)


def test_a_session_whose_config_map_appears_late_waits_in_container_creating(batch, core, emulator, ns):
    batch.create_namespaced_job(ns, runner_job("s-late"))
    pod = the_pod(core, ns, "s-late").metadata.name

    def failed_mounts():
        selector = f"involvedObject.name={pod},reason=FailedMount"
        return core.list_namespaced_event(ns, field_selector=selector).items

    wait_until(failed_mounts, TIMEOUT)
    (event,) = failed_mounts()
    assert (event.type, event.source.component, event.involved_object.field_path) == ("Warning", "kubelet", None)
    assert event.message == 'MountVolume.SetUp failed for volume "session" : configmap "s-late-session" not found'
    emulator.advance_clock(60)  # tried again, still missing
    waiting = core.read_namespaced_pod(pod, ns)
    assert waiting.status.phase == "Pending"
    assert waiting.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert failed_mounts()[0].count >= 2

    core.create_namespaced_config_map(ns, session_config_map("s-late", session("s-late", ns, "Better late")))
    wait_phase(core, ns, pod, "Succeeded")
    assert result(log_lines(core, pod, ns)[-1])["summary"] == "Simulated answer: Better late"
    wait_until(lambda: job_condition(batch, ns, "s-late", "Complete") is not None, TIMEOUT)


def test_an_item_naming_a_key_the_config_map_lacks_fails_the_mount(batch, core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "s-key-session"}, "data": {"other": "{}"}})
    volume = {"name": "s-key-session", "items": [{"key": "payload", "path": "session.json"}]}
    batch.create_namespaced_job(ns, runner_job("s-key", volume=volume))
    pod = the_pod(core, ns, "s-key").metadata.name
    selector = f"involvedObject.name={pod},reason=FailedMount"
    wait_until(lambda: core.list_namespaced_event(ns, field_selector=selector).items, TIMEOUT)
    (event,) = core.list_namespaced_event(ns, field_selector=selector).items
    assert event.message == (
        'MountVolume.SetUp failed for volume "session" : configmap references non-existent config key: payload'
    )

    body = session("s-key", ns, "Mapped")
    core.patch_namespaced_config_map("s-key-session", ns, {"data": {"payload": json.dumps(body)}})
    wait_phase(core, ns, pod, "Succeeded")  # the item maps key payload to the file the runner reads
    assert result(log_lines(core, pod, ns)[-1])["summary"] == "Simulated answer: Mapped"


def test_a_runner_without_its_session_file_fails_saying_so(batch, core, ns):
    # An optional volume mounts empty when its ConfigMap is missing: the runner finds no file.
    batch.create_namespaced_job(ns, runner_job("s-none", volume={"name": "s-none-session", "optional": True}))
    pod = the_pod(core, ns, "s-none").metadata.name
    failed = wait_phase(core, ns, pod, "Failed")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 2
    message = f"session file not found: {SESSION_FILE}"
    assert result(log_lines(core, pod, ns)[-1]) == {"outcome": "failed", "message": message}


def test_markers_and_test_hooks_win_over_the_session(batch, core, emulator, ns):
    emulator.set_exit_code(ns, "s-hooked", 5)
    emulator.append_pod_log(ns, "s-hooked", "agent: a line from the test")
    pod = start_session(batch, core, ns, "s-hooked", "All good", "--pier-emulator-log=from a marker").metadata.name
    wait_phase(core, ns, pod, "Failed")
    lines = log_lines(core, pod, ns)
    assert lines[-3:] == [
        "from a marker",
        "agent: a line from the test",
        '{"pier.dev/result": {"outcome": "failed", "message": "simulated failure: exit code 5"}}',
    ]

    pod = start_session(batch, core, ns, "s-marked", "Please fail pier:sleep=600",
                        "--pier-emulator-exit=0", "--pier-emulator-sleep=0.1").metadata.name  # fmt: skip
    wait_phase(core, ns, pod, "Succeeded")
    assert result(log_lines(core, pod, ns)[-1])["outcome"] == "succeeded"


def test_pods_that_are_not_session_runners_are_untouched(core, ns):
    # PIER_SESSION_FILE without the session label: an ordinary container, whatever the file says.
    core.create_namespaced_config_map(ns, session_config_map("plain", session("plain", ns, "fail")))
    spec = runner_job("plain", "--pier-emulator-log=just a container")["spec"]["template"]["spec"]
    core.create_namespaced_pod(ns, {"metadata": {"name": "plain"}, "spec": spec})
    wait_phase(core, ns, "plain", "Succeeded")
    assert log_lines(core, "plain", ns) == ["just a container"]


def test_a_stopped_runner_reports_that_it_was_stopped(batch, core, ns):
    # A finalizer keeps the deleted pod, and its log, readable (Pier captures logs before a pod goes).
    core.create_namespaced_config_map(ns, session_config_map("s-stop", session("s-stop", ns, "Long pier:sleep=3600")))
    spec = runner_job("s-stop")["spec"]["template"]
    pod = {"metadata": {"name": "s-stop", "finalizers": ["pier.dev/hold"], **spec["metadata"]}, "spec": spec["spec"]}
    core.create_namespaced_pod(ns, pod)
    wait_phase(core, ns, "s-stop", "Running")
    core.delete_namespaced_pod("s-stop", ns)
    wait_phase(core, ns, "s-stop", "Failed")
    assert core.read_namespaced_pod("s-stop", ns).status.container_statuses[0].state.terminated.exit_code == 143
    stopped = {"outcome": "failed", "message": "the runner was stopped (SIGTERM) before it finished"}
    assert result(log_lines(core, "s-stop", ns)[-1]) == stopped
    core.patch_namespaced_pod("s-stop", ns, {"metadata": {"finalizers": None}})
