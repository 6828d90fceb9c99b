"""The emulated cluster's state and the semantics of each verb.

One lock guards everything; every verb runs under it from start to finish, so a request sees
and leaves a consistent state (the real server gets the same from etcd transactions). Stored
objects are never mutated in place: a write stores a new dict, and callers get deep copies.

Behaviour that a client can observe follows the real API server:

- metadata: `uid`, `creationTimestamp`, `resourceVersion` (one counter for the whole cluster,
  bumped by every write including deletes), `generation` for the kinds that track it;
  a write that changes nothing is not a write (same resourceVersion).
- optimistic concurrency: an update or patch carrying a stale `metadata.resourceVersion` is a
  409 Conflict; one without a resourceVersion is unconditional.
- admission: creating in a missing namespace is a 404 for the namespace, in a terminating one a
  403; `default`, `kube-system` and `kube-public` cannot be deleted.
- deletion: an object with finalizers is only marked (`deletionTimestamp`) and goes when its
  last finalizer is removed. Deleting a namespace marks it Terminating; after
  `namespace_deletion_delay` seconds the namespace controller's work is done: its content is
  deleted, then the namespace itself (once no content and no finalizer is left).
- field ownership: every write records `metadata.managedFields` (apply.py), and `apply` is
  server-side apply; `/status` writes (`status=True`) change nothing but status.
- controllers that every cluster runs and that shape what clients read: the ServiceAccount
  controller (a `default` ServiceAccount in every namespace) and the namespace controller,
  here; the others (job controller, scheduler, kubelet, garbage collector, see
  `controllers.py`) are `Controller`s the store calls, under its lock, from `reconcile()`.
  They read and write through a `Txn`, the same write path as a client's request, so every
  change they make is an ordinary write (resourceVersion, watchers). The CRD establishing
  controller (crd.py) is an `Observer`: it registers a CRD's types as the CRD is written.
  Deployments get no ReplicaSets and quotas get no usage.
- graceful deletion: a pod on a node is only marked (deletionTimestamp in its grace period,
  `deletionGracePeriodSeconds`); its kubelet stops the containers and then removes it.
- deletion propagation: `propagationPolicy` Orphan or Foreground adds the `orphan` or
  `foregroundDeletion` finalizer, which the garbage collector acts on and removes (`gc.py`);
  batch/v1 Jobs orphan by default, as the real job strategy does for batch/v1.

Purging terminating namespaces is done lazily at the start of every operation and on every
`reconcile()` (an idle watch, which sends no requests, calls `run_timed_work`). Time is the
emulator's `Clock`, which tests can move forward.

Every write goes through `_write` or `_remove`, which tell the `Observer`s registered with
`observe()` (the watch history, watch.py; the CRD controller), whoever made the write.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import apply as field_manager
from . import errors, gc
from .clock import Clock, rfc3339
from .errors import ApiError
from .patch import MalformedPatch, PatchError, apply_patch
from .registry import Registry, ResourceType
from .selectors import FieldSelector, LabelSelector
from .strategies import BadObject, NamespaceStrategy
from .validation import FieldError, immutable, invalid, required, validate_annotations, validate_labels

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})

_BOOTSTRAP_META = {
    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
}


def _aggregated_role(name: str) -> Obj:
    # The real admin/edit/view roles are aggregated: their rules are filled in by the
    # clusterrole-aggregation controller, which the emulator does not run.
    selector = {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{name}": "true"}}
    return {
        "metadata": {"name": name, **copy.deepcopy(_BOOTSTRAP_META)},
        "aggregationRule": {"clusterRoleSelectors": [selector]},
        "rules": [],
    }


BUILTIN_CLUSTER_ROLES: tuple[Obj, ...] = (
    {
        "metadata": {"name": "cluster-admin", **copy.deepcopy(_BOOTSTRAP_META)},
        "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    },
    _aggregated_role("admin"),
    _aggregated_role("edit"),
    _aggregated_role("view"),
)

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator


@dataclass(frozen=True)
class ListOptions:
    label_selector: LabelSelector = field(default_factory=lambda: LabelSelector(()))
    field_selector: FieldSelector = field(default_factory=lambda: FieldSelector(()))
    limit: int = 0  # 0: no limit
    after: Key | None = None  # from a continue token: list items after this key


class Observer(Protocol):
    """Told of every change the store makes, whoever makes it (the watch history, the CRD
    controller). Called with the store's lock held, in resourceVersion order, before the writer
    gets its answer: quick, and using only the store's `*_locked` methods. An observer that
    writes does so in `tick`, so that every observer sees changes in resourceVersion order."""

    def changed(self, store: Store, resource: ResourceType, key: Key, obj: Obj | None, previous: Obj | None,
                resource_version: int) -> None:
        """After every write (`obj`; `previous` None for a create) or removal (`obj` None)."""

    def tick(self, store: Store) -> None:
        """At the start of every operation, for work due since the last."""

    def reset(self, resource_version: int) -> None:
        """The store is about to empty itself (still at `resource_version`)."""


def encode_continue(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_continue(token: str) -> Key:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, TypeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
    return (str(namespace), str(name))


class Controller(Protocol):
    """A control loop of the emulated cluster, run by the store under its lock."""

    def reset(self, txn: Txn) -> None:
        """Forget everything (the store was just emptied) and seed built-in objects (nodes)."""

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        """A mutating admission plugin: may change `obj` before it is validated, or raise ApiError."""

    def reconcile(self, txn: Txn) -> None:
        """One pass over the state; ask for the next timed pass with `txn.wake_at`."""


class Store:
    def __init__(
        self,
        registry: Registry,
        *,
        namespace_deletion_delay: float,
        clock: Clock | None = None,
    ):
        self._registry = registry
        self._namespace_deletion_delay = namespace_deletion_delay
        self._clock = clock or Clock()
        self._namespaces = self._builtin(registry, "", "namespaces")
        self._service_accounts = self._builtin(registry, "", "serviceaccounts")
        self._cluster_roles = self._builtin(registry, "rbac.authorization.k8s.io", "clusterroles")
        self._lock = threading.Lock()
        self._tables: dict[str, dict[Key, Obj]] = {}
        self._resource_version = 0
        self._terminating: dict[str, float] = {}  # namespace → when the namespace controller purges it
        self._observers: list[Observer] = []
        self._extra_builtins: list[tuple[ResourceType, Obj]] = []
        self._controllers: list[Controller] = []
        self._reconciled_version = -1  # the resourceVersion the controllers last saw settle
        self._wake_at = 0.0  # clock time of the next timed controller pass
        with self._lock:
            self._seed()

    def add_controller(self, controller: Controller) -> None:
        with self._lock:
            self._controllers.append(controller)
            controller.reset(Txn(self))
            self._reconciled_version = -1

    def reconcile(self) -> None:
        """Run the controllers until nothing changes (a bounded number of passes). Cheap when
        nothing was written since the last pass and no timed work is due."""
        with self._operation():
            if self._resource_version == self._reconciled_version and self._clock.time() < self._wake_at:
                return
            txn = Txn(self)
            for _ in range(50):
                before = self._resource_version
                self._wake_at = float("inf")
                for controller in self._controllers:
                    controller.reconcile(txn)
                if self._resource_version == before:
                    break
            self._reconciled_version = self._resource_version

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """The state under the lock, for test hooks and subresources that read controller state."""
        with self._operation():
            yield Txn(self)

    @staticmethod
    def _builtin(registry: Registry, group: str, plural: str) -> ResourceType:
        return Store._builtin_version(registry, group, "v1", plural)

    @staticmethod
    def _builtin_version(registry: Registry, group: str, version: str, plural: str) -> ResourceType:
        resource_type = registry.get(group, version, plural)
        if resource_type is None:
            raise ValueError(f"the registry lacks the built-in resource {plural}")
        return resource_type

    # --- the verbs ---------------------------------------------------------------------------

    def reset(self) -> None:
        """An empty cluster again: only the built-in namespaces and roles are left."""
        with self._lock:
            for observer in self._observers:
                observer.reset(self._resource_version)
            self._tables.clear()
            self._terminating.clear()
            self._seed()
            for controller in self._controllers:
                controller.reset(Txn(self))
            self._reconciled_version, self._wake_at = -1, 0.0

    def add_builtins(self, resource: ResourceType, objects: list[Obj]) -> None:
        """Cluster-scoped objects every fresh cluster has from now on (the RBAC bootstrap policy)."""
        with self._lock:
            for obj in objects:
                self._extra_builtins.append((resource, copy.deepcopy(obj)))
                self._create(resource, "", copy.deepcopy(obj))

    def observe(self, observer: Observer) -> int:
        """Tell `observer` of every write from now on (see `Observer`). Returns the
        resourceVersion the writes will follow."""
        with self._lock:
            self._observers.append(observer)
            return self._resource_version

    # For observers only, with the lock held.
    def objects_locked(self, resource: ResourceType) -> dict[Key, Obj]:
        return self._table(resource)

    def write_locked(self, resource: ResourceType, key: Key, obj: Obj) -> None:
        self._write(resource, key, obj)

    def drop_objects_locked(self, resource: ResourceType) -> None:
        """Remove every object of a type (its CRD is gone), one removal each, so watchers see them go."""
        for key in list(self._table(resource)):
            self._remove(resource, key)

    def now_locked(self) -> str:
        return self._clock.timestamp()

    def create(self, resource: ResourceType, namespace: str, body: Any, *, manager: str | None = None) -> Obj:
        with self._operation():
            obj = self._create(resource, namespace, self._decode(resource, body), manager=manager)
            return self._present(resource, obj)

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        with self._operation():
            return self._present(resource, self._existing(resource, namespace, name))

    def list(self, resource: ResourceType, namespace: str | None, options: ListOptions) -> Obj:
        """A page of objects ordered by namespace then name; `namespace` None lists all namespaces."""
        with self._operation():
            matching = self._select(resource, namespace, options)
            page = matching[: options.limit] if options.limit else matching
            metadata: Obj = {"resourceVersion": str(self._resource_version)}
            if options.limit and len(matching) > options.limit:
                metadata["continue"] = encode_continue(page[-1][0])
                # The real server can only count what is left when it does not filter.
                if options.label_selector.empty and options.field_selector.empty:
                    metadata["remainingItemCount"] = len(matching) - options.limit
            items = [copy.deepcopy(obj) for _, obj in page]
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    def replace(
        self, resource: ResourceType, namespace: str, name: str, body: Any, *, manager: str | None = None,
        status: bool = False,
    ) -> tuple[Obj, bool]:
        """PUT: the stored object and whether it was created (kinds that allow create-on-update).
        `status`: a write to `/status`, which changes nothing but status."""
        obj = self._decode(resource, body)
        metadata = obj["metadata"]
        if metadata.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({metadata.get('name', '')}) does not match the name on the URL ({name})"
            )
        if resource.namespaced and metadata.get("namespace") not in (None, namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        with self._operation():
            key = self._key(resource, namespace, name)
            old = self._table(resource).get(key)
            if old is None:
                if not resource.create_on_update or status:
                    raise errors.not_found(resource.group, resource.plural, name)
                return self._present(resource, self._create(resource, namespace, obj, manager=manager)), True
            obj = self._status_only(old, obj) if status else obj
            return self._present(resource, self._update(resource, key, old, obj, manager=manager, status=status)), False

    def patch(
        self, resource: ResourceType, namespace: str, name: str, content_type: str, patch: Any, *,
        manager: str | None = None, status: bool = False,
    ) -> Obj:
        with self._operation():
            key = self._key(resource, namespace, name)
            old = self._existing(resource, namespace, name)
            try:
                patched = apply_patch(content_type, self._present(resource, old), patch, resource.patch_schema)
            except MalformedPatch as error:
                raise errors.bad_request(str(error)) from None
            except PatchError as error:
                raise errors.unprocessable(str(error)) from None
            new = self._decode(resource, patched)
            new = self._status_only(old, new) if status else new
            return self._present(resource, self._update(resource, key, old, new, manager=manager, status=status))

    def apply(
        self, resource: ResourceType, namespace: str, name: str, body: Any, *, manager: str, force: bool,
        status: bool = False,
    ) -> tuple[Obj, bool]:
        """Server-side apply (`apply.py`): the object and whether it was created."""
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request is not a {resource.kind} object")
        for field_name, label in (("kind", "Kind"), ("apiVersion", "APIVersion")):
            if not body.get(field_name):
                raise errors.bad_request(f"Object '{label}' is missing in '{json.dumps(body, separators=(',', ':'))}'")
        if (body.get("metadata") or {}).get("managedFields") is not None:
            # Applying an object read back from the server, as is, is a mistake the real server refuses.
            raise errors.bad_request("metadata.managedFields must be nil")
        config = self._decode(resource, body)  # type checks; the body itself is what is applied
        if config["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({config['metadata']['name']}) does not match the name on the URL ({name})"
            )
        subresource = "status" if status else ""
        with self._operation():
            key = self._key(resource, namespace, name)
            old = self._table(resource).get(key)
            now = self._clock.timestamp()
            live = self._present(resource, old) if old is not None else None
            if live is None and status:
                raise errors.not_found(resource.group, resource.plural, name)
            merged, managed = field_manager.apply(
                resource, live, body, manager, force=force, subresource=subresource, now=now
            )
            merged.setdefault("metadata", {})["name"] = name
            new = self._decode(resource, merged)
            if old is None:
                return self._present(resource, self._create(resource, namespace, new, managed=managed)), True
            new = self._status_only(old, new) if status else new
            return self._present(resource, self._update(resource, key, old, new, managed=managed, status=status)), False

    def delete(self, resource: ResourceType, namespace: str, name: str, options: Obj) -> Obj:
        """The object (still there, being finalized) or a Success Status (gone)."""
        with self._operation():
            key = self._key(resource, namespace, name)
            old = self._existing(resource, namespace, name)
            self._check_preconditions(resource, old, options.get("preconditions") or {})
            if resource is self._namespaces:
                return self._delete_namespace(key, old)
            policy = gc.propagation_policy(resource, options)
            obj = gc.with_deletion_finalizers(old, policy)
            grace = resource.strategy.grace_period_seconds(old, options)
            if grace and old["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
                return self._present(resource, old)  # already terminating gracefully
            if grace and not old["metadata"].get("deletionTimestamp"):
                marked = copy.deepcopy(obj)
                marked["metadata"]["deletionTimestamp"] = rfc3339(self._clock.time() + grace)
                marked["metadata"]["deletionGracePeriodSeconds"] = grace
                self._write(resource, key, marked)
                return self._present(resource, marked)
            return self._delete(resource, key, obj)

    def delete_collection(self, resource: ResourceType, namespace: str | None, options: ListOptions) -> Obj:
        """Delete every matching object; answers the list of what was deleted, like the real server."""
        with self._operation():
            deleted = []
            for key, obj in self._select(resource, namespace, options):
                self._delete(resource, key, obj)
                deleted.append(self._table(resource).get(key, obj))
            items = [copy.deepcopy(obj) for obj in deleted]
            metadata = {"resourceVersion": str(self._resource_version)}
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    def run_timed_work(self) -> None:
        """What every operation does first (purging the namespaces whose deletion is due), for
        observers that send no requests: an idle watch calls this, so that the namespace it
        watches goes away on time instead of at the next request."""
        with self._operation():
            pass

    def admit_create(self, resource: ResourceType, namespace: str, name: str) -> None:
        """Admission alone, for a create that stores nothing (a ServiceAccount's token): 404 in a
        missing namespace, 403 in a terminating one."""
        with self._operation():
            self._admit_create(resource, namespace, name)

    # --- writing -----------------------------------------------------------------------------

    @contextmanager
    def _operation(self) -> Iterator[None]:
        with self._lock:
            self._purge_terminated_namespaces()
            for observer in self._observers:
                observer.tick(self)
            try:
                yield
            except BadObject as error:
                raise errors.bad_request(str(error)) from None

    @staticmethod
    def _status_only(old: Obj, obj: Obj) -> Obj:
        """What a write to `/status` stores: the old object with the new status (and the
        resourceVersion sent, for the optimistic-concurrency check)."""
        new = copy.deepcopy(old)
        if "status" in obj:
            new["status"] = obj["status"]
        else:
            new.pop("status", None)
        new["metadata"]["resourceVersion"] = obj["metadata"].get("resourceVersion")
        return new

    def _manage(
        self, resource: ResourceType, old: Obj | None, new: Obj, manager: str | None, managed: list[Obj] | None,
        status: bool,
    ) -> None:
        """Set `new`'s managedFields: given (an apply), recorded for an Update by `manager`, or kept."""
        if managed is None and manager:
            managed = field_manager.record_update(
                resource, old, new, manager, "status" if status else "", self._clock.timestamp()
            )
        elif managed is None:
            managed = copy.deepcopy((old or {}).get("metadata", {}).get("managedFields") or [])
        if managed:
            new["metadata"]["managedFields"] = managed
        else:
            new["metadata"].pop("managedFields", None)

    def _create(
        self, resource: ResourceType, namespace: str, obj: Obj, *, manager: str | None = None,
        managed: list[Obj] | None = None,
    ) -> Obj:
        metadata = obj["metadata"]
        if metadata.get("resourceVersion"):
            # The storage layer refuses this with a bare 500 and no reason.
            raise ApiError(500, None, "resourceVersion should not be set on objects to be created")
        if resource.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
            self._admit_create(resource, namespace, metadata.get("name") or metadata.get("generateName") or "")
            for controller in self._controllers:
                controller.admit_create(Txn(self), resource, obj)
        else:
            metadata.pop("namespace", None)
            namespace = ""
        table = self._table(resource)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = self._generate_name(table, namespace, metadata["generateName"])
        for server_owned in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            metadata.pop(server_owned, None)
        resource.strategy.default(obj)
        self._manage(resource, None, obj, manager, managed, False)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = self._clock.timestamp()
        if resource.tracks_generation:
            metadata["generation"] = 1
        if resource.has_status:
            obj["status"] = {}
        resource.strategy.prepare_for_create(obj)
        problems = self._validate_metadata(resource, obj) + resource.strategy.validate(obj)
        if problems:
            raise errors.invalid(resource.group, resource.kind, metadata.get("name", ""), problems)
        key = (namespace, metadata["name"])
        if key in table:
            raise errors.already_exists(resource.group, resource.plural, metadata["name"])
        self._write(resource, key, obj)
        if resource is self._namespaces:
            self._create(self._service_accounts, key[1], {"metadata": {"name": "default"}})
        return obj

    def _update(
        self, resource: ResourceType, key: Key, old: Obj, new: Obj, *, manager: str | None = None,
        managed: list[Obj] | None = None, status: bool = False,
    ) -> Obj:
        metadata, old_metadata = new["metadata"], old["metadata"]
        requested_version = metadata.get("resourceVersion")
        if requested_version and requested_version != old_metadata["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, old_metadata["name"])
        problems: list[FieldError] = []
        for identity in ("name", "namespace", "uid"):
            value = metadata.get(identity)
            if value and value != old_metadata.get(identity):
                problems.append(immutable(f"metadata.{identity}", value))
        # Fields only the server writes keep their stored values.
        for server_owned in (
            "name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation",
            "deletionTimestamp", "deletionGracePeriodSeconds",
        ):  # fmt: skip
            if server_owned in old_metadata:
                metadata[server_owned] = old_metadata[server_owned]
            else:
                metadata.pop(server_owned, None)
        resource.strategy.default(new)
        self._manage(resource, old, new, manager, managed, status)
        if resource.has_status and not status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        resource.strategy.prepare_for_update(new, old)
        if resource.tracks_generation and resource.strategy.generation_changed(new, old):
            metadata["generation"] = old_metadata.get("generation", 0) + 1
        problems += (
            self._validate_metadata(resource, new)
            + resource.strategy.validate(new)
            + resource.strategy.validate_update(new, old)
        )
        if problems:
            raise errors.invalid(resource.group, resource.kind, old_metadata["name"], problems)
        if new == old:
            return old  # not a write: the resourceVersion stays
        if metadata.get("deletionTimestamp") and self._finalized(resource, new):
            self._remove(resource, key)
            metadata["resourceVersion"] = str(self._resource_version)
            return new
        self._write(resource, key, new)
        return new

    def _delete(self, resource: ResourceType, key: Key, old: Obj) -> Obj:
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                stored = self._table(resource)[key]
                if old["metadata"]["finalizers"] != stored["metadata"].get("finalizers"):
                    self._write(resource, key, old)  # a new propagation policy for an object being deleted
                return self._present(resource, old)
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = self._clock.timestamp()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            self._write(resource, key, marked)
            return self._present(resource, marked)
        self._remove(resource, key)
        if resource.return_deleted_object:
            return self._present(resource, old)
        details: Obj = {"name": key[1]}
        if resource.group:
            details["group"] = resource.group
        details |= {"kind": resource.plural, "uid": old["metadata"]["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _delete_namespace(self, key: Key, old: Obj) -> Obj:
        name = key[1]
        if name in UNDELETABLE_NAMESPACES:
            raise errors.forbidden("", "namespaces", name, "this namespace may not be deleted")
        if not old["metadata"].get("deletionTimestamp"):
            terminating = copy.deepcopy(old)
            terminating["metadata"]["deletionTimestamp"] = self._clock.timestamp()
            terminating["status"] = {**terminating.get("status", {}), "phase": "Terminating"}
            self._write(self._namespaces, key, terminating)
            self._terminating[name] = self._clock.monotonic() + self._namespace_deletion_delay
            return self._present(self._namespaces, terminating)
        if (old.get("spec") or {}).get("finalizers"):
            raise errors.conflict(
                "",
                "namespaces",
                name,
                "The system is ensuring all content is removed from this namespace.  "
                "Upon completion, this namespace will automatically be purged by the system.",
            )
        return self._delete(self._namespaces, key, old)

    def _purge_terminated_namespaces(self) -> None:
        """The namespace controller: empty each namespace whose deletion delay has passed."""
        if not self._terminating:
            return
        now = self._clock.monotonic()
        for name, due in list(self._terminating.items()):
            if due <= now and self._purge_namespace(name):
                del self._terminating[name]

    def _purge_namespace(self, name: str) -> bool:
        """Delete the namespace's content; True once only the namespace's own finalizers remain."""
        content_left = False
        for resource in self._registry.types():
            if not resource.namespaced:
                continue
            table = self._table(resource)
            for key in sorted(key for key in table if key[0] == name):
                self._delete(resource, key, table[key])
                content_left = content_left or key in table  # held by a finalizer
        if content_left:
            return False
        key = ("", name)
        namespace = self._table(self._namespaces).get(key)
        if namespace is not None:
            finalized = copy.deepcopy(namespace)
            finalized["spec"]["finalizers"] = [
                f for f in finalized["spec"].get("finalizers", []) if f != NamespaceStrategy.FINALIZER
            ]
            if self._finalized(self._namespaces, finalized):
                self._remove(self._namespaces, key)
            else:
                self._write(self._namespaces, key, finalized)
        return True

    def _finalized(self, resource: ResourceType, obj: Obj) -> bool:
        if obj["metadata"].get("finalizers"):
            return False
        return resource is not self._namespaces or not (obj.get("spec") or {}).get("finalizers")

    def _write(self, resource: ResourceType, key: Key, obj: Obj) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        table = self._table(resource)
        previous = table.get(key)
        table[key] = obj
        for observer in self._observers:
            observer.changed(self, resource, key, obj, previous, self._resource_version)

    def _remove(self, resource: ResourceType, key: Key) -> None:
        self._resource_version += 1
        previous = self._table(resource).pop(key)
        for observer in self._observers:
            observer.changed(self, resource, key, None, previous, self._resource_version)

    def _seed(self) -> None:
        for name in BUILTIN_NAMESPACES:
            self._create(self._namespaces, "", {"metadata": {"name": name}})
        for role in BUILTIN_CLUSTER_ROLES:
            self._create(self._cluster_roles, "", copy.deepcopy(role))
        for resource, obj in self._extra_builtins:
            self._create(resource, "", copy.deepcopy(obj))

    # --- reading and checking ----------------------------------------------------------------

    def _table(self, resource: ResourceType) -> dict[Key, Obj]:
        return self._tables.setdefault(resource.key, {})

    @staticmethod
    def _key(resource: ResourceType, namespace: str, name: str) -> Key:
        return (namespace if resource.namespaced else "", name)

    def _existing(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._table(resource).get(self._key(resource, namespace, name))
        if obj is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return obj

    def _select(self, resource: ResourceType, namespace: str | None, options: ListOptions) -> list[tuple[Key, Obj]]:
        table = self._table(resource)
        keys = sorted(key for key in table if namespace is None or key[0] == namespace)
        if options.after is not None:
            keys = [key for key in keys if key > options.after]
        return [
            (key, table[key])
            for key in keys
            if options.label_selector.matches(table[key]["metadata"].get("labels"))
            and options.field_selector.matches(table[key])
        ]

    @staticmethod
    def _present(resource: ResourceType, obj: Obj) -> Obj:
        return {"kind": resource.kind, "apiVersion": resource.api_version, **copy.deepcopy(obj)}

    @staticmethod
    def _decode(resource: ResourceType, body: Any) -> Obj:
        """A request body as a stored object: type-checked, without kind/apiVersion and the
        metadata that only the server manages."""
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request is not a {resource.kind} object")
        obj = copy.deepcopy(body)
        api_version, kind = obj.pop("apiVersion", None), obj.pop("kind", None)
        if api_version not in (None, "", resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version})"
            )
        if kind not in (None, "", resource.kind):
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise errors.bad_request("metadata must be an object")
        for mapping in ("labels", "annotations"):
            value = metadata.get(mapping)
            if value is None:
                metadata.pop(mapping, None)
            elif not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise errors.bad_request(f"metadata.{mapping} must be a map of strings to strings")
        for omitted_when_empty in ("labels", "annotations", "finalizers", "ownerReferences"):
            # The Go types drop these when empty: `labels: {}` reads back as no labels at all.
            if metadata.get(omitted_when_empty) in ({}, []):
                del metadata[omitted_when_empty]
        metadata.pop("selfLink", None)  # no longer set by any server
        metadata.pop("managedFields", None)  # the server's bookkeeping (apply.py); not taken from clients
        obj["metadata"] = metadata
        return obj

    def _admit_create(self, resource: ResourceType, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission plugin."""
        owner = self._table(self._namespaces).get(("", namespace))
        if owner is None:
            raise errors.not_found("", "namespaces", namespace)
        if owner["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                resource.group,
                resource.plural,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
                causes=[
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    @staticmethod
    def _validate_metadata(resource: ResourceType, obj: Obj) -> list[FieldError]:
        metadata = obj["metadata"]
        name = metadata.get("name", "")
        if not name:
            problems = [required("metadata.name", "name or generateName is required")]
        else:
            problems = [invalid("metadata.name", name, message) for message in resource.validate_name(name)]
        problems += validate_labels(metadata.get("labels") or {}, "metadata.labels")
        problems += validate_annotations(metadata.get("annotations") or {}, "metadata.annotations")
        return problems

    @staticmethod
    def _check_preconditions(resource: ResourceType, obj: Obj, preconditions: Obj) -> None:
        metadata = obj["metadata"]
        for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            expected = preconditions.get(field_name)
            if expected and expected != metadata.get(field_name):
                raise errors.conflict(
                    resource.group,
                    resource.plural,
                    metadata["name"],
                    f"Precondition failed: {label} in precondition: {expected}, "
                    f"{label} in object meta: {metadata.get(field_name)}",
                )

    @staticmethod
    def _generate_name(table: dict[Key, Obj], namespace: str, prefix: str) -> str:
        prefix = prefix[:58]
        while True:
            name = prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
            if (namespace, name) not in table:
                return name


class Txn:
    """What a controller does with the state, under the store's lock: reads of the stored objects
    (not copies: never mutate them; copy, change and `put`), and writes through the same paths as
    a client's requests (admission, defaulting, validation, resourceVersion)."""

    def __init__(self, store: Store):
        self._store = store

    @property
    def now(self) -> float:
        return self._store._clock.time()

    def wake_at(self, when: float) -> None:
        """Ask for a controller pass at clock time `when` (even if nothing is written meanwhile)."""
        self._store._wake_at = min(self._store._wake_at, when)

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        return Store._builtin_version(self._store._registry, group, version, plural)

    def types(self) -> list[ResourceType]:
        return self._store._registry.types()

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj | None:
        return self._store._table(resource).get(Store._key(resource, namespace, name))

    def items(self, resource: ResourceType, namespace: str | None = None) -> list[Obj]:
        table = self._store._table(resource)
        return [table[key] for key in sorted(table) if namespace is None or key[0] == namespace]

    def create(self, resource: ResourceType, namespace: str, obj: Obj) -> Obj:
        """Create as a client would (admission, defaults, validation); raises ApiError."""
        try:
            return self._store._create(resource, namespace, Store._decode(resource, copy.deepcopy(obj)))
        except BadObject as error:
            raise errors.bad_request(str(error)) from None

    def put(self, resource: ResourceType, obj: Obj) -> None:
        """Store a changed copy of a stored object as it is, status included (the controllers'
        `/status` and metadata updates); no write if nothing changed. An object being deleted
        whose last finalizer this removes is gone."""
        metadata = obj["metadata"]
        key = Store._key(resource, metadata.get("namespace", ""), metadata["name"])
        old = self._store._table(resource).get(key)
        if old is None or old["metadata"]["uid"] != metadata["uid"] or old == obj:
            return
        if metadata.get("deletionTimestamp") and self._store._finalized(resource, obj):
            self._store._remove(resource, key)
            return
        self._store._write(resource, key, obj)

    def delete(self, resource: ResourceType, obj: Obj, policy: str = "Background") -> None:
        """Delete as a client would, with a propagation policy; gone already is fine."""
        metadata = obj["metadata"]
        key = Store._key(resource, metadata.get("namespace", ""), metadata["name"])
        stored = self._store._table(resource).get(key)
        if stored is None or stored["metadata"]["uid"] != metadata["uid"]:
            return
        self._store._delete(resource, key, gc.with_deletion_finalizers(stored, policy))
