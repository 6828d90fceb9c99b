"""The Kubernetes API emulator's own speed (a test double: these figures say how much of a test's
time is the emulator, not how fast a cluster is): a GET's round trip through the official client
with authorization off and on, a list of 200 ConfigMaps (the JSON, before the client's models),
and how soon a watcher sees a write.

Run with the others (`make bench ARGS=emulator`); the emulator runs in this process on its own
port, as in tests/test_kube_emulator*.py. The contract tests assert behaviour only; timings live here.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

from bench.common import heading, p50, p95, table

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # the emulator lives beside the tests

CALLS = 300


def _round_trips(core, calls: int) -> list[float]:
    core.read_namespace("default")  # the connection is open
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        core.read_namespace("default")
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _watch_delays(core, namespace: str, writes: int) -> list[float]:
    """Milliseconds from a create's answer to the watcher receiving its ADDED event."""
    answered: dict[str, float] = {}
    seen: dict[str, float] = {}
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    stream = core.list_namespaced_config_map(namespace, watch=True, resource_version=rv, timeout_seconds=30,
                                             _preload_content=False)

    def read():
        import json

        for line in stream:
            for part in line.splitlines():
                if part.strip():
                    event = json.loads(part)
                    seen[event["object"]["metadata"]["name"]] = time.perf_counter()
            if len(seen) >= writes:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for i in range(writes):
        name = f"w{i}"
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
        answered[name] = time.perf_counter()
        time.sleep(0.005)
    reader.join(timeout=30)
    stream.release_conn()
    return [max(0.0, (seen[n] - answered[n]) * 1000) for n in answered if n in seen]


def run(calls: int = CALLS) -> dict:
    from kube_emulator import KubeEmulator
    from kubernetes import client

    heading(f"emulator: GET round trip ({calls} calls), a list of 200, watch delivery")
    results: dict = {"calls": calls, "get_ms": {}, "list_ms": {}}
    for authorization in (False, True):
        label = "authorization on" if authorization else "authorization off"
        with KubeEmulator(authorization=authorization) as emu:
            api = emu.api_client()
            core = client.CoreV1Api(api)
            results["get_ms"][label] = _round_trips(core, calls)
            namespace = f"bench-{uuid.uuid4().hex[:6]}"
            core.create_namespace({"metadata": {"name": namespace}})
            for i in range(200):
                core.create_namespaced_config_map(namespace, {"metadata": {"name": f"c{i}"}, "data": {"k": "v" * 100}})
            lists = []
            for _ in range(30):
                started = time.perf_counter()
                core.list_namespaced_config_map(namespace, _preload_content=False).read()  # the server's part
                lists.append((time.perf_counter() - started) * 1000)
            results["list_ms"][label] = lists
            if authorization:
                watch_ns = f"bench-w-{uuid.uuid4().hex[:6]}"
                core.create_namespace({"metadata": {"name": watch_ns}})
                results["watch_ms"] = _watch_delays(core, watch_ns, 100)
            api.close()
    rows = [(label, f"{p50(v):.2f}", f"{p95(v):.2f}") for label, v in results["get_ms"].items()]
    rows += [(f"list of 200 ConfigMaps, {label}", f"{p50(v):.2f}", f"{p95(v):.2f}")
             for label, v in results["list_ms"].items()]
    rows.append(("watch: ADDED received after the create's answer (0: before it)", f"{p50(results['watch_ms']):.2f}",
                 f"{p95(results['watch_ms']):.2f}"))
    print(table(("GET /api/v1/namespaces/default (ms)", "p50", "p95"), rows))
    return results
