"""Provisioning: how long it takes to make a new tenant's schema, three ways, in one run.

a. Pier: `tenants.services.tenant_create(...)` (not timed), then `tenants.provisioning.run_job(job)`
   in this process (timed). That is the whole provisioning service (job bookkeeping, the schema
   from the replayed template, seeding, owner membership, activation, audit), without the Celery
   queue in front of it.
b. Stock django-tenants: `CREATE SCHEMA`, then `migrate_schemas --schema=<name>`, i.e. running
   every migration for the new schema, as django-tenants does when a tenant is saved with
   auto_create_schema.
c. Bare DDL replay: one transaction with `CREATE SCHEMA`, `SET LOCAL search_path` and the joined
   template statements; the floor for (a), which adds its bookkeeping to this.

The three paths run round-robin (a, b, c; then b, c, a; …) so that drift in the machine's load,
caches or the database's size is spread evenly over them. The template is captured (or loaded)
before timing; its one-off cost is reported on its own. To explain the figures, one untimed tenant
per path has its SQL recorded (statements, and commits that wrote: each waits for the WAL to be
flushed to disk), and Pier's jobs give their per-step times from their JobStep rows.
"""

from __future__ import annotations

import re
import time
import uuid

from django.core.management import call_command
from django.db import connection, transaction

from bench.common import (
    PREFIX, RAW_SCHEMA_PREFIX, Timer, capture_statements, cleanup_leftovers, create_tenant, drop_raw_schemas,
    heading, make_user, p50, p95, remove_tenants, remove_users, table, warm_connection, writing_transactions,
)

TENANTS_PER_PATH = 30


_SAVEPOINT = re.compile(r"^\s*(RELEASE\s+)?SAVEPOINT\b", re.IGNORECASE)
_TIMESTAMP = re.compile(r"'\d{4}-\d\d-\d\d [\d:.+]+'::timestamptz")


def _normalised(statements: list[str]) -> list[str]:
    """The template without what may differ between two captures of the same migrations: the
    django_migrations rows' `applied` timestamps, and savepoints (recorded when the capture ran
    inside a transaction, as template_sql() does)."""
    return [_TIMESTAMP.sub("'…'", sql) for sql in statements if not _SAVEPOINT.match(sql)]


def _stock(name: str) -> float:
    """Stock django-tenants: create the schema, run every migration in it."""
    warm_connection()
    with Timer() as timer:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {connection.ops.quote_name(name)}")
        call_command("migrate_schemas", schema_name=name, interactive=False, verbosity=0)
    return timer.seconds


def _bare(name: str, sql: str) -> float:
    """The template replayed with nothing around it: one transaction, three statements."""
    warm_connection()
    quoted = connection.ops.quote_name(name)
    with Timer() as timer:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {quoted}")
            cursor.execute(f"SET LOCAL search_path TO {quoted}, public")
            cursor.execute(sql)
    return timer.seconds


def _sanity(tenant_slugs: list[str], raw_schemas: list[str]) -> None:
    """Every path made what it should: active Pier tenants, and the same tables in every schema."""
    from tenants.models import Tenant

    statuses = set(Tenant.objects.filter(slug__in=tenant_slugs).values_list("status", flat=True))
    assert statuses == {"active"}, f"Pier tenants ended {statuses}"
    schemas = [Tenant.objects.get(slug=tenant_slugs[0]).schema_name, *raw_schemas[:1], *raw_schemas[-1:]]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, array_agg(table_name::text ORDER BY table_name) FROM information_schema.tables "
            "WHERE table_schema = ANY(%s) GROUP BY table_schema",
            [schemas],
        )
        tables = {schema: tuple(names) for schema, names in cursor.fetchall()}
    assert len(tables) == len(set(schemas)) and len(set(tables.values())) == 1, f"schemas differ: {tables}"


def _commit_latency(name: str, samples: int = 30) -> float:
    """Median seconds of a one-row UPDATE committed on its own (autocommit) in a scratch table:
    about the fixed cost (round trip, WAL flush with synchronous_commit on) that every separate
    writing transaction pays."""
    quoted = connection.ops.quote_name(name)
    durations = []
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {quoted}")
        cursor.execute(f"CREATE TABLE {quoted}.counter (n integer NOT NULL)")
        cursor.execute(f"INSERT INTO {quoted}.counter VALUES (0)")
        for _ in range(samples):
            start = time.perf_counter()
            cursor.execute(f"UPDATE {quoted}.counter SET n = n + 1")
            durations.append(time.perf_counter() - start)
    return p50(durations)


def _step_durations(tenant_slugs: list[str]) -> dict[str, list[float]]:
    """Seconds each provisioning step took, from the JobStep rows' own timestamps."""
    from tenants.models import JobStep

    durations: dict[str, list[float]] = {}
    steps = JobStep.objects.filter(job__tenant_slug__in=tenant_slugs, status=JobStep.Status.SUCCEEDED)
    for name, started, finished in steps.values_list("name", "started_at", "finished_at"):
        durations.setdefault(name, []).append((finished - started).total_seconds())
    return durations


