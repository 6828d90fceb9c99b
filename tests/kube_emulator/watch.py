"""Watch: the emulated cluster's change feed, served the way the API server's watch cache serves it.

`?watch=true` (or `watch=1`) on a list URL turns the list into a stream of newline-delimited JSON
events, `{"type": "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR", "object": {...}}`, in
resourceVersion order, for as long as the client stays (or `timeoutSeconds`). The semantics are
those of `k8s.io/apiserver/pkg/storage/cacher` (watch_cache.go, cache_watcher.go):

- history: every write the store makes, whoever makes it (HTTP requests, the namespace
  controller, anything else that writes through the store), is kept per resource type, the last
  `history_size` of them (the watch cache's capacity). A watch from `resourceVersion=X` gets every
  change after X, then live ones. An X older than the history gets one in-band `ERROR` event, a
  `Status` 410 Expired "too old resource version: X (Y)" where Y is the oldest resourceVersion it
  can still resume from, and the stream ends: the client lists again. An X newer than anything
  written gets a 504 "Too large resource version" `ERROR` (the real server first waits 3 seconds
  for its cache to catch up; the emulator's never lags).
- without a resourceVersion, or with "0": synthetic `ADDED` events for the objects that exist
  now, then the changes after them. `sendInitialEvents=true` (with
  `resourceVersionMatch=NotOlderThan`, as the real server requires) does the same and, with
  `allowWatchBookmarks=true`, ends the initial events with a `BOOKMARK` annotated
  `k8s.io/initial-events-end: "true"`; `sendInitialEvents=false` starts from now, or from X.
- selectors: label and field selectors filter per event, on the object before and after the
  change, as `cacheWatcher.convertToWatchEvent` does: an object that stops matching is sent as
  `DELETED` (its previous content, at the change's resourceVersion), one that starts matching as
  `ADDED`. A deleted object is sent as it was last stored, at the deletion's resourceVersion.
- bookmarks: with `allowWatchBookmarks=true`, every `bookmark_interval` seconds (the real server:
  about a minute, and 2 seconds before the watch's timeout) a `BOOKMARK` whose object carries only
  `kind`, `apiVersion` and `metadata.resourceVersion`: every change up to there was sent.
- a watcher that falls so far behind that its next change has left the history is closed, as the
  real server closes watchers too slow to keep up; it resumes from its last resourceVersion.
- `KubeEmulator.reset()` closes every open watch and forgets the history: nothing from before a
  reset can be resumed, so a client that watches again from an older resourceVersion gets 410 and
  lists again, as after a real cluster's etcd was restored. Stopping the emulator closes every
  open watch at once.

Streams wait on one condition variable that every recorded write notifies. They also wake every
`IDLE_CHECK_SECONDS` when idle: the HTTP side checks the client has not hung up (else the thread
is freed), and the store does its timed work (a terminating namespace is purged when due), which
otherwise only runs at the start of a request, and a watcher that sends none still sees it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import ApiError
from .selectors import FieldSelector, LabelSelector
from .store import ListOptions, Store
from .validation import FieldError, forbidden, not_supported

if TYPE_CHECKING:
    from .registry import ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
IDLE_CHECK_SECONDS = 0.2  # how often an idle stream lets the server check its client is still there
PRE_TIMEOUT_BOOKMARK_SECONDS = 2.0  # the cacher's last bookmark comes this long before the timeout


@dataclass(frozen=True)
class Change:
    """One write the store made (a watch cache event). Objects are the stored dicts, which the
    store never mutates in place: `obj` after the write (None once deleted), `prev` before it
    (None when created)."""

    resource_version: int
    key: Key
    obj: Obj | None
    prev: Obj | None


@dataclass
class _History:
    floor: int  # the oldest resourceVersion a watch can resume from: every change after it is kept
    changes: deque[Change] = field(default_factory=deque)


@dataclass(frozen=True)
class WatchRequest:
    """What a watch asks for, from the request's URL and query."""

    resource: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped type)
    name: str | None  # a watch on one object's URL: only that name
    label_selector: LabelSelector
    field_selector: FieldSelector
    query: dict[str, str]


