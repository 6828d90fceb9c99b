"""RBAC authorization, as kube-apiserver's authorizer decides it, from the stored RBAC objects.

Followed closely (the Go sources named are kubernetes/kubernetes'):

- request attributes from the URL (`apiserver/pkg/endpoints/request/requestinfo.go`): a
  resource request under /api/<v>/ or /apis/<g>/<v>/, with verb (get, list, watch, create,
  update, patch, delete, deletecollection), API group, namespace, resource, subresource and
  name (a list's name from `fieldSelector=metadata.name=...`); anything else is a
  non-resource request, its verb the lowercased HTTP method and its path the URL path.
- `system:masters` is allowed everything, before RBAC (the privileged-groups authorizer).
- RBAC (`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/registry/rbac/validation/rule.go`):
  ClusterRoleBindings, then the RoleBindings of the request's namespace; a binding applies to
  a User by name, a Group the user is in, or a ServiceAccount (its namespace defaulting to
  the RoleBinding's). A rule allows when verbs (or `*`), apiGroups (or `*`), resources (`*`,
  exact `pods/log`, or `*/status` for any status subresource) and resourceNames (none = all)
  match; nonResourceURLs match exactly or by a trailing `*`. A binding to a missing role
  grants nothing and says so in the reason (`RBAC: clusterrole.rbac.authorization.k8s.io
  "x" not found`). A ClusterRole with an `aggregationRule` has the rules of every ClusterRole
  its selectors match (computed when evaluated; the stored object's `rules` stay as written,
  as the aggregation controller does not run).
- escalation prevention (`pkg/registry/rbac/escalation_check.go`, `.../validation/
  policy_comparator.go`, the policy-based Role/Binding storages): writing a Role or
  ClusterRole needs every rule in it to be held already, unless the writer may `escalate`
  that role (or is in system:masters); setting an aggregationRule needs full authority;
  writing a binding needs the referenced role's rules to be held, unless the writer may
  `bind` it. The 403 lists the missing rules as the real server does.
- the bootstrap policy a client relies on: `system:discovery`, `system:basic-user` and
  `system:public-info-viewer` bound to authenticated users, `cluster-admin` to system:masters,
  and `system:aggregate-to-{admin,edit,view}` carrying the rules of the admin/edit/view roles
  (for the resources this emulator serves and their usual neighbours).
- SubjectAccessReview, SelfSubjectAccessReview and LocalSubjectAccessReview
  (`authorization.k8s.io/v1`), answered by the same decision: `allowed`, and a `reason`.

Not emulated: the Node and Webhook authorizers, SelfSubjectRulesReview, ABAC, the
RBAC-bootstrap reconciliation of edited system roles, field and label selector attributes of
SubjectAccessReview (accepted, not used in the decision).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import errors
from .authn import AUTHENTICATED, MASTERS, UNAUTHENTICATED, User, split_service_account
from .errors import ApiError
from .registry import Registry, ResourceType
from .selectors import parse_label_selector, SelectorError
from .store import ListOptions, Store
from .validation import FieldError, dns1123_subdomain, invalid

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHZ_GROUP = "authorization.k8s.io"
AUTHZ_API_VERSION = f"{AUTHZ_GROUP}/v1"

# requestinfo.go: the namespace subresources that are not namespaced resources.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes: what a request asks to do."""

    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(method: str, path: str, query: dict[str, str]) -> Attributes:
    """requestinfo.go's RequestInfoFactory, for the /api and /apis prefixes."""
    parts = [unquote(part) for part in path.split("/") if part]
    non_resource = Attributes(verb=method.lower(), resource_request=False, path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    verb = _METHOD_VERBS.get(method.upper(), method.lower())
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() not in ("", "0", "false") else "list"
        for term in query.get("fieldSelector", "").split(","):
            key, operator, value = _field_term(term)
            if key == "metadata.name" and operator in ("=", "==") and value and "/" not in value:
                name = value
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, True, path, group, version, namespace, resource, subresource, name)


def _field_term(term: str) -> tuple[str, str, str]:
    for operator in ("!=", "==", "="):
        if operator in term:
            key, _, value = term.partition(operator)
            return key.strip(), operator, value.strip()
    return "", "", ""


# --- rules -------------------------------------------------------------------------------------


