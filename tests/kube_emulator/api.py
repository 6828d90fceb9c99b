"""From an HTTP request to a response: routing, discovery, faults, counters, control endpoints.

Kept apart from the socket handling (`server.py`) so that the protocol-independent part reads
as a plain function of the request. URL shapes are the real API server's:

    /api/v1/<plural>[/<name>]                               cluster-scoped, or a list across namespaces
    /api/v1/namespaces/<namespace>/<plural>[/<name>]        namespaced
    /api/v1/namespaces/<namespace>/<plural>/<name>/<sub>    a subresource (`serviceaccounts/token`)
    /apis/<group>/<version>/...                             the same for named groups
    /api, /api/v1, /apis, /apis/<group>[/<version>], /version   discovery

Types and subresources with a `Handler` (registry.py) are served by it, the rest by the store.
`?watch=true` on a list URL (or on one object's URL, which watches that name) is the verb
`watch`, answered with a stream of events (watch.py) that server.py sends chunked.
Only the registered subresources are served (`serviceaccounts/token`, `pods/log`, which answers
text/plain or a chunked stream, and `/status` of CRDs and of custom resources whose version
declares it, and `nodes/status`; not `/scale`, `/binding`, `/exec`, `/attach`, `/eviction`, nor
`/status` of other built-in kinds, nor the `events.k8s.io` API: Events are served as `v1` only);
dry run and the deprecated `/api/v1/watch/...` paths are not served either. Each is refused
with a clear 400/404 rather than half-done. Patches take the three JSON formats and
server-side apply (`application/apply-patch+yaml`, apply.py); custom resources refuse strategic
merge (415). Writes are recorded under `fieldManager`, or the user agent's first segment.

Before routing, as the real server's filters run before its handlers, `access.py` decides who
the request is from and whether RBAC allows it (with authorization on): 401 Unauthorized for
an unknown token, 403 Forbidden with the API server's message (`configmaps "x" is forbidden:
User "alice" cannot get resource "configmaps" in API group "" in the namespace "ns"`), on any
path, served or not, the request's attributes being read from the URL as the real
RequestInfo does. Discovery and `/openapi/*` are non-resource URLs that the bootstrap
`system:discovery` role grants to every authenticated user. Writes of Roles, ClusterRoles and
bindings then pass the escalation checks (`bind`, `escalate`); access reviews are answered
for the caller (`Request.user`). `/_emulator/` control endpoints need no credentials; they
include `POST /_emulator/users` (`{"name", "groups"}` → `{"token"}`) for other processes.

Extra control endpoints (the workloads' test hooks) are added to `controls`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import unquote

from . import errors, openapi
from . import validation as v
from .access import AccessControl
from .apply import APPLY_PATCH
from .apply import parse_body as parse_apply_body
from .authn import ADMIN, User
from .clock import Clock
from .errors import ApiError
from .faults import Fault, Faults, RequestStats
from .patch import JSON_PATCH, PATCH_TYPES, STRATEGIC_MERGE_PATCH
from .registry import Registry, ResourceType, Subresource
from .selectors import SelectorError, parse_field_selector, parse_label_selector
from .store import ListOptions, Store, decode_continue
from .watch import WatchHub, WatchRequest

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.0+pier-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}

CONTROL_PREFIX = "/_emulator/"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # still percent-encoded: names may contain an encoded ':' or '/'
    query: dict[str, str]
    content_type: str
    body: bytes
    user_agent: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # as sent, repeated names repeated (Impersonate-Group)
    user: User | None = None  # who the request acts as, once the access filters have run


class Stream(Protocol):
    """A streamed answer (a watch): encoded chunks; None when there is nothing to send yet, so
    the server can check on its client. `close()` ends the iteration soon, from any thread."""

    def __iter__(self) -> Iterator[bytes | None]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: Any = None  # JSON, or bytes sent as they are for another content type
    drop: bool = False  # close the connection without answering
    content_type: str = "application/json"
    stream: Stream | None = None  # a 200 whose body is these chunks (a watch, a followed log) instead of `body`

    @classmethod
    def error(cls, error: ApiError) -> Response:
        return cls(error.code, error.status_body())


@dataclass(frozen=True)
class Route:
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    resource: ResourceType | None = None  # None for discovery
    namespace: str | None = None
    name: str | None = None
    discovery: Callable[[], Any] | None = None
    subresource: Subresource | None = None

    @property
    def fault_namespace(self) -> str | None:
        """The namespace a fault's `namespace` filter is compared with."""
        if self.resource is not None and self.resource.plural == "namespaces" and self.resource.group == "":
            return self.name
        return self.namespace

    @property
    def resource_name(self) -> str:
        """How request counts name the resource: `namespaces`, `serviceaccounts/token`; "" for discovery."""
        if self.subresource is not None:
            return self.subresource.resource
        return self.resource.plural if self.resource else ""

    @property
    def resource_names(self) -> tuple[str, ...]:
        """The names a fault's `resource` filter matches: plural and group-qualified plural."""
        if self.resource is None:
            return ("",)
        if self.subresource is not None:
            return (self.subresource.resource, f"{self.resource.key}/{self.subresource.name}")
        return (self.resource.plural, self.resource.key)


