"""SubjectAccessReview, SelfSubjectAccessReview and LocalSubjectAccessReview
(`authorization.k8s.io/v1`, `pkg/registry/authorization/*`): nothing is stored, the answer is
the authorizer's decision (`rbac.py`) for the attributes in the spec: `allowed`, and the
`reason` RBAC gives (which binding allowed it, or which role it could not find). RBAC never
denies outright, so `denied` is never set. Validated as the real server validates them (422).

SubjectAccessReview names its subject in the spec (user, groups; `extra` and `uid` are
accepted and not used); SelfSubjectAccessReview asks for the caller (after impersonation);
LocalSubjectAccessReview is SubjectAccessReview confined to the namespace in its URL. Field
and label selector attributes are accepted and ignored, as by an authorizer that does not
read them.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .authn import User
from .policy import AUTHZ_GROUP
from .rbac import Attributes, Authorizer
from .registry import Registry, ResourceType
from .validation import FieldError, dns1123_subdomain, invalid

Obj = dict[str, Any]
AUTHZ_API_VERSION = f"{AUTHZ_GROUP}/v1"



class AccessReviewHandler:
    """`create` of SubjectAccessReview (the spec names the user), SelfSubjectAccessReview (the
    caller) and LocalSubjectAccessReview (namespaced; the spec's namespace must match)."""

    def __init__(self, kind: str, authorizer: Authorizer):
        self.kind = kind
        self._authorizer = authorizer

    def create(self, namespace: str, name: str, body: Any) -> Obj:
        raise AssertionError("the router calls create_as: an access review needs the caller")

    def create_as(self, caller: User, namespace: str, body: Any) -> Obj:
        review = _decode(body, self.kind)
        spec = _object(review.get("spec"), "spec")
        resource_attrs = _object(spec.get("resourceAttributes"), "spec.resourceAttributes")
        non_resource_attrs = _object(spec.get("nonResourceAttributes"), "spec.nonResourceAttributes")
        if self.kind == "SelfSubjectAccessReview":
            user = caller
            spec = {key: value for key, value in spec.items() if key in ("resourceAttributes", "nonResourceAttributes")}
        else:
            groups = [group for group in spec.get("groups") or [] if isinstance(group, str)]
            user = User(str(spec.get("user") or ""), tuple(groups), uid=str(spec.get("uid") or ""))
        problems = self._validate(user, namespace, resource_attrs, non_resource_attrs)
        if problems:
            raise errors.invalid(AUTHZ_GROUP, self.kind, "", problems)
        if resource_attrs:
            text = {key: str(resource_attrs.get(key) or "") for key in
                    ("verb", "group", "version", "namespace", "resource", "subresource", "name")}  # fmt: skip
            attributes = Attributes(
                text["verb"], True, api_group=text["group"], api_version=text["version"], namespace=text["namespace"],
                resource=text["resource"], subresource=text["subresource"], name=text["name"],
            )  # fmt: skip
        else:
            attributes = Attributes(str(non_resource_attrs.get("verb") or ""), False,
                                    path=str(non_resource_attrs.get("path") or ""))  # fmt: skip
        decision = self._authorizer.authorize(user, attributes)
        status: Obj = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        metadata = {"creationTimestamp": None, **review.get("metadata", {})}
        if self.kind == "LocalSubjectAccessReview":
            metadata["namespace"] = namespace
        return {"kind": self.kind, "apiVersion": AUTHZ_API_VERSION, "metadata": metadata, "spec": spec,
                "status": status}  # fmt: skip

    def _validate(self, user: User, namespace: str, resource_attrs: Obj, non_resource_attrs: Obj) -> list[FieldError]:
        """pkg/apis/authorization/validation: the same checks, fields and messages."""
        problems: list[FieldError] = []
        if resource_attrs and non_resource_attrs:
            problems.append(invalid("spec.nonResourceAttributes", non_resource_attrs,
                                    "cannot be specified in combination with resourceAttributes"))  # fmt: skip
        if not resource_attrs and not non_resource_attrs:
            detail = "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            problems.append(invalid("spec.resourceAttributes", None, detail))
        if self.kind != "SelfSubjectAccessReview" and not user.name and not user.groups:
            problems.append(invalid("spec.user", "", "at least one of user or group must be specified"))
        if self.kind == "LocalSubjectAccessReview":
            if non_resource_attrs:
                problems.append(invalid("spec.nonResourceAttributes", non_resource_attrs,
                                        "disallowed on this kind of request"))  # fmt: skip
            if resource_attrs and (resource_attrs.get("namespace") or "") != namespace:
                problems.append(invalid("spec.resourceAttributes.namespace", resource_attrs.get("namespace") or "",
                                        "must match metadata.namespace"))  # fmt: skip
        return problems


def _object(value: Any, path: str) -> Obj:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.bad_request(f"{path} must be an object")
    return value


def _decode(body: Any, kind: str) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request is not a {kind} object")
    api_version, body_kind = body.get("apiVersion"), body.get("kind")
    if api_version not in (None, "", AUTHZ_API_VERSION):
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({AUTHZ_API_VERSION})"
        )
    if body_kind not in (None, "", kind):
        raise errors.bad_request(f"the kind in the data ({body_kind}) does not match the expected kind ({kind})")
    return {**body, "metadata": _object(body.get("metadata"), "metadata")}


def register_access_reviews(registry: Registry, authorizer: Authorizer) -> None:
    for kind, plural, namespaced in (
        ("SubjectAccessReview", "subjectaccessreviews", False),
        ("SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
        ("LocalSubjectAccessReview", "localsubjectaccessreviews", True),
    ):
        registry.register(
            ResourceType(AUTHZ_GROUP, "v1", kind, plural, namespaced, dns1123_subdomain,
                         verbs=("create",), handler=AccessReviewHandler(kind, authorizer))
        )  # fmt: skip
