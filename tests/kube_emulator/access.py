"""The API server's request filters, in their order: authentication, impersonation,
authorization; and the RBAC storages' escalation checks on writes of RBAC objects.

`KubeApi.handle` asks `admit` who a request is from before routing it (as the real filters run
before the handler), and `check_write` before a Role, ClusterRole or binding is written.
With `enabled=False` nothing is refused: the identity is the token's if it is a known one
(the admin otherwise), impersonation headers are applied unchecked, and access reviews still
answer from the RBAC objects, so a test can read decisions without having them enforced.
"""

from __future__ import annotations

import json
from typing import Any

from . import errors
from .authn import ADMIN, Authenticator, ImpersonationRequest, User, impersonation_requests
from .errors import ApiError
from .patch import MalformedPatch, PatchError, apply_patch
from .policy import RBAC_GROUP
from .rbac import Attributes, Authorizer, request_attributes
from .registry import ResourceType

_ROLE_KINDS = frozenset({"roles", "clusterroles"})
_BINDING_KINDS = frozenset({"rolebindings", "clusterrolebindings"})


class AccessControl:
    def __init__(self, authenticator: Authenticator, authorizer: Authorizer, *, enabled: bool):
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.enabled = enabled

    def attributes(self, method: str, path: str, query: dict[str, str]) -> Attributes:
        return request_attributes(method, path, query)

    def admit(self, headers: list[tuple[str, str]], attributes: Attributes) -> User:
        """The user a request acts as; raises 401 (unknown token), 400/403 (impersonation), 403."""
        authorization = _header(headers, "authorization")
        if not self.enabled:
            try:
                user = self.authenticator.authenticate(authorization) if authorization else ADMIN
            except ApiError:
                user = ADMIN
            impersonated, _ = impersonation_requests(headers)
            return impersonated or user
        user = self.authenticator.authenticate(authorization)
        impersonated, checks = impersonation_requests(headers)
        if impersonated is not None:
            for check in checks:
                self._check_impersonation(user, check)
            user = impersonated
        decision = self.authorizer.authorize(user, attributes)
        if not decision.allowed:
            raise self.authorizer.forbidden(user, attributes, decision.reason)
        return user

    def _check_impersonation(self, user: User, check: ImpersonationRequest) -> None:
        group = "authentication.k8s.io" if check.resource in ("userextras", "uids") else ""
        attributes = Attributes("impersonate", True, api_group=group, api_version="v1", namespace=check.namespace,
                                resource=check.resource, subresource=check.subresource, name=check.name)  # fmt: skip
        decision = self.authorizer.authorize(user, attributes)
        if not decision.allowed:
            raise self.authorizer.forbidden(user, attributes, decision.reason)

    def check_write(
        self, user: User, resource: ResourceType, verb: str, namespace: str, name: str, request: Any, current: Any
    ) -> None:
        """The escalation checks of the policy-based RBAC storages, on the object as it would be
        stored: the body of a create or update, `current` (the stored object, None if there is
        none) with the patch applied for a patch."""
        if not self.enabled or user.privileged or verb not in ("create", "update", "patch"):
            return
        if resource.group != RBAC_GROUP or resource.plural not in _ROLE_KINDS | _BINDING_KINDS:
            return
        try:
            obj = json.loads(request.body)
        except ValueError:
            # Fail closed: what cannot be read cannot be checked (the store refuses it too, today).
            raise errors.bad_request("the body of the request is not valid JSON") from None
        if verb == "patch":
            if current is None:
                return  # the store answers 404
            try:
                obj = apply_patch(request.content_type.split(";")[0].strip().lower(), current, obj,
                                  resource.patch_schema)  # fmt: skip
            except (MalformedPatch, PatchError):
                return  # the store meets the same error on the same patch, and answers it
        if not isinstance(obj, dict):
            return
        if current is not None and _only_gc_fields_change(current, obj):
            return  # IsOnlyMutatingGCFields: a controller releasing its finalizer needs no grant
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        obj = {**obj, "metadata": {**metadata, "name": name or metadata.get("name", "")}}
        if resource.plural in _ROLE_KINDS:
            self.authorizer.check_role_write(user, resource, namespace, name, obj)
        else:
            self.authorizer.check_binding_write(user, resource, namespace, obj)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


_GC_FIELDS = ("ownerReferences", "finalizers")
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


def _only_gc_fields_change(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether `new` differs from `current` in ownerReferences and finalizers alone."""

    def comparable(obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        metadata = {key: value for key, value in metadata.items()
                    if key not in _GC_FIELDS + _SERVER_FIELDS and value not in (None, {}, [])}  # fmt: skip
        rest = {key: value for key, value in obj.items() if key not in ("kind", "apiVersion", "metadata")}
        return {**rest, "metadata": metadata}

    return comparable(current) == comparable(new)
