"""Writes to projects (they run in the tenant's schema; the namespace registry is in public).

Each service validates, writes, audits and enqueues the reconcile only after the commit. No
Kubernetes call happens here: the reconciler makes the cluster follow (issuing an access key is the
one exception: key_create has the reconciler make the key's objects within the request)."""

from __future__ import annotations

import dataclasses
import functools
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from portal import audit, controller, kube, tenancy
from portal.access import member_role
from portal.errors import Conflict, Forbidden, InvalidInput, QuotaExceeded, Unavailable
from portal.services import clean_groups, groups_of
from tenants.models import NamespaceRegistry, Tenant
from tenants.projects import config, reconcile, selectors, tasks
from tenants.projects.access import RANK, Access, project_access
from tenants.projects.authentication import token_hash
from tenants.projects.models import AccessKey, Project, ProjectEvent, ProjectGrant, ProjectRole, TenantSettings
from tenants.projects.signals import keys_revoked
from tenants.validators import namespace_name_for, validate_namespace_name, validate_project_slug


def _invalid(field: str, exc: ValidationError) -> InvalidInput:
    message = " ".join(exc.messages)
    return InvalidInput(f"{field}: {message}", details={field: exc.messages})


def reconcile_every_project(tenant: Tenant) -> int:
    """Enqueue a reconcile of each of the organization's projects (after the commit), for a change
    every project's cluster objects follow: who the organization's owners and admins are."""
    with schema_context(tenant.schema_name):
        projects = list(Project.objects.exclude(status=Project.Status.DELETING).only("pk"))
        for project in projects:
            controller.enqueue(project)
    return len(projects)


def _event(project: Project, message: str = "") -> None:
    ProjectEvent.objects.create(project=project, status=project.status, message=message)


def _locked_tenant(tenant: Tenant) -> Tenant:
    """The tenant's row, locked: serialises quota and budget checks, and reads the ceilings staff
    set as they are now (the request's copy may be a few seconds old)."""
    return Tenant.objects.select_for_update().get(pk=tenant.pk)


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
    field = "config_overrides"
    overrides = config.clean_overrides(config_overrides, field=field)
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
            locked = _locked_tenant(tenant)
            limit = locked.effective_max_projects
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
            policy = selectors.policy_for(locked)
            base = config.effective(policy=policy, overrides={}, clamp_requests=False)
            after = config.effective(policy=policy, overrides=overrides, clamp_requests=False)
            config.check_change(policy=policy, level="project", field=field, before={}, after=overrides,
                                effective_before=base, effective_after=after)
            if policy.budget:
                usage = selectors.budget_usage(policy)
                config.check_budget(policy=policy, field=field, keys=config.BUDGET_KEYS, total_before=usage,
                                    total_after=config.budget_totals(usage, add=after))
            project.save()
            NamespaceRegistry.objects.create(name=namespace, tenant=tenant, project_id=project.pk)
            _event(project, f"created by {_who(acting_user)}")
            audit.record(
                action="project.create", actor=acting_user, tenant=tenant, target_type="project",
                target=slug, details={"namespace": namespace, "config_overrides": overrides},
            )
            controller.enqueue(project)
    except IntegrityError:
        raise Conflict(f"slug: the project or namespace '{namespace}' already exists.", code="project_exists",
                       details={"slug": ["Already exists."]})
    return project


def _who(acting_user) -> str:
    return audit.actor_fields(acting_user)[0]


def _short(text: str, limit: int = 60) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[:limit - 1] + "…'"


def describe_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """"quota.pods 7 → 9, limits.default.cpu (inherited) → 250m" for a history entry."""
    parts = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            old = config.display(before[key]) if key in before else "(inherited)"
            new = config.display(after[key]) if key in after else "(inherited)"
            parts.append(f"{key} {old} → {new}")
    return ", ".join(parts)


