"""Tenancy API. Staff endpoints under /api/v1/admin/, member endpoints under /api/v1/tenants/<slug>/.

Views stay thin: they parse input with a serializer, call a service and render the result."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import IsStaff, TenantScopedMixin
from portal.filtersets import AuditEventFilterSet
from portal.models import AuditEvent
from tenants import selectors, services
from tenants.api import serializers as s
from tenants.filtersets import TenantFilterSet
from tenants.models import Membership, PendingMembership, ProvisioningJob, Role, Tenant


def _tenant_payload(tenant: Tenant, job: ProvisioningJob | None = None) -> dict:
    body = s.TenantSerializer(tenant).data
    latest = job or tenant.jobs.order_by("-created_at", "-id").first()
    body["job"] = s.JobSerializer(latest).data if latest else None
    return body


def _owner_invited(tenant: Tenant) -> bool:
    """Whether the new tenant's owner matched no account (tenant_create stores the owner as a
    pending membership: under the account's username when one matched, else as given)."""
    pending = PendingMembership.objects.filter(tenant=tenant, role=Role.OWNER).order_by("pk").first()
    if pending is None:
        return False  # a worker already made an existing account the owner
    return not pending.username or not get_user_model().objects.filter(username=pending.username).exists()


# --- Staff: tenants and jobs ---------------------------------------------------------------


