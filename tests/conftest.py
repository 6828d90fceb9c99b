"""Shared fixtures.

django-tenants traps, and how this suite avoids them:
- A few tenants ("alpha", "beta") are provisioned once per session, through the real provisioning
  code, right after pytest-django created the test database. Tests use them inside the usual
  per-test transaction, which is rolled back; the schemas stay.
- No `transaction=True` tests: Django's flush only empties the public schema (tenant rows would
  be lost while their schemas stay). Tests that need committed data (a real worker process) use
  the `committed` fixture, create their own tenants with unique slugs and delete them at the end.
"""

from __future__ import annotations

import base64
import itertools
import socket
import urllib.error
import urllib.request
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from portal import tenancy

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


def make_user(username: str, *, staff: bool = False, email: str | None = None):
    User = get_user_model()
    user, _ = User.objects.get_or_create(
        username=username,
        defaults={"email": email or f"{username}@example.com", "is_staff": staff, "is_superuser": staff},
    )
    user.set_password(PASSWORD)
    user.save()
    return user


def provision_now(slug: str, owner: str, *, name: str | None = None, acting_user=None):
    """Create a tenant and run its provisioning job in this process (no queue)."""
    from django.db import transaction

    from tenants import provisioning, services

    with transaction.atomic():
        tenant, job = services.tenant_create(slug=slug, name=name or slug.title(), owner=owner, acting_user=acting_user)
    provisioning.run_job(job.pk)
    tenant.refresh_from_db()
    return tenant


def delete_now(tenant, *, acting_user=None, timeout: float = 20.0) -> None:
    """Delete a committed tenant and run its deletion job here until its namespaces are gone (the
    step waits for them, as the task would)."""
    import time

    from django.db import connection, transaction

    from tenants import provisioning, services
    from tenants.models import Tenant
    from tenants.projects.reconcile import StillTerminating

    connection.set_schema_to_public()
    with transaction.atomic():
        _t, job = services.tenant_delete(tenant=Tenant.objects.get(pk=tenant.pk), acting_user=acting_user)
    deadline = time.monotonic() + timeout
    while True:
        try:
            provisioning.run_job(job.pk)
            return
        except StillTerminating:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker):
    """The test database, always (pytest-django would skip it when no collected test carries
    the django_db mark, e.g. when only worker tests run), plus the session's tenants."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        db_cfg = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        from django.core.management import call_command

        call_command("install_cluster_objects", stdout=open(os.devnull, "w"))  # as every deploy does
        staff = make_user("staff", staff=True)
        make_user("alice")
        make_user("bob")
        make_user("carol")
        make_user("dave")
        from tenants.models import Membership

        alpha = provision_now("alpha", "alice", name="Alpha Org", acting_user=staff)
        beta = provision_now("beta", "carol", name="Beta Org", acting_user=staff)
        Membership.objects.create(tenant=alpha, user=get_user_model().objects.get(username="bob"), role="member")
        Membership.objects.create(tenant=alpha, user=get_user_model().objects.get(username="dave"), role="admin")
        assert alpha.status == "active" and beta.status == "active"
    yield
    with django_db_blocker.unblock():
        # Worker and web processes have exited, but their server backends may linger a moment.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        teardown_databases(db_cfg, verbosity=0)


@pytest.fixture(autouse=True)
def _fresh_tenant_cache():
    from django.core.cache import cache

    tenancy.clear_local_cache()
    cache.clear()
    yield
    tenancy.clear_local_cache()
    connection.set_schema_to_public()


@pytest.fixture
def users(db):
    User = get_user_model()
    return {u.username: u for u in User.objects.filter(username__in=["staff", "alice", "bob", "carol", "dave"])}


@pytest.fixture
def alpha(db):
    from tenants.models import Tenant

    return Tenant.objects.get(slug="alpha")


@pytest.fixture
def beta(db):
    from tenants.models import Tenant

    return Tenant.objects.get(slug="beta")


@pytest.fixture
def api():
    """An API client factory: api(user) authenticates as user (Basic auth, as automation does)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=_basic(user.username))
        return client

    return make


def _basic(username: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()


_counter = itertools.count()


@pytest.fixture
def unique_slug():
    def make(prefix: str = "x") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}{next(_counter)}"

    return make


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Database access without the per-test transaction: what the test writes is committed and
    visible to other processes. Clean up what you create."""
    with django_db_blocker.unblock():
        yield
    connection.set_schema_to_public()


def _database_url() -> str:
    settings = connection.settings_dict
    import urllib.parse

    host = urllib.parse.quote(settings["HOST"] or "", safe="")
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    user = settings.get("USER") or "postgres"
    password = f":{urllib.parse.quote(settings['PASSWORD'], safe='')}" if settings.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}{port}/{settings['NAME']}"


@pytest.fixture
def worker_env(committed, tmp_path):
    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url()
    env["CELERY_TASK_ALWAYS_EAGER"] = "0"
    return env


def spawn_worker(env: dict[str, str]) -> subprocess.Popen:
    """A real Celery worker process (its own process group, so a test can SIGKILL all of it)."""
    log_path = Path(os.environ.get("PIER_STATE_DIR", ROOT / ".pier" / "test")) / f"worker-{uuid.uuid4().hex[:6]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "1",
             "--pool", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    process.log_path = log_path
    return process


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def celery_worker_process(worker_env):
    """A real Celery worker process against the test database, broker and cluster."""
    process = spawn_worker(worker_env)
    yield process
    stop_worker(process)


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_process(worker_env):
    """A real web server process (gunicorn) on the test database; yields its base URL."""
    port = _free_port()
    env = dict(worker_env, PIER_TENANT_CACHE_TTL="1.0")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(f"{base}/healthz")[0] == 200, timeout=30, message="the web process")
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def get(url: str, user: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""