def project_update(*, tenant: Tenant, project: Project, acting_user, access: Access, merge: bool = False,
                   **changes: Any) -> Project:
    """Change a project's display name, description or overrides. With `merge`, `config_overrides`
    is a JSON merge patch (a key with null is removed, a missing key stays); without it, the
    whole map (the page's form)."""
    access.require("configure" if "config_overrides" in changes else "edit", project=project)
    allowed = {"display_name", "description", "config_overrides"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidInput(f"{unknown[0]}: this field cannot be changed.", details={unknown[0]: ["Cannot be changed."]})
    field = "config_overrides"
    if field in changes:  # shape first, before any lock
        config.clean_overrides(changes[field], field=field)
    with transaction.atomic():
        locked = _locked_tenant(tenant) if field in changes else tenant
        project = Project.objects.select_for_update().get(pk=project.pk)
        if project.status == Project.Status.DELETING:
            raise Conflict(f"The project '{project.slug}' is being deleted.", code="invalid_state")
        before = {k: getattr(project, k) for k in changes}
        if field in changes:
            current = project.config_overrides
            new = (config.merge_patch(current, changes[field], field=field) if merge
                   else config.clean_overrides(changes[field], field=field))
            changes[field] = new
            if new != current:
                policy = selectors.policy_for(locked)
                effective_before = config.effective(policy=policy, overrides=current, clamp_requests=False)
                effective_after = config.effective(policy=policy, overrides=new, clamp_requests=False)
                config.check_change(policy=policy, level="project", field=field, before=current, after=new,
                                    effective_before=effective_before, effective_after=effective_after)
                if policy.budget:
                    changed = [k for k in config.BUDGET_KEYS if current.get(k) != new.get(k)]
                    usage = selectors.budget_usage(policy)
                    config.check_budget(policy=policy, field=field, keys=changed, total_before=usage,
                                        total_after=config.budget_totals(usage, remove=effective_before,
                                                                         add=effective_after))
        for key, value in changes.items():
            setattr(project, key, value.strip() if key == "display_name" and isinstance(value, str) else value)
        what = [f"{k} {_short(before[k])} → {_short(getattr(project, k))}"
                for k in ("display_name", "description") if k in changes and before[k] != getattr(project, k)]
        if field in changes and before[field] != project.config_overrides:
            what.append(describe_changes(before[field], project.config_overrides))
        project.save(update_fields=[*changes, "updated_at"])
        if what:  # the cluster follows: the namespace's annotations, the quota, the limits
            reconcile.PROJECTS.bump(Project.objects.filter(pk=project.pk))
        project.refresh_from_db()
        if what:
            _event(project, f"changed by {_who(acting_user)}: {', '.join(what)}")
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
        project.deletion_requested_at = timezone.now()
        project.save(update_fields=["deletion_requested_at", "updated_at"])
        reconcile.PROJECTS.bump(Project.objects.filter(pk=project.pk))  # the desired state: gone
        project.refresh_from_db()
        _event(project, "deletion requested")
        audit.record(action="project.delete", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"namespace": project.namespace})
    return project


def _reconcile_again(project: Project) -> None:
    """The project's objects in the cluster must change: a new generation, reconciled after the commit."""
    reconcile.PROJECTS.bump(Project.objects.filter(pk=project.pk, deletion_requested_at__isnull=True))


def _sharing(acting_user, access: Access, project: Project) -> None:
    if getattr(acting_user, "is_access_key", False):
        raise Forbidden("Access keys cannot share projects.")
    access.require("share", project=project)


def _clean_role(role: Any) -> str:
    if role not in ProjectRole.values:
        raise InvalidInput(f"role: {str(role)[:20]!r} is not one of {', '.join(ProjectRole.values)}.",
                           details={"role": ["Not a project role."]})
    return role


def _locked_live_project(project: Project) -> Project:
    project = Project.objects.select_for_update().get(pk=project.pk)
    if project.status == Project.Status.DELETING:
        raise Conflict(f"The project '{project.slug}' is being deleted.", code="invalid_state")
    return project


