"""Sessions: what agentic sessions cost the periodic sync, how soon a finished run shows, and the
sessions list (issue 11).

`make bench ARGS=sessions`; smaller: `make bench ARGS="sessions --tenants 2"` (also `--projects N`
per tenant, `--sessions N` per project, `--samples N` for part 2). Against Pier's Kubernetes API
emulator (tests/kube_emulator) started in this process (common.emulated_cluster), over HTTP with
the official client; its simulated runner acts out each session's prompt (`pier:sleep=N`: the run
takes N seconds of the emulator's clock). The emulator's own work runs in this process and is part
of the measured time, as a real API server's would be.

Set-up: 10 tenants x 5 projects x 10 sessions = 500 sessions in 50 projects, by Pier's own paths:
tenants (common.create_tenant), each allowed 50 running sessions (tenants.services.tenant_update,
what staff set) and 10 per project (tenants.projects.services.tenant_defaults_update, the
organization's default for `sessions.running`), projects (common.project_ready), then the
sessions, round-robin over the tenants, by sessions.services.session_create (what a POST calls).
Celery messages are not published: `reconcile_object.apply_async` is patched (common.
no_reconcile_enqueue) to keep them, and they are run in this process, in order, by calling the
task itself (`portal.controller.reconcile_object(label, pk, schema)`: its schema switch, lock,
retry bookkeeping and all), as a worker would. Half the sessions run 600 s, half 3,000 s (of the
emulator's clock, which the benchmark moves forward to finish them).

1. Sync cycles. A cycle is what beat and a worker do per PIER_SESSION_SYNC_SECONDS: one
   sessions.tasks.sync_sessions() (in the public schema), then every reconcile it published
   (and any they published in turn). Counted per cycle: Kubernetes requests (by the emulator, by
   verb and resource), SQL statements and writes (common.StatementCounter on the connection), for
   the sync alone and with its reconciles; the cycle's seconds. In three states: all 500 running,
   half finished (the emulator's clock moved past the short ones' run time, and cycles run until
   they show Completed), all finished. In each state two cycles: one PIER_SESSION_SYNC_SECONDS
   after the previous cycle (what each of beat's cycles meets; the headline figure), one right
   after it ("back-to-back": what a running session costs when nothing changed in between).
   Also shown: the cycle in which a state's Jobs finished. Goal: a constant per tenant, not per
   session; finished sessions cost nothing.
2. Job finished -> API shows it. In a tenant of its own, before part 1's sessions exist, new
   sessions are started one after another (session_create, one every 0.7 s), each running about
   2 s (`pier:sleep`, with a fraction of the sync period added so that finishing times fall
   anywhere in it); a thread runs what beat and a worker would, every 0.5 s (start to start):
   sync_sessions, then the published reconciles. Measured per session, on one clock
   (time.perf_counter): from the moment a watcher of runner Jobs (a watch stream on the emulator,
   open all along) receives the Job with its `Complete` condition, to the first
   `GET /api/v1/tenants/<t>/projects/<p>/sessions/<name>` (polled every 20 ms from then on,
   through the whole Django stack) answering phase Completed. Split into: waiting for the next
   sync, the sync, the reconciles before this one in the cycle, its reconcile, and the poll's GET.
   The latency at the default period is dominated by the wait (uniform between 0 and
   PIER_SESSION_SYNC_SECONDS): it is given as an estimate, the measured rest (sync to visible)
   plus that uniform wait, next to what was measured at 0.5 s.
3. The sessions list, GET /api/v1/tenants/<t>/projects/<p>/sessions, for a project of part 2's
   tenant (after part 2) with 110 sessions (started by session_create, each with a model, a
   repository and an environment variable; their reconciles are not run, so they stay Pending,
   as bench/projects.py leaves its list's projects pending): SQL statements per request at
   page_size 10 and 100, and requests per second of each (interleaved rounds, the same signed-in
   session), through the whole Django stack with bench/projects.py's request helpers.

Parts 2 and 3 run first, while the cluster holds little else: the emulator's controllers pass
over the whole store every 20 ms after any write (its job controller now leaves a Job whose
status did not change alone, without copying it), so with 500 Jobs a pass still takes a while,
holding the store's lock that requests wait for. Part 1's counts do not depend on that; its
seconds (and the set-up's) do, and most of this benchmark's run time (about 7.5 minutes at the
default size on 2 CPUs; `--tenants 5` for half the sessions, about a quarter of that time) is the
emulator's.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
import uuid
from collections import Counter
from unittest import mock

from django.conf import settings
from django.db import connection

from bench.common import (
    KUBE_VERBS, PREFIX, StatementCounter, Timer, WsgiClient, capture_statements, cleanup_leftovers, create_tenant,
    emulated_cluster, heading, is_set_search_path, kube_requests, kube_writes, make_users, no_reconcile_enqueue,
    p50, p95, percentile, project_ready, quiet_reconciler, remove_tenants, remove_users, table,
)
from bench.projects import WARMUP, _burst, _statements

TENANTS = 10
PROJECTS_PER_TENANT = 5
SESSIONS_PER_PROJECT = 10
# Emulator seconds the two halves run, and their timeout (above both, so they complete).
SHORT_RUN, LONG_RUN, TIMEOUT = 600, 3000, 7200
SETTLE_SECONDS = 180  # the most a state may take to be reached
RESOURCES = ("agenticsessions", "agenticsessions/status", "jobs", "pods", "pods/log", "configmaps",
             "serviceaccounts")

SAMPLES = 40
BEAT_SECONDS = 0.5
SAMPLE_RUN = 2.0  # seconds each latency sample runs (plus a fraction of BEAT_SECONDS)
POLL_SECONDS = 0.02

LIST_SESSIONS = 110  # more than the largest page
PAGE_SIZES = (10, 100)
ROUNDS = 7
REQUESTS = 50
STATEMENT_SAMPLES = 10


def _label() -> str:
    from sessions.models import AgenticSession

    return AgenticSession._meta.label_lower


def _runner_selector() -> str:
    """The label selector of runner Jobs and pods (what sync_sessions lists)."""
    from portal import kube
    from sessions import cluster

    return f"{kube.MANAGED_BY[0]}={kube.MANAGED_BY[1]},{cluster.LABEL_COMPONENT}={cluster.RUNNER_COMPONENT}"


class Published:
    """Stands in for the broker: set as the side effect of common.no_reconcile_enqueue's mock
    (`reconcile_object.apply_async`) and, by `logs_published`, of `keep_runner_logs.apply_async`;
    keeps each message, in order, for running in this process: (label, pk, schema) for a
    reconcile, (LOGS, pairs, schema) for a tenant's logs."""

    def __init__(self):
        self._messages: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, args=(), kwargs=None, **options) -> None:
        with self._lock:
            self._messages.append(tuple(args))

    def logs(self, args=(), headers=None, **options) -> None:
        with self._lock:
            self._messages.append((LOGS, args[0], headers["_schema_name"]))

    def take(self) -> list[tuple]:
        with self._lock:
            messages, self._messages = self._messages, []
        return messages


