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
before timing; its one-off cost is reported on its own.
"""

from __future__ import annotations

import re
import uuid

from django.core.management import call_command
from django.db import connection, transaction

from bench.common import (
    PREFIX, RAW_SCHEMA_PREFIX, Timer, cleanup_leftovers, create_tenant, drop_raw_schemas, heading, make_user,
    p50, p95, remove_tenants, remove_users, table, warm_connection,
)

TENANTS_PER_PATH = 20


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


def run(count: int = TENANTS_PER_PATH) -> dict:
    from tenants import schema

    heading(f"provisioning: {count} tenants per path, interleaved")
    cleanup_leftovers()
    run_id = uuid.uuid4().hex[:6]
    owner = make_user(f"{PREFIX}owner-{run_id}")
    tenant_slugs: list[str] = []
    raw_schemas: list[str] = []
    times: dict[str, list[float]] = {"pier": [], "stock": [], "bare": []}
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

        def pier(tag: str) -> float:
            slug = f"{PREFIX}p-{run_id}-{tag}"
            tenant_slugs.append(slug)
            return create_tenant(slug, owner)[2]

        def stock(tag: str) -> float:
            name = f"{RAW_SCHEMA_PREFIX}stock_{run_id}_{tag}"
            raw_schemas.append(name)
            return _stock(name)

        def bare(tag: str) -> float:
            name = f"{RAW_SCHEMA_PREFIX}bare_{run_id}_{tag}"
            raw_schemas.append(name)
            return _bare(name, sql)

        paths = [("pier", pier), ("stock", stock), ("bare", bare)]
        # One untimed tenant per path first: imports, statement caches, the first migration
        # loader; what a long-running worker has already paid.
        for _, make in paths:
            make("w")
        for i in range(count):
            shift = i % len(paths)
            for key, make in paths[shift:] + paths[:shift]:
                times[key].append(make(str(i)))
        _sanity(tenant_slugs, raw_schemas)
    finally:
        remove_tenants(tenant_slugs)
        drop_raw_schemas(raw_schemas)
        remove_users([owner.username])

    ms = {key: (p50(v) * 1000, p95(v) * 1000) for key, v in times.items()}
    ratio = ms["pier"][0] / ms["bare"][0]
    print(table(
        ["path", "tenants", "p50 ms", "p95 ms", "p50 vs bare"],
        [
            ["a. Pier: services.tenant_create + provisioning.run_job (run_job timed)", count,
             f"{ms['pier'][0]:.1f}", f"{ms['pier'][1]:.1f}", f"{ratio:.2f}x"],
            ["b. stock django-tenants: CREATE SCHEMA + migrate_schemas", count,
             f"{ms['stock'][0]:.1f}", f"{ms['stock'][1]:.1f}", f"{ms['stock'][0] / ms['bare'][0]:.2f}x"],
            ["c. bare DDL replay of the template (one transaction)", count,
             f"{ms['bare'][0]:.1f}", f"{ms['bare'][1]:.1f}", "1.00x"],
        ],
    ))
    savepoints = sum(bool(_SAVEPOINT.match(q)) for q in statements)
    print(f"\ntemplate: {len(statements)} statements ({savepoints} of them SAVEPOINT/RELEASE SAVEPOINT), "
          f"{len(sql)} characters of SQL")
    print(f"one-off template capture (capture_template_sql): {capture.seconds * 1000:.1f} ms")
    print(f"first template_sql() of this process (DB row or capture): {first.seconds * 1000:.1f} ms")
    verdict = "met" if ratio <= 1.5 else "NOT met"
    print(f"Pier p50 / bare replay p50 = {ratio:.2f} (goal <= 1.5: {verdict})")
    print(f"stock migrations p50 / Pier p50 = {ms['stock'][0] / ms['pier'][0]:.1f}")
    return {
        "count": count,
        "ms": ms,
        "ratio": ratio,
        "capture_ms": capture.seconds * 1000,
        "statements": len(statements),
    }
