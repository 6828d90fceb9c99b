"""Pier's one door to Kubernetes, over the official `kubernetes` client, for any kind.

Configuration: in-cluster (PIER_KUBE_IN_CLUSTER), a kubeconfig (KUBECONFIG), or, for local runs
and tests, the kubeconfig the launcher writes for Pier's Kubernetes API emulator
(tests/kube_emulator, a test double). Every call, discovery included, has the timeout
PIER_KUBE_CONNECT_TIMEOUT/PIER_KUBE_READ_TIMEOUT, or inside a web request (`in_request`) the
shorter PIER_KUBE_REQUEST_CONNECT_TIMEOUT/PIER_KUBE_REQUEST_READ_TIMEOUT. The Python client has no QPS throttle (that is
the Go client); we do not set `socket_options`, which would replace the client's default that
disables Nagle's algorithm.

**One generic path.** A kind is `(apiVersion, kind)` (a bare kind name is accepted for the
built-in kinds in `BUILTIN`); the URL comes from discovery, so built-in kinds and custom
resources (e.g. `("pier.dev/v1alpha1", "AgenticSession")` once its CRD exists) go through the
same `get`, `list_objects`, `reconcile`, `delete`. The requests are made with the client's own
`ApiClient.call_api` (authentication, TLS, retries, user agent as configured) rather than
`kubernetes.dynamic.DynamicClient`, because the dynamic client's discovery takes no timeout, keeps
its cache in a file in the temp directory shared by every process (stale after another process
installs a CRD, or after the emulator restarts), reads every API group up front, and decodes
every reply as JSON (pod logs are text). Here discovery reads only the group/version asked for,
once per process, with the timeout of every call; `refresh_discovery()` forgets it (reconcile
calls it after writing a CustomResourceDefinition), and a kind missing from a cached group/version
is looked up once more before `UnknownKind`.

**Reconcile with server-side apply.** `reconcile(desired)` reads the object, and if it differs
sends `desired` as a forced apply with field manager `pier` (Pier owns the fields it sets; a hand
edit of one of them is taken back, fields others set and Pier does not are left alone). What is
compared is only what Pier sets: the live object projected onto the desired's fields (so values
the server defaults, labels others add, items others add to a keyed list do not count), plus the
fields Pier's own `managedFields` entry says it applied and `desired` no longer has (a removed
label, quota key or list item), which the apply then removes. A pass with nothing to change
makes no write request. Lists are compared by key where Pier's entry shows they merge by key
(containers, env) and whole otherwise (atomic lists such as RoleBinding subjects: an extra
subject added by hand is drift). Kinds with immutable fields (`KINDS`): a RoleBinding whose
roleRef differs, a Job whose spec differs, is deleted (propagationPolicy Background, so a Job's
pods go) and applied again ("recreated"). Objects without Pier's `managed-by` label are never
touched (NotManaged); a missing object is created by the same apply, so one that someone else
creates in the instant between Pier's read and its apply would be taken over (a create-only apply
does not exist; a POST would make Pier an `Update` co-owner of its fields, and fields it later drops
would then never be removed). One known gap: an object created before Pier applied it (no `pier` Apply
entry yet) is compared by projection only, so a field Pier stopped setting stays until Pier next
applies the object for another reason.

Errors: one `_translate` for every call. 404 is `None`/`False` where absence is an answer (get,
delete); other 4xx are `KubeError` with the Status `reason` (e.g. Invalid); 5xx, 429, 409 Conflict
and connection errors are `KubeUnavailable` (try again later).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

MANAGED_BY = ("app.kubernetes.io/managed-by", "pier")
LABEL_TENANT = "pier.dev/tenant"
LABEL_PROJECT = "pier.dev/project"
FIELD_MANAGER = "pier"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """The API server refused a request (4xx). `reason` is the Status reason (e.g. Invalid)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnavailable(KubeError):
    """The cluster could not be reached or answered 5xx / 409 Conflict: try again later."""


class NotManaged(KubeError):
    """An object with the name Pier wants exists but Pier did not create it: left alone."""


class UnknownKind(KubeError):
    """The cluster serves no such (apiVersion, kind), e.g. a custom resource whose CRD is not installed."""


@dataclass(frozen=True)
class Kind:
    """What Pier knows about a kind beyond discovery: fields that cannot change in place."""

    api_version: str
    kind: str
    immutable: tuple[str, ...] = ()  # top-level fields: a difference there means delete and apply again


