"""Writes to tenants and memberships. Each service validates, writes, audits in the same
transaction and enqueues follow-up work only once the transaction has committed.

Views, serializers, admin actions and tasks call these; nothing else writes these models."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit, request_id, tenancy
from portal.errors import Conflict, Forbidden, InvalidInput, QuotaExceeded, from_django_validation_error
from tenants import provisioning, signals, tasks
from tenants.models import Membership, PendingMembership, ProvisioningJob, Role, Tenant
from tenants.validators import schema_name_for, validate_person_identifier, validate_tenant_slug

User = get_user_model()

PROVISION_STEPS = ("create_schema", "seed_defaults", "add_owner", "activate")
DELETE_STEPS = ("release_resources", "drop_schema", "remove_tenant")


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details={field: [message]})


def _validate(instance, *, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as exc:
        raise from_django_validation_error(exc) from exc


def _enqueue_job(job: ProvisioningJob) -> None:
    tasks.enqueue_job(job.pk)  # after the commit


def _enqueue_invitation(pending: PendingMembership) -> None:
    """Invitations by email are mailed by the worker once the transaction has committed."""
    if not pending.email:
        return
    pending_id = pending.pk
    transaction.on_commit(lambda: tasks.enqueue_invitation(pending_id))


def _inviter(acting_user):
    return acting_user if isinstance(acting_user, User) else None


def _new_job(*, tenant: Tenant, kind: str, acting_user) -> ProvisioningJob:
    job = ProvisioningJob.objects.create(
        kind=kind,
        tenant=tenant,
        tenant_slug=tenant.slug,
        requested_by=audit.actor_fields(acting_user)[0],
        request_id=request_id.get(),
    )
    steps = PROVISION_STEPS if kind == ProvisioningJob.Kind.PROVISION else DELETE_STEPS
    job.steps.bulk_create([job.steps.model(job=job, position=i, name=name) for i, name in enumerate(steps)])
    return job


def _after_commit_invalidate(slug: str) -> None:
    transaction.on_commit(lambda: tenancy.invalidate(slug))


def _resolve_person(identifier: str, *, field: str):
    """A username or an email → (user or None, username, email). None: not signed in yet."""
    identifier = (identifier or "").strip()
    if not identifier:
        raise _invalid(field, "This field is required.")
    try:
        validate_person_identifier(identifier)  # what the columns can hold, for every caller
    except ValidationError as exc:
        raise _invalid(field, " ".join(exc.messages))
    if "@" in identifier:
        try:
            validate_email(identifier)
        except ValidationError:
            raise _invalid(field, f"'{identifier}' is neither a username nor a valid email address.")
        user = User.objects.filter(email__iexact=identifier).order_by("-is_active", "pk").first()
        username, email = "", identifier.lower()
    else:
        user = User.objects.filter(username=identifier).first()
        username, email = identifier, ""
    if user is not None and not user.is_active:
        raise _invalid(field, f"The account '{user.get_username()}' is deactivated.")
    return user, username, email


# --- Tenants ------------------------------------------------------------------------------


def tenant_create(
    *,
    slug: str,
    name: str,
    owner: str,
    acting_user,
    max_projects: int | None = None,
    max_members: int | None = None,
) -> tuple[Tenant, ProvisioningJob]:
    try:
        validate_tenant_slug(slug)
    except ValidationError as exc:
        raise _invalid("slug", " ".join(exc.messages))
    tenant = Tenant(
        slug=slug,
        name=(name or "").strip(),
        schema_name=schema_name_for(slug),
        max_projects=max_projects,
        max_members=max_members,
    )
    _validate(tenant)
    owner_user, owner_username, owner_email = _resolve_person(owner, field="owner")
    try:
        with transaction.atomic():
            # Two requests for the same new slug: the second's insert waits on the unique slug,
            # then fails, and is answered like this (below).
            if Tenant.objects.filter(slug=slug).exists():
                raise Conflict(f"slug: a tenant with the slug '{slug}' already exists.", code="slug_taken",
                               details={"slug": ["A tenant with this slug already exists."]})
            tenant.save()
            owner_invitation = PendingMembership.objects.create(
                tenant=tenant,
                username=owner_user.get_username() if owner_user else owner_username,
                email="" if owner_user else owner_email,
                role=Role.OWNER,
                invited_by=_inviter(acting_user),
            )
            _enqueue_invitation(owner_invitation)
            job = _new_job(tenant=tenant, kind=ProvisioningJob.Kind.PROVISION, acting_user=acting_user)
            audit.record(
                action="tenant.create", actor=acting_user, tenant=tenant, target_type="tenant", target=slug,
                details={"name": tenant.name, "owner": owner, "job": job.pk},
            )
            _enqueue_job(job)
            _after_commit_invalidate(slug)
    except IntegrityError:
        raise Conflict(f"slug: a tenant with the slug '{slug}' already exists.", code="slug_taken",
                       details={"slug": ["A tenant with this slug already exists."]})
    return tenant, job


def tenant_update(*, tenant: Tenant, acting_user, **changes: Any) -> Tenant:
    allowed = {"name", "max_projects", "max_members", "runtime_mode", "runner_image", "max_running_sessions"}
    unknown = set(changes) - allowed
    if unknown:
        field = sorted(unknown)[0]
        raise _invalid(field, "This field cannot be changed.")
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        before = {field: getattr(tenant, field) for field in changes}
        for field, value in changes.items():
            setattr(tenant, field, value.strip() if isinstance(value, str) else value)
        _validate(tenant)
        tenant.save(update_fields=[*changes, "updated_at"])
        audit.record(
            action="tenant.update", actor=acting_user, tenant=tenant, target_type="tenant", target=tenant.slug,
            details={"before": before, "after": {field: getattr(tenant, field) for field in changes}},
        )
        _after_commit_invalidate(tenant.slug)
        changed = sorted(f for f in changes if before[f] != getattr(tenant, f))
        if changed:
            signals.tenant_updated.send(sender=Tenant, tenant=tenant, changed=changed)
    return tenant


def _transition(*, tenant: Tenant, allowed_from: tuple[str, ...], to: str, action: str, acting_user,
                extra: dict[str, Any] | None = None) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if tenant.status not in allowed_from:
            raise Conflict(
                f"The tenant '{tenant.slug}' is {tenant.status}; {action.split('.')[-1]} needs it to be "
                f"{' or '.join(allowed_from)}.",
                code="invalid_state",
                details={"status": tenant.status},
            )
        previous = tenant.status
        # The desired state changes (suspended_at, deletion_requested_at); the status follows from it.
        provisioning.TENANTS.record(tenant, **(extra or {}))
        if tenant.status != to:
            raise AssertionError(f"tenant {tenant.slug}: {action} derived {tenant.status}, not {to}")
        audit.record(
            action=action, actor=acting_user, tenant=tenant, target_type="tenant", target=tenant.slug,
            details={"from": previous, "to": to},
        )
        _after_commit_invalidate(tenant.slug)
    return tenant


def tenant_suspend(*, tenant: Tenant, acting_user) -> Tenant:
    tenant = _transition(
        tenant=tenant, allowed_from=(Tenant.Status.ACTIVE,), to=Tenant.Status.SUSPENDED,
        action="tenant.suspend", acting_user=acting_user, extra={"suspended_at": timezone.now()},
    )
    transaction.on_commit(lambda: signals.tenant_suspended.send(sender=Tenant, tenant=tenant))
    return tenant


def tenant_resume(*, tenant: Tenant, acting_user) -> Tenant:
    tenant = _transition(
        tenant=tenant, allowed_from=(Tenant.Status.SUSPENDED,), to=Tenant.Status.ACTIVE,
        action="tenant.resume", acting_user=acting_user, extra={"suspended_at": None},
    )
    transaction.on_commit(lambda: signals.tenant_resumed.send(sender=Tenant, tenant=tenant))
    return tenant


def tenant_delete(*, tenant: Tenant, acting_user) -> tuple[Tenant, ProvisioningJob]:
    with transaction.atomic():
        tenant = _transition(
            tenant=tenant,
            allowed_from=(Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED, Tenant.Status.FAILED),
            to=Tenant.Status.DELETING, action="tenant.delete", acting_user=acting_user,
            extra={"deletion_requested_at": timezone.now(), "generation": tenant.generation + 1},
        )
        job = _new_job(tenant=tenant, kind=ProvisioningJob.Kind.DELETE, acting_user=acting_user)
        _enqueue_job(job)
    return tenant, job


def tenant_retry(*, tenant: Tenant, acting_user) -> ProvisioningJob:
    """Run a failed provisioning again, or a deletion that gave up, as a new job."""
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        last = tenant.jobs.order_by("-created_at", "-id").first()
        if tenant.status == Tenant.Status.FAILED:
            kind, condition = ProvisioningJob.Kind.PROVISION, provisioning.PROVISIONED
        elif tenant.status == Tenant.Status.DELETING and last is not None and last.status == last.Status.FAILED:
            kind, condition = ProvisioningJob.Kind.DELETE, provisioning.REMOVED
        else:
            raise Conflict(
                f"The tenant '{tenant.slug}' is {tenant.status}; only a failed provisioning or deletion can be retried.",
                code="invalid_state", details={"status": tenant.status},
            )
        # Asked again: a new generation, its condition back to "requested" (provisioning / deleting).
        provisioning.TENANTS.record(tenant, condition, "False", "Requested", "", generation=tenant.generation + 1)
        job = _new_job(tenant=tenant, kind=kind, acting_user=acting_user)
        audit.record(
            action="tenant.retry", actor=acting_user, tenant=tenant, target_type="tenant", target=tenant.slug,
            details={"kind": kind, "job": job.pk},
        )
        _enqueue_job(job)
        _after_commit_invalidate(tenant.slug)
    return job


# --- Members ------------------------------------------------------------------------------


def _owner_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).count()


def _require_owner_for(role: str, acting_role: str, *, action: str) -> None:
    if role == Role.OWNER and acting_role not in (Role.OWNER, "staff"):
        raise Forbidden(f"Only an owner can {action} the owner role.")


def member_add(*, tenant: Tenant, person: str, role: str, acting_user, acting_role: str):
    """Add a member by username or email. Someone who has not signed in yet gets a pending
    membership that becomes real at their first sign-in. Returns a Membership or PendingMembership."""
    if role not in Role.values:
        raise _invalid("role", f"'{role}' is not one of {', '.join(Role.values)}.")
    _require_owner_for(role, acting_role, action="grant")
    user, username, email = _resolve_person(person, field="username")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)  # serialises quota checks
        limit = locked.effective_max_members
        count = Membership.objects.filter(tenant=tenant).count() + PendingMembership.objects.filter(tenant=tenant).count()
        if count >= limit:
            raise QuotaExceeded(f"This organization has reached its limit of {limit} members.",
                                details={"limit": limit})
        if user is not None:
            if Membership.objects.filter(tenant=tenant, user=user).exists():
                raise Conflict(f"username: '{user.get_username()}' is already a member.", code="already_member",
                               details={"username": [f"{user.get_username()} is already a member."]})
            created = Membership.objects.create(tenant=tenant, user=user, role=role)
            target = user.get_username()
            signals.member_role_changed.send(sender=Membership, tenant=tenant, user=user)
        else:
            lookup = {"username": username} if username else {"email": email}
            if PendingMembership.objects.filter(tenant=tenant, **lookup).exists():
                raise Conflict(f"username: '{username or email}' is already invited.", code="already_member",
                               details={"username": [f"{username or email} is already invited."]})
            created = PendingMembership.objects.create(tenant=tenant, role=role, invited_by=_inviter(acting_user),
                                                       **lookup)
            target = username or email
            _enqueue_invitation(created)
        audit.record(
            action="member.add", actor=acting_user, tenant=tenant, target_type="member", target=target,
            details={"role": role, "pending": user is None},
        )
    return created


def member_change_role(*, tenant: Tenant, membership: Membership, role: str, acting_user, acting_role: str) -> Membership:
    if role not in Role.values:
        raise _invalid("role", f"'{role}' is not one of {', '.join(Role.values)}.")
    _require_owner_for(role, acting_role, action="grant")
    _require_owner_for(membership.role, acting_role, action="take away")
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        _require_owner_for(membership.role, acting_role, action="take away")  # it may have changed meanwhile
        previous = membership.role
        if previous == Role.OWNER and role != Role.OWNER and _owner_count(tenant) <= 1:
            raise Conflict("An organization needs at least one owner; make someone else owner first.",
                           code="last_owner")
        membership.role = role
        membership.save(update_fields=["role"])
        # Keys never keep more than their issuer now holds (revoked in this transaction).
        signals.member_role_changed.send(sender=Membership, tenant=tenant, user=membership.user)
        audit.record(
            action="member.change_role", actor=acting_user, tenant=tenant, target_type="member",
            target=membership.user.get_username(), details={"from": previous, "to": role},
        )
    return membership


def member_remove(*, tenant: Tenant, membership: Membership, acting_user, acting_role: str) -> None:
    _require_owner_for(membership.role, acting_role, action="remove")
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        _require_owner_for(membership.role, acting_role, action="remove")  # it may have changed meanwhile
        if membership.role == Role.OWNER and _owner_count(tenant) <= 1:
            raise Conflict("An organization needs at least one owner; the last owner cannot be removed.",
                           code="last_owner")
        username = membership.user.get_username()
        membership.delete()
        signals.member_removed.send(sender=Membership, tenant=tenant, user=membership.user)
        audit.record(
            action="member.remove", actor=acting_user, tenant=tenant, target_type="member", target=username,
            details={"role": membership.role},
        )


def pending_member_remove(*, tenant: Tenant, pending: PendingMembership, acting_user, acting_role: str) -> None:
    _require_owner_for(pending.role, acting_role, action="remove")
    with transaction.atomic():
        target = pending.username or pending.email
        pending.delete()
        audit.record(
            action="member.remove", actor=acting_user, tenant=tenant, target_type="member", target=target,
            details={"role": pending.role, "pending": True},
        )


def invitation_resend(*, tenant: Tenant, pending: PendingMembership, acting_user, acting_role: str) -> PendingMembership:
    """Mail an invitation again. Only invitations by email can be sent; each at most once per
    PIER_INVITATION_RESEND_INTERVAL, so a button pressed twice sends one mail."""
    from django.conf import settings

    _require_owner_for(pending.role, acting_role, action="invite to")
    with transaction.atomic():
        pending = PendingMembership.objects.select_for_update().get(pk=pending.pk)
        target = pending.username or pending.email
        if not pending.email:
            raise Conflict(
                f"'{target}' was invited by username: there is no email address to send to. Ask them to sign "
                "in; the invitation becomes a membership at their first sign-in.", code="no_email")
        interval = settings.PIER_INVITATION_RESEND_INTERVAL
        if pending.sent_at and (timezone.now() - pending.sent_at).total_seconds() < interval:
            raise Conflict(f"The invitation for {target} was sent less than {interval} seconds ago; "
                           "try again in a minute.", code="recently_sent")
        # Marked now, so a second press within the interval is refused even before the mail is out.
        pending.sent_at = timezone.now()
        pending.send_error = ""
        pending.save(update_fields=["sent_at", "send_error"])
        audit.record(action="invitation.resend", actor=acting_user, tenant=tenant, target_type="member",
                     target=target, details={"role": pending.role})
        _enqueue_invitation(pending)
    return pending


def claim_pending_memberships(*, user) -> list[Membership]:
    """At sign-in: turn invitations for this username or email into memberships."""
    match = Q(username=user.get_username())
    if user.email:
        match |= Q(email__iexact=user.email)
    claimed = []
    with transaction.atomic():
        for pending in PendingMembership.objects.select_for_update().filter(match).select_related("tenant"):
            membership, created = Membership.objects.get_or_create(
                tenant=pending.tenant, user=user, defaults={"role": pending.role}
            )
            pending.delete()
            if created:
                claimed.append(membership)
                signals.member_role_changed.send(sender=Membership, tenant=pending.tenant, user=user)
                audit.record(
                    action="member.join", actor=user, tenant=pending.tenant, target_type="member",
                    target=user.get_username(), details={"role": pending.role},
                )
    return claimed
