"""The audit trail: `record()` for services, and a middleware that records refused attempts.

Services write their success row inside their own transaction (it commits with the change).
A refused attempt (validation error, permission denied, conflict, …) is written by
`RefusedAttemptMiddleware` after the view has returned, outside any transaction, so it survives
the rollback of the work it refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from typing import Any

from portal import request_id
from portal.models import AuditEvent

MUTATING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_source: contextvars.ContextVar[str] = contextvars.ContextVar("pier_audit_source", default="cli")
_refusal_recorded: contextvars.ContextVar[bool] = contextvars.ContextVar("pier_refusal_recorded", default=False)


@contextlib.contextmanager
def source(name: str):
    """Audit rows written inside this block name `name` as their source (e.g. "task")."""
    token = _source.set(name)
    try:
        yield
    finally:
        _source.reset(token)


def actor_fields(user) -> tuple[str, int | None]:
    if user is None:
        return "system", None
    if not getattr(user, "is_authenticated", False):
        return "anonymous", None
    return user.get_username(), user.pk


def record(
    *,
    action: str,
    actor=None,
    tenant=None,
    target_type: str = "",
    target: str = "",
    outcome: str = AuditEvent.Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    source: str | None = None,
) -> AuditEvent:
    """`tenant`: a Tenant, or a slug (for a tenant that no longer exists or a URL's slug)."""
    name, actor_id = actor_fields(actor)
    if outcome != AuditEvent.Outcome.SUCCESS:
        _refusal_recorded.set(True)
    slug, tenant_id = (tenant, None) if isinstance(tenant, str) or tenant is None else (tenant.slug, tenant.pk)
    return AuditEvent.objects.create(
        actor=name,
        actor_id=actor_id,
        tenant=slug or "",
        tenant_id=tenant_id,
        action=action,
        target_type=target_type,
        target=str(target)[:255],
        outcome=outcome,
        source=source or _source.get(),
        request_id=request_id.get(),
        details=details or {},
    )


def _outcome_for_status(status: int) -> str:
    if status in (401, 403):
        return AuditEvent.Outcome.DENIED
    if status == 404:
        return AuditEvent.Outcome.NOT_FOUND
    if status == 409:
        return AuditEvent.Outcome.CONFLICT
    if status in (400, 405, 422):
        return AuditEvent.Outcome.INVALID
    return AuditEvent.Outcome.FAILED


def _source_for_path(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin/"):
        return "admin"
    return "html"


def _refusal_details(request, response) -> dict[str, Any]:
    details: dict[str, Any] = {"method": request.method, "path": request.path, "status": response.status_code}
    refusal = getattr(request, "pier_refusal", None)
    if refusal:
        details.update(refusal)
    elif response.get("Content-Type", "").startswith("application/json"):
        try:
            error = json.loads(response.content).get("error", {})
            details.update({k: error[k] for k in ("code", "message") if k in error})
        except (ValueError, AttributeError, TypeError):
            pass
    return details


class RefusedAttemptMiddleware:
    """Records every mutating request that was refused (HTTP 4xx/5xx) and that no service
    recorded itself. Runs after the view, outside the view's transaction."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        source_token = _source.set(_source_for_path(request.path))
        refusal_token = _refusal_recorded.set(False)
        try:
            response = self.get_response(request)
            if (
                request.method in MUTATING_METHODS
                and response.status_code >= 400
                and not _refusal_recorded.get()
            ):
                match = getattr(request, "resolver_match", None)
                tenant = getattr(request, "tenant", None)
                record(
                    action=(match.view_name if match else "unknown") + f" {request.method}",
                    actor=getattr(request, "user", None) or _anonymous(),
                    tenant=tenant or _tenant_from_url(match),
                    target_type="url",
                    target=request.path,
                    outcome=_outcome_for_status(response.status_code),
                    details=_refusal_details(request, response),
                )
            return response
        finally:
            _refusal_recorded.reset(refusal_token)
            _source.reset(source_token)


def _tenant_from_url(match) -> str:
    if match is None:
        return ""
    # Tenant routes carry tenant_slug; the staff tenant routes (/api/v1/admin/tenants/<slug>) slug.
    return match.kwargs.get("tenant_slug") or (match.kwargs.get("slug", "") if "tenant" in match.url_name else "")


def _anonymous():
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()
