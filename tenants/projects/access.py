"""Who may do what in a project, decided in one place for pages and API alike.

A person's project role is the highest of: admin as the organization's owner or admin (or
platform staff), admin as the project's creator, the role granted to them, and the roles granted
to groups they belong to.
Without any role the project does not exist for them (404)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from portal.errors import Forbidden
from tenants.models import MANAGER_ROLES
from tenants.projects.models import Project

RANK = {"view": 1, "edit": 2, "admin": 3}
ACTIONS = {
    "view": ["read"],
    "edit": ["read", "edit"],
    "admin": ["read", "edit", "configure", "share", "delete"],
}


@dataclass(frozen=True)
class Access:
    role: str | None
    source: str
    is_key: bool = False

    @property
    def actions(self) -> list[str]:
        actions = ACTIONS.get(self.role or "", [])
        # Keys never share projects or issue keys, whatever their role.
        return [a for a in actions if a != "share"] if self.is_key else actions

    def require(self, action: str, *, project: Project) -> None:
        if action not in self.actions:
            needed = next(role for role in ("view", "edit", "admin") if action in ACTIONS[role])
            raise Forbidden(
                f"This needs the {needed} role in project '{project.slug}'; you have "
                f"{self.role or 'none'}{f' (as {self.source})' if self.role else ''}."
            )


def project_access(project: Project, *, user, tenant_role: str, groups: list[str]) -> Access:
    if getattr(user, "is_access_key", False):
        if user.project_id != project.pk:
            return Access(role=None, source="")
        return Access(role=user.role, source=f"access key {user.key.name}", is_key=True)
    candidates: list[tuple[str, str]] = []
    if tenant_role in (*MANAGER_ROLES, "staff"):
        candidates.append(("admin", "platform staff" if tenant_role == "staff" else f"organization {tenant_role}"))
    if project.created_by_id == user.pk:
        candidates.append(("admin", "project creator"))
    member_of = set(groups)
    for grant in project.grants.all():
        if grant.kind == "group" and grant.subject in member_of:
            candidates.append((grant.role, f"group {grant.subject}"))
        elif grant.kind == "user" and grant.user_id == user.pk:
            candidates.append((grant.role, "shared with you"))
    if not candidates:
        return Access(role=None, source="")
    role, source = max(candidates, key=lambda c: RANK[c[0]])
    return Access(role=role, source=source)


def visible_projects(queryset: QuerySet[Project], *, user, tenant_role: str, groups: list[str]) -> QuerySet[Project]:
    if getattr(user, "is_access_key", False):
        return queryset.filter(pk=user.project_id)
    if tenant_role in (*MANAGER_ROLES, "staff"):
        return queryset
    return queryset.filter(Q(created_by=user) | Q(grants__kind="user", grants__user=user)
                           | Q(grants__kind="group", grants__subject__in=groups)).distinct()
