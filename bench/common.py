"""Helpers shared by the benchmarks: statistics, plain-text tables, and making and removing the
tenants, schemas and users a benchmark needs.

Everything a benchmark creates carries the `bench` prefix so that `cleanup_leftovers()` can remove
what an interrupted run left behind:
- Pier tenants: slug `bench-…`, so schema `t_bench_…` (tenants.validators.schema_name_for);
- schemas made without Pier (stock django-tenants, bare replay): `t_bench__…`. A double underscore
  cannot come from a slug (slugs have no `--`), so these never collide with a Pier tenant's schema;
- users: username `bench-…`.

Audit rows (portal.AuditEvent) written by the services are left: the table is append-only (a
trigger refuses DELETE), and `make bench` uses its own database (pier_bench).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

PREFIX = "bench-"
RAW_SCHEMA_PREFIX = "t_bench__"

KUBE_VERBS = ("get", "list", "create", "update", "patch", "delete", "deletecollection")
KUBE_WRITES = ("create", "update", "patch", "delete", "deletecollection")
SQL_WRITES = ("INSERT", "UPDATE", "DELETE")


# --- Figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100), interpolated between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip()

    out = [line([str(h) for h in headers]), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)), flush=True)


class Timer:
    """`with Timer() as t: …` then t.seconds."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def warm_connection() -> None:
    """Make sure the connection is open before timing something.

    django-tenants' migrate_schemas closes the connection after each schema; without this, whatever
    runs next in a round-robin would pay for the reconnection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


# --- Tenants, schemas, users -----------------------------------------------------------------


@contextlib.contextmanager
def no_enqueue():
    """Keep tenant services from publishing their Celery task.

    tenants.services enqueues the tenant's reconcile (portal.controller.reconcile_object) on commit. The benchmarks run the job in-process
    (tenants.provisioning.run_job), and nothing consumes the bench broker, so the messages would
    only pile up in the broker folder (and run against deleted rows if a worker ever did)."""
    with mock.patch("tenants.tasks.enqueue_job"):
        yield


def make_user(username: str, **fields):
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com", **fields})
    return user


def make_users(prefix: str, count: int) -> list:
    """`count` users named `<prefix>-000…`, created in one statement (no password hashing)."""
    User = get_user_model()
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(
        [User(username=name, email=f"{name}@example.com", first_name="Bench", last_name=name[-3:])
         for name in names if name not in existing]
    )
    return list(User.objects.filter(username__in=names).order_by("username"))


def create_tenant(slug: str, owner, *, capture: bool = False) -> tuple:
    """Pier's own path, minus the queue: tenants.services.tenant_create, then the provisioning job
    run in this process. Returns (tenant, job, seconds spent in run_job, run_job's SQL statements
    if `capture`, else None). Capturing slows the cursor: don't time a captured run."""
    from tenants import provisioning, services

    with no_enqueue():
        tenant, job = services.tenant_create(slug=slug, name=slug.title(), owner=owner.username, acting_user=None)
    warm_connection()
    statements = None
    with Timer() as timer:
        if capture:
            statements = capture_statements(lambda: provisioning.run_job(job.pk))
        else:
            provisioning.run_job(job.pk)
    tenant.refresh_from_db()
    return tenant, job, timer.seconds, statements


def create_tenant_with_members(slug: str, owner, members: Sequence) -> object:
    """A provisioned tenant whose members are `owner` (owner) and `members` (role member)."""
    from tenants.models import Membership

    tenant = create_tenant(slug, owner)[0]
    assert tenant.status == "active", f"{slug}: provisioning ended {tenant.status}: {tenant.status_message}"
    Membership.objects.bulk_create([Membership(tenant=tenant, user=user, role="member") for user in members])
    return tenant


def remove_tenants(slugs: Iterable[str]) -> None:
    """Drop the tenants' schemas and delete their rows (what the deletion job's steps do, without
    the job and its audit rows)."""
    from portal import tenancy
    from tenants import schema
    from tenants.models import Membership, PendingMembership, ProvisioningJob, Tenant

    slugs = list(slugs)
    # Requests leave the connection in their tenant's schema (TenantPathMiddleware keeps it for
    # the next request): back to public, where tenants are written (and that schema may go now).
    connection.set_schema_to_public()
    for tenant in Tenant.objects.filter(slug__in=slugs):
        schema.drop_tenant_schema(tenant.schema_name)
    with transaction.atomic():
        Membership.objects.filter(tenant__slug__in=slugs).delete()
        PendingMembership.objects.filter(tenant__slug__in=slugs).delete()
        ProvisioningJob.objects.filter(tenant_slug__in=slugs).delete()  # its JobSteps cascade
        Tenant.objects.filter(slug__in=slugs).delete()
    for slug in slugs:
        tenancy.invalidate(slug)


