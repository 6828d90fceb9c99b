"""Tenant schemas from a captured template.

Running Django's migrations for every new tenant is slow (seconds), and django-tenants' clone
function re-creates its SQL function on each call. Pier instead migrates a scratch schema once per
migration state, records every statement the migration ran (DDL, and the django_migrations rows
with literal values), and replays that SQL for each new tenant in one transaction: all or nothing,
so a failed attempt leaves no half-made schema.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading

from django.db.migrations.executor import MigrationExecutor
from django.db import connection, transaction
from django_tenants.utils import schema_exists

from portal import locks
from portal.tenancy import code_schema_version
from tenants.models import SchemaTemplate, Tenant

log = logging.getLogger(__name__)
# Reads, the search_path and savepoints (the replay is one transaction) are not part of a template.
_SKIP = re.compile(r"^\s*(SELECT|SHOW|SET\s+search_path|SAVEPOINT|RELEASE\s+SAVEPOINT)\b", re.IGNORECASE)
_local_templates: dict[str, list[str]] = {}
_local_lock = threading.Lock()


_TENANT_SCHEMA = re.compile(r"^t_[a-z][a-z0-9_]{1,40}$")


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _check_tenant_schema(name: str) -> None:
    # Names come from validated slugs; checked again here because they are put into SQL.
    if not _TENANT_SCHEMA.match(name):
        raise ValueError(f"{name!r} is not a tenant schema name")


def capture_template_sql() -> list[str]:
    """Migrate a scratch schema and return the statements that did it (inlined parameters)."""
    state = code_schema_version()
    scratch = f"pier_template_{state[:12]}"
    statements: list[str] = []

    def capture(execute, sql, params, many, context):
        if not _SKIP.match(sql):
            statements.append(connection.ops.compose_sql(sql, params) if params else sql)
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote(scratch)} CASCADE")
        cursor.execute(f"CREATE SCHEMA {quote(scratch)}")
    # The executor, not the migrate command: no post_migrate handlers (contenttypes and
    # permissions live in public and must not end up in the template). django-tenants' router
    # keeps shared apps' operations out of a tenant schema, as migrate_schemas would.
    connection.set_schema(scratch)
    try:
        with connection.execute_wrapper(capture):
            executor = MigrationExecutor(connection)
            executor.migrate(executor.loader.graph.leaf_nodes())
    finally:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(scratch)} CASCADE")
    return statements


# Part of a stored template's key: bump it when the capture changes what it records, so that
# templates captured by older code are not replayed.
TEMPLATE_FORMAT = 2


def template_key() -> str:
    return hashlib.sha256(f"{code_schema_version()}:{TEMPLATE_FORMAT}".encode()).hexdigest()


def template_sql() -> list[str]:
    """The template for the code's migration state: from memory, the database, or captured now."""
    state = template_key()
    cached = _local_templates.get(state)
    if cached is not None:
        return cached
    with _local_lock:
        template = SchemaTemplate.objects.filter(migration_state=state).first()
        if template is None:
            with transaction.atomic():
                locks.xact_lock("schema-template", state)
                template = SchemaTemplate.objects.filter(migration_state=state).first()
                if template is None:
                    log.info("capturing the tenant schema template for migration state %s", state[:12])
                    template = SchemaTemplate.objects.create(migration_state=state, statements=capture_template_sql())
        _local_templates[state] = template.statements
        return template.statements


def replay(schema_name: str, statements: list[str]) -> None:
    """Create `schema_name` and run the template in it, in one round trip (the caller provides the
    transaction; SET LOCAL keeps the search_path change inside it)."""
    _check_tenant_schema(schema_name)
    if connection.schema_name != "public":
        raise RuntimeError("tenant schemas are created from the public schema")
    batch = [
        f"CREATE SCHEMA {quote(schema_name)}",
        f"SET LOCAL search_path TO {quote(schema_name)}, public",
        *statements,
        "SET LOCAL search_path TO public",
    ]
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(batch))


def create_tenant_schema(tenant: Tenant) -> bool:
    """Create the tenant's schema, complete, in one transaction. False if it already existed.
    The caller serialises work on the tenant (provisioning holds the tenant's job lock)."""
    statements = template_sql()
    with transaction.atomic(savepoint=False):
        if schema_exists(tenant.schema_name):
            return False
        replay(tenant.schema_name, statements)
    return True


def drop_tenant_schema(schema_name: str) -> None:
    _check_tenant_schema(schema_name)
    with connection.cursor() as cursor:
        # Deferred foreign-key checks of rows this transaction wrote in the schema would make
        # PostgreSQL refuse to drop their tables ("pending trigger events"): run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote(schema_name)} CASCADE")
