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

The bootstrap roles and bindings are in `policy.py`, the access reviews in `reviews.py`.
Not emulated: the Node and Webhook authorizers, ABAC, the reconciliation of edited bootstrap
roles at restart. Updates that only change finalizers or ownerReferences skip the escalation
checks (`IsOnlyMutatingGCFields`), so a controller can release a role it could not have written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import errors
from .authn import User, split_service_account
from .errors import ApiError
from .policy import RBAC_GROUP
from .registry import Registry, ResourceType
from .selectors import LabelSelector, SelectorError, from_structured
from .store import ListOptions, Store

Obj = dict[str, Any]
FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]

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
    """NonResourceURLMatches, and nonResourceURLCovers (the same rule): exact, or a prefix ending in `*`."""
    return owner == path or (owner.endswith("*") and path.startswith(owner[:-1]))


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
    """policy_comparator.go ruleCovers: `owner` covers the broken-down rule `sub`."""

    def has_all(key: str) -> bool:
        held = _strings(owner, key)
        return "*" in held or all(item in held for item in _strings(sub, key))

    held_resources = _strings(owner, "resources")
    resources_covered = "*" in held_resources or all(
        resource in held_resources or ("/" in resource and "*/" + resource.split("/", 1)[1] in held_resources)
        for resource in _strings(sub, "resources")
    )
    urls_covered = all(
        any(_url_covers(held, url) for held in _strings(owner, "nonResourceURLs"))
        for url in _strings(sub, "nonResourceURLs")
    )
    owner_names, sub_names = _strings(owner, "resourceNames"), _strings(sub, "resourceNames")
    names_covered = not owner_names or (bool(sub_names) and all(name in owner_names for name in sub_names))
    return has_all("verbs") and has_all("apiGroups") and resources_covered and urls_covered and names_covered


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


# --- the authorizer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer:
    """Decides from the RBAC objects in `store` (read afresh for every decision)."""

    def __init__(self, registry: Registry, store: Store):
        self._store = store
        plurals = ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
        self._types = {plural: self._type(registry, plural) for plural in plurals}

    @staticmethod
    def _type(registry: Registry, plural: str) -> ResourceType:
        resource_type = registry.get(RBAC_GROUP, "v1", plural)
        if resource_type is None:
            raise ValueError(f"the registry lacks {plural}")
        return resource_type

    def _objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return self._store.list(self._types[plural], namespace, ListOptions())["items"]

    # --- rules of roles and users ---

    def _cluster_roles(self) -> dict[str, Obj]:
        return {role["metadata"]["name"]: role for role in self._objects("clusterroles")}

    def role_ref_rules(
        self, role_ref: Obj, namespace: str, cluster_roles: dict[str, Obj] | None = None
    ) -> list[Obj] | None:
        """rule.go GetRoleReferenceRules: the rules a roleRef grants; None if its role is missing.
        A ClusterRole's are its aggregated rules."""
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "ClusterRole":
            roles = cluster_roles if cluster_roles is not None else self._cluster_roles()
            role = roles.get(name)
            return None if role is None else _aggregated_rules(role, list(roles.values()), seen={name})
        if kind == "Role" and namespace:
            role = next((r for r in self._objects("roles", namespace) if r["metadata"]["name"] == name), None)
            return None if role is None else _rules(role)
        return None

    def _grants(self, user: User, namespace: str) -> Iterator[tuple[str, list[Obj] | None, str]]:
        """rule.go VisitRulesFor: (describer, rules or None, why None) for each binding that applies
        to `user`: the ClusterRoleBindings, then the RoleBindings of `namespace`."""
        cluster_roles = self._cluster_roles()
        bindings = [(binding, "") for binding in self._objects("clusterrolebindings")]
        if namespace:
            bindings += [(binding, namespace) for binding in self._objects("rolebindings", namespace)]
        for binding, binding_namespace in bindings:
            subject = _applying_subject(user, binding, binding_namespace)
            if subject is None:
                continue
            role_ref = binding.get("roleRef") or {}
            kind, name = role_ref.get("kind", ""), role_ref.get("name", "")
            if binding_namespace:
                source = f'RoleBinding "{binding["metadata"]["name"]}/{binding_namespace}"'
            else:
                source = f'ClusterRoleBinding "{binding["metadata"]["name"]}"'
            describer = f'{source} of {kind} "{name}" to {_describe(subject, binding_namespace)}'
            missing = f'{kind.lower() or "role"}.rbac.authorization.k8s.io "{name}" not found'
            yield describer, self.role_ref_rules(role_ref, binding_namespace, cluster_roles), missing

    def rules_for(self, user: User, namespace: str) -> tuple[list[Obj], list[str]]:
        """rule.go RulesFor: every rule the user holds in `namespace` (cluster-wide ones included),
        and the resolution errors."""
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
            held, _ = self.rules_for(user, namespace)
            if uncovered(held, FULL_AUTHORITY):
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
        rules = self.role_ref_rules(role_ref, namespace)
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


def _rules(role: Obj) -> list[Obj]:
    return [rule for rule in role.get("rules") or [] if isinstance(rule, dict)]


def _aggregated_rules(role: Obj, roles: list[Obj], seen: set[str]) -> list[Obj]:
    """A ClusterRole's rules and, through its aggregationRule, those of every ClusterRole its
    selectors match (transitively, as the aggregation controller's repeated passes make it)."""
    rules = _rules(role)
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
            rules += [rule for rule in _aggregated_rules(other, roles, seen) if rule not in rules]
    return rules


def _label_selector(selector: Any) -> LabelSelector | None:
    """A clusterRoleSelector; an empty one selects every ClusterRole, as LabelSelectorAsSelector does."""
    if not isinstance(selector, dict):
        return None
    try:
        return from_structured(selector)
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
