"""CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom resources they serve.

Follows the apiextensions-apiserver (`pkg/apis/apiextensions/validation`, `pkg/registry/
customresourcedefinition`, `pkg/registry/customresource`, the establishing and naming
controllers):

- A CRD is cluster-scoped, named `<plural>.<group>`; the group has a dot; the scope is
  `Namespaced` or `Cluster` (immutable, like the group); exactly one version is the storage
  version; each version has an `openAPIV3Schema` whose root is an object. `names.singular`
  defaults to the lowercased kind, `names.listKind` to `<Kind>List`.
- Shortly after a CRD is written its status says `NamesAccepted` and `Established` (the real
  controllers take a moment: the create's answer has no conditions yet; here they are set
  before the next request is served), `acceptedNames` copies the names, and `storedVersions`
  gains the storage version. From then on each served version is routable at
  `/apis/<group>/<version>/[namespaces/<ns>/]<plural>`, with `<plural>/status` when the version
  declares `subresources.status`, and appears in discovery. Unserved versions answer 404.
  All versions share one storage, as on a real server (no conversion is needed for versions
  with the same schema; `conversion.strategy: None` is all that is modelled).
- Deleting a CRD deletes its custom resources with it (a real server does so through the
  `customresourcecleanup` finalizer; here it is done at once).
- Custom resources: `metadata.generation` starts at 1 and moves on any change but metadata
  (and status, when the status subresource is on); with the status subresource, status is
  dropped on create and kept on updates of the main resource, and `/status` changes nothing
  but status. Fields are defaulted, pruned and validated by the version's schema (`schema.py`).
  Strategic merge patch is refused with 415, as the real server does for custom resources.
  `additionalPrinterColumns` are accepted and ignored (tables are not served).

Not modelled: name conflicts between CRDs of one group (`NamesAccepted` is always True),
conversion webhooks, `scale` subresources, CEL validation rules.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import strategies as s
from . import validation as v
from .patch import Node
from .registry import OBJECT_META, Registry, ResourceType, Subresource
from .schema import apply_defaults, list_shape, prune, unknown_fields, validate
from .validation import dns1035_label

Obj = dict[str, Any]

GROUP = "apiextensions.k8s.io"
SCOPES = ("Cluster", "Namespaced")


def _storage_version(obj: Obj) -> str | None:
    return next((version.get("name") for version in _versions(obj) if version.get("storage")), None)


def _versions(obj: Obj) -> list[Obj]:
    versions = (obj.get("spec") or {}).get("versions")
    return [version for version in versions if isinstance(version, dict)] if isinstance(versions, list) else []


class CustomResourceDefinitionStrategy(s.Strategy):
    def default(self, obj: Obj) -> None:
        spec = s._dict(obj, "spec")
        names = s._dict(spec, "names")
        if names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", f"{names['kind']}List")
        spec.setdefault("conversion", {"strategy": "None"})
        for version in _versions(obj):
            version.setdefault("served", False)
            version.setdefault("storage", False)

    def prepare_for_create(self, obj: Obj) -> None:
        storage = _storage_version(obj)
        obj["status"] = {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": [storage] if storage else []}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        status = new.setdefault("status", {})
        storage = _storage_version(new)
        stored = list(status.get("storedVersions") or [])
        if storage and storage not in stored:
            status["storedVersions"] = [*stored, storage]

    def validate(self, obj: Obj) -> list[v.FieldError]:
        spec, name = obj.get("spec") or {}, obj["metadata"].get("name", "")
        names = spec.get("names") or {}
        group, plural = spec.get("group") or "", names.get("plural") or ""
        errors = []
        if name != f"{plural}.{group}":
            errors.append(v.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
        if not group:
            errors.append(v.required("spec.group"))
        else:
            errors += [v.invalid("spec.group", group, message) for message in v.dns1123_subdomain(group)]
            if "." not in group:
                errors.append(v.invalid("spec.group", group, "should be a domain with at least one dot"))
        scope = spec.get("scope")
        if not scope:
            errors.append(v.required("spec.scope"))
        elif scope not in SCOPES:
            errors.append(v.not_supported("spec.scope", scope, SCOPES))
        errors += self._validate_versions(spec)
        for field in ("plural", "singular"):
            value = names.get(field) or ""
            if not value:
                errors.append(v.required(f"spec.names.{field}"))
            else:
                errors += [v.invalid(f"spec.names.{field}", value, m) for m in dns1035_label(value)]
        kind = names.get("kind") or ""
        if not kind:
            errors.append(v.required("spec.names.kind"))
        else:
            problems = dns1035_label(kind.lower())
            if problems:
                detail = "may have mixed case, but should otherwise match: " + ",".join(problems)
                errors.append(v.invalid("spec.names.kind", kind, detail))
        for index, short_name in enumerate(names.get("shortNames") or []):
            errors += [v.invalid(f"spec.names.shortNames[{index}]", short_name, m) for m in dns1035_label(short_name)]
        return errors

    @staticmethod
    def _validate_versions(spec: Obj) -> list[v.FieldError]:
        versions = spec.get("versions")
        if not isinstance(versions, list) or not versions:
            return [v.required("spec.versions", "must have exactly one version marked as storage version")]
        errors, seen = [], set()
        described = [{key: version.get(key) for key in ("name", "served", "storage")} for version in versions]
        for index, version in enumerate(versions):
            path = f"spec.versions[{index}]"
            version_name = version.get("name") or ""
            errors += [v.invalid(f"{path}.name", version_name, m) for m in dns1035_label(version_name)]
            if version_name in seen:
                errors.append(v.FieldError("FieldValueDuplicate", f"{path}.name", "", version_name))
            seen.add(version_name)
            root = ((version.get("schema") or {}).get("openAPIV3Schema"))
            if not isinstance(root, dict):
                errors.append(v.required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            elif root.get("type") != "object":
                errors.append(v.required(f"{path}.schema.openAPIV3Schema.type", "must not be empty at the root"))
        if sum(1 for version in versions if version.get("storage")) != 1:
            detail = "must have exactly one version marked as storage version"
            errors.append(v.invalid("spec.versions", described, detail))
        return errors

    def validate_update(self, new: Obj, old: Obj) -> list[v.FieldError]:
        errors = []
        for field in ("scope", "group"):
            if (new.get("spec") or {}).get(field) != (old.get("spec") or {}).get(field):
                errors.append(v.immutable(f"spec.{field}", (new.get("spec") or {}).get(field)))
        return errors


class CustomResourceStrategy(s.Strategy):
    """A custom resource of one version: its schema and whether the status subresource is on."""

    def __init__(self, openapi_schema: Obj, status_subresource: bool):
        self.schema = openapi_schema
        self.status_subresource = status_subresource

    def default(self, obj: Obj) -> None:
        apply_defaults(obj, self.schema)
        pruned = prune(obj, self.schema, root=True)
        if pruned is not obj:  # a schema that keeps every field answers the object itself
            obj.clear()
            obj.update(pruned)

    def unknown_fields(self, body: Any) -> list[str]:
        return unknown_fields(body, self.schema) if isinstance(body, dict) else []

    def prepare_for_create(self, obj: Obj) -> None:
        if self.status_subresource:
            obj.pop("status", None)

    def validate(self, obj: Obj) -> list[v.FieldError]:
        return validate(obj, self.schema)

    def generation_changed(self, new: Obj, old: Obj) -> bool:
        ignored = ("metadata", "status") if self.status_subresource else ("metadata",)
        return {k: x for k, x in new.items() if k not in ignored} != {k: x for k, x in old.items() if k not in ignored}


def register_crd_api(registry: Registry) -> ResourceType:
    resource_type = ResourceType(
        GROUP, "v1", "CustomResourceDefinition", "customresourcedefinitions", False, v.dns1123_subdomain,
        strategy=CustomResourceDefinitionStrategy(), short_names=("crd", "crds"), categories=("api-extensions",),
        has_status=True, tracks_generation=True,
    )  # fmt: skip
    registry.register(resource_type)
    registry.register_subresource(
        Subresource(resource_type, "status", GROUP, "v1", "CustomResourceDefinition", None, ("get", "patch", "update"))
    )
    return resource_type


def version_priority(name: str) -> tuple[int, int, int, str]:
    """Kubernetes' order of versions (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else): the
    first served one is the group's preferred version."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", name)
    if match is None:
        return (3, 0, 0, name)
    stability = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    return (stability, -int(match.group(1)), -int(match.group(3) or 0), name)