class WatchHub:
    """The history of every change the store makes, and the open watches waiting for more."""

    def __init__(self, store: Store, *, history_size: int = 1000, bookmark_interval: float = 60.0):
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError("watch_history must be a positive number of events")
        if not isinstance(bookmark_interval, (int, float)) or bookmark_interval <= 0:
            raise ValueError("watch_bookmark_interval must be a positive number of seconds")
        self.history_size = history_size
        self.bookmark_interval = float(bookmark_interval)
        self._store = store
        self._condition = threading.Condition()
        self._histories: dict[str, _History] = {}
        # Attached after the store seeded its built-ins: those writes are history nobody can ask for.
        self._base_floor = self._latest = store.observe(self)

    # --- fed by the store, under its lock (a store Observer) ---------------------------------

    def changed(self, store: Store, resource: ResourceType, key: Key, obj: Obj | None, prev: Obj | None,
                version: int) -> None:
        with self._condition:
            history = self._history(resource)
            if len(history.changes) >= self.history_size:
                history.floor = history.changes.popleft().resource_version
            history.changes.append(Change(version, key, obj, prev))
            self._latest = version
            self._condition.notify_all()

    def tick(self, store: Store) -> None:
        pass

    def reset(self, version: int) -> None:
        """The store is about to empty itself (still at `version`). Every open watch has seen at
        most `version`, so it finds itself behind the history and ends."""
        with self._condition:
            self._histories.clear()
            # One past what a client may have seen: resuming across a reset would miss its deletions.
            self._base_floor = version + 1
            self._condition.notify_all()

    def _history(self, resource: ResourceType) -> _History:
        history = self._histories.get(resource.key)
        if history is None:
            history = self._histories[resource.key] = _History(self._base_floor)
        return history

    def _changes_after(self, resource: ResourceType, version: int) -> list[Change] | None:
        """The type's changes after `version`, oldest first; None if some have left the history."""
        if version < self._floor(resource):
            return None
        history = self._histories.get(resource.key)
        if history is None:
            return []
        newer: list[Change] = []
        for change in reversed(history.changes):  # watchers mostly want the last few
            if change.resource_version <= version:
                break
            newer.append(change)
        newer.reverse()
        return newer

    # --- opening a watch ---------------------------------------------------------------------

    def open(self, request: WatchRequest) -> WatchStream:
        """A stream for the request; refusals that come before any event (400, 422) raise ApiError."""
        query = request.query
        send_initial = _optional_bool(query, "sendInitialEvents")
        match = query.get("resourceVersionMatch", "")
        problems = _validate_options(send_initial, match)
        if problems:
            raise errors.invalid("meta.k8s.io", "ListOptions", "", problems)
        version_text = query.get("resourceVersion", "")
        if version_text and not version_text.isdigit():
            raise errors.bad_request(f'resourceVersion: Invalid value: "{version_text}": must be a number')
        requested = int(version_text or 0)
        bookmarks = _optional_bool(query, "allowWatchBookmarks") is True
        timeout_text = query.get("timeoutSeconds", "")
        if timeout_text and not timeout_text.isdigit():
            raise errors.bad_request(f'timeoutSeconds: Invalid value: "{timeout_text}": must be a non-negative integer')
        # 0 is no timeout here; a real server then picks one of 30 to 60 minutes.
        deadline = time.monotonic() + int(timeout_text) if timeout_text and int(timeout_text) else None
        stream = WatchStream(self, request, bookmarks=bookmarks, deadline=deadline)

        with self._condition:
            latest = self._latest
        if requested > latest:
            return stream.failed(_too_large(requested, latest))
        if send_initial is True or (send_initial is None and requested == 0):
            # The store's list is a consistent snapshot at its resourceVersion; every later
            # change is in the history (or the stream will find it has fallen behind).
            listed = self._store.list(request.resource, request.namespace, _list_options(request))
            snapshot = int(listed["metadata"]["resourceVersion"])
            initial = [item for item in listed["items"] if request.name in (None, item["metadata"]["name"])]
            return stream.started(snapshot, initial, initial_events_end=send_initial is True)
        start = requested or latest
        with self._condition:
            if self._changes_after(request.resource, start) is None:
                return stream.failed(_expired(start, self._floor(request.resource)))
        return stream.started(start, [], initial_events_end=False)

    def _floor(self, resource: ResourceType) -> int:
        history = self._histories.get(resource.key)
        return history.floor if history is not None else self._base_floor