LOGS = "sessions.tasks.keep_runner_logs"


@contextlib.contextmanager
def logs_published(published: Published):
    from sessions import tasks

    with mock.patch.object(tasks.keep_runner_logs, "apply_async", side_effect=published.logs):
        yield


def _work(published: Published) -> list[tuple]:
    """Run what was published, and what that publishes, as a worker would: the task itself,
    called in this process (a tenant's logs in its schema, as tenant-schemas-celery would).
    Returns (label, pk, schema, start, end, error) per message (pk None for logs)."""
    from django_tenants.utils import schema_context

    from portal.controller import reconcile_object
    from sessions import tasks

    done = []
    for _ in range(10):  # follow-ups (e.g. limits.wake_waiting) come in rounds
        messages = published.take()
        if not messages:
            break
        for label, pk, schema in messages:
            start, error = time.perf_counter(), None
            try:
                if label == LOGS:
                    with schema_context(schema):
                        tasks.keep_runner_logs(pk)
                    pk = None
                else:
                    reconcile_object(label, pk, schema)
            except Exception as exc:  # the task would retry it; here it is counted and shown
                error = f"{type(exc).__name__}: {exc}"
            done.append((label, pk, schema, start, time.perf_counter(), error))
    return done


def _phases(tenants) -> Counter:
    from django_tenants.utils import tenant_context

    from sessions.models import AgenticSession

    counts: Counter = Counter()
    for tenant in tenants:
        with tenant_context(tenant):
            counts.update(AgenticSession.objects.values_list("phase", flat=True))
    return counts


def _requests(emulator) -> tuple[Counter, Counter]:
    """Requests served so far: by verb (common.kube_requests), and by verb and resource for the
    resources a session touches ("get pods/log")."""
    by_resource: Counter = Counter()
    for verb in KUBE_VERBS:
        for resource in RESOURCES:
            by_resource[f"{verb} {resource}"] = emulator.request_count(verb, resource)
    return kube_requests(emulator), by_resource


# --- 1. Sync cycles ----------------------------------------------------------------------------


