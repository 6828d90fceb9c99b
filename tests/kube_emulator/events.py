"""Events the emulated components record (`v1` Event): why a pod is not running, what a Job did.

Shaped as client-go's event recorder writes them through the core API (`tools/record`):
named `<object>.<hex nanoseconds>`, in the object's namespace (`default` for cluster-scoped
objects), with `involvedObject` (kind, namespace, name, uid, apiVersion, resourceVersion and,
for a container, `fieldPath` `spec.containers{name}`), `reason`, `message`, `type` (Normal or
Warning), `source` and `reportingComponent`, `firstTimestamp`/`lastTimestamp` and `count`.
The same event again (same object, reason, message and source) is one Event whose count and
lastTimestamp go up, as the recorder's correlator does. Lists filter by the field selectors
the real server supports: `involvedObject.{kind,namespace,name,uid,apiVersion,fieldPath}`,
`reason`, `reportingComponent`, `source`, `type`.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any

from .clock import rfc3339
from .errors import ApiError
from .registry import _path

if TYPE_CHECKING:
    from .registry import ResourceType
    from .store import Txn

Obj = dict[str, Any]


class EventRecorder:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, ...], tuple[str, str]] = {}  # correlation key → (namespace, event name)
        self._sequence = itertools.count()

    def reset(self) -> None:
        self._seen.clear()

    def record(
        self,
        txn: Txn,
        resource: ResourceType,
        obj: Obj,
        event_type: str,
        reason: str,
        message: str,
        *,
        component: str,
        host: str = "",
        field_path: str = "",
        when: float | None = None,
    ) -> None:
        events = txn.resource("", "v1", "events")
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") or "default"
        timestamp = rfc3339(txn.now if when is None else when)
        key = (namespace, metadata["uid"], field_path, reason, message, component, host, event_type)
        seen = self._seen.get(key)
        if seen is not None:
            existing = txn.get(events, *seen)
            if existing is not None:
                updated = copy.deepcopy(existing)
                updated["count"] = existing.get("count", 1) + 1
                updated["lastTimestamp"] = timestamp
                txn.put(events, updated)
                return
        involved = {
            "kind": resource.kind,
            "namespace": metadata.get("namespace", ""),
            "name": metadata["name"],
            "uid": metadata["uid"],
            "apiVersion": resource.api_version,
            "resourceVersion": metadata.get("resourceVersion", ""),
        }
        if not resource.namespaced:
            del involved["namespace"]
        if field_path:
            involved["fieldPath"] = field_path
        source = {"component": component, **({"host": host} if host else {})}
        nanoseconds = int((txn.now if when is None else when) * 1e9) + next(self._sequence)
        event = {
            "metadata": {"name": f"{metadata['name']}.{nanoseconds:x}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
            "type": event_type,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        try:
            created = txn.create(events, namespace, event)
        except ApiError:
            return  # a terminating namespace takes no new events; the recorder drops them too
        self._seen[key] = (namespace, created["metadata"]["name"])


EVENT_FIELD_SELECTORS = {
    **{f"involvedObject.{name}": _path("involvedObject", name) for name in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath",
    )},
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _path("source", "component"),
    "type": _path("type"),
}  # fmt: skip
