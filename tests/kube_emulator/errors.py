"""API errors shaped like the real API server's: an HTTP code and a `Status` body.

Clients branch on `code` and `reason` (the official Python client exposes them as
`ApiException.status` and the `reason` field of the JSON body), so both follow apimachinery's
`k8s.io/apimachinery/pkg/api/errors` constructors exactly; messages follow them closely enough
for logs and assertions on substrings. `details.kind` is the resource's plural for NotFound,
AlreadyExists, Conflict and Forbidden but the object's Kind for Invalid, as on a real server.
"""

from __future__ import annotations

from typing import Any

from .validation import FieldError


class ApiError(Exception):
    """A request the server refuses; `status_body()` is what goes on the wire."""

    def __init__(self, code: int, reason: str | None, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        # A few storage errors (resourceVersion on create) reach clients without a reason.
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified_resource(group: str, resource: str) -> str:
    """`namespaces`, `roles.rbac.authorization.k8s.io`: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(group: str, kind: str, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = kind
    details.update(extra)
    return details


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified_resource(group, resource)} "{name}" not found', _details(group, resource, name)
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


OPTIMISTIC_LOCK_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(group: str, resource: str, name: str, why: str = OPTIMISTIC_LOCK_MESSAGE) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, resource)} "{name}": {why}',
        _details(group, resource, name),
    )


def forbidden(group: str, resource: str, name: str, why: str, causes: list[dict[str, str]] | None = None) -> ApiError:
    subject = qualified_resource(group, resource) + (f' "{name}"' if name else "")
    extra = {"causes": causes} if causes else {}
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", _details(group, resource, name, **extra))


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    qualified_kind = f"{kind}.{group}" if group else kind
    summary = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(error) for error in errors) + "]"
    causes = [{"reason": error.cause_reason, "message": error.body(), "field": error.field} for error in errors]
    return ApiError(
        422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', _details(group, kind, name, causes=causes)
    )


def unprocessable(message: str) -> ApiError:
    """A patch that cannot be applied (JSON patch `test` failing, a missing path): 422 without causes."""
    return ApiError(422, "Invalid", message, {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


# What the real server lists: built-in kinds take all four, custom resources all but strategic merge.
PATCH_MEDIA_TYPES = (
    "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)  # fmt: skip
CUSTOM_RESOURCE_PATCH_MEDIA_TYPES = (
    "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml",
)  # fmt: skip


def unsupported_media_type(content_type: str, accepted: tuple[str, ...] = PATCH_MEDIA_TYPES) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
        {},
    )


def internal_error(cause: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {cause}", {"causes": [{"message": cause}]})


def unsupported_feature(what: str) -> ApiError:
    """What the real server offers but this emulator does not (yet): refused loudly, never ignored."""
    return bad_request(f"{what} is not supported by the Pier Kubernetes API emulator")


# The messages apimachinery uses for a bare HTTP status (errors.NewGenericServerResponse); faults
# injected by code answer with these.
_GENERIC_REASONS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "the server has asked for the client to provide credentials"),
    403: ("Forbidden", "the server does not allow access to the requested resource"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    # What an admission plugin or a stricter API server answers to a value Pier thought valid.
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: (
        "Timeout",
        "the server was unable to return a response in the time allotted, but may still be processing the request",
    ),
}

INJECTABLE_STATUSES = frozenset({500, *_GENERIC_REASONS})


def injected(code: int) -> ApiError:
    """The error an injected fault answers with."""
    if code == 500:
        return internal_error("fault injected by the Pier Kubernetes API emulator")
    reason, message = _GENERIC_REASONS[code]
    return ApiError(code, reason, message, {})