KINDS = {
    (k.api_version, k.kind): k
    for k in (
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", immutable=("roleRef",)),
        Kind("batch/v1", "Job", immutable=("spec",)),
    )
}

# Built-in kinds that callers may name without their apiVersion.
BUILTIN = {
    "Namespace": "v1", "ServiceAccount": "v1", "ResourceQuota": "v1", "LimitRange": "v1", "Secret": "v1",
    "ConfigMap": "v1", "Pod": "v1", "Event": "v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "Job": "batch/v1",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1",
}

def _kind_of(ref: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(ref, tuple):
        return ref
    if ref not in BUILTIN:
        raise UnknownKind(f"{ref}: name it as (apiVersion, kind)", reason="NotFound")
    return BUILTIN[ref], ref


def _kind_of_object(obj: dict) -> tuple[str, str]:
    return obj["apiVersion"], obj["kind"]


# --- Configuration -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def api_client():
    from kubernetes import client, config

    configuration = client.Configuration()
    if settings.PIER_KUBE_IN_CLUSTER:
        config.load_incluster_config(client_configuration=configuration)
    elif settings.PIER_KUBECONFIG:
        config.load_kube_config(config_file=settings.PIER_KUBECONFIG, client_configuration=configuration)
    else:
        raise ImproperlyConfigured(
            "No Kubernetes cluster configured: set KUBECONFIG or PIER_KUBE_IN_CLUSTER=1 "
            "(`make run` starts a local simulated cluster)."
        )
    configuration.retries = 1  # fail fast; the Celery task retries with backoff
    return client.ApiClient(configuration)


def reset_client() -> None:
    api_client.cache_clear()
    refresh_discovery()


def cluster_label() -> str:
    """What the UI calls the cluster Pier talks to."""
    return "local simulated cluster" if settings.PIER_KUBE_SIMULATED else "Kubernetes cluster"


# --- Raw requests: one place for timeouts and error translation ------------------------------

_timeout: ContextVar[tuple[float, float] | None] = ContextVar("pier_kube_timeout", default=None)


@contextmanager
def in_request():
    """The calls made inside a web request (minting a key's token, writing a runner secret,
    reading a live log) get PIER_KUBE_REQUEST_CONNECT_TIMEOUT/PIER_KUBE_REQUEST_READ_TIMEOUT,
    shorter than a task's, so a cluster that does not answer is a 503 within seconds."""
    token = _timeout.set(settings.PIER_KUBE_REQUEST_TIMEOUT)
    try:
        yield
    finally:
        _timeout.reset(token)


def _request(method: str, path: str, *, query: list[tuple[str, Any]] | None = None, body: Any = None,
             content_type: str = "application/json", text: bool = False, last_bytes: int | None = None,
             what: str = "") -> Any:
    """One HTTP request to the API server. JSON in and out, or the reply as text (`text=True`;
    with `last_bytes`, only the end of it, read as a stream so a reply of any size costs that much)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    headers = {"Accept": "*/*" if text else "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        response = api_client().call_api(
            path, method, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False,
            _request_timeout=_timeout.get() or settings.PIER_KUBE_TIMEOUT,
        )
        data = response.data if last_bytes is None else _tail(response, last_bytes)
    except ApiException as exc:
        raise _translate(exc, what or path) from exc
    except (Urllib3Error, OSError) as exc:
        raise KubeUnavailable(f"{what or path}: cannot reach the cluster: {exc}") from exc
    if text:
        # The client's own decoding (a deserialize to str) mangles logs; read the bytes.
        return data.decode("utf-8", "replace")
    return json.loads(data) if data else None


def _tail(response, size: int) -> bytes:
    """The last `size` bytes of a streamed reply."""
    kept = bytearray()
    try:
        for chunk in response.stream(64 * 1024):
            kept += chunk
            if len(kept) > 2 * size:
                del kept[:-size]
    finally:
        response.release_conn()
    return bytes(kept[-size:]) if size else b""


def _translate(exc, what: str) -> KubeError:
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message") or exc.reason or "error"
    reason = body.get("reason", "")
    status = exc.status or 0
    retryable = status >= 500 or status == 429 or (status == 409 and reason == "Conflict")
    cls = KubeUnavailable if retryable else KubeError
    return cls(f"{what}: {message}", status=status, reason=reason)


# --- Discovery -------------------------------------------------------------------------------

# apiVersion -> {kind: (plural, namespaced)}; only what discovery answered (no negative entries).
_discovered: dict[str, dict[str, tuple[str, bool]]] = {}


def refresh_discovery() -> None:
    """Forget what discovery said: call after installing or changing a CustomResourceDefinition."""
    _discovered.clear()


def _discover(api_version: str) -> dict[str, tuple[str, bool]]:
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    try:
        listing = _request("GET", path, what=f"discovery {api_version}")
    except KubeError as exc:
        if exc.status == 404:
            return {}
        raise
    kinds = {r["kind"]: (r["name"], bool(r.get("namespaced")))
             for r in (listing or {}).get("resources", []) if "/" not in r["name"]}
    _discovered[api_version] = kinds
    return kinds


def _resource(kind: tuple[str, str]) -> tuple[str, str, bool]:
    """(URL prefix of the group/version, plural, namespaced) for a kind, from discovery."""
    api_version, kind_name = kind
    found = _discovered.get(api_version, {}).get(kind_name)
    if found is None:  # not known yet, or new since: ask (once) again
        found = _discover(api_version).get(kind_name)
    if found is None:
        raise UnknownKind(f"{kind_name} ({api_version}): the cluster does not serve this kind", reason="NotFound")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return prefix, found[0], found[1]


def _path(kind: tuple[str, str], name: str | None = None, namespace: str | None = None) -> str:
    prefix, plural, namespaced = _resource(kind)
    path = prefix
    if namespaced and namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return path


def _label(kind: tuple[str, str], name: str | None, namespace: str | None) -> str:
    return f"{kind[1]} {namespace + '/' if namespace else ''}{name or ''}".strip()


# --- Reading and writing ---------------------------------------------------------------------


def get(kind: str | tuple[str, str], name: str, namespace: str | None = None) -> dict | None:
    """The object, or None if there is none."""
    ref = _kind_of(kind)
    try:
        return _request("GET", _path(ref, name, namespace), what=_label(ref, name, namespace))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def create(desired: dict) -> dict:
    """Create (POST): fails with KubeError 409 AlreadyExists if the name is taken."""
    ref = _kind_of_object(desired)
    namespace = desired["metadata"].get("namespace")
    return _request("POST", _path(ref, namespace=namespace), query=[("fieldManager", FIELD_MANAGER)],
                    body=desired, what=_label(ref, desired["metadata"]["name"], namespace))


def apply(desired: dict) -> dict:
    """Server-side apply of `desired` as field manager `pier`, forced; creates what is missing."""
    ref = _kind_of_object(desired)
    name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
    return _request("PATCH", _path(ref, name, namespace),
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                    body=desired, content_type=APPLY_PATCH, what=_label(ref, name, namespace))


def merge_patch(kind: str | tuple[str, str], name: str, namespace: str | None, patch: dict) -> dict:
    """A JSON merge patch (RFC 7386) of a few fields of an object Pier does not own (a runner
    Job's pod); the object must exist (404 otherwise)."""
    ref = _kind_of(kind)
    return _request("PATCH", _path(ref, name, namespace), query=[("fieldManager", FIELD_MANAGER)],
                    body=patch, content_type=MERGE_PATCH, what=_label(ref, name, namespace))


def apply_status(desired: dict) -> dict:
    """Server-side apply of `desired["status"]` on the object's status subresource (a custom
    resource Pier is the controller of), as field manager `pier`, forced."""
    ref = _kind_of_object(desired)
    name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
    body = {"apiVersion": desired["apiVersion"], "kind": desired["kind"],
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})}, "status": desired["status"]}
    return _request("PATCH", _path(ref, name, namespace) + "/status",
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                    body=body, content_type=APPLY_PATCH, what=f"status of {_label(ref, name, namespace)}")