def _cycle(emulator, published: Published, tenants, *, state: str = "", when: str = "") -> dict:
    """One sync_sessions() and the reconciles it published, counted."""
    from sessions import tasks
    from sessions.models import AgenticSession

    phases = _phases(tenants)
    live = sum(n for phase, n in phases.items() if phase not in AgenticSession.TERMINAL)
    connection.set_schema_to_public()
    sql = StatementCounter()
    verbs_before, resources_before = _requests(emulator)
    with connection.execute_wrapper(sql):
        start = time.perf_counter()
        synced = tasks.sync_sessions()
        sync_s = time.perf_counter() - start
        sync_sql, sync_writes = sql.statements, len(sql.writes)
        sync_verbs = kube_requests(emulator) - verbs_before
        done = _work(published)
        seconds = time.perf_counter() - start
    verbs, resources = _requests(emulator)
    verbs, resources = verbs - verbs_before, resources - resources_before
    errors = [d[5] for d in done if d[5]]
    return {
        "state": state, "when": when, "live": live, "phases": dict(phases), "jobs": synced["jobs"],
        "enqueued": synced["enqueued"], "logs": synced["logs"], "log_reads": resources.get("get pods/log", 0),
        "reconciles": len(done), "errors": errors,
        "sync_s": sync_s, "seconds": seconds,
        "kube_sync": sum(sync_verbs.values()), "kube": sum(verbs.values()), "kube_writes": kube_writes(verbs),
        "by_verb": {v: n for v, n in verbs.items() if n}, "by_resource": {r: n for r, n in resources.items() if n},
        "sql_sync": sync_sql, "sql": sql.statements, "sql_writes": len(sql.writes), "sql_sync_writes": sync_writes,
    }


def _settle(emulator, published: Published, tenants, done) -> list[dict]:
    """Cycles (as beat would run them, a moment apart) until done(phases)."""
    cycles = []
    deadline = time.monotonic() + SETTLE_SECONDS
    while not done(_phases(tenants)):
        if time.monotonic() > deadline:
            raise AssertionError(f"sessions did not settle: {dict(_phases(tenants))}")
        cycles.append(_cycle(emulator, published, tenants))
        time.sleep(0.2)
    return cycles


def _at_the_period(emulator, published, tenants, state: str, previous_end: float) -> list[dict]:
    """The state's two measured cycles: PIER_SESSION_SYNC_SECONDS after the previous one, then
    right after."""
    time.sleep(max(0.0, previous_end + settings.PIER_SESSION_SYNC_SECONDS - time.perf_counter()))
    period = f"{settings.PIER_SESSION_SYNC_SECONDS:g} s later"
    cycles = [_cycle(emulator, published, tenants, state=state, when=period),
              _cycle(emulator, published, tenants, state=state, when="back-to-back")]
    _age_logs(tenants)
    return [*cycles, _cycle(emulator, published, tenants, state=state, when=LOGS_DUE)]


LOGS_DUE = "every log due"


def _age_logs(tenants) -> None:
    """What PIER_SESSION_LOG_SECONDS of waiting does: every running session's log is due."""
    from datetime import timedelta

    from django.db.models import F
    from django_tenants.utils import tenant_context

    from sessions.models import AgenticSession

    for tenant in tenants:
        with tenant_context(tenant):
            AgenticSession.objects.filter(log_captured_at__isnull=False).update(
                log_captured_at=F("log_captured_at") - timedelta(seconds=settings.PIER_SESSION_LOG_SECONDS))
    connection.set_schema_to_public()


def _tenant(slug: str, owner, *, per_project: int, per_tenant: int):
    """A provisioned tenant (common.create_tenant) where `per_tenant` sessions may run at once
    (staff's tenant_update) and `per_project` in each project (the organization's default)."""
    from django_tenants.utils import tenant_context

    from tenants import services as tenant_services
    from tenants.projects import services as project_services

    tenant = create_tenant(slug, owner)[0]
    assert tenant.status == "active", f"{slug}: provisioning ended {tenant.status}: {tenant.status_message}"
    tenant = tenant_services.tenant_update(tenant=tenant, acting_user=None, max_running_sessions=per_tenant)
    with tenant_context(tenant):
        project_services.tenant_defaults_update(tenant=tenant, acting_user=owner,
                                                defaults={"sessions.running": str(per_project)})
    return tenant


