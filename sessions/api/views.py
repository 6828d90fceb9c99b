"""Sessions API under /api/v1/tenants/<slug>/projects/<project>/sessions. Thin: parse, call a
service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.errors import InvalidInput
from sessions import selectors, services
from sessions.api import serializers as s
from sessions.filtersets import SessionFilterSet
from sessions.models import AgenticSession, RunnerSecret
from tenants.projects import selectors as project_selectors
from tenants.projects.api.views import ProjectScopedMixin

IDEMPOTENCY = OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                               description="A client's retry with the same key (and body) gets the first session back.")


def _location(request, session: AgenticSession) -> str:
    return f"/api/v1/tenants/{request.tenant.slug}/projects/{session.project.slug}/sessions/{session.name}"


def _created(request, session: AgenticSession, created: bool) -> Response:
    return Response(s.SessionSerializer(session).data,
                    status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
                    headers={"Location": _location(request, session),
                             **({} if created else {"Idempotent-Replayed": "true"})})


class SessionListView(ProjectScopedMixin, generics.ListAPIView):
    """Viewers list; editors (and keys with edit) start sessions."""

    audit_actions = {"POST": "session.create"}
    serializer_class = s.SessionSerializer
    filterset_class = SessionFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AgenticSession.objects.none()
        return selectors.sessions_of(self.project)

    @extend_schema(request=s.SessionCreateSerializer, responses={201: s.SessionSerializer}, parameters=[IDEMPOTENCY])
    def post(self, request, tenant_slug, project_slug):
        data = s.SessionCreateSerializer.known_fields(request.data)
        session, created = services.session_create(
            tenant=request.tenant, project=self.project, acting_user=request.user, access=self.access,
            prompt=data.get("prompt"), display_name=data.get("display_name", ""), llm=data.get("llm"),
            timeout_seconds=data.get("timeout_seconds"), repos=data.get("repos"), env=data.get("env"),
            idempotency_key=request.headers.get("Idempotency-Key", ""))
        return _created(request, session, created)


class SessionScopedMixin(ProjectScopedMixin):
    def session(self) -> AgenticSession:
        return get_object_or_404(selectors.sessions_of(self.project), name=self.kwargs["session_name"])


class SessionDetailView(SessionScopedMixin, APIView):
    audit_actions = {"DELETE": "session.delete"}

    @extend_schema(responses={200: s.SessionSerializer})
    def get(self, request, tenant_slug, project_slug, session_name):
        return Response(s.SessionSerializer(self.session()).data)

    @extend_schema(request=None, responses={202: None})
    def delete(self, request, tenant_slug, project_slug, session_name):
        services.session_delete(tenant=request.tenant, project=self.project, session=self.session(),
                                acting_user=request.user, access=self.access)
        return Response(status=status.HTTP_202_ACCEPTED)


class SessionStopView(SessionScopedMixin, APIView):
    audit_actions = {"POST": "session.stop"}

    @extend_schema(request=None, responses={202: s.SessionSerializer})
    def post(self, request, tenant_slug, project_slug, session_name):
        session = services.session_stop(tenant=request.tenant, project=self.project, session=self.session(),
                                        acting_user=request.user, access=self.access)
        return Response(s.SessionSerializer(session).data, status=status.HTTP_202_ACCEPTED)


class SessionCloneView(SessionScopedMixin, APIView):
    audit_actions = {"POST": "session.create"}

    @extend_schema(request=s.CloneSerializer, responses={201: s.SessionSerializer}, parameters=[IDEMPOTENCY])
    def post(self, request, tenant_slug, project_slug, session_name):
        source = self.session()
        target_slug = s.CloneSerializer.known_fields(request.data).get("project")
        if target_slug in (None, "", self.project.slug):
            target, access = self.project, self.access
        elif not isinstance(target_slug, str):
            raise InvalidInput("project: give a project's slug.", details={"project": ["A project's slug."]})
        else:
            target, access = project_selectors.project_for(request, target_slug)  # 404 if not theirs
        session, created = services.session_clone(tenant=request.tenant, source=source, target=target,
                                                  acting_user=request.user, access=access,
                                                  idempotency_key=request.headers.get("Idempotency-Key", ""))
        return _created(request, session, created)


class SessionLogView(SessionScopedMixin, APIView):
    @extend_schema(responses={200: s.SessionLogSerializer},
                   parameters=[OpenApiParameter("tail", int, description="Only the last N lines.")])
    def get(self, request, tenant_slug, project_slug, session_name):
        tail = request.query_params.get("tail")
        if tail is not None:
            if not (tail.isascii() and tail.isdigit()) or len(tail) > 7:
                raise InvalidInput("tail: give a whole number of lines.", details={"tail": ["A whole number."]})
            tail = int(tail)
        return Response(selectors.log_of(self.session(), tail=tail))


class RunnerSecretView(ProjectScopedMixin, APIView):
    """The project's runner secret: write-only. Reading shows which keys are set, when and by whom."""

    audit_actions = {"PUT": "project.runner_secret", "DELETE": "project.runner_secret_delete"}

    def _state(self) -> dict:
        row = RunnerSecret.objects.filter(project=self.project).first()
        state = {"keys": row.keys, "updated_at": row.updated_at, "updated_by": row.updated_by} if row else \
            {"keys": [], "updated_at": None, "updated_by": ""}
        return s.RunnerSecretStateSerializer(state).data

    @extend_schema(responses={200: s.RunnerSecretStateSerializer})
    def get(self, request, tenant_slug, project_slug):
        return Response(self._state())

    @extend_schema(request=s.RunnerSecretWriteSerializer, responses={200: s.RunnerSecretStateSerializer})
    def put(self, request, tenant_slug, project_slug):
        data = s.RunnerSecretWriteSerializer.known_fields(request.data).get("data")
        services.runner_secret_put(tenant=request.tenant, project=self.project, acting_user=request.user,
                                   access=self.access, data=data)
        return Response(self._state(), headers={"Cache-Control": "no-store"})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, tenant_slug, project_slug):
        services.runner_secret_delete(tenant=request.tenant, project=self.project, acting_user=request.user,
                                      access=self.access)
        return Response(status=status.HTTP_204_NO_CONTENT)
