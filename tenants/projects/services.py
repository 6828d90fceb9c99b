"""Writes to projects (they run in the tenant's schema; the namespace registry is in public).

Each service validates, writes, audits and enqueues the reconcile only after the commit. No
Kubernetes call happens here: the reconciler makes the cluster follow."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F

from portal import audit
from portal.errors import Conflict, Forbidden, InvalidInput, QuotaExceeded
from portal.services import clean_groups
from tenants.models import NamespaceRegistry, Tenant
from tenants.projects import config
from tenants.projects.access import Access
from tenants.projects.models import GroupAccess, Project, ProjectEvent, ProjectRole, TenantSettings
from tenants.validators import namespace_name_for, validate_namespace_name, validate_project_slug


def _invalid(field: str, exc: ValidationError) -> InvalidInput:
    message = " ".join(exc.messages)
    return InvalidInput(f"{field}: {message}", details={field: exc.messages})


def _enqueue_reconcile(project: Project) -> None:
    from tenants.projects.tasks import reconcile_project

    project_id = project.pk
    transaction.on_commit(lambda: reconcile_project.delay(project_id))


def _event(project: Project, message: str = "") -> None:
    ProjectEvent.objects.create(project=project, status=project.status, message=message)


def project_create(
    *,
    tenant: Tenant,
    slug: str,
    acting_user,
    display_name: str = "",
    description: str = "",
    config_overrides: dict[str, Any] | None = None,
) -> Project:
    try:
        validate_project_slug(slug)
    except ValidationError as exc:
        raise _invalid("slug", exc)
    namespace = namespace_name_for(tenant.slug, slug)
    try:
        validate_namespace_name(namespace)
    except ValidationError as exc:
        raise _invalid("slug", exc)
    overrides = config.clean_overrides(config_overrides, field="config_overrides")
    project = Project(
        slug=slug, display_name=(display_name or "").strip(), description=description or "",
        namespace=namespace, config_overrides=overrides, created_by=acting_user,
    )
    try:
        project.full_clean(exclude=["created_by", "namespace", "slug"], validate_unique=False)
    except ValidationError as exc:
        from portal.errors import from_django_validation_error

        raise from_django_validation_error(exc)
    try:
        with transaction.atomic():
            Tenant.objects.select_for_update().filter(pk=tenant.pk).exists()  # serialises the quota check
            limit = tenant.effective_max_projects
            if Project.objects.count() >= limit:
                raise QuotaExceeded(
                    f"This organization has reached its limit of {limit} projects; delete one or ask the "
                    "platform team for a higher limit.", details={"limit": limit},
                )
            if Project.objects.filter(slug=slug).exists():
                raise Conflict(f"slug: a project '{slug}' already exists.", code="project_exists",
                               details={"slug": ["A project with this slug already exists."]})
            if NamespaceRegistry.objects.filter(name=namespace).exists():
                raise Conflict(
                    f"slug: the namespace '{namespace}' is already used by another organization's project; "
                    "choose another slug.", code="namespace_taken",
                    details={"slug": ["Its namespace name is taken."]},
                )
            project.save()
            NamespaceRegistry.objects.create(name=namespace, tenant=tenant, project_id=project.pk)
            _event(project, "created")
            audit.record(
                action="project.create", actor=acting_user, tenant=tenant, target_type="project",
                target=slug, details={"namespace": namespace, "config_overrides": overrides},
            )
            _enqueue_reconcile(project)
    except IntegrityError:
        raise Conflict(f"slug: the project or namespace '{namespace}' already exists.", code="project_exists",
                       details={"slug": ["Already exists."]})
    return project


def project_update(*, tenant: Tenant, project: Project, acting_user, access: Access, **changes: Any) -> Project:
    access.require("configure" if "config_overrides" in changes else "edit", project=project)
    allowed = {"display_name", "description", "config_overrides"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidInput(f"{unknown[0]}: this field cannot be changed.", details={unknown[0]: ["Cannot be changed."]})
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        if project.status == Project.Status.DELETING:
            raise Conflict(f"The project '{project.slug}' is being deleted.", code="invalid_state")
        before = {k: getattr(project, k) for k in changes}
        if "config_overrides" in changes:
            changes["config_overrides"] = config.clean_overrides(changes["config_overrides"], field="config_overrides")
        for key, value in changes.items():
            setattr(project, key, value.strip() if key == "display_name" and isinstance(value, str) else value)
        fields = list(changes)
        if any(before[k] != getattr(project, k) for k in ("display_name", "description") if k in changes):
            _enqueue_reconcile(project)  # the namespace's annotations show them
        if "config_overrides" in changes and before["config_overrides"] != project.config_overrides:
            project.generation = F("generation") + 1
            project.status = Project.Status.PROVISIONING
            fields += ["generation", "status"]
            _enqueue_reconcile(project)
        project.save(update_fields=[*fields, "updated_at"])
        project.refresh_from_db()
        if "status" in fields:
            _event(project, "configuration changed")
        audit.record(
            action="project.update", actor=acting_user, tenant=tenant, target_type="project",
            target=project.slug, details={"before": before, "after": {k: getattr(project, k) for k in changes}},
        )
    return project


def project_delete(*, tenant: Tenant, project: Project, acting_user, access: Access) -> Project:
    access.require("delete", project=project)
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        if project.status == Project.Status.DELETING:
            raise Conflict(f"The project '{project.slug}' is already being deleted.", code="invalid_state")
        project.status, project.status_message = Project.Status.DELETING, ""
        project.save(update_fields=["status", "status_message", "updated_at"])
        _event(project, "deletion requested")
        audit.record(action="project.delete", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"namespace": project.namespace})
        _enqueue_reconcile(project)
    return project


def _reconcile_again(project: Project) -> None:
    """The project's objects in the cluster must change: mark it and enqueue the reconcile."""
    Project.objects.filter(pk=project.pk).exclude(status=Project.Status.DELETING).update(
        generation=F("generation") + 1, status=Project.Status.PROVISIONING)
    _enqueue_reconcile(project)