def _populate(slugs, owners, per_tenant: int, per_project: int, published: Published) -> tuple[list, dict]:
    """Tenants, projects and sessions; the sessions' first reconciles run. Returns (tenants, timings)."""
    from django_tenants.utils import tenant_context

    from sessions import services as session_services
    from tenants.projects.access import Access
    from tenants.projects.models import Project

    admin = Access("admin", "bench")
    with Timer() as tenants_timer:
        tenants = [_tenant(slug, owner, per_project=per_project, per_tenant=per_tenant * per_project)
                   for slug, owner in zip(slugs, owners)]
    with Timer() as projects_timer:
        for j in range(per_tenant):
            for tenant, owner in zip(tenants, owners):
                outcomes = project_ready(tenant, owner, f"p{j}")
                assert "error" not in str(outcomes.values()), outcomes
    published.take()  # the projects' own reconciles ran already (project_ready)
    projects = {}
    for tenant in tenants:
        with tenant_context(tenant):
            projects[tenant.slug] = list(Project.objects.order_by("slug"))
    create_s = []
    with Timer() as sessions_timer:
        for k in range(per_project):
            for p in range(per_tenant):
                for tenant, owner in zip(tenants, owners):
                    run = SHORT_RUN if k % 2 == 0 else LONG_RUN
                    start = time.perf_counter()
                    with tenant_context(tenant):
                        session_services.session_create(
                            tenant=tenant, project=projects[tenant.slug][p], acting_user=owner, access=admin,
                            prompt=f"Summarise the README, part {k} pier:sleep={run}", timeout_seconds=TIMEOUT)
                    create_s.append(time.perf_counter() - start)
    with Timer() as first_timer:
        done = _work(published)
    errors = [d[5] for d in done if d[5]]
    assert not errors, errors[:3]
    first_s = [d[4] - d[3] for d in done]
    return tenants, {"tenants_s": tenants_timer.seconds, "projects_s": projects_timer.seconds,
                     "sessions_s": sessions_timer.seconds, "create_ms": (p50(create_s) * 1000, p95(create_s) * 1000),
                     "first_s": first_timer.seconds, "first_ms": (p50(first_s) * 1000, p95(first_s) * 1000),
                     "first_count": len(done)}


def _one_reconcile(emulator, tenant) -> dict:
    """One running session's whole reconcile (no hint) with nothing new in the cluster: its SQL
    statements and Kubernetes calls (what a live session costs when its phase changes or a retry
    runs; a log-only pass, the usual cost, reads just the log)."""
    from django_tenants.utils import tenant_context

    from portal.controller import reconcile_object
    from sessions.models import AgenticSession

    with tenant_context(tenant):
        pk = AgenticSession.objects.filter(phase=AgenticSession.Phase.RUNNING).values_list("pk", flat=True).first()
    connection.set_schema_to_public()
    before = _requests(emulator)[1]
    statements = capture_statements(lambda: reconcile_object(_label(), pk, tenant.schema_name))
    calls = _requests(emulator)[1] - before
    return {"statements": statements, "calls": {r: n for r, n in calls.items() if n}}


def _cycles(emulator, published: Published, tenants, sessions: int) -> tuple[list[dict], dict, dict]:
    """The three states and their cycles. Returns (measured cycles, settling figures, one running
    session's reconcile)."""
    from sessions.models import AgenticSession

    Phase = AgenticSession.Phase
    short = (sessions + 1) // 2  # the even ones (k % 2 == 0) run SHORT_RUN
    settling = {}
    measured = []

    with Timer() as timer:
        settle = _settle(emulator, published, tenants, lambda phases: phases[Phase.RUNNING] == sessions)
    settling["running"] = (len(settle), timer.seconds)
    measured += _at_the_period(emulator, published, tenants, "all running", time.perf_counter())
    one = _one_reconcile(emulator, tenants[0])

    emulator.advance_clock(SHORT_RUN + 100)  # the short half ends in the cluster
    finishing = _cycle(emulator, published, tenants, state="half finished", when="its Jobs finish")
    with Timer() as timer:
        settle = _settle(emulator, published, tenants, lambda phases: phases[Phase.COMPLETED] == short)
    settling["half"] = (len(settle), timer.seconds)
    measured += [finishing, *_at_the_period(emulator, published, tenants, "half finished", time.perf_counter())]

    emulator.advance_clock(LONG_RUN - SHORT_RUN)  # and the long one (still before the timeout)
    finishing = _cycle(emulator, published, tenants, state="all finished", when="its Jobs finish")
    with Timer() as timer:
        settle = _settle(emulator, published, tenants, lambda phases: phases[Phase.COMPLETED] == sessions)
    settling["all"] = (len(settle), timer.seconds)
    measured += [finishing, *_at_the_period(emulator, published, tenants, "all finished", time.perf_counter())]
    phases = _phases(tenants)
    assert phases == Counter({Phase.COMPLETED: sessions}), f"sessions ended {dict(phases)}"
    return measured, settling, one


def _per(value: float, n: int) -> str:
    return f"{value / n:.2f}" if n else "-"


