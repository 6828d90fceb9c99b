"""A Kubernetes API emulator: a test double of the Kubernetes API server.

No cluster runs on development machines or in CI, so Pier's tests (and local runs, shown as a
"local simulated cluster") talk to this instead: an HTTP server that the official `kubernetes`
Python client uses unchanged, over a kubeconfig. It is not a Kubernetes: there is no etcd, no
container runs, and only the controllers whose effects a client reads back run. What it does
do, it does like the real API server wherever Pier depends on it: object metadata, `Status` errors and their reasons, optimistic concurrency, label and field
selectors, paging, the three patch formats, defaulting and validation of the kinds Pier
manages, namespace termination, service-account tokens (TokenRequest, TokenReview),
CustomResourceDefinitions and the custom resources they serve (schema defaulting, pruning and
validation, the status subresource), server-side apply with `managedFields`, and watch
(`?watch=true`: chunked events from a bounded history, bookmarks, 410 Expired). Each such
behaviour is pinned by a contract test in `tests/test_kube_emulator*.py` (one module per area).
Not served: dry run, `/scale`, tables (printer columns are accepted and ignored), CEL
validation rules, conversion webhooks.

Authentication and authorization (`KubeEmulator(authorization=True)`, the default of
`python -m kube_emulator`, so `make run` and Pier's integration tests have it): every request
is authenticated (the kubeconfig's admin token as `kubernetes-admin` in `system:masters`,
users a test registers with `add_user`, ServiceAccount tokens; 401 for any other token, and
no token is `system:anonymous`), `Impersonate-*` headers are honoured for callers allowed to
`impersonate`, and the request is authorized by RBAC from the stored Roles, ClusterRoles
(aggregation included) and bindings, with the real server's 403 message; writes of RBAC
objects get the `bind`/`escalate` checks, and SubjectAccessReview, SelfSubjectAccessReview
and LocalSubjectAccessReview answer from the same rules. Not emulated: client certificates,
OIDC and webhook token authenticators, the Node and webhook authorizers,
SelfSubjectRulesReview, admission beyond namespace lifecycle. `authorization=False` (the
Python default, for quick unit tests) accepts any token and allows everything; access
reviews still answer from RBAC. Pinned by `tests/test_kube_emulator_authz.py`.

Workloads run too, simulated (`controllers.py`, pinned in `tests/test_kube_emulator_workloads.py`):
a job controller creates a Job's pods, a scheduler binds them to the seeded nodes (nodeSelector,
affinity, taints, the namespace's node selector) or says why not, a simulated kubelet takes them
through Pending, Running and Succeeded/Failed with container states, logs and events, and a
garbage collector follows ownerReferences (Background, Foreground, Orphan). A background thread
moves them on the emulator's clock. What a container does (exit code, run time, log lines) is
chosen by markers in its arguments (`--pier-emulator-exit=3`, `--pier-emulator-sleep=30`,
`--pier-emulator-log=TEXT`) or by test hooks (`set_exit_code`, `append_pod_log`). A Pier
session runner (a pod labelled `pier.dev/session` whose container reads `PIER_SESSION_FILE`
from a mounted ConfigMap) acts out its session (`runner_sim.py`, pinned in
`tests/test_kube_emulator_runner.py`): progress lines and a simulated answer, a `pier.dev/result`
line as it ends, and the failure, exit code or run time its prompt asks for (`fail`,
`pier:exit=N`, `pier:sleep=N`), while a missing ConfigMap keeps it in ContainerCreating with a
`FailedMount` event, as a real kubelet does.

Tests also steer it: inject faults (errors, latency, dropped connections), reset the state,
count requests and move the clock forward, from Python or over HTTP under `/_emulator/` for
other processes.

    from kube_emulator import KubeEmulator

    with KubeEmulator(authorization=True) as emu:
        emu.write_kubeconfig(path)      # for kubernetes.config.new_client_from_config(config_file=path)
        token = emu.add_user("alice", groups=["team-a"])   # emu.api_client(token): a client as alice
        emu.inject_fault(verb="create", resource="namespaces", status=500, times=2)
        emu.inject_fault(verb="create", resource="serviceaccounts/token", status=503)
        emu.advance_clock(3600)         # an hour later: tokens issued for an hour have expired
        emu.set_exit_code("team-a", "runner-1", 2)     # the Job's pods exit with 2
        emu.append_pod_log("team-a", "runner-1", "agent started")

    # Watches: the official client's kubernetes.watch.Watch().stream(core.list_namespaced_config_map,
    # ns, resource_version=rv); KubeEmulator(watch_history=1000, watch_bookmark_interval=60.0) are
    # the defaults (changes kept per resource type; seconds between bookmarks), tests shorten the latter.

Standalone: `python -m kube_emulator --port 0 --kubeconfig PATH [--ready-file PATH]
[--authorization on|off] [--watch-history EVENTS] [--watch-bookmark-interval SECONDS]
[--nodes N] [--pod-start-delay S] [--pod-run-seconds S] [--job-backoff-seconds S]`.

Layout: `emulator.py` (the facade), `server.py` (HTTP), `api.py` (routing, discovery,
controls), `store.py` (state and verb semantics), `registry.py` (the served types),
`strategies.py` (per-kind defaults and validation), `tokens.py` (TokenRequest, TokenReview), `serviceaccounts.py` (the ServiceAccount
admission plugin, the token controller),
`crd.py` (CRDs, custom resource types and the establishing controller), `schema.py` (a custom
resource's openAPIV3Schema), `apply.py` (server-side apply, managedFields), `watch.py` (the
change history and watch streams), `access.py` (the authentication, impersonation and
authorization filters), `authn.py` (who a token is), `rbac.py` (RBAC decisions, escalation
checks, bootstrap policy, access reviews), `policy.py` and `reviews.py`, `openapi.py`,
`controllers.py` (the workloads and their thread: `jobs.py`, `scheduler.py`, `kubelet.py`,
`runner_sim.py`, `gc.py`, `events.py`, `logs.py`), `clock.py`, `patch.py`, `selectors.py`,
`validation.py`, `quantity.py`, `errors.py`, `faults.py`.
"""

from .emulator import KubeEmulator
from .faults import Fault

__all__ = ["Fault", "KubeEmulator"]
