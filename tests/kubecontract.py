"""Fixtures and helpers shared by the emulator's contract tests (tests/test_kube_emulator*.py):
one emulator per test module, driven through the official `kubernetes` client from the
kubeconfig it wrote (the admin's identity), and reset before every test; every module runs with
authorization off and on. A test module takes them with
`from kubecontract import *`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from kube_emulator import KubeEmulator
from kubernetes import client, config
from kubernetes.client import ApiException

NAMESPACE_DELETION_DELAY = 0.2
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"

__all__ = ["AUTHORIZATION", "AUTHORIZATION_IDS", "MERGE", "NAMESPACE_DELETION_DELAY", "SMP", "api_client", "apps", "batch", "config_map", "control", "core", "emulator", "failure", "fresh_cluster", "kubeconfig", "net", "ns", "raw", "rbac", "role_binding", "status_of", "wait_until"]


# --- fixtures ----------------------------------------------------------------------------------


# A module with an emulator fixture of its own runs it both ways too, with these.
AUTHORIZATION, AUTHORIZATION_IDS = [False, True], ["authz-off", "authz-on"]


@pytest.fixture(scope="module", params=AUTHORIZATION, ids=AUTHORIZATION_IDS)
def emulator(request):
    """Each module runs twice: authorization off, and on (the fixtures' client is the admin, so
    every contract holds for a caller RBAC allows everything, as well as with no checks at all)."""
    emu = KubeEmulator(namespace_deletion_delay=NAMESPACE_DELETION_DELAY, authorization=request.param).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def kubeconfig(emulator, tmp_path_factory):
    return emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(scope="module")
def api_client(kubeconfig):
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture(autouse=True)
def fresh_cluster(emulator):
    emulator.reset()


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def rbac(api_client):
    return client.RbacAuthorizationV1Api(api_client)


@pytest.fixture
def net(api_client):
    return client.NetworkingV1Api(api_client)


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def batch(api_client):
    return client.BatchV1Api(api_client)


@pytest.fixture
def ns(core):
    """A fresh namespace to work in."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


# --- helpers -----------------------------------------------------------------------------------


def failure(call, *args, **kwargs) -> tuple[int, dict]:
    """The HTTP status and Status body of a call that must fail."""
    with pytest.raises(ApiException) as raised:
        call(*args, **kwargs)
    return raised.value.status, json.loads(raised.value.body)


def status_of(call, *args, **kwargs) -> int:
    """The HTTP status a call gets, success or not."""
    try:
        call(*args, **kwargs)
    except ApiException as error:
        return error.status
    return 200


def raw(call, *args, **kwargs) -> dict:
    """The JSON the server sent, before the client's models touch it."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def config_map(name: str, labels: dict | None = None, **extra) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, **extra}


def role_binding(name: str, role: str = "edit", subjects: list | None = None) -> dict:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects if subjects is not None else [{"kind": "Group", "name": "team-a"}],
    }


def control(emulator, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")
