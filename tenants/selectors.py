"""Reads for tenants and memberships, scoped to what the caller may see."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from portal.models import AuditEvent
from tenants.models import Membership, PendingMembership, Tenant


def tenants_for_user(user) -> QuerySet[Tenant]:
    """The tenants `user` is a member of (platform staff: every tenant), each with the user's
    `role` ("staff" where staff are not members), deleted ones excluded."""
    role = Membership.objects.filter(tenant=OuterRef("pk"), user=user).values("role")[:1]
    if user.is_staff:  # platform staff run every organization: they see them all
        return (Tenant.objects.exclude(status=Tenant.Status.DELETING)
                .annotate(role=Coalesce(Subquery(role), Value("staff"))).order_by("name", "slug"))
    return (
        Tenant.objects.filter(memberships__user=user)
        .exclude(status=Tenant.Status.DELETING)
        .annotate(role=Subquery(role))
        .order_by("name", "slug")
    )


def members_of(tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")


def tenant_audit(tenant: Tenant) -> QuerySet[AuditEvent]:
    """This tenant's audit rows: by id, since a deleted tenant's slug can be taken again."""
    return AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("-at", "-id")


def invitations_of(tenant: Tenant) -> QuerySet[PendingMembership]:
    return PendingMembership.objects.filter(tenant=tenant).select_related("invited_by").order_by("created_at", "id")


def home_sections(request) -> list[dict]:
    """What other apps show on an organization's home (projects: counts and a summary), asked
    through a signal so that this app never imports them. Each is {"template": ..., **context}."""
    from tenants.signals import home_sections as signal

    return [section for _receiver, section in signal.send(sender=Tenant, request=request) if section]
