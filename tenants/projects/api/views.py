"""Projects API under /api/v1/tenants/<slug>/projects. Thin: parse, call a service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import IsStaff, TenantScopedMixin
from tenants.models import Tenant
from tenants.projects import selectors, services
from tenants.projects.api import serializers as s
from tenants.projects.filtersets import ProjectFilterSet
from tenants.projects.models import AccessKey, Project, ProjectGrant


class ProjectListView(TenantScopedMixin, generics.ListAPIView):
    """Any member lists and creates projects; a tenant's `max_projects` caps how many."""

    audit_actions = {"POST": "project.create"}

    min_role_for_write = "member"
    allows_keys = True  # a key lists its own project; it cannot create one
    serializer_class = s.ProjectSerializer
    filterset_class = ProjectFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return selectors.projects_for(self.request)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["policy"] = selectors.policy_for(self.request.tenant)  # once, not once per row
        return context

    @extend_schema(request=s.ProjectCreateSerializer, responses={202: s.ProjectDetailSerializer})
    def post(self, request, tenant_slug):
        if getattr(request.user, "is_access_key", False):
            raise PermissionDenied("An access key acts only on its own project.")
        data = s.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(tenant=request.tenant, acting_user=request.user, **data.validated_data)
        return Response(s.ProjectDetailSerializer(project, context={"tenant": request.tenant}).data,
                        status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/tenants/{request.tenant.slug}/projects/{project.slug}"})


class ProjectScopedMixin(TenantScopedMixin):
    """Views under …/projects/<project>: the project and the caller's access to it are resolved
    once; a project the caller may not see answers 404. Services check the action's role."""

    min_role_for_write = "member"
    allows_keys = True

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not getattr(self, "swagger_fake_view", False):
            self.project, self.access = selectors.project_for(request, kwargs["project_slug"])


class ProjectDetailView(ProjectScopedMixin, APIView):
    """Viewers read; editors change the description; admins configure and delete."""

    audit_actions = {"PATCH": "project.update", "DELETE": "project.delete"}

    def detail(self, project):
        return s.ProjectDetailSerializer(project, context={"tenant": self.request.tenant}).data

    @extend_schema(responses=s.ProjectDetailSerializer)
    def get(self, request, tenant_slug, project_slug):
        return Response(self.detail(self.project))

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectDetailSerializer)
    def patch(self, request, tenant_slug, project_slug):
        data = s.ProjectUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_update(tenant=request.tenant, project=self.project, acting_user=request.user,
                                          access=self.access, merge=True, **data.validated_data)
        return Response(self.detail(project))

    @extend_schema(request=None, responses={202: s.ProjectDetailSerializer})
    def delete(self, request, tenant_slug, project_slug):
        project = services.project_delete(tenant=request.tenant, project=self.project, acting_user=request.user,
                                          access=self.access)
        return Response(self.detail(project), status=status.HTTP_202_ACCEPTED)


class ProjectAccessView(ProjectScopedMixin, APIView):
    """The caller's own role in the project, where it comes from, and what it allows."""

    @extend_schema(responses=s.AccessSerializer)
    def get(self, request, tenant_slug, project_slug):
        return Response({"role": self.access.role, "source": self.access.source, "actions": self.access.actions})


class ProjectGrantListView(ProjectScopedMixin, generics.ListAPIView):
    """Who has access: one row per person or group, like the OpenShift console's Project access tab."""

    audit_actions = {"POST": "project.share"}

    serializer_class = s.ProjectGrantSerializer
    pagination_class = None  # a project has a handful of grants

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ProjectGrant.objects.none()
        return self.project.grants.select_related("created_by", "updated_by").order_by("kind", "subject")

    @extend_schema(request=s.ProjectGrantCreateSerializer, responses={201: s.ProjectGrantSerializer})
    def post(self, request, tenant_slug, project_slug):
        data = s.ProjectGrantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = services.grant_add(tenant=request.tenant, project=self.project, acting_user=request.user,
                                   access=self.access, **data.validated_data)
        return Response(s.ProjectGrantSerializer(grant).data, status=status.HTTP_201_CREATED)


