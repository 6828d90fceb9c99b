"""Projects: what a project costs, from the request to a ready namespace, and afterwards.

Against Pier's Kubernetes API emulator (tests/kube_emulator), started in this process (a server
thread) with a kubeconfig in a temporary folder: the launcher's `bench` mode starts no emulator
and sets no KUBECONFIG, and the request counts come from the emulator itself. A KUBECONFIG in the
environment is ignored on purpose: a benchmark must not create 200 namespaces in a real cluster.
Pier's client talks to it over HTTP with the official `kubernetes` client, exactly as in
`make run` and the tests.
The emulator's own work (routing, validation, its in-memory store) runs in this process and is
part of the measured time, as a real API server's latency (and etcd's) would be.

1. Create → ready. 20 tenants made by Pier's path (tenants.services.tenant_create, then
   tenants.provisioning.run_job in this process), then 10 projects per tenant: each through
   tenants.projects.services.project_create (the service a POST calls; the Celery task it
   enqueues after the commit is patched out) and then reconciled in this process with
   tenants.projects.reconcile.run (what that task runs), both in tenant_context. Timed per
   project: the service, the reconcile, and the two together ("create → ready"; the queue's delay
   is not in it). Kubernetes calls of each reconcile are counted by the emulator, by verb.
2. A pass with nothing to change: reconcile.reconcile_all() (beat's periodic pass) for every
   tenant once all projects are ready. Timed without capturing; then a second pass with the SQL
   captured to count writes (INSERT/UPDATE/DELETE). Kubernetes writes (create, update, patch,
   delete, deletecollection) are counted by the emulator in both.
3. The projects list, GET /api/v1/tenants/<slug>/projects, for a tenant with 110 projects and 21
   members: SQL statements per request at page_size 10 and 100; then its throughput against the
   foundation's baseline view from bench/routing.py (GET /bench/members/<slug>, the members list
   without tenancy), both through the whole Django stack under bench.baseline_urls with the same
   signed-in session, 20 rows per page each, interleaved rounds. A project row serializes more
   than a member row (its effective configuration: ten settings with their source), so the
   ratio measures the heavier view, not tenancy.

One untimed tenant and two untimed projects come first (client set-up, imports, caches); the
second one's SQL is recorded to explain the figures.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
import uuid
from collections import Counter

from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from bench import baseline_urls
from bench.common import (
    KUBE_VERBS, PREFIX, WsgiClient, capture_statements, cleanup_leftovers, create_tenant, create_tenant_with_members,
    emulated_cluster, heading, is_set_search_path, kube_requests, kube_writes, make_user, make_users,
    no_reconcile_enqueue, p50, p95, quiet_reconciler, remove_tenants, remove_users, sql_writes, table,
)

TENANTS = 20
PROJECTS_PER_TENANT = 10
LIST_PROJECTS = 110  # more than the largest page below
LIST_MEMBERS = 20  # plus the owner: 21, as in bench/routing.py
PAGE_SIZES = (10, 100)
THROUGHPUT_PAGE_SIZE = 20  # rows per page on both paths of the throughput comparison
WARMUP = 50
ROUNDS = 11
REQUESTS = 100
STATEMENT_SAMPLES = 10


# --- Projects ----------------------------------------------------------------------------------


def _create_and_reconcile(tenant, owner, slug: str, emulator) -> dict:
    """One project, created by the service and reconciled once, in the tenant's schema."""
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile, services

    with tenant_context(tenant):
        before = kube_requests(emulator)
        start = time.perf_counter()
        project = services.project_create(tenant=tenant, slug=slug, acting_user=owner,
                                          display_name=f"Bench {slug}", description="made by bench/projects.py")
        created = time.perf_counter()
        middle = kube_requests(emulator)
        start_reconcile = time.perf_counter()
        outcomes = reconcile.run(project.pk)
        done = time.perf_counter()
        after = kube_requests(emulator)
    return {
        "create": created - start, "reconcile": done - start_reconcile, "outcomes": outcomes,
        "create_calls": middle - before, "reconcile_calls": after - middle,
    }


def _sample_sql(tenant, owner, slug: str) -> dict[str, list[str]]:
    """The SQL of one project's service call and of its first reconcile (untimed)."""
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile, services
    from tenants.projects.models import Project

    with tenant_context(tenant):
        create = capture_statements(lambda: services.project_create(tenant=tenant, slug=slug, acting_user=owner))
        project_id = Project.objects.get(slug=slug).pk
        first = capture_statements(lambda: reconcile.run(project_id))
        again = capture_statements(lambda: reconcile.run(project_id))
    return {"create": create, "reconcile": first, "again": again}