def drop_raw_schemas(names: Iterable[str]) -> None:
    for name in names:
        if not name.startswith(RAW_SCHEMA_PREFIX):
            raise ValueError(f"refusing to drop {name!r}: not a benchmark schema")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(name)} CASCADE")


@contextlib.contextmanager
def _public_relations_only():
    """Let Django's deletion collector see only the relations whose tables are in public.

    Deleting a user makes the collector look for every row that references it, including those of
    tenant-schema models (a project's `created_by`): in the public schema those tables do not
    exist and the delete fails. A bench user is only referenced from bench tenants, whose schemas
    are dropped first, so nothing is left behind by skipping those relations."""
    from django.apps import apps
    from django.conf import settings
    from django.db.models import deletion

    tenant_only = {config.label for config in apps.get_app_configs()
                   if config.name in settings.TENANT_APPS and config.name not in settings.SHARED_APPS}
    original = deletion.get_candidate_relations_to_delete

    def candidates(opts):
        return [r for r in original(opts) if r.related_model._meta.app_label not in tenant_only]

    with mock.patch.object(deletion, "get_candidate_relations_to_delete", candidates):
        yield


def _delete_users(users) -> None:
    with _public_relations_only():
        users.delete()


def remove_users(usernames: Iterable[str]) -> None:
    _delete_users(get_user_model().objects.filter(username__in=list(usernames), username__startswith=PREFIX))


def cleanup_leftovers() -> int:
    """Remove what an interrupted earlier run left: bench tenants, bench schemas, bench users.
    Returns how many tenants and schemas were removed."""
    from tenants.models import Membership, Tenant

    from tenants import schema

    slugs = list(Tenant.objects.filter(slug__startswith=PREFIX).values_list("slug", flat=True))
    remove_tenants(slugs)
    # What is left: schemas made without Pier, and any bench tenant schema whose row is gone.
    with connection.cursor() as cursor:
        cursor.execute(r"SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE 't\_bench\_%'")
        schemas = [row[0] for row in cursor.fetchall()]
    for name in schemas:
        schema.drop_tenant_schema(name)
    # Memberships PROTECT their user; a bench user can only be a member of a bench tenant.
    Membership.objects.filter(user__username__startswith=PREFIX).delete()
    _delete_users(get_user_model().objects.filter(username__startswith=PREFIX))
    return len(slugs) + len(schemas)


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0].split()[0]


# --- The Kubernetes API emulator, projects ---------------------------------------------------


@contextlib.contextmanager
def emulated_cluster():
    """A Kubernetes API emulator in this process, Pier's client pointed at it; all undone after.

    A KUBECONFIG in the environment is ignored on purpose: a benchmark must not create hundreds of
    namespaces in a real cluster."""
    from kube_emulator import KubeEmulator

    emulator = KubeEmulator().start()
    folder = Path(tempfile.mkdtemp(prefix="pier-bench-kube-"))
    try:
        with pointed_at(emulator.write_kubeconfig(folder / "kubeconfig")):
            from django.core.management import call_command

            call_command("install_cluster_objects", stdout=open(os.devnull, "w"))  # as a deploy does (the keys' namespace)
            yield emulator
    finally:
        emulator.reset()
        emulator.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def pointed_at(kubeconfig: Path):
    """Pier's Kubernetes client in this process talks to the cluster of `kubeconfig` meanwhile."""
    from portal import kube

    saved = settings.PIER_KUBECONFIG, settings.PIER_KUBE_IN_CLUSTER
    try:
        settings.PIER_KUBECONFIG = str(kubeconfig)
        settings.PIER_KUBE_IN_CLUSTER = False
        kube.reset_client()
        yield
    finally:
        settings.PIER_KUBECONFIG, settings.PIER_KUBE_IN_CLUSTER = saved
        kube.reset_client()


def kube_requests(emulator) -> Counter:
    """Requests the in-process emulator served so far, by verb ("other": discovery and anything
    outside KUBE_VERBS)."""
    counts = Counter({verb: emulator.request_count(verb) for verb in KUBE_VERBS})
    counts["other"] = emulator.request_count() - sum(counts.values())
    return counts