def _strings(rule: Obj, key: str) -> list[str]:
    value = rule.get(key) or []
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def rule_allows(attributes: Attributes, rule: Obj) -> bool:
    verbs = _strings(rule, "verbs")
    if "*" not in verbs and attributes.verb not in verbs:
        return False
    if not attributes.resource_request:
        return any(_url_covers(url, attributes.path) for url in _strings(rule, "nonResourceURLs"))
    groups = _strings(rule, "apiGroups")
    if "*" not in groups and attributes.api_group not in groups:
        return False
    if not _resource_matches(_strings(rule, "resources"), attributes.combined_resource, attributes.subresource):
        return False
    names = _strings(rule, "resourceNames")
    return not names or attributes.name in names


def _resource_matches(rule_resources: list[str], combined: str, subresource: str) -> bool:
    for resource in rule_resources:
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _url_covers(owner: str, path: str) -> bool:
    return owner in ("*", path) or (owner.endswith("*") and path.startswith(owner.rstrip("*")))


def breakdown(rule: Obj) -> list[Obj]:
    """policy_comparator.go BreakdownRule: one verb, group, resource and name per rule."""
    rules: list[Obj] = []
    names = _strings(rule, "resourceNames")
    for group in _strings(rule, "apiGroups"):
        for resource in _strings(rule, "resources"):
            for verb in _strings(rule, "verbs"):
                base = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                rules += [{**base, "resourceNames": [name]} for name in names] if names else [base]
    for url in _strings(rule, "nonResourceURLs"):
        rules += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in _strings(rule, "verbs")]
    return rules


def _rule_covers(owner: Obj, sub: Obj) -> bool:
    def has_all(key: str, star: str | None = "*") -> bool:
        held = _strings(owner, key)
        return (star is not None and star in held) or all(item in held for item in _strings(sub, key))

    held_resources = _strings(owner, "resources")
    resources_covered = "*" in held_resources or all(
        resource in held_resources or ("/" in resource and "*/" + resource.split("/", 1)[1] in held_resources)
        for resource in _strings(sub, "resources")
    )
    urls_covered = all(
        any(_url_covers_strict(held, url) for held in _strings(owner, "nonResourceURLs"))
        for url in _strings(sub, "nonResourceURLs")
    )
    owner_names, sub_names = _strings(owner, "resourceNames"), _strings(sub, "resourceNames")
    names_covered = not owner_names or (bool(sub_names) and all(name in owner_names for name in sub_names))
    return has_all("verbs") and has_all("apiGroups") and resources_covered and urls_covered and names_covered


def _url_covers_strict(owner: str, path: str) -> bool:
    return owner == path or (owner.endswith("*") and path.startswith(owner.rstrip("*")))


def uncovered(owner_rules: list[Obj], rules: list[Obj]) -> list[Obj]:
    """The broken-down rules of `rules` that no owner rule covers (policy_comparator.go Covers)."""
    return [
        sub for rule in rules for sub in breakdown(rule) if not any(_rule_covers(owner, sub) for owner in owner_rules)
    ]


def _go_strings(values: list[str]) -> str:
    return "[" + " ".join(json.dumps(value) for value in values) + "]"