def custom_resource_types(crd: Obj) -> list[tuple[ResourceType, Subresource | None]]:
    """The types an established CRD serves: one per served version, with its status subresource."""
    spec = crd["spec"]
    names = spec["names"]
    served = []
    for version in sorted(_versions(crd), key=lambda version: version_priority(str(version.get("name")))):
        if not version.get("served"):
            continue
        openapi = copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
        status_on = isinstance((version.get("subresources") or {}).get("status"), dict)
        resource_type = ResourceType(
            spec["group"], version["name"], names["kind"], names["plural"], spec["scope"] == "Namespaced",
            v.dns1123_subdomain,
            strategy=CustomResourceStrategy(openapi, status_on),
            patch_schema=Node({**list_shape(openapi).fields, "metadata": OBJECT_META}),
            short_names=tuple(names.get("shortNames") or ()), tracks_generation=True, has_status=status_on,
            singular=names.get("singular", ""), categories=tuple(names.get("categories") or ()),
            strategic_merge=False,
        )  # fmt: skip
        status = None
        if status_on:
            status = Subresource(
                resource_type, "status", spec["group"], version["name"], names["kind"], None, ("get", "patch", "update")
            )
        served.append((resource_type, status))
    return served


def established_status(crd: Obj, now: str) -> Obj:
    names = crd["spec"]["names"]
    accepted = {key: copy.deepcopy(value) for key, value in names.items() if value not in (None, "", [])}
    status = copy.deepcopy(crd.get("status") or {})
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind, reason, message in (
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ):
        if (conditions.get(kind) or {}).get("status") != "True":
            conditions[kind] = {
                "type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message,
            }  # fmt: skip
    status["conditions"] = list(conditions.values())
    status["acceptedNames"] = accepted
    return status