def delete(kind: str | tuple[str, str], name: str, namespace: str | None = None, *,
           propagation: str = "Background") -> bool:
    """Delete if present, with a propagationPolicy (Background by default: a Job's pods go with it;
    batch/v1 Jobs orphan them when none is sent). False if it was already gone (404 is success)."""
    ref = _kind_of(kind)
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    try:
        _request("DELETE", _path(ref, name, namespace), body=options, what=_label(ref, name, namespace))
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


class ObjectList(list):
    """The items of a list, with the list's `resource_version` (to watch from)."""

    resource_version: str = ""


def list_objects(kind: str | tuple[str, str], namespace: str | None = None, *,
                 label_selector: str = "", field_selector: str = "", cached: bool = False) -> ObjectList:
    """All objects of a kind (in a namespace, or in all), following `continue` tokens. A list of
    the items; `.resource_version` is the list's (the first page's: pages are one snapshot).
    `cached`: any recent version will do (resourceVersion=0), so the API server answers from its
    watch cache instead of reading every object of the kind from etcd to filter them (a list
    without a resourceVersion is a quorum read); for the periodic pass, which tolerates a view a
    moment old (it compares again next time)."""
    ref = _kind_of(kind)
    path = _path(ref, namespace=namespace)
    items, token = ObjectList(), None
    while True:
        query: list[tuple[str, Any]] = [("resourceVersion", "0")] if cached else [("limit", 500)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if token:
            query.append(("continue", token))
        page = _request("GET", path, query=query, what=f"list {_label(ref, None, namespace)}") or {}
        items.extend(page.get("items") or [])
        metadata = page.get("metadata") or {}
        if not items.resource_version:
            items.resource_version = metadata.get("resourceVersion", "")
        token = metadata.get("continue")
        if not token:
            return items


def pod_log(namespace: str, pod: str, *, container: str | None = None, tail_lines: int | None = None,
            since_seconds: int | None = None, limit_bytes: int | None = None, last_bytes: int | None = None) -> str:
    """A pod's log as text (what the container wrote, invalid UTF-8 replaced). `limit_bytes` is
    the API's (the first bytes); `last_bytes` keeps the end instead, at most that many bytes held
    however long the log (a character cut at the start is replaced)."""
    query = [(key, value) for key, value in (("container", container), ("tailLines", tail_lines),
                                            ("sinceSeconds", since_seconds), ("limitBytes", limit_bytes))
             if value is not None]
    path = _path(("v1", "Pod"), pod, namespace) + "/log"
    return _request("GET", path, query=query, text=True, last_bytes=last_bytes, what=f"log of Pod {namespace}/{pod}")


def request_token(namespace: str, service_account: str, *, expiration_seconds: int) -> tuple[str, str]:
    """A TokenRequest for the ServiceAccount, always with an explicit expiry (without one the
    server grants one hour). Returns (token, expirationTimestamp as the server granted it)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds}}
    path = _path(("v1", "ServiceAccount"), service_account, namespace) + "/token"
    status = _request("POST", path, body=body, what=f"ServiceAccount {namespace}/{service_account}")["status"]
    return status["token"], status["expirationTimestamp"]


def is_managed(obj: dict) -> bool:
    return (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]


def labels(*, tenant: str, project: str | None = None) -> dict[str, str]:
    result = {MANAGED_BY[0]: MANAGED_BY[1], LABEL_TENANT: tenant}
    if project:
        result[LABEL_PROJECT] = project
    return result


# --- Comparing only what Pier sets -------------------------------------------------------------


def _quantity(value: str) -> Decimal | None:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return None


def equivalent(desired: Any, current: Any) -> bool:
    """Exact comparison, except that quantities compare by value ("1Gi" == "1073741824") and an
    absent list or map equals an empty one (servers omit empty fields)."""
    if desired in (None, [], {}) and current in (None, [], {}):
        return True
    if isinstance(desired, dict) and isinstance(current, dict):
        keys = set(desired) | set(current)
        return all(equivalent(desired.get(k), current.get(k)) for k in keys)
    if isinstance(desired, list) and isinstance(current, list):
        return len(desired) == len(current) and all(equivalent(d, c) for d, c in zip(desired, current))
    if isinstance(desired, str) and isinstance(current, str) and desired != current:
        a, b = _quantity(desired), _quantity(current)
        return a is not None and b is not None and a == b
    if isinstance(desired, (int, float, str)) and isinstance(current, (int, float, str)) and type(desired) is not type(current):
        a, b = _quantity(str(desired)), _quantity(str(current))
        return a is not None and a == b
    return desired == current


def _applied_fields(current: dict) -> dict | None:
    """The fields (FieldsV1 tree) Pier's last apply set on the object, or None if Pier never applied it."""
    for entry in (current.get("metadata") or {}).get("managedFields") or []:
        if (entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
                and not entry.get("subresource")):
            return entry.get("fieldsV1") or {}
    return None


def _matches(item: Any, key: dict) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in key.items())