def _report_cycles(measured: list[dict], tenants: int, projects: int, sessions: int, setup: dict,
                   settling: dict, one: dict) -> dict:
    print(f"\nset-up: {tenants} tenants in {setup['tenants_s']:.1f} s; {projects} projects (project_create + "
          f"first reconcile) in {setup['projects_s']:.1f} s; {sessions} sessions: session_create p50 "
          f"{setup['create_ms'][0]:.1f} ms (all {setup['sessions_s']:.1f} s), their first reconciles (Pending -> "
          f"Creating: the custom resource, the runner's ConfigMaps, ServiceAccount and Job) p50 "
          f"{setup['first_ms'][0]:.1f} ms, p95 {setup['first_ms'][1]:.1f} ms (all {setup['first_s']:.1f} s)")
    print("cycles until each state was reached: " + "; ".join(
        f"{name}: {n} cycles in {s:.1f} s" for name, (n, s) in settling.items()))
    rows = []
    for c in measured:
        errors = f" ({len(c['errors'])} errors)" if c["errors"] else ""
        rows.append([
            c["state"], c["when"], c["live"], c["jobs"], f"{c['enqueued']} + {c['logs']}{errors}", f"{c['sync_s']:.2f}",
            f"{c['seconds']:.2f}",
            f"{c['kube_sync']} + {c['kube'] - c['kube_sync']} = {c['kube']}", _per(c["kube"], tenants),
            _per(c["kube"], c["live"]),
            f"{c['sql_sync']} + {c['sql'] - c['sql_sync']} = {c['sql']}", _per(c["sql"], tenants),
            _per(c["sql"], c["live"]), f"{c['kube_writes']}, {c['sql_writes']}",
        ])
    print(f"\n1. sync cycles (sessions.tasks.sync_sessions + the reconciles it published, run in-process), "
          f"{sessions} sessions in {projects} projects of {tenants} tenants")
    print(table(["state", "cycle", "live sessions", "runner Jobs", "passes + logs due", "sync s", "cycle s",
                 "Kubernetes calls (sync + the rest)", "per tenant", "per live session",
                 "SQL statements (sync + the rest)", "per tenant", "per live session",
                 "writes (Kubernetes, SQL)"], rows))
    for c in measured:
        if c["errors"]:
            print(f"  {c['state']}, {c['when']}: {c['errors'][0][:200]}")
    headline = {}
    for c in measured:
        if c["when"].endswith("later"):
            headline[c["state"]] = c
    print("\nKubernetes calls of each state's cycle at the period, by verb and resource:")
    for state, c in headline.items():
        print(f"  {state}: {c['by_verb'] or 'none'}; {c['by_resource'] or 'none'}")
    print(f"\none running session's whole reconcile, nothing new in the cluster: Kubernetes calls {one['calls']}; "
          f"{len(one['statements'])} SQL statements:")
    for sql in one["statements"]:
        print(f"  {sql if len(sql) <= 110 else sql[:107] + '...'}")
    print("\nper live session = the cycle's whole cost / its live sessions; per tenant = / "
          f"{tenants} tenants. Goal: constant per tenant; finished sessions cost nothing. A running session's "
          f"log is read from its pod every PIER_SESSION_LOG_SECONDS ({settings.PIER_SESSION_LOG_SECONDS:g} s): one "
          "call per session (no Kubernetes API reads several pods' logs), counted apart.")
    running, half, finished = headline["all running"], headline["half finished"], headline["all finished"]
    due = {c["state"]: c for c in measured if c["when"] == LOGS_DUE}
    # What one more live session adds to a cycle: the slope between all running and half finished,
    # at the period and with every log due; of the calls other than log reads, and of the SQL statements.

    def slope_of(a: dict, b: dict) -> dict:
        live = a["live"] - b["live"]
        return {"kube": ((a["kube"] - a["log_reads"]) - (b["kube"] - b["log_reads"])) / live if live else 0.0,
                "sql": (a["sql"] - b["sql"]) / live if live else 0.0,
                "log_reads": (a["log_reads"] - b["log_reads"]) / live if live else 0.0}

    slope = slope_of(running, half)
    slope_due = slope_of(due["all running"], due["half finished"])
    constant = all(x["kube"] < 1 / tenants and x["sql"] < 1 / tenants for x in (slope, slope_due))
    nothing = finished["kube"] <= 1 and finished["sql"] == 0
    print(f"each live session adds {slope['kube']:.2f} Kubernetes calls (log reads apart) and {slope['sql']:.2f} "
          f"SQL statements to a cycle at the period, {slope_due['kube']:.2f} and {slope_due['sql']:.2f} with every "
          f"log due (all running vs half finished); goal constant per tenant: {'met' if constant else 'NOT met'}")
    print(f"log reads per live session: {slope_due['log_reads']:.2f} in a cycle with every log due, so on average "
          f"one every {settings.PIER_SESSION_LOG_SECONDS / settings.PIER_SESSION_SYNC_SECONDS:g} cycles; at the period: "
          + "; ".join(f"{state}: {c['log_reads']} of {c['live']}" for state, c in headline.items() if c["live"]))
    print(f"all finished: {finished['kube']} Kubernetes calls, {finished['sql']} SQL statements per cycle; "
          f"goal finished sessions cost nothing: {'met' if nothing else 'NOT met'}")
    back = [c for c in measured if c["when"] == "back-to-back" and c["live"]]
    if back:
        print("back-to-back cycles (nothing changed since the previous one): " + "; ".join(
            f"{c['state']}: {c['enqueued']} of {c['live']} live sessions reconciled again" for c in back))
    return {
        "states": {state: {k: c[k] for k in ("live", "enqueued", "logs", "log_reads", "seconds", "kube", "sql", "kube_writes",
                                             "sql_writes", "by_resource")} for state, c in headline.items()},
        "back_to_back": {c["state"]: c["enqueued"] for c in back}, "per_live_session": slope,
        "per_live_session_logs_due": slope_due,
        "logs_due": {state: {k: c[k] for k in ("live", "logs", "log_reads", "seconds", "kube", "sql")}
                     for state, c in due.items()},
        "constant": constant, "finished_free": nothing,
        "finishing": {c["state"]: {k: c[k] for k in ("enqueued", "seconds", "kube", "sql")}
                      for c in measured if c["when"] == "its Jobs finish"},
        "setup": setup,
    }