def _statuses(tenants) -> Counter:
    from django_tenants.utils import tenant_context

    from tenants.projects.models import Project

    counts: Counter = Counter()
    for tenant in tenants:
        with tenant_context(tenant):
            counts.update(Project.objects.values_list("status", flat=True))
    return counts


def _pass(tenants, emulator, *, capture: bool) -> dict:
    """reconcile_all() in every tenant; seconds, its counts, Kubernetes requests, SQL if captured."""
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile

    counts: Counter = Counter()
    before = kube_requests(emulator)
    with CaptureQueriesContext(connection) if capture else contextlib.nullcontext() as captured:
        start = time.perf_counter()
        for tenant in tenants:
            with tenant_context(tenant):
                counts.update(reconcile.reconcile_all())
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds, "counts": counts, "requests": kube_requests(emulator) - before,
        "statements": [q["sql"] for q in captured.captured_queries] if capture else None,
    }


# --- The list ----------------------------------------------------------------------------------


def _burst(client: WsgiClient, path: str, query: str, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        status, body = client.get(path, query)
        durations.append(time.perf_counter() - start)
        if status != 200:
            raise AssertionError(f"GET {path}?{query}: {status} {body[:300]!r}")
    return durations


def _statements(client: WsgiClient, path: str, query: str) -> tuple[float, float, list[str]]:
    per_request = [capture_statements(lambda: client.get(path, query)) for _ in range(STATEMENT_SAMPLES)]
    total = sum(len(s) for s in per_request) / len(per_request)
    without_set = sum(sum(not is_set_search_path(q) for q in s) for s in per_request) / len(per_request)
    return total, without_set, per_request[-1]


def _list(client: WsgiClient, slug: str, rounds: int, requests: int) -> dict:
    projects_path = f"/api/v1/tenants/{slug}/projects"
    counts: dict[int, int] = {}
    rows = []
    for size in PAGE_SIZES:
        query = f"page_size={size}"
        client.get(projects_path, query)  # warm: nothing cached differs between sizes
        result = {}

        def call():
            result["status"], result["body"] = client.get(projects_path, query)

        statements = capture_statements(call)
        assert result["status"] == 200, result
        page = json.loads(result["body"])
        assert len(page["results"]) == min(size, LIST_PROJECTS), (size, len(page["results"]))
        counts[size] = len(statements)
        rows.append([size, len(page["results"]), len(statements), sum(not is_set_search_path(q) for q in statements)])
    print(f"\n3. projects list, {projects_path} ({LIST_PROJECTS} projects): statements per request by page size")
    print(table(["page_size", "rows", "statements/req", "w/o SET search_path"], rows))

    query = f"page_size={THROUGHPUT_PAGE_SIZE}"
    paths = {"projects": projects_path, "baseline": f"/bench/members/{slug}"}
    bodies = {key: json.loads(client.get(p, query)[1]) for key, p in paths.items()}
    assert len(bodies["projects"]["results"]) == THROUGHPUT_PAGE_SIZE, bodies["projects"]
    assert len(bodies["baseline"]["results"]) == THROUGHPUT_PAGE_SIZE, bodies["baseline"]
    assert "config" in bodies["projects"]["results"][0], "the projects list should carry the effective config"
    row_bytes = {key: len(json.dumps(body["results"])) / len(body["results"]) for key, body in bodies.items()}
    for p in paths.values():
        _burst(client, p, query, WARMUP)
    rates: dict[str, list[float]] = {key: [] for key in paths}
    latencies: dict[str, list[float]] = {key: [] for key in paths}
    order = list(paths)
    for i in range(rounds):
        for key in order if i % 2 == 0 else order[::-1]:
            gc.collect()
            durations = _burst(client, paths[key], query, requests)
            rates[key].append(requests / sum(durations))
            latencies[key].extend(durations)
    statements = {key: _statements(client, p, query) for key, p in paths.items()}
    rps = {key: p50(v) for key, v in rates.items()}
    ratio = rps["projects"] / rps["baseline"]
    paired = p50([a / b for a, b in zip(rates["projects"], rates["baseline"])])
    print(f"\nprojects list vs the foundation's baseline view (members list, no tenancy), {THROUGHPUT_PAGE_SIZE} "
          f"rows per page each, {rounds} interleaved rounds x {requests} requests:")
    print(table(
        ["path", "req/s (median)", "min", "max", "p50 ms", "p95 ms", "statements/req", "w/o SET search_path",
         "JSON bytes/row"],
        [[f"{key}: GET {paths[key]}?{query}", f"{rps[key]:.0f}", f"{min(rates[key]):.0f}", f"{max(rates[key]):.0f}",
          f"{p50(latencies[key]) * 1000:.2f}", f"{p95(latencies[key]) * 1000:.2f}", f"{statements[key][0]:.1f}",
          f"{statements[key][1]:.1f}", f"{row_bytes[key]:.0f}"] for key in paths],
    ))
    print("\nstatements of one projects list request:")
    for sql in statements["projects"][2]:
        print(f"  {sql if len(sql) <= 110 else sql[:107] + '...'}")
    print(f"\nprojects list / baseline members list throughput = {ratio:.3f}; median of the per-round ratios: "
          f"{paired:.3f}")
    return {
        "counts": counts, "constant": len(set(counts.values())) == 1, "rps": rps, "ratio": ratio,
        "paired_ratio": paired, "statements": {key: v[0] for key, v in statements.items()},
        "latency_ms": {key: p50(v) * 1000 for key, v in latencies.items()}, "rows": THROUGHPUT_PAGE_SIZE,
        "rounds": rounds, "requests": requests,
    }


# --- The run -----------------------------------------------------------------------------------


def _report_create(results: list[dict], tenants: int, per_tenant: int, total: float, provisioning: list[float],
                   enqueued: int, sample: dict[str, list[str]]) -> dict:
    n = len(results)
    create_ms = [r["create"] * 1000 for r in results]
    reconcile_ms = [r["reconcile"] * 1000 for r in results]
    ready_ms = [(r["create"] + r["reconcile"]) * 1000 for r in results]
    calls = sum((r["reconcile_calls"] for r in results), Counter())
    create_calls = sum(sum(r["create_calls"].values()) for r in results)
    per_project = {verb: calls[verb] / n for verb in (*KUBE_VERBS, "other") if calls[verb]}
    calls_per_project = sum(calls.values()) / n
    outcomes = Counter(v for r in results for v in r["outcomes"].values())
    sql = {key: len(v) for key, v in sample.items()}

    print(f"\n1. {n} projects in {tenants} tenants ({per_tenant} each), created and reconciled once each, in-process")
    print(table(
        ["step", "p50 ms", "p95 ms", "max ms", "sum s"],
        [[label, f"{p50(v):.1f}", f"{p95(v):.1f}", f"{max(v):.1f}", f"{sum(v) / 1000:.2f}"] for label, v in (
            ("project_create (the service a POST calls)", create_ms),
            ("reconcile.run, first (what the Celery task runs)", reconcile_ms),
            ("create -> ready (the two, no queue delay)", ready_ms),
        )],
    ))
    print(f"all {n}: {total:.2f} s wall ({n / total:.0f} projects/s); the {tenants} tenants before them: "
          f"provisioning p50 {p50(provisioning) * 1000:.1f} ms")
    print(f"outcomes of the first reconciles: {dict(outcomes)}; reconcile tasks the service enqueued: "
          f"{enqueued} (patched out)")
    print(f"Kubernetes API calls per project, first reconcile: {calls_per_project:g} "
          f"({', '.join(f'{verb} {v:g}' for verb, v in per_project.items())}); "
          f"during project_create: {create_calls} in all")
    print(f"SQL of one project (untimed sample): project_create {sql['create']} statements "
          f"({len(sql_writes(sample['create']))} writes); first reconcile {sql['reconcile']} "
          f"({len(sql_writes(sample['reconcile']))} writes); a second reconcile {sql['again']} "
          f"({len(sql_writes(sample['again']))} writes)")
    return {
        "projects": n,
        "create_ms": (p50(create_ms), p95(create_ms)),
        "reconcile_ms": (p50(reconcile_ms), p95(reconcile_ms)),
        "ready_ms": (p50(ready_ms), p95(ready_ms)),
        "total_s": total,
        "kube_calls_per_project": calls_per_project,
        "kube_calls_by_verb": per_project,
        "kube_calls_in_create": create_calls,
        "sql_sample": sql,
    }


def _report_pass(timed: dict, captured: dict, tenants: int) -> dict:
    statements = captured["statements"]
    writes = sql_writes(statements)
    projects = timed["counts"]["projects"]
    writes_kube = kube_writes(timed["requests"]) + kube_writes(captured["requests"])

    def reads(result: dict) -> int:
        return result["requests"]["get"] + result["requests"]["list"]

    print(f"\n2. reconcile_all() in each of the {tenants} tenants, nothing to change ({projects} projects)")
    print(table(
        ["pass", "seconds", "ms/project", "changed", "errors", "Kubernetes writes", "Kubernetes reads",
         "SQL statements", "SQL writes"],
        [
            ["timed", f"{timed['seconds']:.3f}", f"{timed['seconds'] * 1000 / projects:.2f}",
             timed["counts"]["changed"], timed["counts"]["errors"], kube_writes(timed["requests"]), reads(timed), "-", "-"],
            ["SQL captured (slower)", f"{captured['seconds']:.3f}",
             f"{captured['seconds'] * 1000 / captured['counts']['projects']:.2f}", captured["counts"]["changed"],
             captured["counts"]["errors"], kube_writes(captured["requests"]), reads(captured), len(statements),
             len(writes)],
        ],
    ))
    for statement in writes[:5]:
        print(f"  SQL write: {statement[:120]}")
    print(f"per project: {reads(timed) / projects:g} Kubernetes reads, "
          f"{len(statements) / captured['counts']['projects']:.1f} SQL statements "
          f"(goal 0 writes of both kinds: {'met' if not writes and not writes_kube else 'NOT met'})")
    return {
        "seconds": timed["seconds"], "projects": projects, "changed": timed["counts"]["changed"],
        "errors": timed["counts"]["errors"], "kube_writes": writes_kube,
        "kube_reads_per_project": reads(timed) / projects, "sql_writes": len(writes),
        "sql_per_project": len(statements) / captured["counts"]["projects"],
    }


def run(tenants: int = TENANTS, per_tenant: int = PROJECTS_PER_TENANT, rounds: int = ROUNDS,
        requests: int = REQUESTS) -> dict:
    from django_tenants.utils import tenant_context

    from tenants import services as tenant_services
    from tenants.projects import services as project_services

    heading(f"projects: {tenants * per_tenant} projects in {tenants} tenants against the Kubernetes API emulator")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    list_slug = f"{PREFIX}pl-{run_id}"
    slugs = [f"{PREFIX}pj-{run_id}-{i:02d}" for i in range(tenants)]
    list_owner = make_user(f"{PREFIX}pl-{run_id}-owner")
    list_members = make_users(f"{PREFIX}pl-{run_id}", LIST_MEMBERS)
    owners = make_users(f"{PREFIX}pj-{run_id}", tenants)
    made: list[str] = []
    client = None
    wall = time.perf_counter()
    try:
        with emulated_cluster() as emulator, no_reconcile_enqueue() as enqueued, quiet_reconciler():
            # The list tenant (part 3), and the untimed warm-up: its first two projects, reconciled.
            made.append(list_slug)
            list_tenant = create_tenant_with_members(list_slug, list_owner, list_members)
            list_tenant = tenant_services.tenant_update(tenant=list_tenant, acting_user=None,
                                                        max_projects=LIST_PROJECTS)
            warm = _create_and_reconcile(list_tenant, list_owner, "warm-0", emulator)
            assert set(warm["outcomes"].values()) == {"created"}, warm["outcomes"]
            sample = _sample_sql(list_tenant, list_owner, "warm-1")

            # 1. Tenants (Pier's path), then their projects, each created and reconciled once;
            # round-robin over the tenants, as requests from many tenants would come.
            provisioning = []
            tenant_objects = []
            for slug, owner in zip(slugs, owners):
                made.append(slug)
                tenant, _, seconds, _ = create_tenant(slug, owner)
                assert tenant.status == "active", f"{slug}: provisioning ended {tenant.status}: {tenant.status_message}"
                tenant_objects.append(tenant)
                provisioning.append(seconds)
            enqueued.reset_mock()
            results = []
            start = time.perf_counter()
            for j in range(per_tenant):
                for tenant, owner in zip(tenant_objects, owners):
                    results.append(_create_and_reconcile(tenant, owner, f"p{j:02d}", emulator))
            total = time.perf_counter() - start
            statuses = _statuses(tenant_objects)
            assert statuses == Counter({"ready": len(results)}), f"projects ended {dict(statuses)}"
            created = _report_create(results, tenants, per_tenant, total, provisioning, enqueued.call_count, sample)

            # 2. Passes with nothing to change.
            passes = _report_pass(_pass(tenant_objects, emulator, capture=False),
                                  _pass(tenant_objects, emulator, capture=True), tenants)

            # 3. The projects list (listing needs no reconcile: the rest stay pending). Every
            # third project has no override, the others one, so that the rows are not all alike.
            with tenant_context(list_tenant):
                for k in range(2, LIST_PROJECTS):
                    project_services.project_create(
                        tenant=list_tenant, slug=f"list-{k:03d}", acting_user=list_owner,
                        config_overrides={"quota.pods": str(10 + k % 7)} if k % 3 else None,
                    )
            baseline_urls.TENANTS[list_slug] = list_tenant
            with override_settings(ROOT_URLCONF="bench.baseline_urls"):
                client = WsgiClient(list_owner)
                listing = _list(client, list_slug, rounds, requests)
    finally:
        if client is not None:
            client.logout()
        baseline_urls.TENANTS.pop(list_slug, None)
        remove_tenants(made)
        remove_users([list_owner.username, *(u.username for u in list_members), *(u.username for u in owners)])
    wall = time.perf_counter() - wall
    print(f"\nprojects benchmark: {wall:.1f} s in all (set-up and clean-up included)")
    return {"tenants": tenants, **created, "pass": passes, "list": listing}
