"""How many sessions may run at once, how long, and where they run.

The limits come from the effective configuration (tenants/projects/config.py, within the
ceilings staff set): `sessions.running` per project and `sessions.max_timeout`; per organization,
the Tenant's `max_running_sessions` (staff; PIER_SESSION_RUNNING_PER_TENANT by default). Where:
a `dedicated` organization's runners go to its own nodes (the namespace's node selector, which
Pier's project controller sets, and a toleration of the tenant's taint), with its runner image if
staff set one; the runner's resources are the project's effective `sessions.runner.*`. Both are
fixed when a session is admitted. A session past a limit waits as `Pending`, saying why, and is
admitted when a slot frees, oldest first: a session is admitted only if the running ones plus the
older waiting ones leave room.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q

from portal import controller
from sessions.models import AgenticSession

Phase = AgenticSession.Phase
OCCUPYING = (Phase.CREATING, Phase.RUNNING)  # admitted and not finished


def effective(project, tenant) -> dict:
    """The project's effective configuration values."""
    from tenants.projects import config
    from tenants.projects.selectors import policy_for

    return config.values(config.effective(policy=policy_for(tenant), overrides=project.config_overrides))


def project_limit(project, tenant) -> int:
    return int(Decimal(effective(project, tenant)["sessions.running"]))


def max_timeout(project, tenant) -> int:
    return int(Decimal(effective(project, tenant)["sessions.max_timeout"]))


def tenant_limit(tenant) -> int:
    return tenant.effective_max_running_sessions


def waiting_reason(s: AgenticSession, tenant) -> str:
    """Why `s` cannot start now ("" if it can): the running sessions plus the older waiting ones
    fill a limit. Each scope is counted in one statement (one snapshot), so two workers admitting
    at once cannot both pass: each sees the other either still waiting and older (counted as
    ahead), or admitted (counted as running), never neither."""
    older_waiting = Q(phase=Phase.PENDING) & (Q(created_at__lt=s.created_at) | Q(created_at=s.created_at, pk__lt=s.pk))
    live = AgenticSession.objects.filter(deletion_requested_at__isnull=True).exclude(pk=s.pk)
    for scope, rows, limit in (
        ("this project", live.filter(project_id=s.project_id), project_limit(s.project, tenant)),
        ("this organization", live, tenant_limit(tenant)),
    ):
        counts = rows.aggregate(running=Count("pk", filter=Q(phase__in=OCCUPYING)), ahead=Count("pk", filter=older_waiting))
        running, ahead = counts["running"], counts["ahead"]
        if running + ahead >= limit:
            queue = f", {ahead} waiting before it" if ahead else ""
            return f"waiting: {running} of {limit} running in {scope}{queue}"
    return ""


def wake_waiting(s: AgenticSession) -> None:
    """A slot may have freed: the oldest waiting sessions of the organization look again."""
    limit = max(settings.PIER_SESSION_RUNNING_PER_TENANT, 10)
    for pk in (AgenticSession.objects.filter(phase=Phase.PENDING, deletion_requested_at__isnull=True)
               .exclude(pk=s.pk).order_by("created_at", "pk").values_list("pk", flat=True)[:limit]):
        controller.enqueue(AgenticSession._meta.label_lower, pk)


def runtime_mode(tenant) -> str:
    return tenant.runtime_mode


def runner_resources(project, tenant) -> dict:
    """The runner container's requests and limits: the project's effective `sessions.runner.*`
    (within the ceilings staff set; a dedicated organization's larger ones are its defaults)."""
    values = effective(project, tenant)
    return {part: {kind: values[f"sessions.runner.{part}.{kind}"] for kind in ("cpu", "memory")}
            for part in ("requests", "limits")}


def placement(s: AgenticSession, tenant) -> dict | None:
    """The runner pod's tolerations on a dedicated runtime (the namespace's node selector, set by
    the project controller and enforced at admission, places it). None: shared nodes. A session
    keeps the mode it was admitted with."""
    if s.runtime_mode != AgenticSession.Mode.DEDICATED:
        return None
    return {"tolerations": [{"key": "pier.dev/tenant", "operator": "Equal", "value": tenant.slug,
                             "effect": "NoSchedule"}]}


def runner_image(mode: str, tenant) -> str:
    """A dedicated organization's own runner image if staff set one, else the platform's."""
    if mode == AgenticSession.Mode.DEDICATED and tenant.runner_image:
        return tenant.runner_image
    return settings.PIER_RUNNER_IMAGE
