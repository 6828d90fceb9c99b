"""The RBAC bootstrap policy that every fresh emulated cluster has (kube-apiserver's
`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`), as far as a client relies on it:

- `system:discovery` (the discovery and `/openapi` URLs) and `system:basic-user` (self access
  reviews) bound to `system:authenticated`; `system:public-info-viewer` (`/version`, health)
  to authenticated and unauthenticated alike; `cluster-admin` to `system:masters`;
- `system:aggregate-to-{admin,edit,view}`, whose rules the aggregated `admin`, `edit` and `view`
  ClusterRoles gather (for the resources this emulator serves and their usual neighbours). The
  real `edit` and `view` roles carry labels that aggregate them into `admin` and `edit`; here
  the aggregate-to-view and -edit roles carry those labels themselves, to the same effect.

The many controller and node roles (`system:controller:*`, `system:node`) are not seeded.
"""

from __future__ import annotations

from typing import Any

from .authn import AUTHENTICATED, MASTERS, UNAUTHENTICATED

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHZ_GROUP = "authorization.k8s.io"

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
    _cluster_role("system:aggregate-to-admin", [
        _rule(["create"], [AUTHZ_GROUP], ["localsubjectaccessreviews"]),
        _rule(_READ + _WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ], _aggregate_to("admin")),  # fmt: skip
    _cluster_role("system:aggregate-to-edit", [
        _rule(_READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(_WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(_WRITE, [""], ["replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                             "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"]),
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
