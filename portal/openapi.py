"""How the OpenAPI schema (drf-spectacular) describes what every endpoint can answer.

The views declare their successful responses; the errors come from layers they share (the
authenticators, the access check of TenantScopedMixin, the tenant routing, the JSON parser,
StrictSerializer, the pagination, the exception handler of portal/errors.py). So the errors are
described here, once, from what the view is made of, instead of by an `extend_schema` on every view:

| status | when | added to |
| --- | --- | --- |
| 400 `invalid` | a body or a filter that does not validate, the field named in `details`; input no column can store (NUL bytes, lone surrogates, too long), refused by the input guard wherever it is | every operation |
| 401 | no credentials, wrong ones, an expired or revoked key | every operation (all need a signed-in caller) |
| 403 | role too low, staff-only, a key outside its project, a suspended organization, CSRF | every operation |
| 404 | unknown object, organization or project out of the caller's sight, a page past the end | operations with path parameters, paginated lists |
| 409 | conflicts (`slug_taken`, `last_owner`, `invalid_state`, `quota_exceeded`, …) | every write |
| 413 `too_large` | a body over the size limit | operations with a request body |
| 415 | a body that is not JSON | operations with a request body |
| 503 | the organization is not ready (`tenant_not_ready`, `tenant_failed`, `tenant_migrating`, `tenant_unavailable`), the cluster cannot be reached (`cluster_unavailable`) | routes under /api/v1/tenants/{tenant_slug} |

Bodies refuse fields they do not know (StrictSerializer): their schemas say
`additionalProperties: false`; text fields that refuse "" say `minLength: 1`. Pagination says
its bounds (`page` from 1, `page_size` 1 to `max_page_size`).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, get_doc
from rest_framework import serializers

from portal.api import StrictSerializer, TenantScopedMixin

ERROR_COMPONENT = "Error"

ERROR_SCHEMA = {
    "type": "object",
    "description": "Pier's one error shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Machine-readable, e.g. `invalid`, `not_found`, `last_owner`."},
                "message": {"type": "string", "description": "For people; validation messages name the field."},
                "details": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "For `invalid`: the messages of each field, by field name.",
                },
            },
            "required": ["code", "message", "details"],
        },
    },
    "required": ["error"],
}

DESCRIPTIONS = {
    400: "Invalid input (`invalid`, `invalid_input`, `parse_error`): `details` names each refused field, unknown "
         "fields and empty values included.",
    401: "Not signed in (`not_authenticated`) or the credentials are wrong, expired or revoked (`authentication_failed`).",
    403: "Not allowed (`permission_denied`), the organization is suspended (`tenant_suspended`) or the form "
         "came from another site (`csrf_failed`).",
    404: "Not found, or not visible to the caller (`not_found`); for a list, a page past the end.",
    409: "Conflicts with the current state, e.g. `slug_taken`, `invalid_state`, `already_member`, `last_owner`, "
         "`quota_exceeded`, `project_exists`, `namespace_taken`, `already_granted`, `key_exists`.",
    413: "The body is larger than the limit (`too_large`).",
    415: "The body is not JSON (`unsupported_media_type`): send `Content-Type: application/json`.",
    503: "The organization is not ready (`tenant_not_ready`, `tenant_failed`, `tenant_migrating`, "
         "`tenant_unavailable`) or the cluster "
         "could not be reached (`cluster_unavailable`); try again later.",
}

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class PierAutoSchema(AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        self._describe_pagination(operation)
        error = ResolvedComponent(
            name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT, schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(error)
        responses = operation.setdefault("responses", {})
        for status in self._error_statuses(operation):
            responses.setdefault(
                str(status),
                {"content": {"application/json": {"schema": error.ref}}, "description": DESCRIPTIONS[status]},
            )
        return operation

    def _error_statuses(self, operation: dict) -> list[int]:
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p["in"] == "query"}
        has_body = "requestBody" in operation
        # 400 everywhere: besides bodies and filters, the input guard refuses paths and query
        # strings no column could store, on any operation.
        statuses = [400, 401, 403]
        if any(p["in"] == "path" for p in parameters) or "page" in query:
            statuses.append(404)
        if self.method in WRITES:
            statuses.append(409)
        if has_body:
            statuses += [413, 415]
        if isinstance(self.view, TenantScopedMixin):
            statuses.append(503)
        return sorted(statuses)

    def _describe_pagination(self, operation: dict) -> None:
        paginator = self._get_paginator()
        if paginator is None:
            return
        default = paginator.page_size
        maximum = getattr(paginator, "max_page_size", None)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            if parameter["name"] == getattr(paginator, "page_query_param", "page"):
                parameter["schema"] = {"type": "integer", "minimum": 1, "default": 1}
                parameter["description"] = "The page number, from 1; a page past the end answers 404."
            elif parameter["name"] == getattr(paginator, "page_size_query_param", None):
                parameter["schema"] = {"type": "integer", "minimum": 1, "default": default}
                if maximum:
                    parameter["schema"]["maximum"] = maximum
                    parameter["description"] = (
                        f"Results per page, 1 to {maximum} (default {default}); a larger value gives {maximum}."
                    )

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if isinstance(serializer, StrictSerializer) or (
            isinstance(serializer, type) and issubclass(serializer, StrictSerializer)
        ):
            schema["additionalProperties"] = False
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # An email shown is the one stored, and people without one have "" (Django's User.email
        # is blank=True): `format: email` would promise what the data does not hold.
        if direction == "response" and isinstance(field, serializers.EmailField) and schema.get("format") == "email":
            del schema["format"]
        # DRF refuses "" for a CharField that does not allow blanks ("This field may not be blank.").
        if (direction == "request" and isinstance(field, serializers.CharField) and not field.allow_blank
                and not field.read_only and schema.get("type") == "string"):
            schema.setdefault("minLength", 1)
        return schema

    def get_description(self):
        # TenantScopedMixin's docstring is for developers; it would otherwise describe every
        # operation of a view that has none of its own.
        description = super().get_description()
        if description and description == get_doc(TenantScopedMixin):
            return ""
        return description
