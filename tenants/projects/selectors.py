"""Reads for projects (in the current tenant's schema)."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.projects import config
from tenants.projects.models import Project, TenantSettings


def projects() -> QuerySet[Project]:
    return Project.objects.select_related("created_by").order_by("slug")


def tenant_defaults() -> dict:
    row = TenantSettings.objects.filter(singleton=True).first()
    return row.project_defaults if row else {}


def effective_config(project: Project, *, defaults: dict | None = None) -> dict:
    return config.effective(tenant_defaults=tenant_defaults() if defaults is None else defaults,
                            overrides=project.config_overrides)