def run(count: int = TENANTS_PER_PATH) -> dict:
    from tenants import schema
    from tenants.services import PROVISION_STEPS

    heading(f"provisioning: {count} tenants per path, interleaved")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    owner = make_user(f"{PREFIX}owner-{run_id}")
    tenant_slugs: list[str] = []
    raw_schemas: list[str] = []
    times: dict[str, list[float]] = {"pier": [], "stock": [], "bare": []}
    sql_of: dict[str, list[str]] = {}  # one warm-up tenant's statements, per path
    try:
        # One-off costs, reported apart: capturing the template (migrating a scratch schema while
        # recording its SQL), and the first template_sql() of this process (loaded from the
        # SchemaTemplate row if an earlier run stored it, captured and stored otherwise).
        with Timer() as capture:
            captured = schema.capture_template_sql()
        with Timer() as first:
            statements = schema.template_sql()
        assert _normalised(statements) == _normalised(captured), "the stored template differs from a capture"
        sql = ";\n".join(statements)

        # Each path makes one tenant (or schema) and returns the seconds it took; with
        # record=True, the timed part's SQL statements too (then the time is not representative).
        def pier(tag: str, record: bool = False):
            slug = f"{PREFIX}p-{run_id}-{tag}"
            tenant_slugs.append(slug)
            _, _, seconds, sql_run = create_tenant(slug, owner, capture=record)
            return (seconds, sql_run) if record else seconds

        def stock(tag: str, record: bool = False):
            name = f"{RAW_SCHEMA_PREFIX}stock_{run_id}_{tag}"
            raw_schemas.append(name)
            return (None, capture_statements(lambda: _stock(name))) if record else _stock(name)

        def bare(tag: str, record: bool = False):
            name = f"{RAW_SCHEMA_PREFIX}bare_{run_id}_{tag}"
            raw_schemas.append(name)
            return (None, capture_statements(lambda: _bare(name, sql))) if record else _bare(name, sql)

        paths = [("pier", pier), ("stock", stock), ("bare", bare)]
        # Untimed tenants per path first: imports, statement caches, the first migration loader
        # (what a long-running worker has already paid); the second one's SQL is recorded.
        for _, make in paths:
            make("w")
        for key, make in paths:
            sql_of[key] = make("v", record=True)[1]
        for i in range(count):
            shift = i % len(paths)
            for key, make in paths[shift:] + paths[:shift]:
                times[key].append(make(str(i)))
        _sanity(tenant_slugs, raw_schemas)
        raw_schemas.append(f"{RAW_SCHEMA_PREFIX}commit_{run_id}")
        commit = _commit_latency(raw_schemas[-1])
        steps = _step_durations(tenant_slugs[2:])  # the timed tenants only
    finally:
        remove_tenants(tenant_slugs)
        drop_raw_schemas(raw_schemas)
        remove_users([owner.username])

    ms = {key: (p50(v) * 1000, p95(v) * 1000) for key, v in times.items()}
    ratio = ms["pier"][0] / ms["bare"][0]
    labels = {
        "pier": "a. Pier: services.tenant_create, then provisioning.run_job (timed)",
        "stock": "b. stock django-tenants: CREATE SCHEMA + migrate_schemas",
        "bare": "c. bare replay of the template SQL, one transaction",
    }
    print(table(
        ["path", "tenants", "p50 ms", "p95 ms", "p50 vs c", "statements", "writing commits"],
        [[labels[key], count, f"{ms[key][0]:.1f}", f"{ms[key][1]:.1f}", f"{ms[key][0] / ms['bare'][0]:.2f}x",
          len(sql_of[key]), writing_transactions(sql_of[key])] for key in labels],
    ))
    print("(statements: SQL of the timed part for one tenant, as sent, BEGIN/COMMIT included; "
          "writing commits: transactions that wrote, each waiting for a WAL flush)")
    extra = writing_transactions(sql_of["pier"]) - writing_transactions(sql_of["bare"])
    print(f"one writing commit costs {commit * 1000:.2f} ms here (p50 of a one-row UPDATE in autocommit); "
          f"Pier's {extra} extra writing commits ≈ {extra * commit * 1000:.1f} ms "
          f"of its {ms['pier'][0] - ms['bare'][0]:.1f} ms over the bare replay")
    print("\nPier's run_job by step (JobStep started_at..finished_at: the step, and the update marking it "
          "running; the rest of run_job is job bookkeeping):")
    print(table(
        ["step", "p50 ms", "p95 ms"],
        [[name, f"{p50(steps[name]) * 1000:.1f}", f"{p95(steps[name]) * 1000:.1f}"]
         for name in PROVISION_STEPS if name in steps],
    ))
    savepoints = sum(bool(_SAVEPOINT.match(q)) for q in statements)
    print(f"\ntemplate: {len(statements)} statements ({savepoints} of them SAVEPOINT/RELEASE SAVEPOINT), "
          f"{len(sql)} characters of SQL")
    print(f"one-off template capture (capture_template_sql): {capture.seconds * 1000:.1f} ms")
    print(f"first template_sql() of this process (DB row, or capture if none): {first.seconds * 1000:.1f} ms")
    verdict = "met" if ratio <= 1.5 else "NOT met"
    print(f"Pier p50 / bare replay p50 = {ratio:.2f} (goal <= 1.5: {verdict})")
    print(f"stock migrations p50 / Pier p50 = {ms['stock'][0] / ms['pier'][0]:.1f}")
    return {
        "count": count,
        "ms": ms,
        "ratio": ratio,
        "capture_ms": capture.seconds * 1000,
        "commit_ms": commit * 1000,
        "commits": {key: writing_transactions(v) for key, v in sql_of.items()},
        "statements": len(statements),
    }
