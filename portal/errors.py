"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Services raise `PierError` subclasses (or Django's ValidationError from `full_clean`); the API
exception handler and the HTML views turn them into responses. Validation messages name the field.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response


class PierError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class InvalidInput(PierError):
    status = 400
    code = "invalid"


class Refusals:
    """Every bad field of one request reported at once: run each check with `check(clean, …)`
    (its InvalidInput is kept, None returned), then `raise_any()` raises one InvalidInput whose
    details name every field refused."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.details: dict[str, list[str]] = {}

    def check(self, clean, *args, **kwargs) -> Any:
        try:
            return clean(*args, **kwargs)
        except InvalidInput as exc:
            self.messages.append(exc.message)
            for name, said in exc.details.items():
                self.details.setdefault(name, []).extend(said if isinstance(said, list) else [said])
            return None

    def __bool__(self) -> bool:
        return bool(self.messages)

    def raise_any(self) -> None:
        if self.messages:
            raise InvalidInput("; ".join(self.messages), details=self.details)


class Conflict(PierError):
    status = 409
    code = "conflict"


class QuotaExceeded(Conflict):
    code = "quota_exceeded"


class NotFound(PierError):
    status = 404
    code = "not_found"


class Forbidden(PierError):
    status = 403
    code = "permission_denied"


class Unavailable(PierError):
    status = 503
    code = "unavailable"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field_message(errors: dict[str, list[str]]) -> str:
    parts = []
    for field, messages in errors.items():
        label = "input" if field in ("__all__", "non_field_errors") else field
        parts.append(f"{label}: {' '.join(str(m) for m in messages)}")
    return "; ".join(parts) or "Invalid input."


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(item) for item in detail]
        return flat
    return str(detail)


def from_django_validation_error(exc: DjangoValidationError) -> InvalidInput:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return InvalidInput(_field_message(errors), details=errors)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = from_django_validation_error(exc)
    if isinstance(exc, PierError):
        status, code, message, details = exc.status, exc.code, exc.message, exc.details
    elif isinstance(exc, drf_exceptions.ValidationError):
        details = _flatten(exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail})
        status, code, message = 400, "invalid", _field_message(
            {k: v if isinstance(v, list) else [v] for k, v in details.items()}
        )
    elif isinstance(exc, drf_exceptions.NotFound):
        status, code, message, details = 404, "not_found", str(exc.detail), {}  # e.g. "Invalid page."
    elif isinstance(exc, Http404):
        status, code, message, details = 404, "not_found", "Not found.", {}
    elif isinstance(exc, (DjangoPermissionDenied,)):
        status, code, message, details = 403, "permission_denied", str(exc) or "Permission denied.", {}
    elif isinstance(exc, drf_exceptions.APIException):
        status = exc.status_code
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        message, details = str(exc.detail), {}
    else:
        return None
    response = Response(error_body(code, message, details), status=status)
    if isinstance(exc, drf_exceptions.APIException):
        if getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))
    request = context.get("request")
    if request is not None:
        request._request.pier_refusal = {"code": code, "message": message}
    return response


def wants_json(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


# A page's heading by status, so the heading does not repeat the message.
_TITLES = {400: "That did not work", 401: "Sign in first", 403: "Not allowed", 404: "Not found", 409: "Conflict",
           413: "Too large", 415: "Not accepted", 429: "Too many attempts", 500: "Server error",
           503: "Not available right now"}


def error_response(request, *, status: int, code: str, message: str, title: str | None = None,
                   details: dict[str, Any] | None = None):
    """An error for a request that never reached a view (routing, tenancy, the input guard):
    JSON for the API, a page for people."""
    request.pier_refusal = {"code": code, "message": message}
    if wants_json(request):
        return JsonResponse(error_body(code, message, details), status=status)
    return render(
        request,
        "error.html",
        {"status": status, "code": code, "message": message, "title": title or _TITLES.get(status, "Something is wrong")},
        status=status,
    )


def handler404(request, exception=None):
    return error_response(request, status=404, code="not_found", message="Not found.", title="Page not found")


def handler403(request, exception=None):
    message = str(exception) if exception and str(exception) else "You do not have permission to do this."
    return error_response(request, status=403, code="permission_denied", message=message, title="Not allowed")


def handler500(request):
    return error_response(
        request, status=500, code="server_error", message="Something went wrong on our side.", title="Server error"
    )


def csrf_failure(request, reason=""):
    return error_response(
        request,
        status=403,
        code="csrf_failed",
        message="Your form expired or came from another site. Reload the page and try again.",
        title="Form expired",
    )