def _subject_label(grant: ProjectGrant) -> str:
    return f"{grant.kind} {grant.subject}"


# Groups every ServiceAccount is in (so every pod an editor runs): a grant to them above edit
# would hand editors its role through a pod. Anonymous requests get nothing at all.
_POD_GROUPS = ("system:authenticated",)


def _check_group_role(subject: str, role: str) -> None:
    if subject.startswith("system:serviceaccount"):
        # Every pod an editor runs is in such a group: the grant would hand them its role.
        raise InvalidInput(f"name: {subject[:60]!r} is a group of ServiceAccounts, which every pod of the "
                           "project can join; give automation an access key instead.",
                           details={"name": ["A group of ServiceAccounts."]})
    if subject == "system:unauthenticated":
        raise InvalidInput("name: 'system:unauthenticated' is anyone who does not sign in; it cannot have access.",
                           details={"name": ["Anonymous requests get no access."]})
    if subject in _POD_GROUPS and RANK[role] > RANK["edit"]:
        raise InvalidInput(f"role: every ServiceAccount is in '{subject}', so every pod would be {role}; "
                           "grant it at most edit.", details={"role": ["At most edit for this group."]})


def grant_add(*, tenant: Tenant, project: Project, kind: str, name: str, role: str, acting_user,
              access: Access) -> ProjectGrant:
    """Give a person (a member of the organization, by username) or a group (as the identity
    provider names it) a role in the project: one grant per subject (409 for a second)."""
    _sharing(acting_user, access, project)
    role = _clean_role(role)
    user = None
    if kind == ProjectGrant.Kind.GROUP:
        subject = clean_groups([name], field="name")[0]
        _check_group_role(subject, role)
    elif kind == ProjectGrant.Kind.USER:
        from django.contrib.auth import get_user_model

        from tenants.models import Membership

        subject = (name or "").strip() if isinstance(name, str) else ""
        user = get_user_model().objects.filter(username=subject, is_active=True).first() if 0 < len(subject) <= 150 else None
        if user is None or not Membership.objects.filter(tenant=tenant, user=user).exists():
            shown = subject[:60]
            raise InvalidInput(f"name: {shown!r} is not a member of this organization; add them as a member first.",
                               details={"name": ["Not a member of this organization."]})
    else:
        raise InvalidInput(f"kind: {str(kind)[:20]!r} is not one of user, group.", details={"kind": ["user or group."]})
    with transaction.atomic():
        project = _locked_live_project(project)
        if ProjectGrant.objects.filter(project=project, kind=kind, subject=subject).exists():
            raise Conflict(f"name: the {kind} '{subject}' already has access to '{project.slug}'; change its role "
                           "instead.", code="already_granted", details={"name": ["Already has access."]})
        grant = ProjectGrant.objects.create(project=project, kind=kind, subject=subject, user=user, role=role,
                                            created_by=acting_user)
        _reconcile_again(project)
        ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING,
                                    message=f"{_subject_label(grant)} granted {role} by {_who(acting_user)}")
        audit.record(action="project.share", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"kind": kind, "subject": subject, "role": role})
    return grant


def grant_change(*, tenant: Tenant, project: Project, grant: ProjectGrant, role: str, acting_user,
                 access: Access) -> ProjectGrant:
    """Change a subject's role in place; keys its people issued above the new role are revoked."""
    _sharing(acting_user, access, project)
    role = _clean_role(role)
    with transaction.atomic():
        project = _locked_live_project(project)
        grant = ProjectGrant.objects.select_for_update().get(pk=grant.pk)
        if grant.kind == ProjectGrant.Kind.GROUP:
            _check_group_role(grant.subject, role)
        previous = grant.role
        if previous == role:
            return grant
        grant.role, grant.updated_by, grant.updated_at = role, acting_user, timezone.now()
        grant.save(update_fields=["role", "updated_by", "updated_at"])
        _reconcile_again(project)
        ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING,
                                    message=f"{_subject_label(grant)} {previous} → {role} by {_who(acting_user)}")
        audit.record(action="project.share_change", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"kind": grant.kind, "subject": grant.subject, "from": previous,
                                                   "to": role})
        revoke_beyond_issuer(tenant=tenant, project=project,
                             reason=f"{_subject_label(grant)} went from {previous} to {role} in {project.slug}")
    return grant


