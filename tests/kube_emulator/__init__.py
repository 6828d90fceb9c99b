"""A Kubernetes API emulator: a test double of the Kubernetes API server.

No cluster runs on development machines or in CI, so Pier's tests (and local runs, shown as a
"local simulated cluster") talk to this instead: an HTTP server that the official `kubernetes`
Python client uses unchanged, over a kubeconfig. It is not a Kubernetes: there is no etcd, no
container runs, and only the controllers whose effects a client reads back run. What it does
do, it does like the real API server wherever Pier depends on it: object metadata, `Status`
errors and their reasons, optimistic concurrency, label and field selectors, paging, the three
patch formats, defaulting and validation of the kinds Pier manages, namespace termination, and
service-account tokens (TokenRequest, TokenReview). Each such behaviour is pinned by a contract
test in `tests/test_kube_emulator.py`.

Workloads run too, simulated (`controllers.py`, pinned in `tests/test_kube_emulator_workloads.py`):
a job controller creates a Job's pods, a scheduler binds them to the seeded nodes (nodeSelector,
affinity, taints, the namespace's node selector) or says why not, a simulated kubelet takes them
through Pending, Running and Succeeded/Failed with container states, logs and events, and a
garbage collector follows ownerReferences (Background, Foreground, Orphan). A background thread
moves them on the emulator's clock. What a container does (exit code, run time, log lines) is
chosen by markers in its arguments (`--pier-emulator-exit=3`, `--pier-emulator-sleep=30`,
`--pier-emulator-log=TEXT`) or by test hooks (`set_exit_code`, `append_pod_log`).

Tests also steer it: inject faults (errors, latency, dropped connections), reset the state,
count requests and move the clock forward, from Python or over HTTP under `/_emulator/` for
other processes.

    from kube_emulator import KubeEmulator

    with KubeEmulator() as emu:
        emu.write_kubeconfig(path)      # for kubernetes.config.new_client_from_config(config_file=path)
        emu.inject_fault(verb="create", resource="namespaces", status=500, times=2)
        emu.inject_fault(verb="create", resource="serviceaccounts/token", status=503)
        emu.advance_clock(3600)         # an hour later: tokens issued for an hour have expired
        emu.set_exit_code("team-a", "runner-1", 2)     # the Job's pods exit with 2
        emu.append_pod_log("team-a", "runner-1", "agent started")

Standalone: `python -m kube_emulator --port 0 --kubeconfig PATH [--ready-file PATH]`.

Layout: `emulator.py` (the facade), `server.py` (HTTP), `api.py` (routing, discovery,
controls), `store.py` (state and verb semantics), `registry.py` (the served types),
`strategies.py` (per-kind defaults and validation), `tokens.py` (TokenRequest, TokenReview),
`controllers.py` (the workloads and their thread: `jobs.py`, `scheduler.py`, `kubelet.py`,
`gc.py`, `events.py`, `logs.py`), `clock.py`, `patch.py`, `selectors.py`, `validation.py`,
`quantity.py`, `errors.py`, `faults.py`.
"""

from .emulator import KubeEmulator
from .faults import Fault

__all__ = ["Fault", "KubeEmulator"]
