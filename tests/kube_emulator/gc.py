"""Deletion propagation and the garbage collector: dependents follow their owners' deletion.

As on a real cluster (`staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`
and `pkg/controller/garbagecollector`):

- a DELETE's `propagationPolicy` (or the deprecated `orphanDependents`) decides what happens to
  the object's dependents, those whose `metadata.ownerReferences` name its uid. `Orphan` adds
  the `orphan` finalizer: the collector removes the owner from every dependent's
  ownerReferences, then the finalizer, and the owner goes. `Foreground` adds
  `foregroundDeletion`: the owner stays (deletionTimestamp set) while the collector deletes its
  dependents, until no dependent with `blockOwnerDeletion: true` is left. `Background` (the
  default of most kinds) deletes the owner at once and its dependents afterwards.
- batch/v1 Jobs orphan their pods when the DELETE names no policy: the job strategy's
  `DefaultGarbageCollectionPolicy` keeps the pre-garbage-collector behaviour for batch/v1
  (`pkg/registry/batch/job/strategy.go`; kubectl warns about it and asks for Background).
- an object whose owners are all gone (no object with that uid, or one in another namespace)
  is deleted; one with some owners gone loses the references to them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .registry import ResourceType
    from .store import Txn

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
POLICIES = ("Orphan", "Foreground", "Background")


def propagation_policy(resource: ResourceType, options: Obj) -> str:
    policy = options.get("propagationPolicy")
    orphan = options.get("orphanDependents")
    if policy is not None and orphan is not None:
        raise errors.unprocessable("orphanDependents and deletionPropagation cannot be both set")
    if policy is not None:
        if policy not in POLICIES:
            raise errors.unprocessable(
                f'propagationPolicy: Unsupported value: "{policy}": supported values: "Foreground", '
                '"Background", "Orphan"'
            )
        return policy
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    return "Orphan" if (resource.group, resource.version, resource.plural) == ("batch", "v1", "jobs") else "Background"


def with_deletion_finalizers(obj: Obj, policy: str) -> Obj:
    """The object with the finalizers the policy asks the garbage collector for."""
    finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f not in (ORPHAN, FOREGROUND)]
    if policy == "Orphan":
        finalizers.append(ORPHAN)
    elif policy == "Foreground":
        finalizers.append(FOREGROUND)
    if finalizers == (obj["metadata"].get("finalizers") or []):
        return obj
    changed = copy.deepcopy(obj)
    if finalizers:
        changed["metadata"]["finalizers"] = finalizers
    else:
        changed["metadata"].pop("finalizers", None)
    return changed


class GarbageCollector:
    def reset(self, txn: Txn) -> None:
        pass

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        pass

    def reconcile(self, txn: Txn) -> None:
        by_uid: dict[str, tuple[ResourceType, Obj]] = {}
        dependents: list[tuple[ResourceType, Obj]] = []
        for resource in txn.types():
            for obj in txn.items(resource):
                by_uid[obj["metadata"]["uid"]] = (resource, obj)
                if obj["metadata"].get("ownerReferences"):
                    dependents.append((resource, obj))
        for resource, obj in dependents:
            self._collect(txn, resource, obj, by_uid)
        for resource, owner in list(by_uid.values()):
            finalizers = owner["metadata"].get("finalizers") or []
            if not owner["metadata"].get("deletionTimestamp") or not (ORPHAN in finalizers or FOREGROUND in finalizers):
                continue
            current = txn.get(resource, owner["metadata"].get("namespace", ""), owner["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != owner["metadata"]["uid"]:
                continue
            if ORPHAN in finalizers:
                self._orphan_dependents(txn, current)
                self._remove_finalizer(txn, resource, current, ORPHAN)
            elif not self._blocking_dependents(txn, current):
                self._remove_finalizer(txn, resource, current, FOREGROUND)

    @staticmethod
    def _collect(txn: Txn, resource: ResourceType, obj: Obj, by_uid: dict[str, tuple[ResourceType, Obj]]) -> None:
        references = obj["metadata"]["ownerReferences"]
        alive, foreground_owner = [], False
        for reference in references:
            owner = by_uid.get(reference.get("uid", ""))
            if owner is None:
                continue
            owner_type, owner_obj = owner
            if owner_type.namespaced and owner_obj["metadata"].get("namespace") != obj["metadata"].get("namespace"):
                continue  # an owner must be cluster-scoped or in the dependent's namespace
            alive.append(reference)
            if owner_obj["metadata"].get("deletionTimestamp") and FOREGROUND in (
                owner_obj["metadata"].get("finalizers") or []
            ):
                foreground_owner = True
        if not alive or foreground_owner:
            if not obj["metadata"].get("deletionTimestamp"):
                txn.delete(resource, obj, "Background")
        elif len(alive) < len(references):
            changed = copy.deepcopy(obj)
            changed["metadata"]["ownerReferences"] = alive
            txn.put(resource, changed)

    @staticmethod
    def _dependents_of(txn: Txn, owner: Obj) -> list[tuple[ResourceType, Obj]]:
        uid = owner["metadata"]["uid"]
        found = []
        for resource in txn.types():
            for obj in txn.items(resource):
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                    found.append((resource, obj))
        return found

    def _orphan_dependents(self, txn: Txn, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for resource, obj in self._dependents_of(txn, owner):
            changed = copy.deepcopy(obj)
            references = [ref for ref in obj["metadata"]["ownerReferences"] if ref.get("uid") != uid]
            if references:
                changed["metadata"]["ownerReferences"] = references
            else:
                del changed["metadata"]["ownerReferences"]
            txn.put(resource, changed)

    def _blocking_dependents(self, txn: Txn, owner: Obj) -> bool:
        uid = owner["metadata"]["uid"]
        return any(
            ref.get("uid") == uid and ref.get("blockOwnerDeletion")
            for _, obj in self._dependents_of(txn, owner)
            for ref in obj["metadata"]["ownerReferences"]
        )

    @staticmethod
    def _remove_finalizer(txn: Txn, resource: ResourceType, obj: Obj, finalizer: str) -> None:
        changed = copy.deepcopy(obj)
        finalizers = [f for f in changed["metadata"].get("finalizers") or [] if f != finalizer]
        if finalizers:
            changed["metadata"]["finalizers"] = finalizers
        else:
            changed["metadata"].pop("finalizers", None)
        txn.put(resource, changed)
