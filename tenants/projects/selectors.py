"""Reads for projects (in the current tenant's schema)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, QuerySet
from django.http import Http404

from portal.services import groups_of
from tenants.projects.access import Access, project_access, visible_projects
from tenants.models import NamespaceRegistry
from tenants.projects import config
from tenants.projects.models import Project, TenantSettings


def projects() -> QuerySet[Project]:
    return Project.objects.select_related("created_by").order_by("slug")


def _groups(user) -> list[str]:
    return [] if getattr(user, "is_access_key", False) else groups_of(user)


def projects_for(request) -> QuerySet[Project]:
    """The projects the caller may see in the current tenant."""
    return visible_projects(projects(), user=request.user, tenant_role=request.tenant_role,
                            groups=_groups(request.user))


def project_for(request, slug: str) -> tuple[Project, Access]:
    """The project and the caller's access to it; 404 if they may not see it."""
    project = Project.objects.select_related("created_by").prefetch_related("grants").filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    access = project_access(project, user=request.user, tenant_role=request.tenant_role, groups=_groups(request.user))
    if access.role is None:
        raise Http404("No such project.")
    return project, access


def tenant_settings() -> TenantSettings | None:
    return TenantSettings.objects.filter(singleton=True).first()


def tenant_defaults() -> dict:
    row = tenant_settings()
    return row.project_defaults if row else {}


def policy_for(tenant, *, row: TenantSettings | None = None) -> config.Policy:
    """What constrains this tenant's values: its defaults and locks (this schema), the ceilings,
    budget and locks staff set (the Tenant row), and its project namespaces (the registry)."""
    row = row if row is not None else tenant_settings()
    own = NamespaceRegistry.objects.filter(tenant_id=tenant.pk).values_list("name", flat=True)
    return config.policy(tenant=tenant, defaults=row.project_defaults if row else {},
                         org_locks=row.locked_keys if row else [], own_namespaces=list(own))


def effective_config(project: Project, *, policy: config.Policy) -> dict:
    return config.effective(policy=policy, overrides=project.config_overrides)


def budget_usage(policy: config.Policy, *, exclude_pk: int | None = None) -> dict[str, Decimal]:
    """The sum of every live project's effective budgeted quotas (projects on defaults count
    with their defaults)."""
    totals = {key: Decimal(0) for key in config.BUDGET_KEYS}
    rows = Project.objects.exclude(status=Project.Status.DELETING)
    if exclude_pk is not None:
        rows = rows.exclude(pk=exclude_pk)
    for overrides in rows.values_list("config_overrides", flat=True):
        values = config.values(config.effective(policy=policy, overrides=overrides))
        for key in config.BUDGET_KEYS:
            totals[key] += config.parse_quantity(values[key])
    return totals


def organization_policy(tenant) -> dict:
    """The organization level as its admins see it: their defaults and locks, and what platform
    staff set (read-only) with how much of the budget the projects use."""
    row = tenant_settings()
    policy = policy_for(tenant, row=row)
    used = budget_usage(policy) if policy.budget else {}
    return {
        "project_defaults": row.project_defaults if row else {},
        "locked_keys": row.locked_keys if row else [],
        "platform_locks": sorted(k for k, level in policy.locks.items() if level == config.PLATFORM),
        "ceilings": {key: ceiling.as_dict() for key, ceiling in policy.ceilings.items()},
        "budget": {key: {"budget": b.value, "used": config.format_amount(used[key])} for key, b in policy.budget.items()},
    }


def staff_policy(tenant) -> dict:
    """What platform staff set for one organization, and which projects the ceilings bring down."""
    from django_tenants.utils import schema_context

    clamped = []
    if tenant.status in ("active", "suspended"):
        with schema_context(tenant.schema_name):
            clamped = clamped_projects(policy_for(tenant))
    return {"ceilings": tenant.config_ceilings, "budget": tenant.config_budget, "locks": tenant.config_locks,
            "clamped_projects": clamped}


def clamped_projects(policy: config.Policy) -> list[dict]:
    """[{project, keys: {key: {asked, applied}}}] for the live projects whose values the ceilings
    (or their own limits) bring down."""
    result = []
    for project in Project.objects.exclude(status=Project.Status.DELETING).order_by("slug"):
        now = config.clamped(config.effective(policy=policy, overrides=project.config_overrides))
        if now:
            result.append({"project": project.slug, "keys": {
                key: {"asked": asked, "applied": applied} for key, (asked, applied) in now.items()}})
    return result


HOME_RECENT = 5


def home_summary(request) -> dict:
    """The organization home's projects card: how many there are (of the limit), how many of those
    the caller may see are in each status, and the ones most recently changed."""
    visible = projects_for(request)
    by_status = dict(visible.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {
        "total": Project.objects.count(),
        "limit": request.tenant.effective_max_projects,
        "visible": sum(by_status.values()),
        "by_status": [(status, by_status[status]) for status in Project.Status.values if by_status.get(status)],
        "recent": list(visible.order_by("-updated_at", "slug")[:HOME_RECENT]),
    }
