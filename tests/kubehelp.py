"""Test helpers for the Kubernetes API emulator the test command started (KUBECONFIG points at
it): its control endpoints (faults, reset, stats, users) and reading what the cluster holds."""

from __future__ import annotations

import json
import os
import urllib.request
from functools import lru_cache

import yaml


@lru_cache(maxsize=1)
def emulator_url() -> str:
    with open(os.environ["KUBECONFIG"]) as f:
        return yaml.safe_load(f)["clusters"][0]["cluster"]["server"]


def _control(method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator_url() + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
        return json.loads(raw) if raw else {}


def inject_fault(**fault) -> None:
    """verb=…, resource=<plural>, status=500|503, latency=seconds, drop=True, times=N, namespace=…"""
    _control("POST", "/_emulator/faults", fault)


def clear_faults() -> None:
    _control("DELETE", "/_emulator/faults")


def requests_by_verb() -> dict[str, int]:
    """How many requests of each verb (create, get, list, patch, update, delete …) were served."""
    counts: dict[str, int] = {}
    for row in _control("GET", "/_emulator/stats")["requests"]:
        counts[row["verb"]] = counts.get(row["verb"], 0) + row["count"]
    return counts


def requests_by_resource() -> dict[str, int]:
    """How many requests were served, as {"<verb> <resource>": n} ("get pods/log")."""
    return {f"{row['verb']} {row['resource']}": row["count"] for row in _control("GET", "/_emulator/stats")["requests"]}


def add_user(name: str, groups: list[str] | None = None) -> str:
    """Register a user in the emulator (with `system:authenticated`); its bearer token. What it
    may do is up to the RBAC objects that name it or its groups."""
    return _control("POST", "/_emulator/users", {"name": name, "groups": groups or []})["token"]


def advance_clock(seconds: float) -> None:
    """Move the emulator's clock forward (pods run, deadlines and tokens expire on it)."""
    _control("POST", "/_emulator/clock", {"advance_seconds": seconds})


def set_exit_code(namespace: str, name: str, code: int) -> None:
    """The pods of the Job (or the pod) `name` exit with `code`."""
    _control("POST", "/_emulator/exit-code", {"namespace": namespace, "name": name, "code": code})


def append_pod_log(namespace: str, name: str, text: str) -> None:
    _control("POST", "/_emulator/pod-log", {"namespace": namespace, "name": name, "text": text})
