"""The resource types the emulator serves: one `ResourceType` per (group, version, plural).

Everything type-specific lives here or in the type's `Strategy`: the store, the router and
discovery are generic over this table. New kinds (custom resources registered by a CRD, say)
are added by registering a `ResourceType` on an emulator's `Registry`.

Most types are kept by the store. A type with a `Handler` is served by it instead, as the
real API server does with its custom REST storages: kinds computed rather than kept
(TokenReview), and `Subresource`s such as `serviceaccounts/token`, a verb on one object of
a parent type that takes and answers an object of another kind (TokenRequest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from . import strategies as s
from . import validation
from .patch import Node
from .selectors import FieldGetter
from .validation import NameValidator

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _path(*keys: str) -> FieldGetter:
    def get(obj: dict[str, Any]) -> Any:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return get


_METADATA_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}


# Strategic-merge tags of the Go types (`patchStrategy:"merge"`, `patchMergeKey`). Lists not
# named here are replaced by a patch, as on the real server.
OBJECT_META = Node({"finalizers": Node(merge_set=True), "ownerReferences": Node(merge_key="uid")})
_CONTAINER = Node(
    {
        "env": Node(merge_key="name"),
        "ports": Node(merge_key="containerPort"),
        "volumeMounts": Node(merge_key="mountPath"),
        "volumeDevices": Node(merge_key="devicePath"),
    }
)
_POD_SPEC = Node(
    {
        "containers": Node(_CONTAINER.fields, merge_key="name"),
        "initContainers": Node(_CONTAINER.fields, merge_key="name"),
        "ephemeralContainers": Node(_CONTAINER.fields, merge_key="name"),
        "volumes": Node(merge_key="name"),
        "imagePullSecrets": Node(merge_key="name"),
        "hostAliases": Node(merge_key="ip"),
        "schedulingGates": Node(merge_key="name"),
        "resourceClaims": Node(merge_key="name"),
    }
)
_WITH_POD_TEMPLATE = Node(
    {"metadata": OBJECT_META, "spec": Node({"template": Node({"metadata": OBJECT_META, "spec": _POD_SPEC})})}
)
METADATA_ONLY = Node({"metadata": OBJECT_META})


def _with_metadata(**fields: Node) -> Node:
    return Node({"metadata": OBJECT_META, **fields})


class Handler(Protocol):
    """Serves a type instead of the store. Only `create` so far, the one verb of every such type
    Pier uses; the router refuses the others (405) from the type's `verbs`."""

    def create(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """The answer to a create (201). `name` is the parent object's, for a subresource."""
        ...


@dataclass(frozen=True, eq=False)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    validate_name: NameValidator
    strategy: s.Strategy = field(default_factory=s.Strategy)
    patch_schema: Node = METADATA_ONLY  # strategic-merge tags; the default suits kinds without tagged lists
    short_names: tuple[str, ...] = ()
    tracks_generation: bool = False  # metadata.generation: 1 on create, +1 when the spec changes
    has_status: bool = False  # status is server-owned: cleared on create, kept on update
    create_on_update: bool = False  # PUT of a missing object creates it (RBAC, LimitRange)
    # DELETE answers with the object instead of a Status (the client's delete_* return types say which).
    return_deleted_object: bool = False
    extra_field_selectors: dict[str, FieldGetter] = field(default_factory=dict)
    verbs: tuple[str, ...] = ALL_VERBS
    handler: Handler | None = None  # serves the type instead of the store: nothing is kept
    singular: str = ""  # discovery's singularName; the lowercased kind when empty
    categories: tuple[str, ...] = ()
    strategic_merge: bool = True  # custom resources refuse strategic merge patches (415)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """`roles.rbac.authorization.k8s.io`: the group-resource, unique per type."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_selectors(self) -> dict[str, FieldGetter]:
        return _METADATA_FIELDS | self.extra_field_selectors

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


@dataclass(frozen=True, eq=False)
class Subresource:
    """`<parent plural>/<name>` (`serviceaccounts/token`): served on one object of the parent type,
    at `.../<plural>/<object name>/<name>`, taking and answering an object of its own kind."""

    parent: ResourceType
    name: str
    group: str  # of the kind it takes and answers, which need not be the parent's
    version: str
    kind: str
    handler: Handler | None  # None only for `status`, which the store serves
    verbs: tuple[str, ...] = ("create",)

    @property
    def is_status(self) -> bool:
        """`<plural>/status` without a handler: the store serves it, writing only `.status`."""
        return self.name == "status" and self.handler is None

    @property
    def resource(self) -> str:
        """`serviceaccounts/token`: how RBAC, request counts and faults name it."""
        return f"{self.parent.plural}/{self.name}"

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "name": self.resource,
            "singularName": "",
            "namespaced": self.parent.namespaced,
            "group": self.group,
            "version": self.version,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }


class Registry:
    """The served types, looked up by URL parts."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._subresources: dict[tuple[ResourceType, str], Subresource] = {}

    def register(self, resource_type: ResourceType) -> None:
        key = (resource_type.group, resource_type.version, resource_type.plural)
        if key in self._types:
            raise ValueError(f"{resource_type.key}/{resource_type.version} is already registered")
        self._types[key] = resource_type

    def register_subresource(self, subresource: Subresource) -> None:
        parent = subresource.parent
        if self._types.get((parent.group, parent.version, parent.plural)) is not parent:
            raise ValueError(f"the parent of {subresource.resource} is not registered")
        key = (parent, subresource.name)
        if key in self._subresources:
            raise ValueError(f"{subresource.resource} is already registered")
        self._subresources[key] = subresource

    def unregister(self, resource_type: ResourceType) -> None:
        """Stop serving a type and its subresources (a deleted or changed CRD's versions)."""
        key = (resource_type.group, resource_type.version, resource_type.plural)
        if self._types.get(key) is resource_type:
            del self._types[key]
        for sub_key in [sub_key for sub_key in self._subresources if sub_key[0] is resource_type]:
            del self._subresources[sub_key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def subresource(self, parent: ResourceType, name: str) -> Subresource | None:
        return self._subresources.get((parent, name))

    def subresources(self, parent: ResourceType) -> list[Subresource]:
        return [subresource for (owner, _), subresource in list(self._subresources.items()) if owner is parent]

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group → its versions, in registration order (the first is the preferred one)."""
        groups: dict[str, list[str]] = {}
        for group, version, _ in list(self._types):  # CRDs change the table while others read it
            versions = groups.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return groups


def builtin_registry() -> Registry:
    """A fresh registry of the built-in types Pier uses (each emulator gets its own)."""
    subdomain, label, rbac_name = validation.dns1123_subdomain, validation.dns1123_label, validation.path_segment_name
    rbac = s.RBAC_GROUP
    registry = Registry()
    for resource_type in (
        ResourceType(
            "", "v1", "Namespace", "namespaces", False, label,
            strategy=s.NamespaceStrategy(), short_names=("ns",), has_status=True,
            return_deleted_object=True, extra_field_selectors={"status.phase": _path("status", "phase")},
            verbs=tuple(verb for verb in ALL_VERBS if verb != "deletecollection"),
        ),
        ResourceType(
            "", "v1", "ServiceAccount", "serviceaccounts", True, subdomain,
            patch_schema=_with_metadata(secrets=Node(merge_key="name")), short_names=("sa",),
            return_deleted_object=True,
        ),
        ResourceType(
            "", "v1", "Secret", "secrets", True, subdomain,
            strategy=s.SecretStrategy(),
            extra_field_selectors={"type": _path("type")},
        ),
        ResourceType(
            "", "v1", "ConfigMap", "configmaps", True, subdomain,
            strategy=s.ConfigMapStrategy(), short_names=("cm",),
        ),
        ResourceType(
            "", "v1", "ResourceQuota", "resourcequotas", True, subdomain,
            strategy=s.ResourceQuotaStrategy(), short_names=("quota",), has_status=True,
            return_deleted_object=True,
        ),
        ResourceType(
            "", "v1", "LimitRange", "limitranges", True, subdomain,
            strategy=s.LimitRangeStrategy(), short_names=("limits",),
            create_on_update=True,
        ),
        ResourceType(
            "", "v1", "Pod", "pods", True, subdomain,
            strategy=s.PodStrategy(), patch_schema=_with_metadata(spec=_POD_SPEC), short_names=("po",),
            has_status=True, return_deleted_object=True,
            extra_field_selectors={
                "status.phase": _path("status", "phase"), "spec.nodeName": _path("spec", "nodeName"),
            },
        ),
        ResourceType(
            rbac, "v1", "Role", "roles", True, rbac_name,
            strategy=s.RoleStrategy(namespaced=True), create_on_update=True,
        ),
        ResourceType(
            rbac, "v1", "RoleBinding", "rolebindings", True, rbac_name,
            strategy=s.RoleBindingStrategy(namespaced=True), create_on_update=True,
        ),
        ResourceType(
            rbac, "v1", "ClusterRole", "clusterroles", False, rbac_name,
            strategy=s.RoleStrategy(namespaced=False), create_on_update=True,
        ),
        ResourceType(
            rbac, "v1", "ClusterRoleBinding", "clusterrolebindings", False, rbac_name,
            strategy=s.RoleBindingStrategy(namespaced=False), create_on_update=True,
        ),
        ResourceType(
            "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, subdomain,
            strategy=s.NetworkPolicyStrategy(), short_names=("netpol",),
            tracks_generation=True,
        ),
        ResourceType(
            "apps", "v1", "Deployment", "deployments", True, subdomain,
            strategy=s.DeploymentStrategy(), patch_schema=_WITH_POD_TEMPLATE, short_names=("deploy",),
            tracks_generation=True, has_status=True,
        ),
        ResourceType(
            "batch", "v1", "Job", "jobs", True, subdomain,
            strategy=s.JobStrategy(), patch_schema=_WITH_POD_TEMPLATE, tracks_generation=True, has_status=True,
        ),
    ):  # fmt: skip
        registry.register(resource_type)
    return registry