def grant_remove(*, tenant: Tenant, project: Project, grant: ProjectGrant, acting_user, access: Access) -> None:
    _sharing(acting_user, access, project)
    with transaction.atomic():
        project = _locked_live_project(project)
        grant.delete()
        _reconcile_again(project)
        ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING,
                                    message=f"{_subject_label(grant)} no longer {grant.role} ({_who(acting_user)})")
        audit.record(action="project.unshare", actor=acting_user, tenant=tenant, target_type="project",
                     target=project.slug, details={"kind": grant.kind, "subject": grant.subject, "role": grant.role})
        # A key never has more than its issuer: those the grant carried go with it.
        revoke_beyond_issuer(tenant=tenant, project=project,
                             reason=f"{_subject_label(grant)} no longer has {grant.role} in {project.slug}")


def tenant_settings_seed(*, new: bool) -> bool:
    """The organization's settings row, in the current schema; True when it was created. In a new
    schema (made in the same transaction): one INSERT, no read first. Otherwise (the periodic
    repair): only if it went missing; nothing is written when it exists."""
    if not new and TenantSettings.objects.filter(singleton=True).exists():
        return False
    TenantSettings.objects.bulk_create([TenantSettings(singleton=True)], ignore_conflicts=True)
    return True


def tenant_defaults_update(*, tenant: Tenant, acting_user, defaults: dict[str, Any] | None = None,
                           locked_keys: list[str] | None = None) -> TenantSettings:
    """The organization level of the effective configuration: `defaults` is a JSON merge patch of
    the defaults, `locked_keys` the whole list of keys projects may not override. Projects follow
    at their next reconcile."""
    field = "project_defaults"
    if defaults is not None:
        config.clean_overrides(defaults, field=field)
    locks = None if locked_keys is None else config.clean_locks(locked_keys, field="locked_keys")
    with transaction.atomic():
        locked = _locked_tenant(tenant)
        row, _ = TenantSettings.objects.select_for_update().get_or_create(singleton=True)
        before_defaults, before_locks = row.project_defaults, list(row.locked_keys)
        new_defaults = before_defaults if defaults is None else config.merge_patch(before_defaults, defaults, field=field)
        new_locks = before_locks if locks is None else locks
        if new_defaults != before_defaults:
            policy = selectors.policy_for(locked, row=row)
            after_policy = dataclasses.replace(policy, defaults=new_defaults)
            effective_before = config.effective(policy=policy, overrides={}, clamp_requests=False)
            effective_after = config.effective(policy=after_policy, overrides={}, clamp_requests=False)
            config.check_change(policy=policy, level="tenant", field=field, before=before_defaults,
                                after=new_defaults, effective_before=effective_before, effective_after=effective_after)
            changed = [k for k in config.BUDGET_KEYS if before_defaults.get(k) != new_defaults.get(k)]
            if policy.budget and changed:  # projects on defaults count with the new ones
                config.check_budget(policy=policy, field=field, keys=changed,
                                    total_before=selectors.budget_usage(policy),
                                    total_after=selectors.budget_usage(after_policy))
        row.project_defaults, row.locked_keys = new_defaults, new_locks
        row.save(update_fields=["project_defaults", "locked_keys", "updated_at"])
        if new_defaults != before_defaults or new_locks != before_locks:
            message = f"organization defaults changed by {_who(acting_user)}: " + ", ".join(filter(None, [
                describe_changes(before_defaults, new_defaults),
                f"locked {', '.join(new_locks) or '(none)'}" if new_locks != before_locks else "",
            ]))
            _reconcile_all_live(message)
        audit.record(action="tenant.project_defaults", actor=acting_user, tenant=tenant,
                     target_type="tenant", target=tenant.slug,
                     details={"before": {"project_defaults": before_defaults, "locked_keys": before_locks},
                              "after": {"project_defaults": new_defaults, "locked_keys": new_locks}})
    return row


