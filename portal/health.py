"""/healthz: the process answers. /readyz: the database and the broker answer."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_safe


@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # reported, not raised: this is a probe
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    from django.conf import settings

    from portal.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            # Virtual transports (Redis) connect lazily; opening a channel talks to the server.
            conn.default_channel
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@require_safe
def readyz(request):
    checks = {}
    ok = True
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        started = time.perf_counter()
        error = check()
        checks[name] = {"ok": error is None, "ms": round((time.perf_counter() - started) * 1000, 1)}
        if error:
            checks[name]["error"] = error
            ok = False
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)