class ProjectGrantDetailView(ProjectScopedMixin, APIView):
    audit_actions = {"PATCH": "project.share_change", "DELETE": "project.unshare"}

    def get_grant(self, grant_id: int) -> ProjectGrant:
        return get_object_or_404(ProjectGrant.objects.select_related("created_by", "updated_by"),
                                 project=self.project, pk=grant_id)

    @extend_schema(responses=s.ProjectGrantSerializer)
    def get(self, request, tenant_slug, project_slug, grant_id):
        return Response(s.ProjectGrantSerializer(self.get_grant(grant_id)).data)

    @extend_schema(request=s.ProjectGrantUpdateSerializer, responses=s.ProjectGrantSerializer)
    def patch(self, request, tenant_slug, project_slug, grant_id):
        data = s.ProjectGrantUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = services.grant_change(tenant=request.tenant, project=self.project, grant=self.get_grant(grant_id),
                                      acting_user=request.user, access=self.access, **data.validated_data)
        return Response(s.ProjectGrantSerializer(grant).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_slug, project_slug, grant_id):
        services.grant_remove(tenant=request.tenant, project=self.project, grant=self.get_grant(grant_id),
                              acting_user=request.user, access=self.access)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectDefaultsView(TenantScopedMixin, APIView):
    """The organization level of the effective configuration: owners and admins change the defaults
    and lock keys; the ceilings, budget and locks platform staff set are shown read-only."""

    audit_actions = {"PATCH": "tenant.project_defaults"}

    @extend_schema(responses=s.ProjectDefaultsSerializer)
    def get(self, request, tenant_slug):
        return Response(selectors.organization_policy(request.tenant))

    @extend_schema(request=s.ProjectDefaultsUpdateSerializer, responses=s.ProjectDefaultsSerializer)
    def patch(self, request, tenant_slug):
        data = s.ProjectDefaultsUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.tenant_defaults_update(tenant=request.tenant, acting_user=request.user,
                                        defaults=data.validated_data.get("project_defaults"),
                                        locked_keys=data.validated_data.get("locked_keys"))
        return Response(selectors.organization_policy(request.tenant))


class AdminTenantPolicyView(APIView):
    """Platform staff: an organization's ceilings, budget and locks (/api/v1/admin/tenants/<slug>/policy)."""

    audit_actions = {"PATCH": "tenant.policy"}

    permission_classes = [IsStaff]

    @extend_schema(responses=s.TenantPolicySerializer)
    def get(self, request, slug):
        tenant = get_object_or_404(Tenant, slug=slug)
        return Response(selectors.staff_policy(tenant))

    @extend_schema(request=s.TenantPolicyUpdateSerializer, responses=s.TenantPolicySerializer)
    def patch(self, request, slug):
        tenant = get_object_or_404(Tenant, slug=slug)
        data = s.TenantPolicyUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.tenant_policy_update(tenant=tenant, acting_user=request.user, **data.validated_data))


class AccessKeyListView(ProjectScopedMixin, generics.ListAPIView):
    """Keys of the project (names and the token's last four characters, never the token)."""

    audit_actions = {"POST": "key.create"}

    serializer_class = s.AccessKeySerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccessKey.objects.none()
        return self.project.keys.select_related("created_by").order_by("-created_at", "-id")

    @extend_schema(request=s.AccessKeyCreateSerializer, responses={201: s.AccessKeyCreatedSerializer})
    def post(self, request, tenant_slug, project_slug):
        data = s.AccessKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, token = services.key_create(tenant=request.tenant, project=self.project, acting_user=request.user,
                                     access=self.access, **data.validated_data)
        body = s.AccessKeyCreatedSerializer(key, context={"token": token}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class AccessKeyDetailView(ProjectScopedMixin, APIView):
    audit_actions = {"DELETE": "key.revoke"}

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_slug, project_slug, key_id):
        key = get_object_or_404(AccessKey, project=self.project, pk=key_id)
        services.key_revoke(tenant=request.tenant, project=self.project, key=key, acting_user=request.user,
                        access=self.access)
        return Response(status=status.HTTP_204_NO_CONTENT)