def compact_string(rule: Obj) -> str:
    """rbacv1helpers.CompactString: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`."""
    parts = [
        f"{label}:{_go_strings(_strings(rule, key))}"
        for label, key in (
            ("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
            ("ResourceNames", "resourceNames"), ("Verbs", "verbs"),
        )  # fmt: skip
        if _strings(rule, key)
    ]
    return "{" + ", ".join(parts) + "}"


def compact(rules: list[Obj]) -> list[Obj]:
    """validation.CompactRules: simple rules on one group and resource merge their verbs."""
    merged: dict[tuple[str, str], Obj] = {}
    result: list[Obj] = []
    for rule in rules:
        simple = (
            len(_strings(rule, "apiGroups")) == 1 and len(_strings(rule, "resources")) == 1
            and not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        )  # fmt: skip
        if not simple:
            result.append(rule)
            continue
        key = (rule["apiGroups"][0], rule["resources"][0])
        if key in merged:
            merged[key]["verbs"] += [verb for verb in rule["verbs"] if verb not in merged[key]["verbs"]]
        else:
            merged[key] = copy.deepcopy(rule)
            result.append(merged[key])
    return result


# --- the bootstrap policy ----------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_BOOTSTRAP = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _rule(verbs: list[str], groups: list[str], resources: list[str]) -> Obj:
    return {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}


def _cluster_role(name: str, rules: list[Obj], labels: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": {**_BOOTSTRAP, **(labels or {})}, "annotations": dict(_AUTOUPDATE)},
            "rules": rules}  # fmt: skip


def _aggregate_to(*roles: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true" for role in roles}


BOOTSTRAP_CLUSTER_ROLES: tuple[Obj, ...] = (
    _cluster_role("system:discovery", [{"verbs": ["get"], "nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
        "/version", "/version/",
    ]}]),  # fmt: skip
    _cluster_role("system:public-info-viewer", [{"verbs": ["get"], "nonResourceURLs": [
        "/healthz", "/livez", "/readyz", "/version", "/version/",
    ]}]),  # fmt: skip
    _cluster_role("system:basic-user", [
        _rule(["create"], [AUTHZ_GROUP], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
    ]),  # fmt: skip
    # bootstrappolicy/policy.go; the aggregate-to-view rules also reach edit and admin, and
    # the aggregate-to-edit ones admin, as the labels on the real edit and view roles make them.
    _cluster_role("system:aggregate-to-admin", [
        _rule(["create"], [AUTHZ_GROUP], ["localsubjectaccessreviews"]),
        _rule(_READ + _WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ], _aggregate_to("admin")),  # fmt: skip
    _cluster_role("system:aggregate-to-edit", [
        _rule(_READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(_WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(_WRITE, [""], ["replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                             "services", "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(_WRITE, ["apps"], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
                                 "deployments/rollback", "replicasets", "replicasets/scale"]),
        _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(_WRITE, ["batch"], ["jobs", "cronjobs"]),
        _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(_WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
        _rule(_READ + _WRITE, ["coordination.k8s.io"], ["leases"]),
    ], _aggregate_to("admin", "edit")),  # fmt: skip
    _cluster_role("system:aggregate-to-view", [
        _rule(_READ, [""], ["pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                            "services", "services/status", "endpoints", "persistentvolumeclaims",
                            "persistentvolumeclaims/status", "configmaps"]),
        _rule(_READ, [""], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                            "resourcequotas/status", "namespaces/status", "replicationcontrollers/status", "pods/log"]),
        _rule(_READ, [""], ["namespaces"]),
        _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(_READ, ["apps"], ["controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
                                "daemonsets", "daemonsets/status", "deployments", "deployments/status",
                                "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"]),
        _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(_READ, ["batch"], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
        _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(_READ, ["networking.k8s.io"], ["networkpolicies", "ingresses", "ingresses/status"]),
    ], _aggregate_to("admin", "edit", "view")),  # fmt: skip
)


def _cluster_role_binding(name: str, role: str, groups: list[str]) -> Obj:
    return {
        "metadata": {"name": name, "labels": dict(_BOOTSTRAP), "annotations": dict(_AUTOUPDATE)},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": group} for group in groups],
    }


BOOTSTRAP_CLUSTER_ROLE_BINDINGS: tuple[Obj, ...] = (
    _cluster_role_binding("cluster-admin", "cluster-admin", [MASTERS]),
    _cluster_role_binding("system:discovery", "system:discovery", [AUTHENTICATED]),
    _cluster_role_binding("system:basic-user", "system:basic-user", [AUTHENTICATED]),
    _cluster_role_binding("system:public-info-viewer", "system:public-info-viewer", [AUTHENTICATED, UNAUTHENTICATED]),
)


# --- the authorizer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer:
    """Decides from the RBAC objects in `store` (read afresh for every decision)."""

    def __init__(self, registry: Registry, store: Store):
        self._store = store
        self._types = {
            plural: self._type(registry, plural) for plural in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
        }

    @staticmethod
    def _type(registry: Registry, plural: str) -> ResourceType:
        resource_type = registry.get(RBAC_GROUP, "v1", plural)
        if resource_type is None:
            raise ValueError(f"the registry lacks {plural}")
        return resource_type

    def _objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return self._store.list(self._types[plural], namespace, ListOptions())["items"]

    # --- rules of roles and users ---

    def _cluster_role_rules(self, name: str, cluster_roles: list[Obj] | None = None) -> list[Obj] | None:
        roles = cluster_roles if cluster_roles is not None else self._objects("clusterroles")
        by_name = {role["metadata"]["name"]: role for role in roles}
        role = by_name.get(name)
        if role is None:
            return None
        return self._effective_rules(role, roles, seen={name})

    def _effective_rules(self, role: Obj, roles: list[Obj], seen: set[str]) -> list[Obj]:
        rules = [rule for rule in role.get("rules") or [] if isinstance(rule, dict)]
        aggregation = role.get("aggregationRule")
        if not isinstance(aggregation, dict):
            return rules
        for selector in aggregation.get("clusterRoleSelectors") or []:
            matcher = _label_selector(selector)
            if matcher is None:
                continue
            for other in roles:
                other_name = other["metadata"]["name"]
                if other_name in seen or not matcher.matches(other["metadata"].get("labels")):
                    continue
                seen.add(other_name)
                rules += [rule for rule in self._effective_rules(other, roles, seen) if rule not in rules]
        return rules

    def role_ref_rules(self, role_ref: Obj, namespace: str) -> tuple[list[Obj] | None, str]:
        """The rules a roleRef grants (None if the role is missing) and how messages name it."""
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "ClusterRole":
            return self._cluster_role_rules(name), f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        if kind == "Role" and namespace:
            for role in self._objects("roles", namespace):
                if role["metadata"]["name"] == name:
                    return [r for r in role.get("rules") or [] if isinstance(r, dict)], ""
        return None, f'role.rbac.authorization.k8s.io "{name}" not found'

    def _grants(self, user: User, namespace: str) -> Iterable[tuple[str, list[Obj] | None, str]]:
        """(describer, rules or None, missing-role error) for each binding that applies to `user`."""
        cluster_roles = self._objects("clusterroles")
        for binding in self._objects("clusterrolebindings"):
            subject = _applying_subject(user, binding, "")
            if subject is None:
                continue
            role_ref = binding.get("roleRef") or {}
            rules = self._cluster_role_rules(role_ref.get("name", ""), cluster_roles)
            describer = (f'ClusterRoleBinding "{binding["metadata"]["name"]}" of ClusterRole '
                         f'"{role_ref.get("name", "")}" to {_describe(subject)}')  # fmt: skip
            yield describer, rules, f'clusterrole.rbac.authorization.k8s.io "{role_ref.get("name", "")}" not found'
        if not namespace:
            return
        roles = {role["metadata"]["name"]: role for role in self._objects("roles", namespace)}
        for binding in self._objects("rolebindings", namespace):
            subject = _applying_subject(user, binding, namespace)
            if subject is None:
                continue
            role_ref = binding.get("roleRef") or {}
            kind, name = role_ref.get("kind", ""), role_ref.get("name", "")
            if kind == "ClusterRole":
                rules = self._cluster_role_rules(name, cluster_roles)
                missing = f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
            else:
                role = roles.get(name)
                rules = [r for r in role.get("rules") or [] if isinstance(r, dict)] if role is not None else None
                missing = f'role.rbac.authorization.k8s.io "{name}" not found'
            describer = f'RoleBinding "{binding["metadata"]["name"]}/{namespace}" of {kind} "{name}" to {_describe(subject, namespace)}'
            yield describer, rules, missing

    def rules_for(self, user: User, namespace: str) -> tuple[list[Obj], list[str]]:
        """Every rule the user holds in `namespace` (cluster-wide ones included), and resolution errors."""
        rules: list[Obj] = []
        problems: list[str] = []
        for _, granted, missing in self._grants(user, namespace):
            if granted is None:
                problems.append(missing)
            else:
                rules += granted
        return rules, problems

    # --- decisions ---

    def authorize(self, user: User, attributes: Attributes) -> Decision:
        if user.privileged:
            return Decision(True)
        problems: list[str] = []
        for describer, rules, missing in self._grants(user, attributes.namespace):
            if rules is None:
                problems.append(missing)
                continue
            if any(rule_allows(attributes, rule) for rule in rules):
                return Decision(True, f"RBAC: allowed by {describer}")
        if not problems:
            return Decision(False)
        return Decision(False, "RBAC: " + (problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"))

    def forbidden(self, user: User, attributes: Attributes, reason: str = "") -> ApiError:
        """responsewriters.Forbidden: the 403 of a request the authorizer did not allow."""
        message = forbidden_message(user, attributes)
        if reason:
            message = f"{message}: {reason}"
        if not attributes.resource_request:
            return ApiError(403, "Forbidden", f"forbidden: {message}", {})
        return errors.forbidden(attributes.api_group, attributes.resource, attributes.name, message)

    # --- escalation ---

    def check_role_write(self, user: User, resource: ResourceType, namespace: str, url_name: str, obj: Obj) -> None:
        """A Role or ClusterRole may be written only with rules the writer holds, unless the writer
        may `escalate` (checked on the URL's name, so a create's is empty, as in the real server)."""
        name = (obj.get("metadata") or {}).get("name", "")
        if user.privileged or self._may(user, "escalate", resource, namespace, url_name):
            return
        rules = [rule for rule in obj.get("rules") or [] if isinstance(rule, dict)]
        self._confirm_no_escalation(user, resource, namespace, name, rules)
        if resource.plural == "clusterroles" and obj.get("aggregationRule"):
            full = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]
            held, _ = self.rules_for(user, namespace)
            if uncovered(held, full):
                raise errors.forbidden(RBAC_GROUP, resource.plural, name,
                                       "must have cluster-admin privileges to use the aggregationRule")  # fmt: skip

    def check_binding_write(self, user: User, resource: ResourceType, namespace: str, obj: Obj) -> None:
        """A binding may be written only if the writer may `bind` its role or holds all its rules."""
        name = (obj.get("metadata") or {}).get("name", "")
        role_ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
        if user.privileged:
            return
        kind = role_ref.get("kind", "")
        role_resource = {"ClusterRole": "clusterroles", "Role": "roles"}.get(kind)
        if role_resource is not None and role_ref.get("apiGroup", RBAC_GROUP) in ("", RBAC_GROUP):
            bind = Attributes("bind", True, api_group=RBAC_GROUP, api_version="v1", namespace=namespace,
                              resource=role_resource, name=role_ref.get("name", ""))  # fmt: skip
            if self.authorize(user, bind).allowed:
                return
        rules, _ = self.role_ref_rules(role_ref, namespace)
        if rules is None:  # the registry's lookup, not the authorizer's lister: a plural in the 404
            raise errors.not_found(RBAC_GROUP, role_resource or "roles", role_ref.get("name", ""))
        self._confirm_no_escalation(user, resource, namespace, name, rules)

    def _may(self, user: User, verb: str, resource: ResourceType, namespace: str, name: str) -> bool:
        attributes = Attributes(verb, True, api_group=resource.group, api_version=resource.version,
                                namespace=namespace, resource=resource.plural, name=name)  # fmt: skip
        return self.authorize(user, attributes).allowed

    def _confirm_no_escalation(self, user: User, resource: ResourceType, namespace: str, name: str,
                               rules: list[Obj]) -> None:  # fmt: skip
        held, problems = self.rules_for(user, namespace)
        missing = uncovered(held, rules)
        if not missing:
            return
        descriptions = sorted({compact_string(rule) for rule in compact(missing)})
        message = (f'user "{user.name}" (groups={_go_strings(list(user.groups))}) is attempting to grant RBAC '
                   "permissions not currently held:\n" + "\n".join(descriptions))  # fmt: skip
        if problems:
            message += f"; resolution errors: [{', '.join(problems)}]"
        raise errors.forbidden(resource.group, resource.plural, name, message)


def forbidden_message(user: User, attributes: Attributes) -> str:
    """responsewriters.forbiddenMessage."""
    if not attributes.resource_request:
        return f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    where = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
    return (f'User "{user.name}" cannot {attributes.verb} resource "{attributes.combined_resource}" '
            f'in API group "{attributes.api_group}" {where}')  # fmt: skip


def _label_selector(selector: Any):
    if not isinstance(selector, dict):
        return None
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key", ""), expression.get("operator", ""), expression.get("values") or []
        if operator == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    if not terms:
        return None  # an empty selector in an aggregationRule selects nothing
    try:
        return parse_label_selector(",".join(terms))
    except SelectorError:
        return None


def _applying_subject(user: User, binding: Obj, namespace: str) -> Obj | None:
    for subject in binding.get("subjects") or []:
        if not isinstance(subject, dict):
            continue
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "User" and name == user.name:
            return subject
        if kind == "Group" and name in user.groups:
            return subject
        if kind == "ServiceAccount":
            account_namespace = subject.get("namespace") or namespace
            if account_namespace and split_service_account(user.name) == (account_namespace, name):
                return subject
    return None


def _describe(subject: Obj, binding_namespace: str = "") -> str:
    """rule.go's describeSubject: `User "alice"`, `Group "g"`, `ServiceAccount "name/ns"`."""
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name", "")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind")} "{subject.get("name", "")}"'


# --- SubjectAccessReview and its kin -----------------------------------------------------------


class AccessReviewHandler:
    """`create` of SubjectAccessReview (the spec names the user), SelfSubjectAccessReview (the
    caller) and LocalSubjectAccessReview (namespaced; the spec's namespace must match)."""

    def __init__(self, kind: str, authorizer: Authorizer):
        self.kind = kind
        self._authorizer = authorizer

    def create(self, namespace: str, name: str, body: Any) -> Obj:
        raise AssertionError("access reviews are answered with the caller's identity (create_as)")

    def create_as(self, caller: User, namespace: str, body: Any) -> Obj:
        review = _decode(body, self.kind)
        spec = review.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        resource_attrs, non_resource_attrs = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        problems: list[FieldError] = []
        if self.kind == "SelfSubjectAccessReview":
            user = caller
            spec = {key: value for key, value in spec.items() if key in ("resourceAttributes", "nonResourceAttributes")}
        else:
            groups = [g for g in spec.get("groups") or [] if isinstance(g, str)]
            user = User(str(spec.get("user") or ""), tuple(groups), uid=str(spec.get("uid") or ""))
            if not user.name and not groups:
                problems.append(invalid("spec.user", "", "at least one of user or group must be specified"))
        # pkg/apis/authorization/validation: the same checks, fields and messages.
        if resource_attrs and non_resource_attrs:
            problems.append(invalid("spec.nonResourceAttributes", non_resource_attrs,
                                    "cannot be specified in combination with resourceAttributes"))  # fmt: skip
        if not resource_attrs and not non_resource_attrs:
            problems.append(invalid("spec.resourceAttributes", None,
                                    "exactly one of nonResourceAttributes or resourceAttributes must be specified"))  # fmt: skip
        if self.kind == "LocalSubjectAccessReview":
            if not resource_attrs and non_resource_attrs:
                problems.append(invalid("spec.nonResourceAttributes", non_resource_attrs,
                                        "disallowed on this kind of request"))
            elif resource_attrs and (resource_attrs.get("namespace") or "") != namespace:
                problems.append(invalid("spec.resourceAttributes.namespace", resource_attrs.get("namespace") or "",
                                        "must match metadata.namespace"))
        if problems:
            raise errors.invalid(AUTHZ_GROUP, self.kind, "", problems)
        if resource_attrs:
            if not isinstance(resource_attrs, dict):
                raise errors.bad_request("spec.resourceAttributes must be an object")
            attributes = Attributes(
                verb=str(resource_attrs.get("verb") or ""), resource_request=True,
                api_group=str(resource_attrs.get("group") or ""), api_version=str(resource_attrs.get("version") or ""),
                namespace=str(resource_attrs.get("namespace") or ""), resource=str(resource_attrs.get("resource") or ""),
                subresource=str(resource_attrs.get("subresource") or ""), name=str(resource_attrs.get("name") or ""),
            )  # fmt: skip
        else:
            if not isinstance(non_resource_attrs, dict):
                raise errors.bad_request("spec.nonResourceAttributes must be an object")
            attributes = Attributes(verb=str(non_resource_attrs.get("verb") or ""), resource_request=False,
                                    path=str(non_resource_attrs.get("path") or ""))  # fmt: skip
        decision = self._authorizer.authorize(user, attributes)
        status: Obj = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        metadata = dict(review.get("metadata") or {})
        if self.kind == "LocalSubjectAccessReview":
            metadata["namespace"] = namespace
        metadata.setdefault("creationTimestamp", None)
        return {"kind": self.kind, "apiVersion": AUTHZ_API_VERSION, "metadata": metadata, "spec": spec, "status": status}


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
    if not isinstance(body.get("metadata") or {}, dict):
        raise errors.bad_request("metadata must be an object")
    return body


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
