"""Injected faults and request counters: the emulator's test controls.

A fault makes matching requests fail the way a sick cluster does: an error status (500
InternalError, 503 ServiceUnavailable...), added latency, or a connection closed without an
answer. Tests switch faults on and off from Python or, for worker processes that only know the
URL, over HTTP (`/_emulator/faults`). Counters answer "how many API calls did that take".
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import INJECTABLE_STATUSES

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass
class Fault:
    """What to do to matching requests; None in verb/resource/namespace matches anything.

    `resource` is a plural (`namespaces`) or a group-qualified one (`roles.rbac.authorization.k8s.io`);
    a subresource is `<plural>/<subresource>`, as RBAC names it: `serviceaccounts/token` (verb
    `create`) for TokenRequests. A fault on `serviceaccounts` does not touch its subresources.
    TokenReviews are the resource `tokenreviews` (verb `create`). A `watch=true` request is the
    verb `watch`: a status fault answers it with that HTTP error before any event, as a real
    server refusing the watch does.
    `namespace` is the request's namespace from the URL; for the `namespaces` resource itself,
    the namespace's name (none on create, whose name is in the body). `times` counts matching
    requests before the fault clears itself (None: until cleared).
    """

    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    times: int | None = None

    def __post_init__(self) -> None:
        if self.verb is not None and self.verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(VERBS)} (or None for any), not {self.verb!r}")
        if self.status is not None and self.status not in INJECTABLE_STATUSES:
            raise ValueError(f"status must be one of {sorted(INJECTABLE_STATUSES)}, not {self.status!r}")
        if not isinstance(self.latency, (int, float)) or self.latency < 0:
            raise ValueError("latency must be a number of seconds ≥ 0")
        if self.status is None and not self.drop and not self.latency:
            raise ValueError("a fault needs an effect: status, latency or drop")
        if self.status is not None and self.drop:
            raise ValueError("a dropped connection carries no status: choose one")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise ValueError("times must be a positive integer, or None for until cleared")

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def matches(self, verb: str, resource_names: tuple[str, ...], namespace: str | None) -> bool:
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource in resource_names)
            and (self.namespace is None or self.namespace == namespace)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The active faults, first match wins; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, verb: str, resource_names: tuple[str, ...], namespace: str | None) -> Fault | None:
        """The fault for this request, if any, counting it against the fault's `times`."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(verb, resource_names, namespace):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None


class RequestStats:
    """Requests served, by (verb, resource plural); requests outside any resource have resource ""."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, verb: str, resource: str) -> None:
        with self._lock:
            self._counts[(verb, resource)] += 1

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (v, r), n in self._counts.items()
                if (verb is None or v == verb) and (resource is None or r == resource)
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"verb": verb, "resource": resource, "count": n} for (verb, resource), n in sorted(self._counts.items())
            ]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
