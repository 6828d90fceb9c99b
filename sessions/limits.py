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

from django.conf import settings
from django.db.models import Count, Q

from portal import controller
from sessions.models import AgenticSession

Phase = AgenticSession.Phase
OCCUPYING = (Phase.CREATING, Phase.RUNNING)  # admitted and not finished


def _policy(tenant):
    from tenants.projects.selectors import policy_for

    return policy_for(tenant)


def effective(project, tenant, *, policy=None) -> dict:
    """The project's effective configuration values (`policy`: the tenant's, if already read)."""
    from tenants.projects import config

    return config.values(config.effective(policy=policy or _policy(tenant), overrides=project.config_overrides))


def _count(project, tenant, key: str, *, policy=None) -> int:
    """A whole-number key as a number: any quantity the configuration accepts ("4k" too)."""
    from tenants.projects.config import parse_quantity

    return int(parse_quantity(effective(project, tenant, policy=policy)[key]))


def project_limit(project, tenant, *, policy=None) -> int:
    return _count(project, tenant, "sessions.running", policy=policy)


def max_timeout(project, tenant) -> int:
    return _count(project, tenant, "sessions.max_timeout")


def tenant_limit(tenant) -> int:
    return tenant.effective_max_running_sessions


def waiting_reason(s: AgenticSession, tenant) -> str:
    """Why `s` cannot start now ("" if it can): the running sessions plus the older waiting ones
    that would start before it fill a limit. In the project, every older waiting session is
    ahead of it; in the organization, only those their own project's limit lets start (a queue
    held back in one project does not hold back the others).

    The counts come from one statement (one snapshot), so two workers admitting at once cannot
    both pass: each sees the other either still waiting and older (counted as ahead), or
    admitted (counted as running), never neither."""
    older_waiting = Q(phase=Phase.PENDING) & (Q(created_at__lt=s.created_at) | Q(created_at=s.created_at, pk__lt=s.pk))
    live = (AgenticSession.objects.filter(deletion_requested_at__isnull=True, phase__in=(*OCCUPYING, Phase.PENDING))
            .exclude(pk=s.pk))
    per_project = {row["project_id"]: row for row in live.order_by().values("project_id").annotate(
        running=Count("pk", filter=Q(phase__in=OCCUPYING)), ahead=Count("pk", filter=older_waiting))}
    own = per_project.pop(s.project_id, {"running": 0, "ahead": 0})
    policy = _policy(tenant)  # read once for every project's limit
    limit = project_limit(s.project, tenant, policy=policy)
    if own["running"] + own["ahead"] >= limit:
        return _waiting(own["running"], own["ahead"], limit, "this project")
    running = own["running"] + sum(row["running"] for row in per_project.values())
    ahead = own["ahead"]
    queued = [pk for pk, row in per_project.items() if row["ahead"]]
    if queued:
        from tenants.projects.models import Project

        for project in Project.objects.filter(pk__in=queued):
            row = per_project[project.pk]
            ahead += min(row["ahead"], max(0, project_limit(project, tenant, policy=policy) - row["running"]))
    limit = tenant_limit(tenant)
    if running + ahead >= limit:
        return _waiting(running, ahead, limit, "this organization")
    return ""


def _waiting(running: int, ahead: int, limit: int, scope: str) -> str:
    queue = f", {ahead} waiting before it" if ahead else ""
    return f"waiting: {running} of {limit} running in {scope}{queue}"


def wake_waiting(s: AgenticSession, *, project_only: bool = False) -> None:
    """A slot may have freed: the oldest waiting session of each project looks again (within a
    project they start in order of creation, so no other could take it; one held back by its own
    project's limit must not hide another project's). One per project, not the whole queue, so a
    long backlog does not turn every finish into a burst of passes. `project_only`: just the
    next of `s`'s project (after `s` took a slot, another may still be free there)."""
    waiting = (AgenticSession.objects.filter(phase=Phase.PENDING, deletion_requested_at__isnull=True)
               .exclude(pk=s.pk))
    if project_only:
        waiting = waiting.filter(project_id=s.project_id)
    heads = waiting.order_by("project_id", "created_at", "pk").distinct("project_id").values_list("pk", flat=True)
    for pk in heads[:200]:
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