class CrdController:
    """The establishing controller and the dynamic part of the registry, as a store observer.

    The store calls `changed` after every write or removal and `tick` at the start of every
    operation, with its lock held; nothing here takes the lock again.
    """

    def __init__(self, registry: Registry, crd_type: ResourceType):
        self._registry = registry
        self._crd_type = crd_type
        self._served: dict[str, list[ResourceType]] = {}  # CRD name → the types it serves
        self._orphaned: list[ResourceType] = []  # types of deleted CRDs whose objects are still stored

    def changed(self, store: Any, resource: ResourceType, key: tuple[str, str], obj: Obj | None,
                previous: Obj | None, resource_version: int) -> None:
        if resource.key != self._crd_type.key:
            return
        name = key[1]
        old_types = self._served.pop(name, [])
        for old_type in old_types:
            self._registry.unregister(old_type)
        if obj is None:
            # Its objects go at the next operation (the real server's CRD finalizer deletes them
            # after the CRD's own deletion), one removal each, after the CRD's in resourceVersion.
            self._orphaned.extend(old_types[:1])  # the versions share one table
            return
        if not self._established(obj):
            return
        types = []
        for resource_type, status in custom_resource_types(obj):
            try:
                self._registry.register(resource_type)
            except ValueError:
                continue  # another type serves that group, version and plural
            if status is not None:
                self._registry.register_subresource(status)
            types.append(resource_type)
        self._served[name] = types

    def tick(self, store: Any) -> None:
        """Remove the objects of deleted CRDs; establish the CRDs written since the last operation."""
        while self._orphaned:
            store.drop_objects_locked(self._orphaned.pop())
        table = store.objects_locked(self._crd_type)
        for key, crd in list(table.items()):
            if crd["metadata"].get("deletionTimestamp"):
                continue
            status = established_status(crd, store.now_locked())
            if status != crd.get("status"):
                store.write_locked(self._crd_type, key, {**copy.deepcopy(crd), "status": status})

    def reset(self, resource_version: int) -> None:
        self._orphaned.clear()
        for types in self._served.values():
            for resource_type in types:
                self._registry.unregister(resource_type)
        self._served.clear()

    @staticmethod
    def _established(crd: Obj) -> bool:
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
