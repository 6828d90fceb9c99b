"""Scale: the periodic reconcile-all pass with nothing to change, at 1,000 tenants x 5 projects.

`make bench ARGS="scale"`; smaller: `make bench ARGS="scale --tenants 20"` (and `--projects N`
per tenant). Against Pier's Kubernetes API emulator (tests/kube_emulator) started in this process
(common.emulated_cluster), over HTTP with the official client, as bench/projects.py does; the
emulator's own work runs in this process and is part of the measured time, as a real API
server's would be.

Set-up (timed and printed; not in the pass's figures):
- the tenants, by Pier's own path: tenants.services.tenant_create, then the provisioning job run
  in this process with tenants.provisioning.run_job (common.create_tenant; the Celery message is
  patched out). The same rows and schema a user's organization gets; nothing faster is faked.
- the projects, round-robin over the tenants: tenants.projects.services.project_create, then one
  tenants.projects.reconcile.run (what its Celery task would run; the message is patched out), in
  the tenant's schema (common.project_ready). Every project must end `ready`.

The pass, twice (the first after the set-up, the second right after it): for every tenant, in
its schema (tenant_context), tenants.projects.reconcile.reconcile_all(), which is what the beat
fan-out's per-tenant task runs. Printed per pass:
- seconds for the whole pass, and per tenant (p50, p95, max);
- Kubernetes requests, counted by the emulator by verb: in all, per tenant, per project, per
  object (objects: what the first reconciles reported, e.g. Namespace/..., RoleBinding/...);
- SQL statements per tenant and SQL writes (INSERT/UPDATE/DELETE), counted by a
  connection.execute_wrapper that only counts (cheap, so it stays on while timing).
Expected with nothing to change: 0 Kubernetes writes, 0 SQL writes. "Calls per object before
and after": before is the issue's figure (8 calls per project, a GET per object, before the pass
read each tenant's objects in one LIST per kind), after is what this run measured.

Then, for scale, the same label-selected LIST the pass makes (all namespaces, one tenant's
label) timed alone at this cluster size, next to a GET of one namespace: the emulator, like
kube-apiserver's watch cache, has no label index, so such a LIST looks at every object of its
kind in the cluster.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from django.db import connection

from bench.common import (
    KUBE_VERBS, PREFIX, StatementCounter, Timer, cleanup_leftovers, create_tenant, emulated_cluster, heading,
    kube_requests, kube_writes, make_users, no_reconcile_enqueue, p50, p95, project_ready, quiet_reconciler,
    remove_tenants, remove_users, table,
)

TENANTS = 1000
PROJECTS_PER_TENANT = 5
PASSES = 2
LIST_SAMPLES = 20
# The figure for the pass before the recent changes: a GET per object, 8 per project.
CALLS_PER_PROJECT_BEFORE = 8


def _statuses(tenants) -> Counter:
    from django_tenants.utils import tenant_context

    from tenants.projects.models import Project

    counts: Counter = Counter()
    for tenant in tenants:
        with tenant_context(tenant):
            counts.update(Project.objects.values_list("status", flat=True))
    return counts


def _setup(slugs: list[str], owners: list, per_tenant: int) -> tuple[list, int, dict]:
    """The tenants and their projects, all ready. Returns (tenants, objects per pass, timings)."""
    tenants = []
    with Timer() as tenants_timer:
        for i, (slug, owner) in enumerate(zip(slugs, owners)):
            tenant = create_tenant(slug, owner)[0]
            assert tenant.status == "active", f"{slug}: provisioning ended {tenant.status}: {tenant.status_message}"
            tenants.append(tenant)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} tenants ({time.perf_counter() - tenants_timer.start:.0f} s)", flush=True)
    objects = 0
    outcomes: Counter = Counter()
    with Timer() as projects_timer:
        for j in range(per_tenant):
            for tenant, owner in zip(tenants, owners):
                result = project_ready(tenant, owner, f"p{j}")
                objects += len(result)
                outcomes.update(result.values())
            print(f"  {(j + 1) * len(tenants)} projects ({time.perf_counter() - projects_timer.start:.0f} s)",
                  flush=True)
    statuses = _statuses(tenants)
    assert statuses == Counter({"ready": len(tenants) * per_tenant}), f"projects ended {dict(statuses)}"
    return tenants, objects, {"tenants_s": tenants_timer.seconds, "projects_s": projects_timer.seconds,
                              "outcomes": dict(outcomes)}


def _pass(tenants, emulator) -> dict:
    """reconcile_all() in every tenant, as the fan-out's per-tenant tasks run it."""
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile

    counts: Counter = Counter()
    per_tenant_s, per_tenant_sql = [], []
    sql = StatementCounter()
    before = kube_requests(emulator)
    with connection.execute_wrapper(sql):
        start = time.perf_counter()
        for tenant in tenants:
            statements = sql.statements
            tenant_start = time.perf_counter()
            with tenant_context(tenant):
                counts.update(reconcile.reconcile_all())
            per_tenant_s.append(time.perf_counter() - tenant_start)
            per_tenant_sql.append(sql.statements - statements)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "counts": counts, "requests": kube_requests(emulator) - before,
            "per_tenant_s": per_tenant_s, "per_tenant_sql": per_tenant_sql, "sql_writes": sql.writes}