class AdminTenantListView(generics.ListAPIView):
    audit_actions = {"POST": "tenant.create"}

    permission_classes = [IsStaff]
    serializer_class = s.TenantSerializer
    filterset_class = TenantFilterSet
    queryset = Tenant.objects.order_by("slug")

    @extend_schema(request=s.TenantCreateSerializer, responses={202: s.TenantCreatedSerializer})
    def post(self, request):
        data = s.TenantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant, job = services.tenant_create(acting_user=request.user, **data.validated_data)
        body = {**_tenant_payload(tenant, job), "invited": _owner_invited(tenant)}
        return Response(body, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": s.TenantSerializer(tenant).data["url"]})


class AdminTenantDetailView(APIView):
    audit_actions = {"PATCH": "tenant.update", "DELETE": "tenant.delete"}

    permission_classes = [IsStaff]

    def get_tenant(self, slug: str) -> Tenant:
        return get_object_or_404(Tenant, slug=slug)

    @extend_schema(responses=s.TenantSerializer)
    def get(self, request, slug):
        return Response(_tenant_payload(self.get_tenant(slug)))

    @extend_schema(request=s.TenantUpdateSerializer, responses=s.TenantSerializer)
    def patch(self, request, slug):
        tenant = self.get_tenant(slug)
        data = s.TenantUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_update(tenant=tenant, acting_user=request.user, **data.validated_data)
        return Response(_tenant_payload(tenant))

    @extend_schema(request=None, responses={202: s.TenantSerializer})
    def delete(self, request, slug):
        tenant, job = services.tenant_delete(tenant=self.get_tenant(slug), acting_user=request.user)
        return Response(_tenant_payload(tenant, job), status=status.HTTP_202_ACCEPTED)


class AdminTenantActionView(APIView):
    """POST /api/v1/admin/tenants/<slug>/{suspend,resume,retry}"""

    audit_actions = {}

    permission_classes = [IsStaff]
    action_name = ""
    STATE_CHANGES = {"suspend": services.tenant_suspend, "resume": services.tenant_resume}

    @extend_schema(request=None, responses=s.TenantSerializer)
    def post(self, request, slug):
        tenant = get_object_or_404(Tenant, slug=slug)
        if self.action_name == "retry":  # starts a job: 202, like create and delete
            job = services.tenant_retry(tenant=tenant, acting_user=request.user)
            tenant.refresh_from_db()
            return Response(_tenant_payload(tenant, job), status=status.HTTP_202_ACCEPTED)
        tenant = self.STATE_CHANGES[self.action_name](tenant=tenant, acting_user=request.user)
        return Response(_tenant_payload(tenant))


class AdminJobListView(generics.ListAPIView):
    permission_classes = [IsStaff]
    serializer_class = s.JobSerializer
    filterset_fields = ["status", "kind", "tenant_slug"]
    queryset = ProvisioningJob.objects.prefetch_related("steps").order_by("-created_at", "-id")


class AdminJobDetailView(generics.RetrieveAPIView):
    permission_classes = [IsStaff]
    serializer_class = s.JobSerializer
    queryset = ProvisioningJob.objects.prefetch_related("steps")


# --- Signed-in users: their tenants ----------------------------------------------------------


class MyTenantListView(generics.ListAPIView):
    """The tenants the caller belongs to, with their role."""

    serializer_class = s.MyTenantSerializer
    filterset_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Tenant.objects.none()
        return selectors.tenants_for_user(self.request.user)


# --- Members of a tenant ---------------------------------------------------------------------


class TenantDetailView(TenantScopedMixin, APIView):
    @extend_schema(responses=s.MyTenantSerializer)
    def get(self, request, tenant_slug):
        return Response(s.MyTenantSerializer(request.tenant, context={"role": request.tenant_role}).data)


class MemberListView(TenantScopedMixin, generics.ListAPIView):
    audit_actions = {"POST": "member.add"}

    serializer_class = s.MemberSerializer
    filterset_fields = ["role"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return selectors.members_of(self.request.tenant)

    @extend_schema(request=s.MemberAddSerializer, responses={201: s.MemberAddedSerializer})
    def post(self, request, tenant_slug):
        data = s.MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.member_add(
            tenant=request.tenant, person=data.validated_data["username"], role=data.validated_data["role"],
            acting_user=request.user, acting_role=request.tenant_role,
        )
        invited = isinstance(created, PendingMembership)  # no account matched: said so, not silently
        serializer = s.InvitationSerializer if invited else s.MemberSerializer
        body = {**serializer(created).data, "invited": invited, "pending": invited}
        return Response(body, status=status.HTTP_201_CREATED)


class MemberDetailView(TenantScopedMixin, APIView):
    audit_actions = {"PATCH": "member.change_role", "DELETE": "member.remove"}

    def get_membership(self, request, username: str) -> Membership:
        return get_object_or_404(selectors.members_of(request.tenant), user__username=username)

    @extend_schema(responses=s.MemberSerializer)
    def get(self, request, tenant_slug, username):
        return Response(s.MemberSerializer(self.get_membership(request, username)).data)

    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def patch(self, request, tenant_slug, username):
        membership = self.get_membership(request, username)
        data = s.MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.member_change_role(
            tenant=request.tenant, membership=membership, role=data.validated_data["role"],
            acting_user=request.user, acting_role=request.tenant_role,
        )
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_slug, username):
        membership = self.get_membership(request, username)
        services.member_remove(
            tenant=request.tenant, membership=membership, acting_user=request.user, acting_role=request.tenant_role
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(TenantScopedMixin, generics.ListAPIView):
    """Pending invitations, with the invitees' emails: owners and admins only."""

    min_role = "admin"
    serializer_class = s.InvitationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PendingMembership.objects.none()
        return selectors.invitations_of(self.request.tenant)


class InvitationDetailView(TenantScopedMixin, APIView):
    audit_actions = {"DELETE": "member.remove"}

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_slug, pk):
        pending = get_object_or_404(PendingMembership, tenant=request.tenant, pk=pk)
        services.pending_member_remove(
            tenant=request.tenant, pending=pending, acting_user=request.user, acting_role=request.tenant_role
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationResendView(TenantScopedMixin, APIView):
    """Mail an invitation by email again (at most once a minute); 409 for one made by username."""

    audit_actions = {"POST": "invitation.resend"}

    @extend_schema(request=None, responses={202: s.InvitationSerializer})
    def post(self, request, tenant_slug, pk):
        pending = get_object_or_404(PendingMembership, tenant=request.tenant, pk=pk)
        pending = services.invitation_resend(
            tenant=request.tenant, pending=pending, acting_user=request.user, acting_role=request.tenant_role
        )
        return Response(s.InvitationSerializer(pending).data, status=status.HTTP_202_ACCEPTED)


# --- Audit ---------------------------------------------------------------------------------


class TenantAuditListView(TenantScopedMixin, generics.ListAPIView):
    """The tenant's audit trail; owners and admins only."""

    min_role = "admin"
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return selectors.tenant_audit(self.request.tenant)