# --- 2. Job finished -> visible ------------------------------------------------------------------


class Beat(threading.Thread):
    """What beat and a worker do, in a thread of this process: sync_sessions every `period`
    seconds (start to start), then the reconciles published meanwhile, in order. Keeps, per
    session ((schema, pk)), when each of its reconciles ran: (cycle start, sync end, start, end)."""

    def __init__(self, published: Published, period: float):
        super().__init__(name="bench-sessions-beat", daemon=True)
        self.published, self.period = published, period
        self.stopping = threading.Event()
        self.reconciled: dict[tuple, list[tuple]] = {}
        self.cycles: list[tuple[float, float, float]] = []
        self.errors: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        from sessions import tasks

        label = _label()
        try:
            while not self.stopping.is_set():
                start = time.perf_counter()
                connection.set_schema_to_public()
                tasks.sync_sessions()
                synced = time.perf_counter()
                for message_label, pk, schema, began, ended, error in _work(self.published):
                    if error:
                        self.errors.append(error)
                    if message_label == label:
                        self.reconciled.setdefault((schema, pk), []).append((start, synced, began, ended))
                self.cycles.append((start, synced, time.perf_counter()))
                self.stopping.wait(max(0.0, start + self.period - time.perf_counter()))
        except BaseException as exc:  # shown by the main thread
            self.failure = exc
        finally:
            connection.close()  # this thread's own connection


