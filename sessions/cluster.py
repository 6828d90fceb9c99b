"""What the cluster holds for agentic sessions: the CustomResourceDefinition (installed with Pier's
other cluster objects) and, per session, its custom resource and the runner's objects.

Per session, in the project's namespace, all named after the session and owned by its custom
resource (so deleting it takes them all, by the garbage collector):

- `AgenticSession/<name>`: the spec (status is written by Pier, the controller);
- `ConfigMap/<name>-session`: the custom resource as `session.json`, mounted into the runner at
  /etc/pier/session (the runner contract, runner/README.md);
- `ConfigMap/<name>-env`: the session's (non-secret) `env`, as environment before the runner
  secret's keys, which win where both name a variable;
- `ServiceAccount/<name>-runner`: the runner's identity, bound to nothing and with no token
  mounted, so the runner can do nothing an editor of the project cannot;
- `Job/<name>-runner`: one pod (backoffLimit 0, restartPolicy Never), the pod's
  `activeDeadlineSeconds` from the timeout so the cluster enforces it (the kubelet stops the
  runner and fails the pod, which stays with its log), the Job's a minute later as a backstop;
  the project's runner secret as environment by reference (optional: a project without one
  still runs).
"""

from __future__ import annotations

import base64
import json

from django.conf import settings

from portal import kube
from tenants.projects import reconcile

GROUP, VERSION, KIND, PLURAL = "pier.dev", "v1alpha1", "AgenticSession", "agenticsessions"
API_VERSION = f"{GROUP}/{VERSION}"
SESSION_KIND = (API_VERSION, KIND)
LABEL_SESSION = "pier.dev/session"
# What the project's egress policy (tenants/projects/reconcile.py) selects runner pods by.
LABEL_COMPONENT = reconcile.RUNNER_COMPONENT_LABEL
RUNNER_COMPONENT = reconcile.RUNNER_COMPONENT
RUNNER_SECRET = "pier-runner"
SESSION_FILE_DIR = "/etc/pier/session"
SESSION_FILE = f"{SESSION_FILE_DIR}/session.json"
# The Job's deadline is the pod's plus this: the pod's (the kubelet's) ends a run and keeps its log.
JOB_DEADLINE_MARGIN = 60
# What a runner has, after SIGTERM (a stop, its deadline), to report before it is killed.
STOP_GRACE_SECONDS = 30


def _string(**extra) -> dict:
    return {"type": "string", **extra}


def crd() -> dict:
    """agenticsessions.pier.dev: v1alpha1, short name `as`, status subresource, printer columns."""
    condition = {"type": "object", "properties": {
        "type": _string(), "status": _string(), "reason": _string(), "message": _string(),
        "lastTransitionTime": _string(), "observedGeneration": {"type": "integer"}}}
    spec = {"type": "object", "required": ["prompt"], "properties": {
        "prompt": _string(),
        "displayName": _string(),
        "llm": {"type": "object", "properties": {
            "model": _string(), "temperature": {"type": "number"}, "maxTokens": {"type": "integer"}}},
        "timeoutSeconds": {"type": "integer", "minimum": 1},
        "repos": {"type": "array", "items": {"type": "object", "required": ["url"], "properties": {
            "url": _string(), "branch": _string()}}},
        "env": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": _string(), "value": _string()}}},
        "createdBy": {"type": "object", "properties": {"kind": _string(enum=["user", "key"]), "name": _string()}},
    }}
    status = {"type": "object", "properties": {
        "phase": _string(), "startTime": _string(), "completionTime": _string(), "reason": _string(),
        "message": _string(), "result": _string(), "observedGeneration": {"type": "integer"},
        "conditions": {"type": "array", "items": condition}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {kube.MANAGED_BY[0]: kube.MANAGED_BY[1]}},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "agenticsession", "kind": KIND, "listKind": f"{KIND}List",
                      "shortNames": ["as"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec, "status": status}}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
                    {"name": "Started by", "type": "string", "jsonPath": ".spec.createdBy.name"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


def labels(session, *, tenant_slug: str) -> dict[str, str]:
    return {**kube.labels(tenant=tenant_slug, project=session.project.slug), LABEL_SESSION: session.name}


def spec(session) -> dict:
    llm = {k: v for k, v in (session.llm or {}).items() if v not in (None, "")}
    out = {
        "prompt": session.prompt, "timeoutSeconds": session.timeout_seconds,
        "createdBy": {"kind": session.created_by_kind, "name": session.created_by_name},
    }
    if session.display_name:
        out["displayName"] = session.display_name
    if llm:
        out["llm"] = llm
    if session.repos:
        out["repos"] = session.repos
    if session.env:
        out["env"] = session.env
    return out


def custom_resource(session, *, tenant_slug: str) -> dict:
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": session.name, "namespace": session.project.namespace,
                     "labels": labels(session, tenant_slug=tenant_slug)},
        "spec": spec(session),
    }


