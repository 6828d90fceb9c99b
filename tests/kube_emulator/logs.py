"""Pod logs: `GET /api/v1/namespaces/<ns>/pods/<name>/log`, text/plain, from the simulated kubelet.

As the real API server and kubelet answer (`pkg/registry/core/pod/strategy.go` LogLocation,
`pkg/kubelet/kubelet_pods.go` validateContainerLogStatus):

- 404 for a missing pod; 400 `a container name must be specified for pod P, choose one of:
  [a b]` when the pod has several containers and `container` is not given; 400 `container C
  is not valid for pod P` for an unknown one.
- a pod not yet on a node answers an empty body; one on a node that is NotReady (its kubelet
  does not answer) a 500 `Get "https://<hostIP>:10250/containerLogs/…": dial tcp …: i/o
  timeout`; a container not started yet 400 `container "C" in pod "P" is waiting to start:
  ContainerCreating`; `previous=true` without an earlier
  run of the container 400 `previous terminated container "C" in pod "P" not found`.
- options: `sinceSeconds` or `sinceTime`, then `tailLines`, then `limitBytes`; `timestamps`
  prefixes each line with its time (RFC 3339 with nanoseconds); `follow=true` streams (chunked)
  until the container ends, the pod goes, or the emulator stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import errors
from .api import Response
from .scheduler import node_ready
from .validation import invalid

if TYPE_CHECKING:
    from .kubelet import ContainerRun, Kubelet
    from .registry import ResourceType
    from .store import Store

Obj = dict[str, Any]
FOLLOW_POLL_SECONDS = 0.05


def rfc3339_nano(seconds: float) -> str:
    """Go's time.RFC3339Nano: nanoseconds without trailing zeros."""
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


@dataclass(frozen=True)
class LogOptions:
    container: str
    follow: bool
    previous: bool
    timestamps: bool
    tail_lines: int | None
    limit_bytes: int | None
    since_seconds: int | None
    since_time: float | None


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _options(query: dict[str, str]) -> LogOptions:
    numbers: dict[str, int | None] = {}
    problems = []
    for name, minimum in (("tailLines", 0), ("limitBytes", 1), ("sinceSeconds", 1)):
        text = query.get(name)
        if text is None or text == "":
            numbers[name] = None
            continue
        try:
            numbers[name] = int(text)
        except ValueError:
            raise errors.bad_request(f'{name}: invalid value "{text}": must be an integer') from None
        if numbers[name] < minimum:  # type: ignore[operator]
            comparison = "greater than or equal to 0" if minimum == 0 else "greater than 0"
            problems.append(invalid(name, numbers[name], f"must be {comparison}"))
    since_time = None
    if query.get("sinceTime"):
        try:
            since_time = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise errors.bad_request(f'sinceTime: invalid value "{query["sinceTime"]}"') from None
        if numbers["sinceSeconds"] is not None:
            message = "at most one of `sinceTime` or `sinceSeconds` may be specified"
            problems.append(invalid("sinceSeconds", numbers["sinceSeconds"], message))
    if problems:
        raise errors.invalid("", "PodLogOptions", "", problems)
    return LogOptions(
        container=query.get("container", ""),
        follow=_flag(query, "follow"),
        previous=_flag(query, "previous"),
        timestamps=_flag(query, "timestamps"),
        tail_lines=numbers["tailLines"],
        limit_bytes=numbers["limitBytes"],
        since_seconds=numbers["sinceSeconds"],
        since_time=since_time,
    )


def _container_name(pod: Obj, wanted: str) -> str:
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    init_containers = [c.get("name", "") for c in spec.get("initContainers") or []]
    if not wanted:
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        if init_containers:
            message += f" or one of the init containers: [{' '.join(init_containers)}]"
        raise errors.bad_request(message)
    if wanted not in containers + init_containers:
        raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def _render(lines: list[tuple[float, str]], timestamps: bool) -> bytes:
    if timestamps:
        return "".join(f"{rfc3339_nano(at)} {text}\n" for at, text in lines).encode()
    return "".join(f"{text}\n" for _, text in lines).encode()


