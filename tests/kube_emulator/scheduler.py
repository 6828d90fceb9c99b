"""Nodes and the scheduler: where a pod runs, or why it cannot.

- Nodes (`v1` Node, cluster-scoped) carry labels and `spec.taints`; the emulator seeds ready
  worker nodes (`KubeEmulator(nodes=...)`), and a Node a client creates gets a ready status
  from its simulated kubelet.
- The PodNodeSelector admission plugin: a namespace's `scheduler.alpha.kubernetes.io/node-selector`
  annotation (`key=value,...`) is merged into the nodeSelector of every pod created in it; a
  pod asking for another value of the same key is refused (403), as the plugin does.
- The scheduler binds each pending pod of `schedulerName: default-scheduler` without a node to a
  feasible node (the one running fewest pods): not `spec.unschedulable`, every NoSchedule and
  NoExecute taint tolerated, `nodeSelector` and required node affinity matched; the pod gets
  `spec.nodeName`, the condition `PodScheduled=True` and a `Scheduled` event. A pod no node fits
  stays Pending with `PodScheduled=False`, reason `Unschedulable`, and a `FailedScheduling`
  warning, both with kube-scheduler's message (`0/2 nodes are available: 2 node(s) didn't match
  Pod's node affinity/selector. no new claims to deallocate, preemption: 0/2 nodes are
  available: 2 Preemption is not helpful for scheduling.`). It is tried again when nodes change.
  Resources (requests versus allocatable) are not counted.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import errors
from .clock import rfc3339
from .selectors import Requirement

if TYPE_CHECKING:
    from .events import EventRecorder
    from .registry import ResourceType
    from .store import Txn

Obj = dict[str, Any]

NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
SCHEDULER_NAME = "default-scheduler"
KUBELET_VERSION = "v1.37.0"

UNSCHEDULABLE = "node(s) were unschedulable"
UNTOLERATED = "node(s) had untolerated taint(s)"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"


def node_object(spec: Obj | str) -> Obj:
    """A seeded node: a name, or a dict with name, labels and spec fields (taints, unschedulable)."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name")
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        **(spec.pop("labels", None) or {}),
    }
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def ready_status(name: str, index: int, now: str) -> Obj:
    condition = {"lastHeartbeatTime": now, "lastTransitionTime": now}
    resources = {
        "cpu": "4", "ephemeral-storage": "104857600Ki", "hugepages-2Mi": "0", "memory": "16336064Ki", "pods": "110",
    }  # fmt: skip
    return {
        "addresses": [
            {"type": "InternalIP", "address": f"10.89.0.{10 + index}"},
            {"type": "Hostname", "address": name},
        ],
        "allocatable": dict(resources),
        "capacity": dict(resources),
        "conditions": [
            {**condition, "type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available"},
            {**condition, "type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure"},
            {**condition, "type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available"},
            {**condition, "type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": f"00000000-0000-4000-8000-{index:012d}",
            "containerRuntimeVersion": "containerd://2.1.4",
            "kernelVersion": "6.12.0-pier-emulator",
            "kubeProxyVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "machineID": f"{index:032x}",
            "operatingSystem": "linux",
            "osImage": "Pier emulated node",
            "systemUUID": f"00000000-0000-4000-8000-{index:012d}",
        },
    }  # fmt: skip


def node_ip(node: Obj) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return address.get("address", "")
    return ""


def node_ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def parse_node_selector(text: str) -> dict[str, str] | None:
    """`a=b,c=d` as a map; None if it does not parse."""
    selector: dict[str, str] = {}
    for term in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = term.partition("=")
        if not equals or not key.strip():
            return None
        selector[key.strip()] = value.strip()
    return selector


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        if not isinstance(toleration, dict):
            continue
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        key, operator = toleration.get("key", ""), toleration.get("operator") or "Equal"
        if not key and operator == "Exists":
            return True
        if key != taint.get("key"):
            continue
        if operator == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


_AFFINITY_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": "gt", "Lt": "lt"}


def _affinity_matches(pod_spec: Obj, labels: dict[str, str]) -> bool:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        if not expressions and not term.get("matchFields"):
            continue  # an empty term matches nothing
        requirements = [
            Requirement(e.get("key", ""), _AFFINITY_OPERATORS.get(e.get("operator", ""), "in"), tuple(e.get("values") or ()))
            for e in expressions
        ]
        if all(requirement.matches(labels) for requirement in requirements):
            return True
    return False


def why_not(pod_spec: Obj, node: Obj) -> str | None:
    """Why the pod cannot go to this node (kube-scheduler's filter order), or None if it can."""
    if (node.get("spec") or {}).get("unschedulable"):
        if not _tolerates(pod_spec.get("tolerations") or [], {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
            return UNSCHEDULABLE
    tolerations = pod_spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return UNTOLERATED
    labels = node["metadata"].get("labels") or {}
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()) or not _affinity_matches(pod_spec, labels):
        return SELECTOR_MISMATCH
    return None


def unschedulable_message(reasons: Counter[str], total: int) -> str:
    if total == 0:
        return "no nodes available to schedule pods"
    listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    return (
        f"0/{total} nodes are available: {listed}. no new claims to deallocate, "
        f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )


class Scheduler:
    def __init__(self, recorder: EventRecorder, nodes: list[Obj | str]):
        self._recorder = recorder
        self._seed_nodes = nodes
        self._attempted: dict[str, tuple[Any, ...]] = {}  # pod uid → the node versions it last failed on

    def reset(self, txn: Txn) -> None:
        self._attempted.clear()
        nodes = txn.resource("", "v1", "nodes")
        for index, spec in enumerate(self._seed_nodes, start=1):
            created = txn.create(nodes, "", node_object(spec))
            ready = copy.deepcopy(created)
            ready["status"] = ready_status(created["metadata"]["name"], index, rfc3339(txn.now))
            txn.put(nodes, ready)

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        """The PodNodeSelector admission plugin."""
        if (resource.group, resource.plural) != ("", "pods"):
            return
        namespace = txn.get(txn.resource("", "v1", "namespaces"), "", obj["metadata"]["namespace"])
        text = ((namespace or {}).get("metadata", {}).get("annotations") or {}).get(NODE_SELECTOR_ANNOTATION)
        if not text:
            return
        wanted = parse_node_selector(text)
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName") or ""
        if wanted is None:
            raise errors.forbidden("", "pods", name, f"{NODE_SELECTOR_ANNOTATION}: invalid node selector {text!r}")
        spec = obj.setdefault("spec", {})
        selector = dict(spec.get("nodeSelector") or {})
        if any(key in selector and selector[key] != value for key, value in wanted.items()):
            raise errors.forbidden(
                "", "pods", name, "pod node label selector conflicts with its namespace node label selector"
            )
        spec["nodeSelector"] = {**selector, **wanted}

    def reconcile(self, txn: Txn) -> None:
        nodes_type, pods_type = txn.resource("", "v1", "nodes"), txn.resource("", "v1", "pods")
        nodes = txn.items(nodes_type)
        signature = tuple(node["metadata"]["resourceVersion"] for node in nodes)
        load = Counter(pod["spec"].get("nodeName") for pod in txn.items(pods_type) if pod["spec"].get("nodeName"))
        live = set()
        for pod in txn.items(pods_type):
            uid = pod["metadata"]["uid"]
            live.add(uid)
            spec = pod.get("spec") or {}
            if (
                spec.get("nodeName")
                or spec.get("schedulerName", SCHEDULER_NAME) != SCHEDULER_NAME
                or pod["metadata"].get("deletionTimestamp")
                or spec.get("schedulingGates")
                or self._attempted.get(uid) == signature
            ):
                continue
            reasons: Counter[str] = Counter()
            feasible = []
            for node in nodes:
                reason = why_not(spec, node)
                if reason is None:
                    feasible.append(node)
                else:
                    reasons[reason] += 1
            if feasible:
                chosen = min(feasible, key=lambda node: (load[node["metadata"]["name"]], node["metadata"]["name"]))
                self._bind(txn, pods_type, pod, chosen["metadata"]["name"])
                load[chosen["metadata"]["name"]] += 1
                self._attempted.pop(uid, None)
            else:
                self._attempted[uid] = signature
                self._fail(txn, pods_type, pod, unschedulable_message(reasons, len(nodes)))
        for uid in set(self._attempted) - live:
            del self._attempted[uid]

    def _bind(self, txn: Txn, pods_type: ResourceType, pod: Obj, node_name: str) -> None:
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = node_name
        set_condition(bound, {"type": "PodScheduled", "status": "True"}, txn.now)
        txn.put(pods_type, bound)
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._recorder.record(
            txn, pods_type, bound, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {node_name}",
            component=SCHEDULER_NAME,
        )  # fmt: skip

    def _fail(self, txn: Txn, pods_type: ResourceType, pod: Obj, message: str) -> None:
        failed = copy.deepcopy(pod)
        set_condition(
            failed, {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}, txn.now
        )
        txn.put(pods_type, failed)
        self._recorder.record(txn, pods_type, failed, "Warning", "FailedScheduling", message, component=SCHEDULER_NAME)


def set_condition(pod: Obj, condition: Obj, when: float) -> None:
    """Set a pod condition; its lastTransitionTime changes only when its status does."""
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for index, existing in enumerate(conditions):
        if existing.get("type") == condition["type"]:
            transition = existing.get("lastTransitionTime")
            if existing.get("status") != condition["status"]:
                transition = rfc3339(when)
            conditions[index] = {"lastProbeTime": None, "lastTransitionTime": transition, **condition}
            return
    conditions.append({"lastProbeTime": None, "lastTransitionTime": rfc3339(when), **condition})