class KubeApi:
    def __init__(
        self,
        registry: Registry,
        store: Store,
        faults: Faults,
        stats: RequestStats,
        clock: Clock,
        *,
        watches: WatchHub | None = None,
        access: AccessControl | None = None,
    ):
        self.registry = registry
        self.access = access
        self.store = store
        self.watches = watches if watches is not None else WatchHub(store)
        self.faults = faults
        self.stats = stats
        self.clock = clock
        self.server_address = ""  # host:port, once the server is bound (for /api discovery)
        # More control endpoints: each answers a request under /_emulator/, or None if not its own.
        self.controls: list[Callable[[Request], Response | None]] = []

    def reset(self) -> None:
        """A fresh cluster: no objects but the built-ins, no faults, no counts, real time."""
        self.clock.reset()
        self.store.reset()
        self.faults.clear()
        self.stats.clear()
        if self.access is not None:
            self.access.authenticator.clear_users()

    def handle(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        if self.access is not None:
            attributes = self.access.attributes(request.method, request.path, request.query)
            try:
                request = replace(request, user=self.access.admit(list(request.headers), attributes))
            except ApiError as error:
                self.stats.record(attributes.verb, attributes.combined_resource)
                return Response.error(error)
        if request.path.startswith("/openapi"):
            try:
                doc = openapi.document([p for p in request.path.split("/") if p], _header(request, "accept"),
                                       KUBERNETES_VERSION["gitVersion"])  # fmt: skip
            except ApiError as error:
                return Response.error(error)
            if doc is not None:
                self.stats.record("get", "")
                return Response(200, doc)
        try:
            route = self._route(request.method, request.path)
            if route.verb in ("list", "get") and route.subresource is None and _truthy(request.query.get("watch")):
                route = self._watch_route(route)
        except ApiError as error:
            self.stats.record(request.method.lower(), "")
            return Response.error(error)
        self.stats.record(route.verb, route.resource_name)
        fault = self.faults.take(route.verb, route.resource_names, route.fault_namespace)
        if fault is not None:
            if fault.latency:
                time.sleep(fault.latency)
            if fault.drop:
                return Response(drop=True)
            if fault.status is not None:
                return Response.error(errors.injected(fault.status))
        try:
            self._check_write(route, request)
            return self._serve(route, request)
        except ApiError as error:
            return Response.error(error)

    def _check_write(self, route: Route, request: Request) -> None:
        """RBAC's escalation checks, before a Role, ClusterRole or binding is written."""
        if self.access is None or request.user is None or route.resource is None or route.subresource is not None:
            return
        current = None
        if route.verb in ("update", "patch"):
            try:
                current = self.store.get(route.resource, route.namespace or "", route.name or "")
            except ApiError:
                current = None
        self.access.check_write(
            request.user, route.resource, route.verb, route.namespace or "", route.name or "", request, current
        )

    # --- routing -----------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> Route:
        parts = [unquote(part) for part in path.split("/") if part]
        discovery = self._discovery_route(parts)
        if discovery is not None:
            if method != "GET":
                raise errors.method_not_allowed()
            return Route("get", discovery=discovery)
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.path_not_found()
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            scoped = self.registry.get(group, version, rest[2])
            if scoped is not None and scoped.namespaced:
                namespace, rest = rest[1], rest[2:]
        resource = self.registry.get(group, version, rest[0])
        if resource is None or len(rest) > 3 or (resource.namespaced and namespace is None and len(rest) >= 2):
            raise errors.path_not_found()
        name = rest[1] if len(rest) >= 2 else None
        subresource = None
        if len(rest) == 3:
            subresource = self.registry.subresource(resource, rest[2])
            if subresource is None:
                raise errors.path_not_found()
        verb = self._verb(method, resource, namespace, name, subresource)
        if verb not in (subresource or resource).verbs:
            raise errors.method_not_allowed()
        return Route(verb, resource, namespace, name, subresource=subresource)

    @staticmethod
    def _watch_route(route: Route) -> Route:
        """A GET with `watch=true` is the verb `watch` (RBAC and faults name it so)."""
        assert route.resource is not None
        if "watch" not in route.resource.verbs:
            raise errors.method_not_allowed()
        return dataclasses.replace(route, verb="watch")

    @staticmethod
    def _verb(
        method: str, resource: ResourceType, namespace: str | None, name: str | None, subresource: Subresource | None
    ) -> str:
        if subresource is not None:
            # POST to one object's subresource creates (a token, an eviction); the rest read or change it.
            verbs = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}
        elif name is None:
            across_namespaces = resource.namespaced and namespace is None
            verbs = (
                {"GET": "list"}
                if across_namespaces
                else {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
            )
        else:
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if method not in verbs:
            raise errors.method_not_allowed()
        return verbs[method]

    def _discovery_route(self, parts: list[str]) -> Callable[[], Any] | None:
        groups = self.registry.group_versions()
        if parts == ["version"]:
            return lambda: KUBERNETES_VERSION
        if parts == ["api"]:
            return self._core_versions
        if parts == ["apis"]:
            return self._group_list
        if len(parts) == 2 and parts[0] == "api" and parts[1] in groups.get("", []):
            return lambda: self._resource_list("", parts[1])
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups and parts[1]:
            return lambda: {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1], groups[parts[1]])}
        if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []) and parts[1]:
            return lambda: self._resource_list(parts[1], parts[2])
        return None

    # --- serving -----------------------------------------------------------------------------

    def _serve(self, route: Route, request: Request) -> Response:
        if route.discovery is not None:
            return Response(200, route.discovery())
        resource = route.resource
        assert resource is not None
        query = request.query
        if "dryRun" in query:
            raise errors.unsupported_feature("dryRun")
        namespace = route.namespace or ""
        name = route.name or ""
        status = route.subresource is not None and route.subresource.is_status
        handler = route.subresource.handler if route.subresource is not None else resource.handler
        manager = ""
        if route.verb in ("create", "update", "patch"):
            manager = _field_manager(request, route.verb)
            _check_field_validation(resource, request, route.verb)
        if handler is not None and route.verb == "get":
            return handler.get(namespace, name, query)  # type: ignore[attr-defined]  # pods/log
        if handler is not None:
            assert route.verb == "create", "handlers serve create or get only; the router checks the type's verbs"
            if hasattr(handler, "create_as"):  # answers for the caller (SelfSubjectAccessReview)
                return Response(201, handler.create_as(request.user or ADMIN, namespace, _json_body(request)))
            return Response(201, handler.create(namespace, name, _json_body(request)))
        if route.verb == "watch":
            options = self._list_options(resource, query)
            scope = route.namespace if resource.namespaced else None
            watch = WatchRequest(resource, scope, route.name, options.label_selector, options.field_selector, query)
            return Response(200, stream=self.watches.open(watch))
        if route.verb == "get":
            return Response(200, self.store.get(resource, namespace, name))
        if route.verb == "list":
            scope = route.namespace if resource.namespaced else None
            return Response(200, self.store.list(resource, scope, self._list_options(resource, query)))
        if route.verb == "create":
            return Response(201, self.store.create(resource, namespace, _json_body(request), manager=manager))
        if route.verb == "update":
            body = _json_body(request)
            obj, created = self.store.replace(resource, namespace, name, body, manager=manager, status=status)
            return Response(201 if created else 200, obj)
        if route.verb == "patch":
            content_type = request.content_type.split(";")[0].strip().lower()
            if content_type == APPLY_PATCH:
                force = _truthy(query.get("force"))
                body = parse_apply_body(request.body)
                obj, created = self.store.apply(
                    resource, namespace, name, body, manager=manager, force=force, status=status
                )
                return Response(201 if created else 200, obj)
            refused_strategic = content_type == STRATEGIC_MERGE_PATCH and not resource.strategic_merge
            if content_type not in PATCH_TYPES or refused_strategic:
                raise errors.unsupported_media_type(
                    content_type,
                    errors.PATCH_MEDIA_TYPES if resource.strategic_merge else errors.CUSTOM_RESOURCE_PATCH_MEDIA_TYPES,
                )
            body = _json_body(request)
            return Response(
                200, self.store.patch(resource, namespace, name, content_type, body, manager=manager, status=status)
            )
        if route.verb == "delete":
            options = _json_body(request) if request.body.strip() else {}
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            if "propagationPolicy" in query:  # the query string may carry DeleteOptions too
                options = {**options, "propagationPolicy": query["propagationPolicy"]}
            if query.get("gracePeriodSeconds", "").lstrip("-").isdigit():
                options = {**options, "gracePeriodSeconds": int(query["gracePeriodSeconds"])}
            if "orphanDependents" in query:
                options = {**options, "orphanDependents": query["orphanDependents"].lower() == "true"}
            return Response(200, self.store.delete(resource, namespace, name, options))
        scope = route.namespace if resource.namespaced else None
        return Response(200, self.store.delete_collection(resource, scope, self._list_options(resource, query)))

    @staticmethod
    def _list_options(resource: ResourceType, query: dict[str, str]) -> ListOptions:
        try:
            label_selector = parse_label_selector(query.get("labelSelector", ""))
            field_selector = parse_field_selector(query.get("fieldSelector", ""), resource.field_selectors)
        except SelectorError as error:
            raise errors.bad_request(str(error)) from None
        limit_text = query.get("limit") or "0"
        if not limit_text.isdigit():
            raise errors.bad_request(f"limit: Invalid value: {limit_text!r}: must be a non-negative integer")
        token = query.get("continue")
        return ListOptions(label_selector, field_selector, int(limit_text), decode_continue(token) if token else None)

    # --- discovery ---------------------------------------------------------------------------

    def _core_versions(self) -> Any:
        return {
            "kind": "APIVersions",
            "versions": self.registry.group_versions().get("", []),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}],
        }

    @staticmethod
    def _group(name: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{name}/{version}", "version": version} for version in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    def _group_list(self) -> Any:
        groups = [self._group(name, versions) for name, versions in self.registry.group_versions().items() if name]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> Any:
        resources = []
        for resource in self.registry.types():
            if resource.group == group and resource.version == version:
                resources.append(resource.discovery_entry())
                resources += [sub.discovery_entry() for sub in self.registry.subresources(resource)]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # --- test controls -----------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        endpoint = (request.method, request.path[len(CONTROL_PREFIX) :].rstrip("/"))
        if endpoint == ("GET", "faults"):
            return Response(200, {"faults": [fault.to_dict() for fault in self.faults.active()]})
        if endpoint == ("POST", "faults"):
            try:
                fault = Fault.from_dict(json.loads(request.body or b"null"))
            except (ValueError, TypeError) as error:
                return Response(400, {"error": str(error)})
            self.faults.add(fault)
            return Response(201, {"fault": fault.to_dict()})
        if endpoint == ("DELETE", "faults"):
            self.faults.clear()
            return Response(200, {"faults": []})
        if endpoint == ("POST", "reset"):
            self.reset()
            return Response(200, {"reset": True})
        if endpoint == ("GET", "stats"):
            return Response(200, {"total": self.stats.count(), "requests": self.stats.snapshot()})
        if endpoint == ("POST", "clock"):
            try:
                body = json.loads(request.body or b"null")
                if not isinstance(body, dict) or set(body) != {"advance_seconds"}:
                    raise ValueError('the body must be {"advance_seconds": N}')
                self.clock.advance(body["advance_seconds"])
            except (ValueError, TypeError) as error:
                return Response(400, {"error": str(error)})
            return Response(200, {"time": self.clock.timestamp()})
        if endpoint == ("POST", "users") and self.access is not None:
            try:
                body = json.loads(request.body or b"null")
                if not isinstance(body, dict) or not set(body) <= {"name", "groups"}:
                    raise ValueError('the body must be {"name": "...", "groups": [...]}')
                token = self.access.authenticator.add_user(body.get("name"), body.get("groups") or [])
            except (ValueError, TypeError) as error:
                return Response(400, {"error": str(error)})
            return Response(201, {"name": body["name"], "token": token})
        for control in self.controls:
            response = control(request)
            if response is not None:
                return response
        return Response(404, {"error": f"no emulator control endpoint {request.method} {request.path}"})


def _field_manager(request: Request, verb: str) -> str:
    """The manager a write is recorded under: `fieldManager`, else the user agent's first segment
    (`OpenAPI-Generator` for the Python client), as the real server defaults it. An apply must name
    one; `force` is for applies only (422, PatchOptions/CreateOptions/UpdateOptions invalid)."""
    query = request.query
    manager = query.get("fieldManager", "")
    is_apply = verb == "patch" and request.content_type.split(";")[0].strip().lower() == APPLY_PATCH
    problems: list[v.FieldError] = []
    if is_apply and not manager:
        problems.append(v.required("fieldManager", "is required for apply patch"))
    if not is_apply and "force" in query and verb == "patch":
        problems.append(v.forbidden("force", "may not be specified for non-apply patch"))
    if len(manager) > 128:
        problems.append(v.too_long("fieldManager", 128))
    if problems:
        raise errors.invalid("meta.k8s.io", _options_kind(verb), "", problems)
    return manager or request.user_agent.split("/")[0].strip() or "unknown"


def _options_kind(verb: str) -> str:
    return {"create": "CreateOptions", "update": "UpdateOptions"}.get(verb, "PatchOptions")


def _check_field_validation(resource: ResourceType, request: Request, verb: str) -> None:
    """`fieldValidation`: Ignore and Warn (the default) drop unknown fields of a custom resource
    (no Warning header is sent); Strict refuses them (400), checked on the object sent (create,
    update, apply) or the merge patch. Built-in kinds have no schema here: nothing is unknown."""
    directive = request.query.get("fieldValidation", "")
    supported = ("Ignore", "Warn", "Strict")
    if directive not in ("", *supported):
        problem = v.not_supported("fieldValidation", directive, supported)
        raise errors.invalid("meta.k8s.io", _options_kind(verb), "", [problem])
    check = getattr(resource.strategy, "unknown_fields", None)
    content_type = request.content_type.split(";")[0].strip().lower()
    if directive != "Strict" or check is None or content_type == JSON_PATCH:
        return
    body = parse_apply_body(request.body) if content_type == APPLY_PATCH else _json_body(request)
    unknown = check(body)
    if unknown:
        raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown))


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() not in ("", "0", "false")


def _header(request: Request, name: str) -> str:
    return next((value for key, value in request.headers if key.lower() == name), "")


def _json_body(request: Request) -> Any:
    if not request.body:
        raise errors.bad_request("the request has no body")
    try:
        return json.loads(request.body)
    except ValueError as error:
        raise errors.bad_request(f"the body of the request is not valid JSON: {error}") from None