def _a_namespace(tenant) -> str:
    from django_tenants.utils import tenant_context

    from tenants.projects.models import Project

    with tenant_context(tenant):
        return Project.objects.values_list("namespace", flat=True).first()


def _lone_requests(slug: str, namespace: str) -> dict[str, list[float]]:
    """The pass's kind of LIST (all namespaces, one tenant's label), timed alone, and a GET."""
    from portal import kube

    selector = f"{kube.MANAGED_BY[0]}={kube.MANAGED_BY[1]},{kube.LABEL_TENANT}={slug}"
    calls = {
        "GET one Namespace": lambda: kube.get("Namespace", namespace),
        "LIST Namespaces, all namespaces, one tenant's label": lambda: kube.list_objects(
            "Namespace", None, label_selector=selector),
        "LIST RoleBindings, all namespaces, one tenant's label": lambda: kube.list_objects(
            "RoleBinding", None, label_selector=selector),
    }
    timings: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(LIST_SAMPLES):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            timings[label].append((time.perf_counter() - start) * 1000)
    return timings


def _report(passes: list[dict], tenants: int, projects: int, objects: int, setup: dict,
            lone: dict[str, list[float]]) -> dict:
    print(f"\nset-up: {tenants} tenants (tenant_create + run_job each) in {setup['tenants_s']:.1f} s; "
          f"{projects} projects (project_create + first reconcile.run each) in {setup['projects_s']:.1f} s; "
          f"{objects} Kubernetes objects ({objects / projects:g} per project; first reconciles: {setup['outcomes']})")

    rows = []
    for i, result in enumerate(passes, 1):
        requests = result["requests"]
        reads = sum(v for verb, v in requests.items() if verb not in ("create", "update", "patch", "delete",
                                                                        "deletecollection"))
        rows.append([
            f"pass {i}", f"{result['seconds']:.2f}", f"{p50(result['per_tenant_s']) * 1000:.1f}",
            f"{p95(result['per_tenant_s']) * 1000:.1f}", f"{max(result['per_tenant_s']) * 1000:.1f}",
            result["counts"]["projects"], result["counts"]["changed"], result["counts"]["errors"],
            sum(requests.values()), kube_writes(requests), reads,
            f"{p50(result['per_tenant_sql']):g}", max(result["per_tenant_sql"]), len(result["sql_writes"]),
        ])
    print(f"\nreconcile_all() in each of the {tenants} tenants, nothing to change ({projects} projects, "
          f"{objects} objects)")
    print(table(["pass", "seconds", "p50 ms/tenant", "p95 ms/tenant", "max ms/tenant", "projects", "changed",
                 "errors", "Kubernetes calls", "Kubernetes writes", "Kubernetes reads", "SQL/tenant (p50)",
                 "SQL/tenant (max)", "SQL writes"], rows))
    last = passes[-1]
    requests = last["requests"]
    total = sum(requests.values())
    by_verb = {verb: requests[verb] for verb in (*KUBE_VERBS, "other") if requests[verb]}
    print(f"\nKubernetes calls of the last pass by verb: {by_verb}")
    print(table(
        ["Kubernetes calls", "in all", "per tenant", "per project", "per object"],
        [[verb, n, f"{n / tenants:g}", f"{n / projects:.3f}", f"{n / objects:.4f}"]
         for verb, n in [*by_verb.items(), ("all", total)]],
    ))
    for sql in last["sql_writes"][:5]:
        print(f"  SQL write: {sql[:120]}")
    sql_total = sum(last["per_tenant_sql"])
    print(f"SQL statements of the last pass: {sql_total} ({sql_total / tenants:.1f} per tenant, "
          f"{sql_total / projects:.1f} per project), {len(last['sql_writes'])} writes; "
          f"Kubernetes writes: {kube_writes(requests)} (goal: 0 and 0: "
          f"{'met' if not last['sql_writes'] and not kube_writes(requests) else 'NOT met'})")
    per_object = objects / projects
    before = CALLS_PER_PROJECT_BEFORE / per_object
    after = total / objects
    print(f"calls per object before and after: before {before:.2f} (the issue's figure: {CALLS_PER_PROJECT_BEFORE} "
          f"per project, {per_object:g} objects each), after {after:.3f} measured ({total / projects:.2f} per "
          f"project, {total / tenants:g} per tenant)")
    print(f"\none request alone at this cluster size ({LIST_SAMPLES} samples each; the pass makes 6 such LISTs "
          f"per tenant, one per kind):")
    print(table(["request", "p50 ms", "p95 ms"],
                [[label, f"{p50(v):.2f}", f"{p95(v):.2f}"] for label, v in lone.items()]))
    return {
        "tenants": tenants, "projects": projects, "objects": objects, "setup": setup,
        "seconds": [r["seconds"] for r in passes], "tenant_ms": (p50(last["per_tenant_s"]) * 1000,
                                                                 p95(last["per_tenant_s"]) * 1000),
        "kube_calls": total, "kube_by_verb": by_verb, "kube_writes": kube_writes(requests),
        "sql_per_tenant": sql_total / tenants, "sql_writes": len(last["sql_writes"]),
        "per_object_before": before, "per_object_after": after,
        "lone_ms": {label: p50(v) for label, v in lone.items()},
    }


def run(tenants: int = TENANTS, projects: int = PROJECTS_PER_TENANT) -> dict:
    heading(f"scale: reconcile-all with nothing to change, {tenants} tenants x {projects} projects")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    slugs = [f"{PREFIX}sc-{run_id}-{i:04d}" for i in range(tenants)]
    owners = make_users(f"{PREFIX}sc-{run_id}", tenants)
    wall = time.perf_counter()
    try:
        with emulated_cluster() as emulator, no_reconcile_enqueue(), quiet_reconciler():
            made, objects, setup = _setup(slugs, owners, projects)
            passes = [_pass(made, emulator) for _ in range(PASSES)]
            lone = _lone_requests(made[0].slug, _a_namespace(made[0]))
    finally:
        with Timer() as cleanup:
            remove_tenants(slugs)
            remove_users([u.username for u in owners])
    result = _report(passes, tenants, tenants * projects, objects, setup, lone)
    wall = time.perf_counter() - wall
    print(f"\nscale benchmark: {wall:.1f} s in all (clean-up {cleanup.seconds:.1f} s)")
    return {**result, "wall_s": wall}