class PodLogHandler:
    """The `pods/log` subresource (GET only)."""

    def __init__(self, store: Store, pods: ResourceType, kubelet: Kubelet, stopping: threading.Event):
        self._store = store
        self._pods = pods
        self._kubelet = kubelet
        self._stopping = stopping

    def create(self, namespace: str, name: str, body: Any) -> Obj:
        raise errors.method_not_allowed()

    def get(self, namespace: str, name: str, query: dict[str, str]) -> Response:
        options = _options(query)
        with self._store.transaction() as txn:
            pod = txn.get(self._pods, namespace, name)
            if pod is None:
                raise errors.not_found("", "pods", name)
            container_name = _container_name(pod, options.container)
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                return Response(200, b"", content_type="text/plain")
            node = txn.get(txn.resource("", "v1", "nodes"), "", node_name)
            if node is not None and not node_ready(node):  # its kubelet does not answer
                ip = (pod.get("status") or {}).get("hostIP") or node_name
                raise errors.ApiError(500, None, f'Get "https://{ip}:10250/containerLogs/{namespace}/{name}/'
                                      f'{container_name}": dial tcp {ip}:10250: i/o timeout')
            run = self._kubelet.runs.get(pod["metadata"]["uid"])
            container = run.containers.get(container_name) if run is not None else None
            if options.previous:
                if container is None or container.previous_logs is None:
                    raise errors.bad_request(
                        f'previous terminated container "{container_name}" in pod "{name}" not found'
                    )
                lines = list(container.previous_logs)
            else:
                if container is None or container.state == "waiting":
                    raise errors.bad_request(
                        f'container "{container_name}" in pod "{name}" is waiting to start: ContainerCreating'
                    )
                lines = list(container.logs)
            now = txn.now
        seen = len(lines)
        cutoff = now - options.since_seconds if options.since_seconds is not None else options.since_time
        if cutoff is not None:
            lines = [line for line in lines if line[0] >= cutoff]
        if options.tail_lines is not None:
            lines = lines[len(lines) - options.tail_lines :] if options.tail_lines else []
        text = _render(lines, options.timestamps)
        if options.limit_bytes is not None:
            text = text[: options.limit_bytes]
        if not options.follow or options.previous or container.state == "terminated":
            return Response(200, text, content_type="text/plain")
        stream = FollowedLog(lambda closed: self._follow(pod["metadata"]["uid"], container, seen, text, options,
                                                        closed))
        return Response(200, content_type="text/plain", stream=stream)

    def _follow(
        self, uid: str, container: ContainerRun, seen: int, first: bytes, options: LogOptions,
        closed: threading.Event,
    ) -> Iterator[bytes | None]:
        budget = options.limit_bytes
        instance = container.container_id
        if first:
            yield first
        if budget is not None:
            budget -= len(first)
        while not self._stopping.is_set() and not closed.is_set() and (budget is None or budget > 0):
            with self._store.transaction():
                run = self._kubelet.runs.get(uid)
                current = run.containers.get(container.name) if run is not None else None
                if current is not container or container.container_id != instance:
                    return  # the pod is gone, or the container restarted
                new = container.logs[seen:]
                seen += len(new)
                ended = container.state == "terminated"
            if new:
                chunk = _render(new, options.timestamps)
                if budget is not None:
                    chunk, budget = chunk[:budget], budget - len(chunk)
                yield chunk
            if ended:
                return
            if not new:
                yield None  # nothing new: the server checks that its client is still there
            self._stopping.wait(FOLLOW_POLL_SECONDS)


class FollowedLog:
    """A followed log as the server streams it (api.Stream): chunks, None while nothing is new;
    `close()`, from any thread (the server stopping), ends it at its next poll."""

    def __init__(self, follow: Callable[[threading.Event], Iterator[bytes | None]]):
        self._closed = threading.Event()
        self._chunks = follow(self._closed)

    def __iter__(self) -> Iterator[bytes | None]:
        return self._chunks

    def close(self) -> None:
        self._closed.set()
