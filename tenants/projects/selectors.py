"""Reads for projects (in the current tenant's schema)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from portal.services import groups_of
from tenants.projects.access import Access, project_access, visible_projects
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
    project = Project.objects.select_related("created_by").prefetch_related("group_access").filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    access = project_access(project, user=request.user, tenant_role=request.tenant_role, groups=_groups(request.user))
    if access.role is None:
        raise Http404("No such project.")
    return project, access


def tenant_defaults() -> dict:
    row = TenantSettings.objects.filter(singleton=True).first()
    return row.project_defaults if row else {}


def effective_config(project: Project, *, defaults: dict | None = None) -> dict:
    return config.effective(tenant_defaults=tenant_defaults() if defaults is None else defaults,
                            overrides=project.config_overrides)
