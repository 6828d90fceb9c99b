"""How many sessions may run at once, and where they run.

Running limits (per project and per organization) come from PIER_SESSION_RUNNING_PER_PROJECT and
PIER_SESSION_RUNNING_PER_TENANT. A session past a limit waits as `Pending`, saying why, and is
admitted when a slot frees, oldest first: a session is admitted only if the running ones plus the
older waiting ones leave room (the controller counts under the organization's admission lock).
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from portal import controller
from sessions.models import AgenticSession

Phase = AgenticSession.Phase
OCCUPYING = (Phase.CREATING, Phase.RUNNING)  # admitted and not finished


def project_limit(project) -> int:
    return settings.PIER_SESSION_RUNNING_PER_PROJECT


def tenant_limit(tenant) -> int:
    return settings.PIER_SESSION_RUNNING_PER_TENANT


def waiting_reason(s: AgenticSession, tenant) -> str:
    """Why `s` cannot start now ("" if it can)."""
    older_waiting = Q(phase=Phase.PENDING) & (Q(created_at__lt=s.created_at) | Q(created_at=s.created_at, pk__lt=s.pk))
    live = AgenticSession.objects.filter(deletion_requested_at__isnull=True).exclude(pk=s.pk)
    for scope, rows, limit in (
        ("this project", live.filter(project_id=s.project_id), project_limit(s.project)),
        ("this organization", live, tenant_limit(tenant)),
    ):
        running = rows.filter(phase__in=OCCUPYING).count()
        ahead = rows.filter(older_waiting).count()
        if running + ahead >= limit:
            queue = f", {ahead} waiting before it" if ahead else ""
            return f"waiting: {running} of {limit} running in {scope}{queue}"
    return ""


def wake_waiting(s: AgenticSession) -> None:
    """A slot may have freed: the oldest waiting sessions of the organization look again."""
    limit = settings.PIER_SESSION_RUNNING_PER_TENANT
    for pk in (AgenticSession.objects.filter(phase=Phase.PENDING, deletion_requested_at__isnull=True)
               .exclude(pk=s.pk).order_by("created_at", "pk").values_list("pk", flat=True)[:limit]):
        controller.enqueue(AgenticSession._meta.label_lower, pk)


def runtime_mode(tenant) -> str:
    return AgenticSession.Mode.SHARED


def placement(s: AgenticSession, tenant) -> dict | None:
    return None
