"""Pier's benchmarks: `make bench` (all), or `make bench ARGS="routing"` for some of them.

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

BENCHMARKS = ("provisioning", "routing", "list_queries", "projects", "keys", "emulator")


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
    which = "all benchmarks" if set(results) == set(BENCHMARKS) else ", ".join(results)
    lines += [
        "",
        f"Reproduce: `make bench` (all six: {', '.join(BENCHMARKS)}; this run of {which} took "
        f"{elapsed:.0f} s), or some of them: `make bench ARGS=\"routing list_queries\"`.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    _setup()
    import importlib

    results = {}
    for name in names:
        results[name] = importlib.import_module(f"bench.{name}").run()
    elapsed = time.perf_counter() - started
    print("\n== summary (for the README) " + "=" * 52)
    print(_summary(results, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
