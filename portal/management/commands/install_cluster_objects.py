"""Install Pier's cluster-level objects, idempotently: the ClusterRoles that project access binds
to (`pier-project-admin|edit|view`), the namespace of access keys' ServiceAccounts
(PIER_KEYS_NAMESPACE) and the CustomResourceDefinition of agentic sessions. Run at deploy time; the local run runs it at start."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal import kube
from portal.signals import cluster_objects

# Readable by every project role. Secrets and pods/exec are not here: `get` on them would let a
# viewer read credentials or (before Kubernetes 1.35) exec into pods.
_WORKLOADS = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps",
                                      "persistentvolumeclaims", "serviceaccounts", "events"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"]},
]
# Agentic sessions: readable by every project role, written by Pier only (it is their controller;
# a session is started through Pier, which checks the role, limits and ownership).
_SESSIONS = {"apiGroups": ["pier.dev"], "resources": ["agenticsessions", "agenticsessions/status"], "verbs": ["get", "list", "watch"]}
_READ = ["get", "list", "watch"]
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def cluster_roles() -> list[dict]:
    def role(name: str, rules: list[dict]) -> dict:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {kube.MANAGED_BY[0]: kube.MANAGED_BY[1]}},
            "rules": rules,
        }

    # What `edit` holds must not reach anything above it. It may create pods, Secrets and
    # ServiceAccounts in the project, so no ServiceAccount of the project's namespace may hold more
    # than edit (keys' live in the keys namespace; the runner's has no binding), and it holds no
    # `serviceaccounts/token` (a subresource is only granted by name) nor impersonate, bind or escalate.
    quota_read = {"apiGroups": [""], "resources": ["resourcequotas", "limitranges", "namespaces"], "verbs": _READ}
    sensitive = {"apiGroups": [""], "resources": ["secrets", "pods/exec", "pods/attach", "pods/portforward"],
                 "verbs": _WRITE}
    return [
        role("pier-project-view", [*({**r, "verbs": _READ} for r in _WORKLOADS), quota_read, _SESSIONS]),
        role("pier-project-edit", [*({**r, "verbs": _WRITE} for r in _WORKLOADS), quota_read, sensitive, _SESSIONS]),
        role("pier-project-admin", [
            *({**r, "verbs": _WRITE} for r in _WORKLOADS), quota_read, sensitive, _SESSIONS,
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": _WRITE},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _READ},
        ]),
    ]


KEYS_LABEL = "pier.dev/keys"


def keys_namespace_objects() -> list[dict]:
    """Where access keys' ServiceAccounts live: a namespace of Pier's own, outside every project,
    where nobody but Pier may do anything. No pod is meant to run in it (its quota allows none)."""
    name = settings.PIER_KEYS_NAMESPACE
    labels = {kube.MANAGED_BY[0]: kube.MANAGED_BY[1], KEYS_LABEL: "true"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": labels,
            "annotations": {"openshift.io/description": "Pier: the ServiceAccounts of projects' access keys"}}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pier-no-pods", "namespace": name,
                                                                    "labels": labels},
         "spec": {"hard": {"pods": "0"}}},
    ]


class Command(BaseCommand):
    help = "Create or update Pier's ClusterRoles, its access keys' namespace and its CRDs (idempotent)."

    def handle(self, *args, **options):
        name = settings.PIER_KEYS_NAMESPACE
        current = kube.get("Namespace", name)
        if current is not None and kube.LABEL_TENANT in (current["metadata"].get("labels") or {}):
            raise CommandError(f"PIER_KEYS_NAMESPACE={name} is a project's namespace already; choose another name.")
        for _receiver, objects in cluster_objects.send(sender=None):  # the apps' CRDs, before the roles naming them
            for desired in objects or ():
                self.stdout.write(f"{desired['kind']} {desired['metadata']['name']}: {kube.reconcile(desired)}")
        for desired in cluster_roles():
            outcome = kube.reconcile(desired)
            self.stdout.write(f"ClusterRole {desired['metadata']['name']}: {outcome}")
        for desired in keys_namespace_objects():
            try:
                outcome = kube.reconcile(desired)
            except kube.NotManaged as exc:
                raise CommandError(f"{exc} Set PIER_KEYS_NAMESPACE to a namespace Pier may own.") from exc
            self.stdout.write(f"{desired['kind']} {desired['metadata']['name']}: {outcome}")