def _reconcile_all_live(message: str, *, only: list[int] | None = None) -> None:
    """Every live project (or those in `only`) follows a change of what they inherit."""
    rows = Project.objects.exclude(status=Project.Status.DELETING)
    if only is not None:
        rows = rows.filter(pk__in=only)
    ids = reconcile.PROJECTS.bump(rows)
    ProjectEvent.objects.bulk_create([ProjectEvent(project_id=pk, status=Project.Status.PROVISIONING, message=message)
                                      for pk in ids])


def tenant_policy_update(*, tenant: Tenant, acting_user, ceilings: dict[str, Any] | None = None,
                         budget: dict[str, Any] | None = None, locks: list[str] | None = None) -> dict[str, Any]:
    """Platform staff: the ceilings, budget and locks of one organization (`ceilings` and `budget`
    are JSON merge patches; `locks` the whole list). Nothing already stored is refused: a project
    above a lowered ceiling keeps its override for the record, and its effective value is clamped
    at its next reconcile, with a history entry saying why. Returns the policy and the projects
    whose values are now clamped."""

    clean_budget = functools.partial(config.clean_ceilings, keys=config.BUDGET_KEYS)
    new_locks = None if locks is None else config.clean_locks(locks, field="locks")
    if tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
        raise Conflict(f"The organization '{tenant.slug}' is {tenant.status}; its policy can change once it is "
                       "active or suspended.", code="invalid_state")
    with transaction.atomic():
        locked = _locked_tenant(tenant)
        before = {"ceilings": dict(locked.config_ceilings), "budget": dict(locked.config_budget),
                  "locks": list(locked.config_locks)}

        if ceilings is not None:
            locked.config_ceilings = config.merge_patch(before["ceilings"], ceilings, field="ceilings",
                                                        clean=config.clean_ceilings)
        if budget is not None:
            locked.config_budget = config.merge_patch(before["budget"], budget, field="budget", clean=clean_budget)
        if new_locks is not None:
            locked.config_locks = new_locks
        locked.save(update_fields=["config_ceilings", "config_budget", "config_locks", "updated_at"])
        after = {"ceilings": locked.config_ceilings, "budget": locked.config_budget, "locks": locked.config_locks}
        with schema_context(locked.schema_name):
            policy_before = selectors.policy_for(Tenant(pk=locked.pk, **before_fields(before)))
            policy_after = selectors.policy_for(locked)
            changed_ids = []
            for project in Project.objects.exclude(status=Project.Status.DELETING).order_by("slug"):
                old = config.effective(policy=policy_before, overrides=project.config_overrides)
                new = config.effective(policy=policy_after, overrides=project.config_overrides)
                moved = [key for key in config.KEYS if old[key]["value"] != new[key]["value"]]
                if not moved:
                    continue
                changed_ids.append(project.pk)
                ProjectEvent.objects.create(project=project, status=Project.Status.PROVISIONING, message=(
                    f"platform policy changed by {_who(acting_user)}: " + ", ".join(
                        f"{key} {config.display(old[key]['value'])} → {config.display(new[key]['value'])}"
                        + (f" (clamped by the ceiling; the override {config.display(new[key]['clamped_from'])} "
                           "is kept)" if new[key]["clamped_from"] is not None and key in project.config_overrides
                           else "")
                        for key in moved)))
            if changed_ids:  # enqueued in this schema, named now (the commit is in public)
                reconcile.PROJECTS.bump(Project.objects.filter(pk__in=changed_ids))
            clamped_projects = selectors.clamped_projects(policy_after)
        audit.record(action="tenant.policy", actor=acting_user, tenant=locked, target_type="tenant",
                     target=locked.slug, details={"before": before, "after": after,
                                                  "clamped": [p["project"] for p in clamped_projects]})
        slug = locked.slug
        transaction.on_commit(lambda: tenancy.invalidate(slug))
    return {**after, "clamped_projects": clamped_projects}