class WatchStream:
    """One open watch: iterate for its encoded event lines; None means "nothing yet" (the server
    checks on its client then). `close()` ends it from any thread, at once."""

    def __init__(self, hub: WatchHub, request: WatchRequest, *, bookmarks: bool, deadline: float | None):
        self._hub = hub
        self._request = request
        self._bookmarks = bookmarks
        self._deadline = deadline
        self._next_bookmark: float | None = None
        self._cursor = 0  # the resourceVersion up to which this watcher has seen every change
        self._first: list[bytes] = []
        self._live = False
        self._closed = False

    def started(self, cursor: int, initial: list[Obj], *, initial_events_end: bool) -> WatchStream:
        resource = self._request.resource
        self._cursor = cursor
        self._first = [_line(ADDED, _present(resource, obj)) for obj in initial]
        if initial_events_end and self._bookmarks:
            self._first.append(_line(BOOKMARK, _bookmark(resource, cursor, initial_events_end=True)))
        self._live = True
        if self._bookmarks:
            self._schedule_bookmark(time.monotonic())
        return self

    def failed(self, error: ApiError) -> WatchStream:
        """A watch that sends one ERROR event and ends (the real server's errWatcher)."""
        self._first = [_line(ERROR, error.status_body())]
        return self

    def close(self) -> None:
        with self._hub._condition:
            self._closed = True
            self._hub._condition.notify_all()

    def __iter__(self) -> Iterator[bytes | None]:
        yield from self._first
        while self._live:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                self._hub._store.run_timed_work()  # no request may come to do it
                yield None
            else:
                yield from batch

    def _next_batch(self) -> list[bytes] | None:
        """The lines to send next; [] after an idle wait; None when the stream ends."""
        hub = self._hub
        resource = self._request.resource
        with hub._condition:
            if self._closed:
                return None
            changes = hub._changes_after(resource, self._cursor)
            if changes is None:
                # Behind the history (too slow, or the cluster was reset): closed, as the real
                # server closes a watcher that cannot keep up; the client resumes or lists again.
                return None
            now = time.monotonic()
            if not changes:
                if self._deadline is not None and now >= self._deadline:
                    return None
                if self._next_bookmark is not None and now >= self._next_bookmark:
                    # Every change of this type up to the latest write has been sent.
                    self._cursor = max(self._cursor, hub._latest)
                    self._schedule_bookmark(now)
                    return [_line(BOOKMARK, _bookmark(resource, self._cursor))]
                wake = now + IDLE_CHECK_SECONDS
                for due in (self._deadline, self._next_bookmark):
                    if due is not None:
                        wake = min(wake, due)
                hub._condition.wait(max(wake - now, 0))
                return []
            self._cursor = changes[-1].resource_version
        events = (self._event(change) for change in changes)
        return [_line(kind, obj) for kind, obj in events if kind]

    def _schedule_bookmark(self, now: float) -> None:
        """cacheWatcher.nextBookmarkTime: every interval, and once shortly before the timeout."""
        due = now + self._hub.bookmark_interval
        if self._deadline is not None:
            due = min(due, self._deadline - PRE_TIMEOUT_BOOKMARK_SECONDS)
        self._next_bookmark = due if due >= now else None

    def _event(self, change: Change) -> tuple[str, Obj] | tuple[None, None]:
        """cacheWatcher.convertToWatchEvent: what this watcher is told of a change, if anything."""
        resource = self._request.resource
        now_passes = change.obj is not None and self._selects(change.key, change.obj)
        before_passed = change.prev is not None and self._selects(change.key, change.prev)
        if now_passes and change.obj is not None:
            return (MODIFIED if before_passed else ADDED), _present(resource, change.obj)
        if before_passed and change.prev is not None:
            metadata = {**change.prev["metadata"], "resourceVersion": str(change.resource_version)}
            gone = {**change.prev, "metadata": metadata}
            return DELETED, _present(resource, gone)
        return None, None

    def _selects(self, key: Key, obj: Obj) -> bool:
        request = self._request
        return (
            (request.namespace is None or key[0] == request.namespace)
            and (request.name is None or key[1] == request.name)
            and request.label_selector.matches(obj["metadata"].get("labels"))
            and request.field_selector.matches(obj)
        )


# --- helpers -----------------------------------------------------------------------------------


def _list_options(request: WatchRequest) -> ListOptions:
    return ListOptions(request.label_selector, request.field_selector)


def _validate_options(send_initial: bool | None, match: str) -> list[FieldError]:
    """apimachinery's validateWatchOptions, with the WatchList feature on (as from 1.34)."""
    problems = []
    if send_initial is not None and match != "NotOlderThan":
        problems.append(
            forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        )
    if match:
        if send_initial is None:
            why = "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
            problems.append(forbidden("resourceVersionMatch", why))
        if match != "NotOlderThan":
            problems.append(not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
    return problems


def _optional_bool(query: dict[str, str], name: str) -> bool | None:
    value = query.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0", ""):
        return False
    raise errors.bad_request(f'{name}: Invalid value: "{value}": must be a boolean')


def _present(resource: ResourceType, obj: Obj) -> Obj:
    return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}


def _bookmark(resource: ResourceType, version: int, *, initial_events_end: bool = False) -> Obj:
    metadata: Obj = {"resourceVersion": str(version)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _expired(version: int, floor: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {version} ({floor})")


def _too_large(version: int, latest: int) -> ApiError:
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {version}, current: {latest}",
        {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )
