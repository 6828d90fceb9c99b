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
import math
import re
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


# What PostgreSQL cannot store: NUL in text (and \u0000 in jsonb), and lone surrogates (no UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_DETAIL_TEXT = 2000  # a hostile value is kept as evidence, not in full
MAX_DETAIL_DEPTH = 8
MAX_DETAIL_ITEMS = 100


def safe_text(value: Any, limit: int | None = None) -> str:
    """`value` as text PostgreSQL can store: NUL and lone surrogates written as \\uXXXX escapes,
    cut to `limit` characters (with an ellipsis, so the cut shows)."""
    text = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(value))
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def safe_details(value: Any, depth: int = 0) -> Any:
    """`details` with every string (keys too) made storable and bounded, without recursion
    limits being reachable by input: past MAX_DETAIL_DEPTH the rest is kept as text."""
    if isinstance(value, str):
        return safe_text(value, MAX_DETAIL_TEXT)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # jsonb has no NaN or Infinity
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth >= MAX_DETAIL_DEPTH:
        return safe_text(repr(value), MAX_DETAIL_TEXT)
    if isinstance(value, dict):
        items = list(value.items())[:MAX_DETAIL_ITEMS]
        return {safe_text(k, 200): safe_details(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [safe_details(v, depth + 1) for v in list(value)[:MAX_DETAIL_ITEMS]]
    return safe_text(value, MAX_DETAIL_TEXT)


def _limit(field: str) -> int:
    return AuditEvent._meta.get_field(field).max_length


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
    # Whatever the input (a refused attempt records what was refused), the row can be stored.
    return AuditEvent.objects.create(
        actor=safe_text(name, _limit("actor")),
        actor_id=actor_id,
        tenant=safe_text(slug or "", _limit("tenant")),
        tenant_id=tenant_id,
        action=safe_text(action, _limit("action")),
        target_type=safe_text(target_type, _limit("target_type")),
        target=safe_text(target, _limit("target")),
        outcome=outcome,
        source=safe_text(source or _source.get(), _limit("source")),
        request_id=safe_text(request_id.get(), _limit("request_id")),
        details=safe_details(details or {}),
    )


def _sent_to_sign_in(response) -> bool:
    """A page's answer to a caller who is not signed in: a redirect to the sign-in page that
    comes back here afterwards (a sign-out's redirect to the sign-in page carries no `next`)."""
    if response.status_code != 302:
        return False
    from django.conf import settings
    from django.shortcuts import resolve_url

    return response.get("Location", "").startswith(f"{resolve_url(settings.LOGIN_URL)}?next=")


def _outcome_for_status(status: int) -> str:
    if status in (302, 401, 403):
        return AuditEvent.Outcome.DENIED
    if status == 404:
        return AuditEvent.Outcome.NOT_FOUND
    if status == 409:
        return AuditEvent.Outcome.CONFLICT
    if status in (400, 405, 413, 415, 422):
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
                and (response.status_code >= 400 or _sent_to_sign_in(response))
                and not _refusal_recorded.get()
            ):
                match = getattr(request, "resolver_match", None)
                tenant = getattr(request, "tenant", None)
                record(
                    action=_action_name(match, request.method),
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
    staff_tenant_route = "tenant" in (match.url_name or "")  # a route may have no name
    return match.kwargs.get("tenant_slug") or (match.kwargs.get("slug", "") if staff_tenant_route else "")


def _anonymous():
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


def _action_name(match, method: str) -> str:
    """A refused attempt is named like the action it tried (`project.create`): views say which
    action each method is (`audit_actions = {"POST": "project.create"}`); otherwise the route."""
    if match is None:
        return f"unknown {method}"
    view_class = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    actions = getattr(match.func, "view_initkwargs", {}).get("audit_actions") or getattr(view_class, "audit_actions", {})
    named = actions.get(method)
    return named or f"{match.view_name} {method}"