class JobWatch(threading.Thread):
    """When each runner Job with a `Complete` condition reached a watcher (a watch stream of
    runner Jobs across the cluster): Job name -> time.perf_counter()."""

    def __init__(self):
        from kubernetes import client

        from portal import kube

        super().__init__(name="bench-sessions-job-watch", daemon=True)
        self.batch = client.BatchV1Api(kube.api_client())
        self.selector = _runner_selector()
        # From this version on, nothing is missed, however late the stream opens.
        self.version = self.batch.list_job_for_all_namespaces(label_selector=self.selector).metadata.resource_version
        self.stream = None
        self.completed: dict[str, float] = {}

    def run(self) -> None:
        try:
            # The answer's headers may wait for the first event: opened here, not in the caller.
            self.stream = self.batch.list_job_for_all_namespaces(
                label_selector=self.selector, watch=True, resource_version=self.version, timeout_seconds=900,
                _preload_content=False)
            for line in self.stream:
                if not line.strip():
                    continue
                event = json.loads(line)
                job = event.get("object") or {}
                conditions = (job.get("status") or {}).get("conditions") or ()
                if event.get("type") in ("ADDED", "MODIFIED") and any(
                        c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
                    self.completed.setdefault(job["metadata"]["name"], time.perf_counter())
        except Exception:  # closed by stop()
            pass

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.shutdown()  # unblocks the reader (close() would wait for it)
        self.join(timeout=5)


def _latency(tenant, owner, published: Published, samples: int) -> dict:
    from django_tenants.utils import tenant_context

    from sessions import cluster
    from sessions import services as session_services
    from tenants.projects.access import Access
    from tenants.projects.models import Project

    admin = Access("admin", "bench")
    project_ready(tenant, owner, "latency")
    published.take()
    with tenant_context(tenant):
        project = Project.objects.get(slug="latency")
    client = WsgiClient(owner)
    watch = JobWatch()
    watch.start()
    beat = Beat(published, BEAT_SECONDS)
    beat.start()
    started: dict[str, tuple] = {}  # session name -> (schema, pk)
    jobs: dict[str, str] = {}  # runner Job name -> session name
    visible: dict[str, float] = {}
    base = f"/api/v1/tenants/{tenant.slug}/projects/{project.slug}/sessions/"
    next_start = time.perf_counter()
    deadline = time.perf_counter() + samples * 2 + 60
    try:
        while len(visible) < samples:
            now = time.perf_counter()
            if beat.failure is not None:
                raise beat.failure
            if now > deadline:
                raise AssertionError(f"latency samples: {len(visible)} of {samples} visible in time; "
                                     f"reconcile errors: {beat.errors[:3]}")
            if len(started) < samples and now >= next_start:
                i = len(started)
                # A fraction of the sync period added (golden-ratio steps): the Jobs finish at
                # every point of it, not in step with the thread's cycles.
                run = SAMPLE_RUN + round(BEAT_SECONDS * ((i * 0.6180339887) % 1), 3)
                with tenant_context(tenant):
                    s, _ = session_services.session_create(
                        tenant=tenant, project=project, acting_user=owner, access=admin,
                        prompt=f"latency sample {i} pier:sleep={run}", timeout_seconds=600)
                started[s.name] = (tenant.schema_name, s.pk)
                jobs[cluster.job_name(s)] = s.name
                next_start = now + 0.7
            for job_name in list(watch.completed):
                name = jobs.get(job_name)
                if name is not None and name not in visible:
                    status, body = client.get(base + name)
                    if status == 200 and json.loads(body)["phase"] == "Completed":
                        visible[name] = time.perf_counter()
            time.sleep(POLL_SECONDS)
    finally:
        beat.stopping.set()
        beat.join(timeout=30)
        watch.stop()
        client.logout()
        connection.set_schema_to_public()
    assert not beat.errors, beat.errors[:3]
    parts: dict[str, list[float]] = {k: [] for k in ("total", "wait", "sync", "queue", "reconcile", "visible",
                                                     "pipeline")}
    finished = {name: watch.completed[job_name] for job_name, name in jobs.items()}
    for name, key in started.items():
        completed = finished[name]
        cycle_start, synced, began, ended = beat.reconciled[key][-1]  # the one that saw it finished
        shown = visible[name]
        parts["total"].append(shown - completed)
        parts["wait"].append(cycle_start - completed)
        parts["sync"].append(synced - cycle_start)
        parts["queue"].append(began - synced)
        parts["reconcile"].append(ended - began)
        parts["visible"].append(shown - ended)
        parts["pipeline"].append(shown - cycle_start)
    period = settings.PIER_SESSION_SYNC_SECONDS
    steps = 200  # the wait at the default period: uniform in [0, period), on a fine grid
    estimate = [(k + 0.5) / steps * period + rest for rest in parts["pipeline"] for k in range(steps)]
    cycle_s = [end - start for start, _, end in beat.cycles]
    return {"samples": samples, "ms": {k: (p50(v) * 1000, p95(v) * 1000, max(v) * 1000) for k, v in parts.items()},
            "default_s": (p50(estimate), percentile(estimate, 95)), "period": period,
            "cycles": len(beat.cycles), "cycle_ms": (p50(cycle_s) * 1000, p95(cycle_s) * 1000)}


def _report_latency(r: dict) -> None:
    labels = {
        "total": "Job Complete (watch event) -> API GET shows Completed",
        "wait": "  waiting for the next sync (its start - the event)",
        "sync": "  sync_sessions (its LISTs, SQL, enqueue)",
        "queue": "  reconciles ahead of it in that cycle",
        "reconcile": "  its reconcile (Running -> Completed, Job removed)",
        "visible": "  then until a GET answered Completed (poll every 20 ms)",
        "pipeline": "sync start -> visible (what the pipeline adds)",
    }
    print(f"\n2. Job finished -> visible, {r['samples']} sessions, sync + reconciles every {BEAT_SECONDS:g} s in a "
          f"thread ({r['cycles']} cycles, p50 {r['cycle_ms'][0]:.1f} ms, p95 {r['cycle_ms'][1]:.1f} ms each)")
    print(table(["step", "p50 ms", "p95 ms", "max ms"],
                [[labels[k], f"{v[0]:.1f}", f"{v[1]:.1f}", f"{v[2]:.1f}"] for k, v in r["ms"].items()]))
    print(f"at the default PIER_SESSION_SYNC_SECONDS={r['period']:g} (estimate: the measured sync start -> visible "
          f"plus a wait uniform in [0, {r['period']:g}) s): p50 {r['default_s'][0]:.2f} s, "
          f"p95 {r['default_s'][1]:.2f} s")


# --- 3. The list ---------------------------------------------------------------------------------


def _list(tenant, owner, rounds: int, requests: int) -> dict:
    from django_tenants.utils import tenant_context

    from sessions import services as session_services
    from tenants.projects.access import Access

    from tenants.projects.models import Project

    admin = Access("admin", "bench")
    project_ready(tenant, owner, "list")
    with tenant_context(tenant):
        project = Project.objects.get(slug="list")
        for k in range(LIST_SESSIONS):
            session_services.session_create(
                tenant=tenant, project=project, acting_user=owner, access=admin,
                prompt=f"List row {k}: refactor the parser and open a pull request", display_name=f"Row {k}",
                llm={"model": "m1", "temperature": 0.2}, repos=[{"url": "https://example.com/a/b.git",
                                                                 "branch": "main"}],
                env=[{"name": "ROW", "value": str(k)}])
    client = WsgiClient(owner)
    path = f"/api/v1/tenants/{tenant.slug}/projects/list/sessions"
    counts: dict[int, float] = {}
    rows = []
    try:
        for size in PAGE_SIZES:
            query = f"page_size={size}"
            client.get(path, query)  # warm
            result = {}

            def call():
                result["status"], result["body"] = client.get(path, query)

            statements = capture_statements(call)
            assert result["status"] == 200, result
            page = json.loads(result["body"])
            assert len(page["results"]) == min(size, LIST_SESSIONS), (size, len(page["results"]))
            rows.append([size, len(page["results"]), len(statements),
                         sum(not is_set_search_path(q) for q in statements)])
        for size in PAGE_SIZES:
            _burst(client, path, f"page_size={size}", WARMUP)
        rates: dict[int, list[float]] = {size: [] for size in PAGE_SIZES}
        latencies: dict[int, list[float]] = {size: [] for size in PAGE_SIZES}
        for i in range(rounds):
            for size in PAGE_SIZES if i % 2 == 0 else PAGE_SIZES[::-1]:
                gc.collect()
                durations = _burst(client, path, f"page_size={size}", requests)
                rates[size].append(requests / sum(durations))
                latencies[size].extend(durations)
        averaged = {size: _statements(client, path, f"page_size={size}") for size in PAGE_SIZES}
    finally:
        client.logout()
        connection.set_schema_to_public()  # requests leave the connection in the tenant's schema
    for size in PAGE_SIZES:
        counts[size] = averaged[size][0]
    rps = {size: p50(v) for size, v in rates.items()}
    print(f"\n3. sessions list, {path} ({LIST_SESSIONS} sessions), {rounds} interleaved rounds x {requests} requests")
    print(table(
        ["page_size", "rows", "statements/req", "w/o SET search_path", "req/s (median)", "min", "max", "p50 ms",
         "p95 ms"],
        [[size, row[1], f"{counts[size]:g}", row[3], f"{rps[size]:.0f}", f"{min(rates[size]):.0f}",
          f"{max(rates[size]):.0f}", f"{p50(latencies[size]) * 1000:.2f}", f"{p95(latencies[size]) * 1000:.2f}"]
         for size, row in zip(PAGE_SIZES, rows)],
    ))
    print("\nstatements of one request at page_size 100:")
    for sql in averaged[PAGE_SIZES[-1]][2]:
        print(f"  {sql if len(sql) <= 110 else sql[:107] + '...'}")
    constant = len(set(counts.values())) == 1
    print(f"\nstatements independent of page size: {'yes' if constant else 'NO'}")
    return {"counts": counts, "constant": constant, "rps": rps, "rows": LIST_SESSIONS, "rounds": rounds,
            "requests": requests, "latency_ms": {size: p50(v) * 1000 for size, v in latencies.items()}}


# --- The run -------------------------------------------------------------------------------------


def run(tenants: int = TENANTS, projects: int = PROJECTS_PER_TENANT, sessions: int = SESSIONS_PER_PROJECT,
        samples: int = SAMPLES) -> dict:
    total = tenants * projects * sessions
    heading(f"sessions: {total} sessions in {tenants * projects} projects of {tenants} tenants, sync cycles, "
            "finish -> visible, list")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    slugs = [f"{PREFIX}ss-{run_id}-{i:02d}" for i in range(tenants)]
    slugs.append(f"{PREFIX}ss-{run_id}-lat")  # parts 2 and 3
    owners = make_users(f"{PREFIX}ss-{run_id}", tenants + 1)
    published = Published()
    wall = time.perf_counter()
    try:
        with (emulated_cluster() as emulator, no_reconcile_enqueue() as enqueue, logs_published(published),
              quiet_reconciler()):
            enqueue.side_effect = published
            # Parts 2 and 3 first, in their own tenant, while the cluster holds little else: the
            # emulator's controller pass grows with what it holds (see the docstring).
            own = _tenant(slugs[-1], owners[-1], per_project=10, per_tenant=10)
            latency = _latency(own, owners[-1], published, samples)
            _report_latency(latency)
            listing = _list(own, owners[-1], ROUNDS, REQUESTS)
            published.take()  # the list's sessions stay pending

            made, setup = _populate(slugs[:-1], owners[:-1], projects, sessions, published)
            measured, settling, one = _cycles(emulator, published, made, total)
            cycles = _report_cycles(measured, tenants, tenants * projects, total, setup, settling, one)
    finally:
        with Timer() as cleanup:
            remove_tenants(slugs)
            remove_users([u.username for u in owners])
    wall = time.perf_counter() - wall
    print(f"\nsessions benchmark: {wall:.1f} s in all (clean-up {cleanup.seconds:.1f} s)")
    return {"tenants": tenants, "projects": tenants * projects, "sessions": total, "cycles": cycles,
            "latency": latency, "list": listing, "wall_s": wall}