def before_fields(before: dict[str, Any]) -> dict[str, Any]:
    return {"config_ceilings": before["ceilings"], "config_budget": before["budget"], "config_locks": before["locks"]}


# --- Access keys --------------------------------------------------------------------------
# Issuing one is the one web request that talks to the cluster (the token must be in the
# response): bounded timeouts, all or nothing. If any step fails, what was made in the cluster is
# removed again, nothing is stored, and the answer is 503. The keys' cluster objects, their
# removal and the periodic sweep are the reconciler's (reconcile.key_objects, issue_key,
# remove_key_objects, sweep_keys).

MIN_SECONDS = 600  # the API server refuses shorter tokens


def _person(acting_user) -> None:
    if getattr(acting_user, "is_access_key", False):
        raise Forbidden("Access keys cannot manage access keys.")


def key_create(*, tenant: Tenant, project: Project, name: str, role: str, expires_in: int | None = None,
               acting_user, access: Access) -> tuple[AccessKey, str]:
    """Returns the key and its token (shown once, never stored)."""
    _person(acting_user)
    access.require("share", project=project)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("name: give a name of 1 to 100 characters.", details={"name": ["1 to 100 characters."]})
    if role not in ProjectRole.values:
        raise InvalidInput(f"role: '{role}' is not one of {', '.join(ProjectRole.values)}.", details={"role": ["Not a role."]})
    if RANK[role] > RANK[access.role]:
        raise Forbidden(f"You cannot issue a key with more rights ({role}) than your own ({access.role}).")
    limit = tenant.effective_max_key_days
    longest = limit * 86400
    seconds = min(settings.PIER_KEY_DEFAULT_DAYS * 86400, longest) if expires_in is None else expires_in
    if not MIN_SECONDS <= seconds <= longest:
        raise InvalidInput(
            f"expires_in: give {MIN_SECONDS} to {longest} seconds ({limit} days, the longest this organization "
            "allows; the cluster refuses less than 10 minutes).",
            details={"expires_in": [f"{MIN_SECONDS} to {longest} seconds."]})
    if project.observed_generation == 0 or project.status == Project.Status.DELETING:
        # No namespace yet (or going away): wait until the project was ready once.
        raise Conflict(f"The project '{project.slug}' is {project.status}; keys need its namespace to exist.",
                       code="invalid_state")
    if AccessKey.objects.filter(project=project, name=name, revoked_at__isnull=True).exists():
        raise Conflict(f"name: a key named '{name}' exists in '{project.slug}'.", code="key_exists",
                       details={"name": ["Already used."]})

    service_account = f"pier-key-{secrets.token_hex(5)}"
    namespace = reconcile.keys_namespace()  # outside the project: no editor can act as the key
    try:
        token, expires = reconcile.issue_key(project, name, service_account, role, tenant_slug=tenant.slug,
                                             expiration_seconds=seconds, namespace=namespace)
    except kube.KubeUnavailable as exc:  # what was made is removed again (reconcile.issue_key)
        raise Unavailable(f"The cluster did not answer in time; no key was created. ({exc})",
                          code="cluster_unavailable")
    except kube.KubeError as exc:
        raise Unavailable(f"The cluster refused the key; no key was created. ({exc})", code="cluster_refused")
    try:
        with transaction.atomic():
            key = AccessKey.objects.create(
                project=project, name=name, role=role, service_account=service_account,
                service_account_namespace=namespace, token_hash=token_hash(token), token_last4=token[-4:],
                expires_at=datetime.fromisoformat(expires.replace("Z", "+00:00")), created_by=acting_user,
            )
            audit.record(action="key.create", actor=acting_user, tenant=tenant, target_type="access_key",
                         target=f"{project.slug}/{name}",
                         details={"role": role, "expires_at": key.expires_at.isoformat(),
                                  "service_account": service_account, "namespace": namespace})
    except IntegrityError:
        _remove_issued(project, name, service_account, role, tenant_slug=tenant.slug, namespace=namespace)
        raise Conflict(f"name: a key named '{name}' exists in '{project.slug}'.", code="key_exists",
                       details={"name": ["Already used."]})
    except Exception:
        _remove_issued(project, name, service_account, role, tenant_slug=tenant.slug, namespace=namespace)
        raise
    return key, token