def group_grant(*, tenant: Tenant, project: Project, group: str, role: str, acting_user, access: Access) -> GroupAccess:
    if getattr(acting_user, "is_access_key", False):
        raise Forbidden("Access keys cannot share projects.")
    access.require("share", project=project)
    group = clean_groups([group], field="group")[0]
    if role not in ProjectRole.values:
        raise InvalidInput(f"role: '{role}' is not one of {', '.join(ProjectRole.values)}.",
                           details={"role": ["Not a project role."]})
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        if project.status == Project.Status.DELETING:
            raise Conflict(f"The project '{project.slug}' is being deleted.", code="invalid_state")
        if GroupAccess.objects.filter(project=project, group=group, role=role).exists():
            raise Conflict(f"group: '{group}' already has the {role} role in '{project.slug}'.",
                           code="already_granted", details={"group": ["Already granted this role."]})
        grant = GroupAccess.objects.create(project=project, group=group, role=role, created_by=acting_user)
        _reconcile_again(project)
        ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING,
                                    message=f"group {group} granted {role}")
        audit.record(action="project.share", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"group": group, "role": role})
    return grant


def group_revoke(*, tenant: Tenant, project: Project, grant: GroupAccess, acting_user, access: Access) -> None:
    if getattr(acting_user, "is_access_key", False):
        raise Forbidden("Access keys cannot share projects.")
    access.require("share", project=project)
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        if project.status == Project.Status.DELETING:
            raise Conflict(f"The project '{project.slug}' is being deleted.", code="invalid_state")
        grant.delete()
        _reconcile_again(project)
        ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING,
                                    message=f"group {grant.group} no longer {grant.role}")
        audit.record(action="project.unshare", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"group": grant.group, "role": grant.role})


def tenant_defaults_update(*, tenant: Tenant, defaults: dict[str, Any], acting_user) -> TenantSettings:
    """Set the tenant level of the effective configuration; projects follow at their next reconcile."""
    cleaned = config.clean_overrides(defaults, field="project_defaults")
    with transaction.atomic():
        row, _ = TenantSettings.objects.select_for_update().get_or_create(singleton=True)
        before = row.project_defaults
        row.project_defaults = cleaned
        row.save(update_fields=["project_defaults", "updated_at"])
        if before != cleaned:
            Project.objects.exclude(status=Project.Status.DELETING).update(
                generation=F("generation") + 1, status=Project.Status.PROVISIONING
            )
            for project in Project.objects.exclude(status=Project.Status.DELETING):
                _enqueue_reconcile(project)
        audit.record(action="tenant.project_defaults", actor=acting_user, tenant=tenant,
                     target_type="tenant", target=tenant.slug, details={"before": before, "after": cleaned})
    return row