def kube_writes(counts: Counter) -> int:
    return sum(counts[verb] for verb in KUBE_WRITES)


def sql_writes(statements: Sequence[str]) -> list[str]:
    return [sql for sql in statements if sql.lstrip().split(None, 1)[0].upper() in SQL_WRITES]


@contextlib.contextmanager
def no_reconcile_enqueue():
    """Keep project services from publishing their Celery task (the benchmarks reconcile in-process);
    yields the mock, which counts what would have been enqueued: the kernel's one task
    (portal.controller.reconcile_object), which projects, keys and tenants publish with apply_async."""
    from portal.controller import reconcile_object

    enqueue = mock.MagicMock()
    with mock.patch.object(reconcile_object, "apply_async", enqueue):
        yield enqueue


@contextlib.contextmanager
def quiet_reconciler():
    """The reconciler logs every object it changes at INFO: one line per project here. Keep warnings."""
    logger = logging.getLogger("tenants.projects.reconcile")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def project_ready(tenant, owner, slug: str) -> dict[str, str]:
    """One project the way a user gets it, minus the queue: tenants.projects.services.project_create
    (what a POST calls), then reconcile.run (what its Celery task runs), in the tenant's schema.
    Returns the reconcile's outcome per object."""
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile, services

    with tenant_context(tenant):
        project = services.project_create(tenant=tenant, slug=slug, acting_user=owner)
        return reconcile.run(project.pk)


class StatementCounter:
    """`with connection.execute_wrapper(counter):` counts statements and writes (INSERT, UPDATE,
    DELETE) without keeping them: cheap enough to leave on while timing."""

    def __init__(self):
        self.statements = 0
        self.writes: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements += 1
        if sql.lstrip().split(None, 1)[0].upper() in SQL_WRITES:
            self.writes.append(sql)
        return execute(sql, params, many, context)


# --- Requests through the whole Django stack --------------------------------------------------


def signed_in(user) -> tuple:
    """A session for `user` (django.test.Client.force_login: a row in the session table, no password
    hashing): (the client, to log out with; the Cookie header value). Any web process on this
    database accepts the cookie."""
    from django.test import Client

    login = Client()
    login.force_login(user)
    return login, f"{settings.SESSION_COOKIE_NAME}={login.cookies[settings.SESSION_COOKIE_NAME].value}"


class WsgiClient:
    """Calls Django's WSGI handler directly, as a WSGI server would: the request_started and
    request_finished signals (and so the connection age and health checks) run as in production,
    and none of django.test.Client's bookkeeping (template signals, response decoration) is timed.

    Signed in by a session cookie made with django.test.Client.force_login: the session row and the
    user are looked up on every request, as for a browser; Basic auth would hash the password
    (PBKDF2) at every request and drown everything else."""

    HOST = "localhost"  # in ALLOWED_HOSTS of the local settings (PIER_TESTING)

    def __init__(self, user):
        from django.core.handlers.wsgi import WSGIHandler

        self._login, self.cookie = signed_in(user)
        self.credentials = {"HTTP_COOKIE": self.cookie}
        self.handler = WSGIHandler()

    def get(self, path: str, query: str = "") -> tuple[int, bytes]:
        import io
        import sys

        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": self.HOST, "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": self.HOST, **self.credentials, "HTTP_ACCEPT": "application/json",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        status: list[str] = []
        response = self.handler(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            body = b"".join(response)
        finally:
            response.close()  # fires request_finished, as a WSGI server does
        return int(status[0].split()[0]), body

    def logout(self) -> None:
        self._login.logout()  # deletes the session row


def capture_statements(call) -> list[str]:
    """The SQL statements `call()` ran on the default connection."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return [query["sql"] for query in captured.captured_queries]


def is_set_search_path(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SET SEARCH_PATH")


_WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER")


def writing_transactions(statements: Sequence[str]) -> int:
    """How many committed transactions in captured statements wrote something, i.e. waited for
    their WAL to reach the disk: each BEGIN…COMMIT block with a write in it, and each write run
    outside one (autocommit)."""
    count, inside, wrote = 0, False, False
    for sql in statements:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            inside, wrote = True, False
        elif word == "COMMIT":
            count += wrote
            inside = False
        elif word == "ROLLBACK":
            inside = False
        elif word in _WRITES:
            if inside:
                wrote = True
            else:
                count += 1
    return count