def _differs(desired: Any, live: Any, owned: dict | None) -> bool:
    """Whether the live value differs from `desired` on the fields `desired` sets. `owned` is Pier's
    FieldsV1 subtree for this value (None if unknown): it tells keyed lists from atomic ones."""
    if isinstance(desired, dict):
        if not desired:
            return live is not None and not isinstance(live, dict)
        if not isinstance(live, dict):
            return True
        return any(_differs(value, live.get(key), (owned or {}).get(f"f:{key}")) for key, value in desired.items())
    if isinstance(desired, list):
        if not desired:
            return live not in (None, [])
        if not isinstance(live, list):
            return True
        keyed = {k: v for k, v in (owned or {}).items() if k.startswith("k:")}
        sets = any(k.startswith("v:") for k in owned or {})
        if keyed:  # merged item by item: compare Pier's items with theirs, ignore items others added
            for item in desired:
                match = next(((json.loads(k[2:]), v) for k, v in keyed.items() if _matches(item, json.loads(k[2:]))), None)
                if match is None:
                    return True  # an item Pier did not apply yet
                live_item = next((i for i in live if _matches(i, match[0])), None)
                if live_item is None or _differs(item, live_item, match[1]):
                    return True
            return False
        if sets:
            return any(not any(equivalent(item, i) for i in live) for item in desired)
        # Atomic: owned and replaced as a whole, so an item added by hand is drift too.
        return len(desired) != len(live) or any(_differs(d, c, None) for d, c in zip(desired, live))
    return not equivalent(desired, live)