def job_name(session) -> str:
    return f"{session.name}-runner"


def runner_objects(session, owner: dict, *, tenant_slug: str, placement: dict | None = None) -> list[dict]:
    """The ConfigMaps, ServiceAccount and Job, owned by the custom resource `owner` (as read back,
    with its uid), with the image and resources the session was admitted with. `placement`: the
    tolerations of a dedicated runtime (None: shared)."""
    ns = session.project.namespace
    base = labels(session, tenant_slug=tenant_slug)
    owned = [{"apiVersion": API_VERSION, "kind": KIND, "name": owner["metadata"]["name"],
              "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]

    def meta(name: str, **extra) -> dict:
        return {"name": name, "namespace": ns, "labels": {**base, **extra}, "ownerReferences": owned}

    document = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": session.name, "namespace": ns}, "spec": spec(session)}
    account = f"{session.name}-runner"
    env = [{"name": "PIER_SESSION_FILE", "value": SESSION_FILE},
           {"name": "PIER_SESSION_NAME", "value": session.name},
           {"name": "PIER_PROJECT", "value": session.project.slug}]
    pod_labels = {**base, LABEL_COMPONENT: RUNNER_COMPONENT}
    pod_spec = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": session.timeout_seconds,
        "terminationGracePeriodSeconds": STOP_GRACE_SECONDS,
        "serviceAccountName": account,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "runner",
            "image": session.runner_image or settings.PIER_RUNNER_IMAGE,
            "env": env,
            # The session's env first, the runner secret last: where both name a variable, the
            # secret wins (the later source does), so no session can redirect the secret's key.
            "envFrom": [{"configMapRef": {"name": f"{session.name}-env"}},
                        {"secretRef": {"name": RUNNER_SECRET, "optional": True}}],
            "resources": session.runner_resources,
            "volumeMounts": [{"name": "session", "mountPath": SESSION_FILE_DIR, "readOnly": True}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": [{"name": "session", "configMap": {"name": f"{session.name}-session"}}],
    }
    if placement:
        pod_spec.update(placement)
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{session.name}-session"),
         "data": {"session.json": json.dumps(document, indent=2, sort_keys=True)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{session.name}-env"),
         "data": {e["name"]: e.get("value", "") for e in session.env or ()}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(account), "automountServiceAccountToken": False},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(job_name(session), **{LABEL_COMPONENT: RUNNER_COMPONENT}),
         "spec": {
             "backoffLimit": 0,
             # The pod's own deadline (the kubelet's) ends the run and keeps the pod and its log,
             # the runner's last lines included; the Job's, a little later, is the backstop for
             # a pod that never got to a node.
             "activeDeadlineSeconds": session.timeout_seconds + JOB_DEADLINE_MARGIN,
             "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
         }},
    ]


def write_runner_secret(project, data: dict[str, str], *, tenant_slug: str) -> None:
    """The project's runner secret as exactly `data` (a forced server-side apply: keys Pier wrote
    before and `data` lacks are removed)."""
    kube.apply({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": RUNNER_SECRET, "namespace": project.namespace,
                     "labels": kube.labels(tenant=tenant_slug, project=project.slug)},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    })
