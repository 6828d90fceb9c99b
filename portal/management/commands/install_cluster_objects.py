"""Install Pier's cluster-level objects, idempotently: the ClusterRoles that project access binds
to (`pier-project-admin|edit|view`). Run at deploy time; the local run runs it at start."""

from django.core.management.base import BaseCommand

from portal import kube

# Readable by every project role. Secrets and pods/exec are not here: `get` on them would let a
# viewer read credentials or (before Kubernetes 1.35) exec into pods.
_WORKLOADS = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps",
                                      "persistentvolumeclaims", "serviceaccounts", "events"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"]},
]
_READ = ["get", "list", "watch"]
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def cluster_roles() -> list[dict]:
    def role(name: str, rules: list[dict]) -> dict:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {kube.MANAGED_BY[0]: kube.MANAGED_BY[1]}},
            "rules": rules,
        }

    quota_read = {"apiGroups": [""], "resources": ["resourcequotas", "limitranges", "namespaces"], "verbs": _READ}
    sensitive = {"apiGroups": [""], "resources": ["secrets", "pods/exec", "pods/attach", "pods/portforward"],
                 "verbs": _WRITE}
    return [
        role("pier-project-view", [*({**r, "verbs": _READ} for r in _WORKLOADS), quota_read]),
        role("pier-project-edit", [*({**r, "verbs": _WRITE} for r in _WORKLOADS), quota_read, sensitive]),
        role("pier-project-admin", [
            *({**r, "verbs": _WRITE} for r in _WORKLOADS), quota_read, sensitive,
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": _WRITE},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _READ},
        ]),
    ]


class Command(BaseCommand):
    help = "Create or update Pier's ClusterRoles (idempotent)."

    def handle(self, *args, **options):
        for desired in cluster_roles():
            outcome = kube.reconcile(desired)
            self.stdout.write(f"ClusterRole {desired['metadata']['name']}: {outcome}")
