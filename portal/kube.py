"""Pier's one door to Kubernetes, over the official `kubernetes` client.

Configuration: in-cluster (PIER_KUBE_IN_CLUSTER), a kubeconfig (KUBECONFIG), or, for local runs
and tests, the kubeconfig the launcher writes for Pier's Kubernetes API emulator
(tests/kube_emulator, a test double). Every call has a timeout. The Python client has no QPS
throttle (that is the Go client); we do not set `socket_options`, which would replace the client's
default that disables Nagle's algorithm.

`reconcile(desired)` makes one object match what Pier wants: read it, compare only what Pier owns
(its labels and annotations, and the fields listed per kind; fields the server adds, such as
`kubernetes.io/metadata.name` or finalizers, are ignored), then create, patch, replace, or
recreate when a field is immutable. Objects without Pier's `managed-by` label are never touched.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

MANAGED_BY = ("app.kubernetes.io/managed-by", "pier")
LABEL_TENANT = "pier.dev/tenant"
LABEL_PROJECT = "pier.dev/project"


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


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    api: str  # class name in kubernetes.client
    suffix: str  # read_<suffix>, create_<suffix>, ...
    namespaced: bool
    owned: tuple[str, ...] = ()  # top-level fields Pier owns entirely (compared exactly)
    immutable: tuple[str, ...] = ()  # owned fields that cannot change: delete and create again


KINDS = {
    k.kind: k
    for k in (
        Kind("v1", "Namespace", "CoreV1Api", "namespace", False),
        Kind("v1", "ServiceAccount", "CoreV1Api", "namespaced_service_account", True),
        Kind("v1", "ResourceQuota", "CoreV1Api", "namespaced_resource_quota", True, owned=("spec",)),
        Kind("v1", "LimitRange", "CoreV1Api", "namespaced_limit_range", True, owned=("spec",)),
        Kind("v1", "Secret", "CoreV1Api", "namespaced_secret", True),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "NetworkingV1Api", "namespaced_network_policy", True,
             owned=("spec",)),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "RbacAuthorizationV1Api", "namespaced_role_binding",
             True, owned=("roleRef", "subjects"), immutable=("roleRef",)),
        Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "RbacAuthorizationV1Api", "cluster_role", False,
             owned=("rules",)),
    )
}


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


def cluster_label() -> str:
    """What the UI calls the cluster Pier talks to."""
    return "local simulated cluster" if settings.PIER_KUBE_SIMULATED else "Kubernetes cluster"


def _api(kind: Kind):
    from kubernetes import client

    return getattr(client, kind.api)(api_client())


# --- Raw calls (dicts in, dicts out) ---------------------------------------------------------


def _call(kind: Kind, verb: str, *, name: str | None = None, namespace: str | None = None,
          body: Any = None, **params) -> dict | None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    method = getattr(_api(kind), f"{verb}_{kind.suffix}")
    args: list[Any] = []
    if name is not None:
        args.append(name)
    if kind.namespaced and namespace is not None:
        args.append(namespace)
    if body is not None:
        args.append(body)
    try:
        response = method(*args, _preload_content=False, _request_timeout=settings.PIER_KUBE_TIMEOUT, **params)
    except ApiException as exc:
        raise _translate(exc, kind, name) from exc
    except (Urllib3Error, OSError) as exc:
        raise KubeUnavailable(f"cannot reach the cluster: {exc}") from exc
    data = response.data
    return json.loads(data) if data else None


def _translate(exc, kind: Kind, name: str | None) -> KubeError:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or exc.reason or "error"
    reason = body.get("reason", "")
    retryable = exc.status >= 500 or exc.status == 429 or (exc.status == 409 and reason == "Conflict")
    if retryable:
        return KubeUnavailable(f"{kind.kind} {name or ''}: {message}", status=exc.status, reason=reason)
    return KubeError(f"{kind.kind} {name or ''}: {message}", status=exc.status, reason=reason)


def get(kind_name: str, name: str, namespace: str | None = None) -> dict | None:
    kind = KINDS[kind_name]
    try:
        return _call(kind, "read", name=name, namespace=namespace)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def create(desired: dict) -> dict:
    kind = KINDS[desired["kind"]]
    return _call(kind, "create", namespace=desired["metadata"].get("namespace"), body=desired)


def delete(kind_name: str, name: str, namespace: str | None = None) -> bool:
    """Delete if present. False if it was already gone (404 is success)."""
    kind = KINDS[kind_name]
    try:
        _call(kind, "delete", name=name, namespace=namespace)
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def list_objects(kind_name: str, namespace: str | None = None, *, label_selector: str = "") -> list[dict]:
    """All objects of a kind (in a namespace, or in all), following `continue` tokens."""
    kind = KINDS[kind_name]
    if kind.namespaced and namespace is None:
        kind = dataclasses.replace(
            kind, suffix=kind.suffix.removeprefix("namespaced_") + "_for_all_namespaces", namespaced=False
        )
    items, token = [], None
    while True:
        params: dict[str, Any] = {"label_selector": label_selector, "limit": 500}
        if token:
            params["_continue"] = token
        page = _call(kind, "list", namespace=namespace, **params)
        items.extend(page.get("items", []))
        token = page.get("metadata", {}).get("continue")
        if not token:
            return items


def is_managed(obj: dict) -> bool:
    return (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]


# --- Comparing -------------------------------------------------------------------------------


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


def _metadata_differs(desired: dict, current: dict) -> bool:
    for field in ("labels", "annotations"):
        have = current.get("metadata", {}).get(field) or {}
        if any(have.get(k) != v for k, v in (desired["metadata"].get(field) or {}).items()):
            return True
    return False


# --- Reconciling -----------------------------------------------------------------------------


def reconcile(desired: dict) -> str:
    """Make the object match `desired`. Returns created | unchanged | patched | replaced | recreated.
    Raises NotManaged for an object of the same name that Pier did not create."""
    kind = KINDS[desired["kind"]]
    name, namespace = desired["metadata"]["name"], desired["metadata"].get("namespace")
    current = get(kind.kind, name, namespace)
    if current is None:
        try:
            create(desired)
            return "created"
        except KubeError as exc:
            if exc.status != 409:
                raise
            current = get(kind.kind, name, namespace)  # created meanwhile: compare with it
            if current is None:
                raise KubeUnavailable(f"{kind.kind} {name}: created and gone again") from exc
    if not is_managed(current):
        raise NotManaged(
            f"{kind.kind} {namespace + '/' if namespace else ''}{name} exists and was not created by Pier; "
            "left alone.", status=409, reason="AlreadyExists",
        )
    changed = [f for f in kind.owned if not equivalent(desired.get(f), current.get(f))]
    if any(f in kind.immutable for f in changed):
        delete(kind.kind, name, namespace)
        create(desired)
        return "recreated"
    if changed:
        body = copy.deepcopy(current)
        for field in ("labels", "annotations"):
            merged = dict(body["metadata"].get(field) or {})
            merged.update(desired["metadata"].get(field) or {})
            body["metadata"][field] = merged
        for field in kind.owned:
            body[field] = desired.get(field)
        # PUT with the read resourceVersion: a concurrent change answers 409 and we try again.
        _call(kind, "replace", name=name, namespace=namespace, body=body)
        return "replaced"
    if _metadata_differs(desired, current):
        patch = {"metadata": {f: desired["metadata"][f] for f in ("labels", "annotations") if desired["metadata"].get(f)}}
        _call(kind, "patch", name=name, namespace=namespace, body=patch)
        return "patched"
    return "unchanged"


def labels(*, tenant: str, project: str | None = None) -> dict[str, str]:
    result = {MANAGED_BY[0]: MANAGED_BY[1], LABEL_TENANT: tenant}
    if project:
        result[LABEL_PROJECT] = project
    return result


def request_token(namespace: str, service_account: str, *, expiration_seconds: int) -> tuple[str, str]:
    """A TokenRequest for the ServiceAccount, always with an explicit expiry (without one the
    server grants one hour). Returns (token, expirationTimestamp as the server granted it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds}}
    try:
        response = client.CoreV1Api(api_client()).create_namespaced_service_account_token(
            service_account, namespace, body, _preload_content=False, _request_timeout=settings.PIER_KUBE_TIMEOUT
        )
    except ApiException as exc:
        raise _translate(exc, KINDS["ServiceAccount"], service_account) from exc
    except (Urllib3Error, OSError) as exc:
        raise KubeUnavailable(f"cannot reach the cluster: {exc}") from exc
    status = json.loads(response.data)["status"]
    return status["token"], status["expirationTimestamp"]
