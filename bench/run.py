"""Pier's benchmarks: `make bench` (all), or `make bench ARGS="routing"` for some of them, with
options: `make bench ARGS="scale --tenants 100"` (`--name N` is passed as name=N to the run() of
every chosen benchmark that takes it, e.g. projects, scale and cycle take `tenants`; an option
that none of them takes is refused).

The launcher (`python -m portal.launcher bench [names]`) starts an embedded PostgreSQL, points
DATABASE_URL at its `pier_bench` database, sets PIER_TESTING=1 and runs this file. It migrates the
public schema, runs the chosen benchmarks in this process and prints their figures as plain-text
tables, then a Markdown block for the README's "Performance" section.

Benchmarks (each removes the tenants, schemas and users it made, so runs can be repeated):
  provisioning  p50/p95 per tenant: Pier's run_job vs stock django-tenants migrations vs the bare
                replay of the template SQL (bench/provisioning.py)
  routing       requests/s and SQL statements per request of a tenant-routed API list vs the same
                list without tenancy (bench/routing.py, bench/baseline_urls.py)
  list_queries  statements per request of the members list by page size (bench/list_queries.py)
  projects      200 projects in 20 tenants against the Kubernetes API emulator: create → ready,
                Kubernetes calls per project, a reconcile pass with nothing to change, and the
                projects list's statements and throughput against the baseline view (bench/projects.py)
  keys          a project's detail authenticated by an access key vs by a session: requests/s, p50,
                the key check's cost per request, SQL statements per request (and the last_used_at
                write once a minute), the token hash alone (bench/keys.py)
  emulator      the Kubernetes API emulator's own speed: GET round trip and a list of 200 with
                authorization off and on, write → watch event (bench/emulator.py)
  scale         the periodic reconcile-all pass with nothing to change at 1,000 tenants x 5 projects
                (--tenants N, --projects N per tenant): seconds, Kubernetes calls per tenant, project
                and object, SQL statements per tenant, writes of both kinds (bench/scale.py)
  cycle         one periodic cycle (what beat enqueues per interval) at 500 tenants with one project
                each (--tenants N) through a real Celery worker: its time from enqueue to the last
                task, and the API's p50/p95 during it vs without it (bench/cycle.py)
  sessions      500 agentic sessions in 50 projects of 10 tenants (--tenants N, --projects N per tenant,
                --sessions N per project) against the emulator: Kubernetes calls and SQL statements per
                sync cycle (sync_sessions + the reconciles it enqueues) all running, half finished, all
                finished; Job finished -> API shows it (p50/p95, --samples N); the sessions list's
                statements and req/s at page_size 10 and 100 (bench/sessions.py)

Figures, not tests: nothing fails on a missed goal; only sanity checks (the paths did what they
should) stop a run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on sys.path; the project root is what we want there.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
sys.path.append(str(ROOT / "tests"))  # the Kubernetes API emulator (a test double) lives there
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

BENCHMARKS = ("provisioning", "routing", "list_queries", "projects", "keys", "emulator", "scale", "cycle",
              "sessions")
# A plain `make bench` runs these (a few minutes); `scale` (about 45 minutes at its default 1,000
# tenants, mostly the emulator building 5,000 namespaces), `cycle` (~5 minutes) and `sessions`
# (~10 minutes at its default 500 sessions, mostly the emulator's job controller) run by name.
DEFAULT = BENCHMARKS[:6]


def _setup() -> None:
    import warnings

    import django
    from django.conf import settings
    from django.core.management import call_command

    # WhiteNoise, with the local settings, warns that STATIC_ROOT was never collected: not our topic.
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    django.setup()
    name = settings.DATABASES["default"]["NAME"]
    # The benchmarks create and drop schemas and rows (all prefixed `bench`): only in a database
    # meant for it, unless told otherwise.
    if "bench" not in name and os.environ.get("PIER_BENCH_ANY_DATABASE") != "1":
        sys.exit(f"refusing to run against database {name!r}: its name has no 'bench' "
                 "(set PIER_BENCH_ANY_DATABASE=1 to override)")
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)


def _summary(results: dict, elapsed: float) -> str:
    """Markdown for the README's "Performance" section."""
    from bench.common import p50, p95, server_version

    lines = [
        "## Performance",
        "",
        f"Measured by `make bench` ({date.today().isoformat()}; one process, embedded PostgreSQL "
        f"{server_version()}, Python {platform.python_version()}, {os.cpu_count()} CPUs). "
        "Figures from one run; rerun to compare on your machine.",
        "",
        "| Benchmark | Figure | Goal |",
        "|---|---|---|",
    ]
    if "provisioning" in results:
        r = results["provisioning"]
        ms = r["ms"]
        n = r["count"]
        commits = r["commits"]
        lines += [
            f"| New tenant, Pier (`provisioning.run_job`: template replay + job bookkeeping), {n} tenants | "
            f"p50 {ms['pier'][0]:.1f} ms, p95 {ms['pier'][1]:.1f} ms ({commits['pier']} writing commits) | |",
            f"| New tenant, stock django-tenants (`migrate_schemas` per schema), {n} tenants | "
            f"p50 {ms['stock'][0]:.1f} ms, p95 {ms['stock'][1]:.1f} ms ({commits['stock']} writing commits) | |",
            f"| New tenant, bare replay of the template SQL ({r['statements']} statements), {n} tenants | "
            f"p50 {ms['bare'][0]:.1f} ms, p95 {ms['bare'][1]:.1f} ms ({commits['bare']} writing commit) | |",
            f"| Pier p50 / bare replay p50 | {r['ratio']:.2f} | ≤ 1.5 |",
            f"| Template capture, once per migration state | {r['capture_ms']:.0f} ms | |",
            f"| One autocommitted one-row UPDATE (round trip + WAL flush), for scale | {r['commit_ms']:.2f} ms | |",
        ]
    if "routing" in results:
        r = results["routing"]
        lines += [
            f"| Members list, tenant-routed (`/api/v1/tenants/<slug>/members`) | {r['rps']['routed']:.0f} req/s, "
            f"{r['statements']['routed']:g} SQL statements/request | |",
            f"| Same list, no tenancy (baseline) | {r['rps']['baseline']:.0f} req/s, "
            f"{r['statements']['baseline']:g} SQL statements/request | |",
            f"| Routed / baseline throughput (median of {r['rounds']} interleaved rounds × {r['requests']}) | "
            f"{r['ratio']:.3f} | ≥ 0.95 |",
            f"| Extra SQL statements per routed request | "
            f"{r['statements']['routed'] - r['statements']['baseline']:+g} | ≤ +1 |",
        ]
    if "list_queries" in results:
        counts = results["list_queries"]["counts"]
        figure = ", ".join(f"{n} at page_size {size}" for size, n in counts.items())
        lines.append(f"| Members list SQL statements by page size | {figure} | constant |")
    if "projects" in results:
        r = results["projects"]
        n, tenants = r["projects"], r["tenants"]
        verbs = ", ".join(f"{v:g} {verb}" for verb, v in r["kube_calls_by_verb"].items())
        p = r["pass"]
        listing = r["list"]
        figure = ", ".join(f"{count} at page_size {size}" for size, count in listing["counts"].items())
        lines += [
            f"| New project, create → ready in-process (`project_create` + first `reconcile.run`, emulator), "
            f"{n} projects in {tenants} tenants | p50 {r['ready_ms'][0]:.1f} ms, p95 {r['ready_ms'][1]:.1f} ms; "
            f"all {n} in {r['total_s']:.1f} s | |",
            f"| First reconcile alone | p50 {r['reconcile_ms'][0]:.1f} ms, p95 {r['reconcile_ms'][1]:.1f} ms | |",
            f"| Kubernetes API calls per project, first reconcile | {r['kube_calls_per_project']:g} ({verbs}) | |",
            f"| Reconcile-all pass with nothing to change, {p['projects']} projects in {tenants} tenants | "
            f"{p['seconds'] * 1000:.0f} ms ({p['seconds'] * 1000 / p['projects']:.2f} ms/project); "
            f"{p['sql_writes']} SQL writes, {p['kube_writes']} Kubernetes writes; "
            f"{p['kube_reads_per_project'] * p['projects'] / tenants:g} Kubernetes reads per tenant "
            f"({p['kube_reads_per_project']:g} per project), {p['sql_per_project']:.1f} SQL statements per project | "
            f"0 writes; reads a constant per tenant |",
            f"| Projects list SQL statements by page size | {figure} | constant |",
            f"| Projects list (`/api/v1/tenants/<slug>/projects`), {listing['rows']} rows/page | "
            f"{listing['rps']['projects']:.0f} req/s, {listing['statements']['projects']:g} SQL statements/request | |",
            f"| Members list, no tenancy (baseline), {listing['rows']} rows/page | "
            f"{listing['rps']['baseline']:.0f} req/s, {listing['statements']['baseline']:g} SQL statements/request | |",
            f"| Projects list / baseline throughput (median of {listing['rounds']} interleaved rounds × "
            f"{listing['requests']}) | {listing['ratio']:.3f} | |",
        ]
    if "keys" in results:
        r = results["keys"]
        lines += [
            f"| Project detail (`/api/v1/tenants/<slug>/projects/<project>`), access key (`Authorization: Bearer`) | "
            f"{r['rps']['key']:.0f} req/s, p50 {r['latency_ms']['key']:.2f} ms, "
            f"{r['statements']['key']:g} SQL statements/request | |",
            f"| Same request, session cookie | {r['rps']['session']:.0f} req/s, p50 {r['latency_ms']['session']:.2f} ms, "
            f"{r['statements']['session']:g} SQL statements/request | |",
            f"| Key check cost per request (key p50 − session p50; {r['rounds']} interleaved rounds × "
            f"{r['requests']}) | {r['difference_ms']:+.3f} ms (per-round median {r['paired_difference_ms']:+.3f} ms) | |",
            f"| Key's last_used_at write, once a minute per key | {r['write_statements']} SQL statements "
            f"({r['write_updates']} UPDATE) on that request, p50 {r['write_ms']:.2f} ms; steady state: "
            f"{r['updates']['key']} UPDATEs in {r['statement_samples']} requests, {r['writes_in_rounds']} during the "
            f"timed rounds | ≤ 1 write/minute |",
            f"| Token hash alone (`token_hash`, HMAC-SHA256, {r['hash_token_chars']}-character token) | "
            f"{r['hash_us']:.2f} µs | |",
        ]
    if "emulator" in results:
        r = results["emulator"]
        for label, values in r["get_ms"].items():
            lines.append(f"| Emulator GET round trip (official client), {label}, {r['calls']} calls | "
                         f"p50 {p50(values):.2f} ms, p95 {p95(values):.2f} ms | well under 40 ms (Nagle) |")
        for label, values in r["list_ms"].items():
            lines.append(f"| Emulator list of 200 ConfigMaps (JSON), {label} | p50 {p50(values):.2f} ms, p95 {p95(values):.2f} ms | |")
        lines.append(f"| Emulator watch event after the create's answer (0: before it), {len(r['watch_ms'])} creates | p50 {p50(r['watch_ms']):.2f} ms, "
                     f"p95 {p95(r['watch_ms']):.2f} ms | |")
    if "scale" in results:
        r = results["scale"]
        verbs = ", ".join(f"{n} {verb}" for verb, n in r["kube_by_verb"].items())
        lines += [
            f"| Reconcile-all pass with nothing to change, {r['projects']} projects in {r['tenants']} tenants "
            f"(`make bench ARGS=scale`) | {' / '.join(f'{s:.1f}' for s in r['seconds'])} s per pass "
            f"(p50 {r['tenant_ms'][0]:.1f} ms, p95 {r['tenant_ms'][1]:.1f} ms per tenant); {r['kube_calls']} Kubernetes "
            f"calls ({verbs}): {r['kube_calls'] / r['tenants']:g} per tenant, {r['per_object_after']:.3f} per object "
            f"(before: {r['per_object_before']:.2f}, the issue's 8 per project); {r['sql_per_tenant']:.1f} SQL "
            f"statements per tenant; {r['sql_writes']} SQL writes, {r['kube_writes']} Kubernetes writes | 0 writes |",
            f"| Set-up of that: tenants (`tenant_create` + `run_job`), projects (`project_create` + first reconcile) | "
            f"{r['setup']['tenants_s']:.0f} s, {r['setup']['projects_s']:.0f} s; whole benchmark {r['wall_s']:.0f} s | |",
        ]
    if "cycle" in results:
        r = results["cycle"]
        lines += [
            f"| One periodic cycle (beat's {r['entries']} entries), {r['tenants']} tenants x 1 project, real Celery "
            f"worker (concurrency {r['concurrency']}, Redis) (`make bench ARGS=cycle`) | {r['worker_s']:.1f} s from "
            f"enqueue to the last task ({r['tasks']} tasks, {r['task_s']:.1f} s of task run time) | "
            f"(issue, before: 31 s) |",
            f"| API p95 (`GET /api/v1/tenants/<slug>/projects`, session) during that cycle vs without | "
            f"{r['during']['p95']:.1f} ms vs {r['without']['p95']:.1f} ms (p50 {r['during']['p50']:.1f} vs "
            f"{r['without']['p50']:.1f} ms) | (issue, before: 349 vs 18 ms) |",
        ]
    if "sessions" in results:
        r = results["sessions"]
        c = r["cycles"]
        where = f"{r['sessions']} sessions in {r['projects']} projects of {r['tenants']} tenants"
        for state, s in c["states"].items():
            per_live = (f"{s['kube'] / s['live']:.2f} Kubernetes calls and {s['sql'] / s['live']:.1f} SQL statements "
                        f"per live session" if s["live"] else "no live session")
            lines.append(
                f"| Session sync cycle (`sync_sessions` + the reconciles it enqueued, in-process), {where}, "
                f"{state} (`make bench ARGS=sessions`) | {s['kube']} Kubernetes calls "
                f"({s['kube'] / r['tenants']:g} per tenant), {s['sql']} SQL statements ({s['sql'] / r['tenants']:.1f} "
                f"per tenant), {s['enqueued']} reconciles, {s['seconds']:.2f} s; {per_live} | "
                f"{'finished cost nothing' if state == 'all finished' else 'constant per tenant'} |")
        for state, s in c["logs_due"].items():
            if not s["live"]:
                continue
            lines.append(
                f"| Same, {state}, every running session's log due | {s['kube']} Kubernetes calls ({s['log_reads']} "
                f"log reads), {s['sql']} SQL statements ({s['sql'] / r['tenants']:.1f} per tenant), {s['seconds']:.2f} s "
                f"| SQL constant per tenant; one log read per running session |")
        slope, slope_due = c["per_live_session"], c["per_live_session_logs_due"]
        lines.append(f"| What one more live session adds to a sync cycle (log reads apart), at the period / every log "
                     f"due | {slope['kube']:.2f} / {slope_due['kube']:.2f} Kubernetes calls, {slope['sql']:.2f} / "
                     f"{slope_due['sql']:.2f} SQL statements; {slope_due['log_reads']:.2f} log reads with every log due "
                     f"| 0 |")
        lat = r["latency"]
        ms = lat["ms"]
        lines += [
            f"| Runner Job Complete → API shows the session Completed, sync + reconciles every 0.5 s in a thread, "
            f"{lat['samples']} sessions | p50 {ms['total'][0]:.0f} ms, p95 {ms['total'][1]:.0f} ms (of which sync "
            f"start → visible: p50 {ms['pipeline'][0]:.0f} ms, p95 {ms['pipeline'][1]:.0f} ms) | |",
            f"| Same at the default period (PIER_SESSION_SYNC_SECONDS={lat['period']:g}; estimate: the measured sync "
            f"start → visible plus a uniform wait for the next sync) | p50 {lat['default_s'][0]:.2f} s, "
            f"p95 {lat['default_s'][1]:.2f} s | |",
        ]
        listing = r["list"]
        for size, count in listing["counts"].items():
            lines.append(f"| Sessions list (`/api/v1/tenants/<t>/projects/<p>/sessions`), page_size {size} | "
                         f"{listing['rps'][size]:.0f} req/s, {count:g} SQL statements/request | constant |")
    which = "the default benchmarks" if set(results) == set(DEFAULT) else ", ".join(results)
    lines += [
        "",
        f"Reproduce: `make bench` ({', '.join(DEFAULT)}; this run of {which} took {elapsed:.0f} s), or some of "
        f"them by name, also `scale`, `cycle` and `sessions`: `make bench ARGS=\"scale --tenants 100\"`.",
    ]
    return "\n".join(lines)


