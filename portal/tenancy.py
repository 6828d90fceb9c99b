"""Tenant routing by path, on one host.

`/t/<slug>/…` (HTML) and `/api/v1/tenants/<slug>/…` (API) select a tenant; everything else runs in
the public schema. The tenant comes from an in-process cache with a short TTL; when the TTL runs
out, a version key in the shared cache says whether the cached row is still current, so a routed
request costs no lookup query (only the `SET search_path` django-tenants issues at the first
cursor) and a change such as a suspension reaches every web and worker process within
PIER_TENANT_CACHE_TTL seconds.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django_tenants.utils import get_public_schema_name, get_tenant_model


# The shape of a tenant slug (tenants.validators adds the reserved words and other rules).
SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,40}$"
TENANT_PATH = re.compile(r"^/(?:t|api/v1/tenants)/(?P<slug>[^/]+)(?:/|$)")


@dataclass
class _Entry:
    tenant: object | None  # a Tenant, or None for "no such tenant" (cached too)
    version: str | None  # the shared version key's value when loaded (None: never changed)
    checked_at: float


# Bounded: slugs come from URLs anyone can send.
_MAX_ENTRIES = 10_000
_entries: OrderedDict[str, _Entry] = OrderedDict()
_lock = threading.Lock()
_SLUG = re.compile(SLUG_PATTERN)


def _version_key(slug: str) -> str:
    return f"tenant-version:{slug}"


def resolve(slug: str):
    """The Tenant with this slug, or None. Usually answered from memory: the row is read again
    only when the shared version key changed (every write to a tenant changes it). The instance
    is shared by the process's requests: read it, never write to it."""
    if not _SLUG.match(slug):
        return None
    now = time.monotonic()
    entry = _entries.get(slug)
    if entry is not None and now - entry.checked_at < settings.PIER_TENANT_CACHE_TTL:
        return entry.tenant
    version = cache.get(_version_key(slug))
    if entry is not None and version == entry.version:
        entry.checked_at = now
        return entry.tenant
    tenant = get_tenant_model().objects.filter(slug=slug).first()  # settings.TENANT_MODEL
    with _lock:
        _entries[slug] = _Entry(tenant=tenant, version=version, checked_at=now)
        _entries.move_to_end(slug)
        while len(_entries) > _MAX_ENTRIES:
            _entries.popitem(last=False)
    return tenant


def invalidate(slug: str) -> None:
    """Tell every process that this tenant changed (call after the change committed)."""
    cache.set(_version_key(slug), uuid.uuid4().hex, timeout=None)
    with _lock:
        _entries.pop(slug, None)


def clear_local_cache() -> None:
    with _lock:
        _entries.clear()


@lru_cache(maxsize=1)
def code_schema_version() -> str:
    """A digest of the tenant apps' migrations on disk: the schema version the code expects."""
    from django.db.migrations.loader import MigrationLoader

    labels = {cfg.label for cfg in apps.get_app_configs() if cfg.name in settings.TENANT_APPS}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    names = sorted(f"{app}.{name}" for app, name in loader.disk_migrations if app in labels)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def require_tenant_schema(task: str) -> None:
    """For a per-tenant task (fanned out with its schema in the message header): refuse to run in
    the public schema, where it would find none of a tenant's rows and do nothing silently."""
    if connection.schema_name == get_public_schema_name():
        raise RuntimeError(f"{task} runs in a tenant schema (enqueue it per tenant)")


def _use_public() -> None:
    if connection.schema_name != get_public_schema_name():
        connection.set_schema_to_public()


def _use_tenant(tenant) -> None:
    if connection.schema_name == tenant.schema_name:
        # Same schema as this connection's previous request: django-tenants' set_tenant() would
        # forget that the search_path is already right and send another SET.
        connection.tenant = tenant
    else:
        connection.set_tenant(tenant)


class TenantPathMiddleware:
    """Selects the schema for each request. A persistent connection keeps the schema of its
    previous request, so every request sets the one it needs (usually without any SQL: the
    search_path is only sent when it changes)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        match = TENANT_PATH.match(request.path_info)
        tenant = resolve(match.group("slug")) if match else None
        # Whether this caller may use the tenant is decided by portal.access, after authentication;
        # a schema only exists (and is only current) for these statuses.
        if tenant is not None and tenant.status in ("active", "suspended") and tenant.schema_version == code_schema_version():
            _use_tenant(tenant)
        else:
            _use_public()
        if match is not None:
            # Only on tenant routes (django-tenants' admin templates read "no tenant attribute" as
            # the public schema). None for an unknown slug: portal.access answers it like a
            # tenant the caller may not see (sign in first, then 404), so existence never leaks.
            request.tenant = tenant
        return self.get_response(request)
