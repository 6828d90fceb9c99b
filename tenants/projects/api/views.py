"""Projects API under /api/v1/tenants/<slug>/projects. Thin: parse, call a service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import TenantScopedMixin
from tenants.projects import selectors, services
from tenants.projects.api import serializers as s
from tenants.projects.filtersets import ProjectFilterSet
from tenants.projects.models import Project


class ProjectListView(TenantScopedMixin, generics.ListAPIView):
    """Any member lists and creates projects; a tenant's `max_projects` caps how many."""

    min_role_for_write = "member"
    serializer_class = s.ProjectSerializer
    filterset_class = ProjectFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return selectors.projects()

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["tenant_defaults"] = selectors.tenant_defaults()  # one query, not one per row
        return context

    @extend_schema(request=s.ProjectCreateSerializer, responses={202: s.ProjectDetailSerializer})
    def post(self, request, tenant_slug):
        data = s.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(tenant=request.tenant, acting_user=request.user, **data.validated_data)
        return Response(s.ProjectDetailSerializer(project).data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/v1/tenants/{request.tenant.slug}/projects/{project.slug}"})


class ProjectDetailView(TenantScopedMixin, APIView):
    """Changes and deletion: the project's creator, or the tenant's owners and admins."""

    min_role_for_write = "member"

    def get_project(self, slug: str) -> Project:
        return get_object_or_404(selectors.projects(), slug=slug)

    @extend_schema(responses=s.ProjectDetailSerializer)
    def get(self, request, tenant_slug, project_slug):
        return Response(s.ProjectDetailSerializer(self.get_project(project_slug)).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectDetailSerializer)
    def patch(self, request, tenant_slug, project_slug):
        project = self.get_project(project_slug)
        data = s.ProjectUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_update(tenant=request.tenant, project=project, acting_user=request.user,
                                          tenant_role=request.tenant_role, **data.validated_data)
        return Response(s.ProjectDetailSerializer(project).data)

    @extend_schema(request=None, responses={202: s.ProjectDetailSerializer})
    def delete(self, request, tenant_slug, project_slug):
        project = services.project_delete(tenant=request.tenant, project=self.get_project(project_slug),
                                          acting_user=request.user, tenant_role=request.tenant_role)
        return Response(s.ProjectDetailSerializer(project).data, status=status.HTTP_202_ACCEPTED)


class ProjectDefaultsView(TenantScopedMixin, APIView):
    """The tenant level of the effective configuration; owners and admins change it."""

    @extend_schema(responses=s.ProjectDefaultsSerializer)
    def get(self, request, tenant_slug):
        return Response({"project_defaults": selectors.tenant_defaults()})

    @extend_schema(request=s.ProjectDefaultsSerializer, responses=s.ProjectDefaultsSerializer)
    def patch(self, request, tenant_slug):
        data = s.ProjectDefaultsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.tenant_defaults_update(tenant=request.tenant, defaults=data.validated_data["project_defaults"],
                                              acting_user=request.user)
        return Response({"project_defaults": row.project_defaults})