def _parse(argv: list[str]) -> tuple[list[str], dict[str, int]]:
    """Benchmark names, and `--name N` options (integers) for the benchmarks whose run() takes them."""
    names, options = [], {}
    args = iter(argv)
    for arg in args:
        if arg.startswith("--"):
            value = next(args, None)
            if value is None or not value.isdigit():
                raise SystemExit(f"{arg} needs a whole number, e.g. {arg} 100")
            options[arg[2:].replace("-", "_")] = int(value)
        else:
            names.append(arg)
    return names, options


def main(argv: list[str]) -> int:
    import importlib
    import inspect

    names, options = _parse(argv)
    names = names or list(DEFAULT)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    _setup()
    modules = {name: importlib.import_module(f"bench.{name}") for name in names}
    takes = {name: set(inspect.signature(module.run).parameters) for name, module in modules.items()}
    unused = [f"--{option}" for option in options if not any(option in t for t in takes.values())]
    if unused:
        print(f"{', '.join(unused)}: none of {', '.join(names)} takes it", file=sys.stderr)
        return 2
    results = {}
    for name, module in modules.items():
        results[name] = module.run(**{k: v for k, v in options.items() if k in takes[name]})
    elapsed = time.perf_counter() - started
    print("\n== summary (for the README) " + "=" * 52)
    print(_summary(results, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