def _dropped(owned: dict, desired: Any) -> bool:
    """Whether Pier's last apply set a field (a map key, a list item) that `desired` no longer has."""
    for key, child in owned.items():
        kind, _, rest = key.partition(":")
        if kind == "f":
            if not isinstance(desired, dict) or rest not in desired:
                return True
            value = desired[rest]
        elif kind == "k":
            wanted = json.loads(rest)
            value = next((i for i in desired if _matches(i, wanted)), None) if isinstance(desired, list) else None
            if value is None:
                return True
        elif kind == "v":
            wanted = json.loads(rest)
            if not isinstance(desired, list) or wanted not in desired:
                return True
            continue
        else:  # "." (the item itself) or "i:" (index): nothing to look up
            continue
        if child and _dropped(child, value):
            return True
    return False


def drifted(desired: dict, current: dict, fields: tuple[str, ...] | None = None) -> bool:
    """Whether the live object differs from `desired` in what Pier sets (or `fields` of it)."""
    owned = _applied_fields(current)
    keys = fields if fields is not None else tuple(desired)
    for key in keys:
        if key in ("apiVersion", "kind"):
            continue
        if _differs(desired.get(key), current.get(key), (owned or {}).get(f"f:{key}")):
            return True
    if fields is None and owned is not None and _dropped(owned, desired):
        return True
    return False


# --- Reconciling -----------------------------------------------------------------------------


_READ = object()  # reconcile's `current` when the caller has not read the object


def reconcile(desired: dict, *, current: dict | None | object = _READ) -> str:
    """Make the object match `desired`. Returns created | unchanged | patched | recreated.
    Raises NotManaged for an object of the same name that Pier did not create. `current` is the
    object as a caller already saw it (None: absent), e.g. in one LIST for many objects; without
    it, the object is read first."""
    ref = _kind_of_object(desired)
    name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
    if current is _READ:
        current = get(ref, name, namespace)
    if current is None:
        outcome = "created"
        _apply_fresh(desired)
    elif not is_managed(current):
        raise NotManaged(
            f"{ref[1]} {namespace + '/' if namespace else ''}{name} exists and was not created by Pier; "
            "left alone.", status=409, reason="AlreadyExists",
        )
    elif (immutable := KINDS.get(ref, Kind(*ref)).immutable) and drifted(desired, current, immutable):
        delete(ref, name, namespace, propagation="Background")
        _apply_fresh(desired)
        outcome = "recreated"
    elif drifted(desired, current):
        apply(desired)
        outcome = "patched"
    else:
        return "unchanged"
    if ref[1] == "CustomResourceDefinition":
        refresh_discovery()  # its kinds are served now (or changed): look them up again
    return outcome


def _apply_fresh(desired: dict) -> None:
    result = apply(desired)
    if (result or {}).get("metadata", {}).get("deletionTimestamp"):
        # The old object is still being deleted (finalizers): try again once it is gone.
        raise KubeUnavailable(f"{desired['kind']} {desired['metadata']['name']}: the previous one is still being deleted",
                              status=409, reason="Conflict")