def _remove_issued(project: Project, name: str, service_account: str, role: str, *, tenant_slug: str,
                   namespace: str) -> None:
    """The key could not be stored: its objects go again (best effort; the sweep removes leftovers)."""
    reconcile.remove_objects(reconcile.key_objects(project, name, service_account, role, tenant_slug=tenant_slug,
                                                   namespace=namespace))


def key_revoke(*, tenant: Tenant, project: Project, key: AccessKey, acting_user, access: Access) -> AccessKey:
    """Refused at once (the hash check sees revoked_at); a task deletes its ServiceAccount, which
    also ends the token's validity in the cluster."""
    _person(acting_user)
    access.require("share", project=project)
    with transaction.atomic():
        key = AccessKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict(f"The key '{key.name}' is already revoked.", code="invalid_state")
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(action="key.revoke", actor=acting_user, tenant=tenant, target_type="access_key",
                     target=f"{project.slug}/{key.name}")
        _revoked([key.pk], f"its key {key.name} was revoked by {acting_user.get_username()}")
    return key


def revoke_beyond_issuer(*, tenant: Tenant, reason: str, user=None, project: Project | None = None) -> list[AccessKey]:
    """A key never has more than its issuer: revoke (at once, audited) every live key in the
    current tenant whose issuer no longer holds the key's role in its project: demoted in the
    organization, a group grant removed, a group no longer theirs. Call it inside the transaction
    that took the role away, so both commit together."""
    live = AccessKey.objects.filter(revoked_at__isnull=True).select_related("project", "created_by")
    if user is not None:
        live = live.filter(created_by=user)
    if project is not None:
        live = live.filter(project=project)
    roles: dict[int, tuple[str | None, list[str]]] = {}
    revoked = []
    for key in live.select_for_update(of=("self",)):
        issuer = key.created_by
        if issuer.pk not in roles:
            tenant_role = "staff" if issuer.is_staff else member_role(tenant, issuer)
            roles[issuer.pk] = (tenant_role, groups_of(issuer))
        tenant_role, groups = roles[issuer.pk]
        held = project_access(key.project, user=issuer, tenant_role=tenant_role or "", groups=groups).role
        if held is not None and RANK[held] >= RANK[key.role]:
            continue
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(action="key.revoke", actor=None, tenant=tenant, target_type="access_key",
                     target=f"{key.project.slug}/{key.name}",
                     details={"reason": reason, "issuer": issuer.get_username(), "key_role": key.role,
                              "issuer_role": held})
        _revoked([key.pk], f"its key {key.name} was revoked: {reason}")
        revoked.append(key)
    return revoked


def revoke_keys_of(*, user, reason: str) -> int:
    """In the current tenant: revoke every key the person issued (they left or lost their role)."""
    ids = list(AccessKey.objects.filter(created_by=user, revoked_at__isnull=True).values_list("pk", flat=True))
    AccessKey.objects.filter(pk__in=ids).update(revoked_at=timezone.now())
    _revoked(ids, f"its key was revoked: {reason}")
    return len(ids)


def _revoked(key_ids: list[int], reason: str) -> None:
    """The keys' desired state is now "gone": their controller removes their objects after the
    commit, and the apps built on keys hear of it (sessions a key started stop)."""
    reconcile.KEYS.bump(AccessKey.objects.filter(pk__in=key_ids))
    keys_revoked.send(sender=AccessKey, key_ids=key_ids, reason=reason)
