"""The reconciler: makes the cluster match what the database says about a project.

Runs in Celery, in the tenant's schema (tenant-schemas-celery's header). Objects are created in a
fixed order and removed in the reverse order; every step is safe to run twice, after a crash, or
against objects someone changed by hand. One reconcile per project at a time (an advisory lock).
With nothing to change, a pass only reads: it writes nothing, in the cluster or in the database.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from portal import audit, controller, kube, locks, retries
from tenants.models import MANAGER_ROLES, Membership, NamespaceRegistry, Tenant
from tenants.projects import config
from tenants.projects.models import AccessKey, Project, ProjectEvent
from tenants.projects.signals import project_deleting

log = logging.getLogger(__name__)

QUOTA_NAME = "pier-quota"
LIMITS_NAME = "pier-limits"
POLICY_NAME = "pier-isolation"
CREATOR_BINDING = "pier-creator-admin"
# The organization's owners and admins: admins of every project in Pier, so in the cluster too.
MANAGERS_BINDING = "pier-organization-admins"
RUNNER_ACCOUNT = "pier-runner"
RUNNER_EGRESS_POLICY = "pier-runner-egress"
# The label of session runners' pods (sessions/cluster.py sets it): what the egress policy selects.
RUNNER_COMPONENT_LABEL, RUNNER_COMPONENT = "pier.dev/component", "session-runner"
GROUP_ACCESS_LABEL = "pier.dev/group-access"  # every grant's RoleBinding (people's too)
PROJECT_ROLES = ("admin", "edit", "view")


class StillTerminating(retries.NotDoneYet):
    """The namespace is going away; the row goes once it is gone (a wait, not a failure)."""


def kube_username(user) -> str:
    return settings.PIER_KUBE_USERNAME_PREFIX + str(getattr(user, settings.PIER_KUBE_USERNAME_FIELD))


def organization_managers(tenant: Tenant) -> list[str]:
    """The cluster usernames of the organization's owners and admins (active accounts), sorted."""
    users = (Membership.objects.filter(tenant=tenant, role__in=MANAGER_ROLES, user__is_active=True)
             .select_related("user"))
    return sorted({kube_username(m.user) for m in users})


NODE_SELECTOR_ANNOTATIONS = ("scheduler.alpha.kubernetes.io/node-selector", "openshift.io/node-selector")


def desired_objects(project: Project, *, tenant_slug: str, effective: dict, managers: list[str] = (),
                    node_selector: dict[str, str] | None = None) -> list[dict]:
    """What the cluster should hold for this project, in creation order. `managers`: the
    organization's owners and admins (organization_managers), project admins by their Pier role.
    `node_selector`: where every pod of the namespace must run (a dedicated runtime), as the
    namespace annotation the PodNodeSelector admission plugin and OpenShift enforce at pod creation,
    so no editor's pod can leave the organization's nodes."""
    ns = project.namespace
    labels = kube.labels(tenant=tenant_slug, project=project.slug)
    creator = project.created_by

    def meta(name: str, **annotations: str) -> dict:
        m = {"name": name, "namespace": ns, "labels": labels}
        if annotations:
            m["annotations"] = annotations
        return m

    allow_from = [{"podSelector": {}}] + [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in effective["network.allow_from"]
    ]
    return [
        {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "name": ns, "labels": labels,
                # Free text goes in annotations, never labels.
                "annotations": {"openshift.io/display-name": project.name, "openshift.io/requester": creator.get_username(),
                                "pier.dev/description": project.description[:1000],
                                **({name: ",".join(f"{k}={v}" for k, v in sorted(node_selector.items()))
                                    for name in NODE_SELECTOR_ANNOTATIONS} if node_selector else {})},
            },
        },
        {
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(QUOTA_NAME),
            "spec": {"hard": {
                "requests.cpu": effective["quota.requests.cpu"], "requests.memory": effective["quota.requests.memory"],
                "limits.cpu": effective["quota.limits.cpu"], "limits.memory": effective["quota.limits.memory"],
                "pods": effective["quota.pods"],
            }},
        },
        {
            "apiVersion": "v1", "kind": "LimitRange", "metadata": meta(LIMITS_NAME),
            "spec": {"limits": [{
                "type": "Container",
                "default": {"cpu": effective["limits.default.cpu"], "memory": effective["limits.default.memory"]},
                "defaultRequest": {"cpu": effective["limits.request.cpu"], "memory": effective["limits.request.memory"]},
            }]},
        },
        {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(POLICY_NAME),
            # Pods of this namespace and of the allow-listed ones may connect; nobody else.
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": allow_from}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(RUNNER_EGRESS_POLICY),
            # Session runners reach DNS and the destinations allowed (the model endpoint, git hosts), nothing else.
            "spec": {"podSelector": {"matchLabels": {RUNNER_COMPONENT_LABEL: RUNNER_COMPONENT}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {}}],
                                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                                *(_egress_rule(d) for d in effective["sessions.egress"])]},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(CREATOR_BINDING, **{"pier.dev/user": creator.get_username()}),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pier-project-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": kube_username(creator)}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(MANAGERS_BINDING),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pier-project-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name} for name in managers],
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(RUNNER_ACCOUNT)},
        *(grant_binding(project, grant, labels) for grant in project.grants.all()),
    ]


def _egress_rule(destination: str) -> dict:
    network, port = config.parse_destination(destination)
    rule: dict = {"to": [{"ipBlock": {"cidr": str(network)}}]}
    if port:
        rule["ports"] = [{"protocol": "TCP", "port": port}]
    return rule


def grant_binding_name(kind: str, subject: str) -> str:
    # One binding per subject, whatever its role (a role change replaces the binding: roleRef is
    # immutable). Group names and usernames may hold any character (`/org/team`,
    # `system:authenticated`): the name is derived from a hash; the subject itself is in the
    # binding's subjects and an annotation.
    return f"pier-{kind}-{hashlib.sha256(subject.encode()).hexdigest()[:12]}"


def grant_binding(project: Project, grant, labels: dict) -> dict:
    if grant.kind == "user":
        subject = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": kube_username(grant.user)}
    else:
        subject = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": grant.subject}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": grant_binding_name(grant.kind, grant.subject), "namespace": project.namespace,
                     "labels": {**labels, GROUP_ACCESS_LABEL: "true"},
                     "annotations": {f"pier.dev/{grant.kind}": grant.subject}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"pier-project-{grant.role}"},
        "subjects": [subject],
    }


def _effective(project: Project, policy: config.Policy) -> dict:
    """What the cluster gets: the effective values, clamped by the ceilings in force now."""
    return config.values(config.effective(policy=policy, overrides=project.config_overrides))


class Observed:
    """One tenant's objects in the cluster as the periodic pass saw them: one label-selected LIST
    per kind across namespaces, instead of a GET per object. A snapshot: a change made after it
    is compared on the next pass (a forced apply of what Pier wants is harmless either way)."""

    KINDS = ("Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding", "ServiceAccount")

    def __init__(self, tenant_slug: str):
        selector = f"{kube.MANAGED_BY[0]}={kube.MANAGED_BY[1]},{kube.LABEL_TENANT}={tenant_slug}"
        # (kind, namespace) → name → object: a project's lookups touch only its own namespace.
        self._objects: dict[tuple[str, str], dict[str, dict]] = {}
        for kind in self.KINDS:
            for obj in kube.list_objects(kind, None, label_selector=selector, cached=True):
                meta = obj["metadata"]
                self._objects.setdefault((kind, meta.get("namespace", "")), {})[meta["name"]] = obj

    def get(self, kind: str, name: str, namespace: str | None) -> dict | None:
        return self._objects.get((kind, namespace or ""), {}).get(name)

    def listed(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict]:
        """What `kube.list_objects(kind, namespace, label_selector=…)` would answer (equality labels)."""
        return [obj for obj in self._objects.get((kind, namespace), {}).values()
                if labels.items() <= (obj["metadata"].get("labels") or {}).items()]


def _current(observed: Observed | None, desired: dict) -> dict:
    """reconcile()'s keyword for an object the pass already saw (nothing: read it)."""
    if observed is None:
        return {}
    meta = desired["metadata"]
    return {"current": observed.get(desired["kind"], meta["name"], meta.get("namespace"))}


# Reasons of the `Ready` condition that mean "failed": retried only when the configuration changes
# (Refused: the API server called it invalid) or by the periodic pass (GaveUp: retries exhausted).
REFUSED, GAVE_UP = "Refused", "GaveUp"


@controller.register
class ProjectController(controller.Controller):
    """A project's controller. Conditions: `Ready` (the cluster matches the project's generation;
    reasons Applied, Applying, Error, Refused, GaveUp) and, once its deletion is asked for,
    `Removed` (reasons Terminating, Error). The history is ProjectEvent."""

    model = Project
    max_failures_setting = "PIER_PROJECT_MAX_RETRIES"
    backoff_setting = "PIER_PROJECT_BACKOFF"

    def derive(self, p: Project) -> dict[str, str]:
        S = Project.Status
        if removing := self.while_removed(p, S.DELETING):
            return removing
        ready = controller.condition(p.conditions, "Ready")
        if ready is not None and ready["observedGeneration"] == p.generation:
            if ready["status"] == controller.TRUE:
                return {"status": S.READY, "status_message": ""}
            if ready["reason"] in (REFUSED, GAVE_UP):
                return {"status": S.FAILED, "status_message": ready["message"]}
            # Applying or Error: a project whose generation was applied before stays ready while
            # a repair is retried.
            applied = p.observed_generation == p.generation
            return {"status": S.READY if applied else S.PROVISIONING, "status_message": ready["message"]}
        # The desired state moved past what the cluster was last made to match.
        new = ready is None and p.observed_generation == 0
        return {"status": S.PENDING if new else S.PROVISIONING, "status_message": ""}

    def history(self, p: Project, fields: dict, text: str) -> None:
        ProjectEvent.objects.create(project=p, status=fields.get("status", p.status), message=text)

    def reconcile(self, project_id: int, *, tenant: Tenant | None = None, policy: config.Policy | None = None,
                  observed: Observed | None = None, managers: list[str] | None = None) -> dict[str, str]:
        from tenants.projects.selectors import policy_for

        if tenant is None:
            tenant = Tenant.objects.filter(pk=connection.tenant.pk).first()
        if tenant is None or tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
            return {}  # being deleted (its namespaces go with it) or gone: nothing to reconcile
        # Read under the lock: what another worker wrote before we held it counts.
        project = (Project.objects.select_related("created_by").prefetch_related("grants__user")
                   .filter(pk=project_id).first())
        if project is None:
            return {}
        if project.deletion_requested_at is not None:
            return teardown(project, tenant, policy or policy_for(tenant))
        ready = controller.condition(project.conditions, "Ready")
        if ready and ready["reason"] == REFUSED and ready["observedGeneration"] == project.generation:
            return {}  # the cluster refused this configuration for good: wait for a new one
        return apply(project, tenant, policy or policy_for(tenant), observed=observed, managers=managers)

    def failed(self, project_id: int, exc: Exception, *, final: bool) -> bool:
        """Show the last error on the project; after the last retry it is `failed` with the reason.
        A configuration the cluster refused for good fails at once, once: it is not retried (by the
        task or the periodic pass) until the configuration changes."""
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return False
        message = f"{type(exc).__name__}: {exc}"
        attempts = project.reconcile_attempts + 1
        if project.deletion_requested_at is not None:
            self.record(project, "Removed", controller.FALSE, "Error", f"last error: {message}")
        elif refused_for_good(exc):
            self.record(project, "Ready", controller.FALSE, REFUSED, f"the cluster refused this configuration: {exc}",
                        only_generation=project.generation, reconcile_attempts=attempts)
            return False
        elif final:
            self.record(project, "Ready", controller.FALSE, GAVE_UP, message, reconcile_attempts=attempts)
        else:
            self.record(project, "Ready", controller.FALSE, "Error", f"last error (retrying): {message}",
                        reconcile_attempts=attempts)
        return not final


PROJECTS: ProjectController = controller.controller_for(Project._meta.label_lower)


def run(project_id: int, *, tenant: Tenant | None = None, policy: config.Policy | None = None,
        observed: Observed | None = None, managers: list[str] | None = None) -> dict[str, str]:
    """Reconcile one project under its lock (or tear it down if it is being deleted). Returns what
    happened to each object, e.g. {"Namespace/t-p": "created", …}. A pass over many projects reads
    the tenant, its policy and its owners once, and its objects in one LIST per kind, and hands
    them in."""
    return PROJECTS.run(project_id, tenant=tenant, policy=policy, observed=observed, managers=managers)


def record_error(project_id: int, exc: Exception, *, final: bool) -> bool:
    """A failed attempt, recorded on the project; True when it should be retried."""
    return PROJECTS.failed(project_id, exc, final=final)


def apply(project: Project, tenant: Tenant, policy: config.Policy, *, observed: Observed | None = None,
          managers: list[str] | None = None) -> dict[str, str]:
    generation = project.generation
    if controller.condition(project.conditions, "Ready") is None:
        PROJECTS.record(project, "Ready", controller.FALSE, "Applying", "creating the namespace and its objects",
                        only_generation=generation)
    outcomes = {}
    desired_all = desired_objects(project, tenant_slug=tenant.slug, effective=_effective(project, policy),
                                  managers=organization_managers(tenant) if managers is None else managers,
                                  node_selector=tenant.node_selector)
    for desired in desired_all:
        outcomes[f"{desired['kind']}/{desired['metadata']['name']}"] = kube.reconcile(desired, **_current(observed, desired))
    # Group bindings whose grant was removed.
    wanted = {d["metadata"]["name"] for d in desired_all if d["kind"] == "RoleBinding"}
    grant_labels = {kube.MANAGED_BY[0]: kube.MANAGED_BY[1], kube.LABEL_PROJECT: project.slug, GROUP_ACCESS_LABEL: "true"}
    for binding in _list(observed, "RoleBinding", project.namespace, grant_labels):
        if binding["metadata"]["name"] not in wanted:
            kube.delete("RoleBinding", binding["metadata"]["name"], project.namespace)
            outcomes[f"RoleBinding/{binding['metadata']['name']}"] = "deleted"
    outcomes.update(sweep_keys(project, tenant_slug=tenant.slug, observed=observed))
    changed = {k: v for k, v in outcomes.items() if v != "unchanged"}
    # Guarded: a pass that read an older generation does not mark the newer one ready.
    written = PROJECTS.record(project, "Ready", controller.TRUE, "Applied", "the cluster matches",
                              only_generation=generation, observed_generation=generation, reconcile_attempts=0)
    if changed and not written:
        PROJECTS.history(project, {}, "repaired drift: " + ", ".join(f"{k} {v}" for k, v in changed.items()))
    if changed:
        log.info("project %s/%s: %s", tenant.slug, project.slug, changed)
    return outcomes


def teardown(project: Project, tenant: Tenant, policy: config.Policy) -> dict[str, str]:
    """Remove Pier's objects in reverse order, then the namespace; the row goes once it is gone."""
    outcomes = remove_keys_namespace_accounts(tenant_slug=tenant.slug, project=project)  # they live outside it
    objects = desired_objects(project, tenant_slug=tenant.slug, effective=_effective(project, policy))
    namespace_obj, inside = objects[0], objects[1:]
    current_ns = kube.get("Namespace", project.namespace)
    if current_ns is not None and kube.is_managed(current_ns):
        if current_ns.get("status", {}).get("phase") != "Terminating":
            project_deleting.send(sender=Project, project=project)  # what apps made in it goes first
            for desired in reversed(inside):
                name = desired["metadata"]["name"]
                current = kube.get(desired["kind"], name, project.namespace)
                if current is not None and kube.is_managed(current):
                    kube.delete(desired["kind"], name, project.namespace)
                    outcomes[f"{desired['kind']}/{name}"] = "deleted"
            kube.delete("Namespace", project.namespace)
            outcomes[f"Namespace/{project.namespace}"] = "deleting"
        PROJECTS.record(project, "Removed", controller.FALSE, "Terminating", "waiting for the namespace to be gone")
        raise StillTerminating(project.namespace)
    with transaction.atomic():
        NamespaceRegistry.objects.filter(tenant_id=tenant.pk, project_id=project.pk).delete()
        audit.record(action="project.deleted", actor=None, tenant=tenant, target_type="project",
                     target=project.slug, source="task", details={"namespace": project.namespace})
        project.delete()
    outcomes[f"Namespace/{namespace_obj['metadata']['name']}"] = "gone"
    return outcomes


def refused_for_good(exc: Exception) -> bool:
    """The API server refused what Pier sent as invalid (422): sending it again changes nothing."""
    return isinstance(exc, kube.KubeError) and not isinstance(exc, kube.KubeUnavailable) and exc.status == 422


def reconcile_all() -> dict[str, int]:
    """The periodic pass over one tenant's projects: repair drift, pick up projects stuck after a
    crash, retry failed ones, finish deletions."""
    from tenants.projects.selectors import policy_for

    counts = {"projects": 0, "changed": 0, "errors": 0}
    tenant = Tenant.objects.filter(pk=connection.tenant.pk).first()
    if tenant is None:
        return counts
    policy = policy_for(tenant)  # once per pass, not once per project
    project_ids = list(Project.objects.order_by("pk").values_list("pk", flat=True))
    if not project_ids:
        return counts
    try:
        observed = Observed(tenant.slug)  # one LIST per kind for the whole tenant
        managers = organization_managers(tenant)  # and its owners and admins, once
    except kube.KubeError as exc:
        log.warning("tenant %s: could not list its objects, the pass is skipped: %s", tenant.slug, exc)
        counts["errors"] += 1
        return counts
    for project_id in project_ids:
        counts["projects"] += 1
        try:
            outcomes = run(project_id, tenant=tenant, policy=policy, observed=observed, managers=managers)
        except (locks.Busy, StillTerminating):
            continue
        except Exception as exc:  # one project's failure must not stop the pass
            counts["errors"] += 1
            record_error(project_id, exc, final=False)
            continue
        counts["changed"] += sum(1 for v in outcomes.values() if v != "unchanged")
    return counts


def tenant_teardown(tenant) -> None:
    """A tenant is being deleted: remove every namespace of its projects (the schema goes next)."""
    remove_keys_namespace_accounts(tenant_slug=tenant.slug)  # its keys' ServiceAccounts live outside them
    if schema_exists(tenant.schema_name):
        with schema_context(tenant.schema_name):  # what apps made in the namespaces goes first
            for project in Project.objects.exclude(namespace=""):
                project_deleting.send(sender=Project, project=project)
    for entry in NamespaceRegistry.objects.filter(tenant=tenant):
        current = kube.get("Namespace", entry.name)
        # One already going (its project was being deleted) is not deleted again: the API
        # server would answer 409 while it empties.
        if current is not None and kube.is_managed(current) and current.get("status", {}).get("phase") != "Terminating":
            kube.delete("Namespace", entry.name)
    remaining = [e.name for e in NamespaceRegistry.objects.filter(tenant=tenant)
                 if (ns := kube.get("Namespace", e.name)) is not None and kube.is_managed(ns)]
    if remaining:
        raise StillTerminating(f"namespace {', '.join(remaining)} to finish terminating")
    NamespaceRegistry.objects.filter(tenant=tenant).delete()


# --- Access keys: their objects in the cluster, issuing one, the sweep ------------------------
# (The writes to keys are services: tenants.projects.services.key_create and the others.)
# A key's ServiceAccount is in Pier's keys namespace (settings.PIER_KEYS_NAMESPACE), its
# RoleBinding in the project's namespace: a pod can only run as a ServiceAccount of its own
# namespace, and the token controller fills a token Secret only for one, so nobody who may
# create pods or Secrets in the project (an editor) can act as a key. Keys issued before the move
# (legacy) have their ServiceAccount in the project's namespace: AccessKey.service_account_namespace
# says where, and every removal below goes there.

ACCESS_KEY_LABEL = "pier.dev/access-key"


def keys_namespace() -> str:
    return settings.PIER_KEYS_NAMESPACE


def key_objects(project: Project, key_name: str, service_account: str, role: str, *, tenant_slug: str,
                namespace: str | None = None) -> list[dict]:
    """The key's ServiceAccount (in `namespace`: the keys namespace unless told, a legacy key's is
    its project's) and its RoleBinding in the project's namespace, in creation order."""
    namespace = namespace or keys_namespace()
    labels = {**kube.labels(tenant=tenant_slug, project=project.slug), ACCESS_KEY_LABEL: "true"}
    annotations = {"pier.dev/key-name": key_name[:250]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": service_account, "namespace": namespace, "labels": labels, "annotations": annotations},
         # Nothing may run as it: no pod mounts a key's token.
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": service_account, "namespace": project.namespace, "labels": labels,
                      "annotations": annotations},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"pier-project-{role}"},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]},
    ]


def remove_objects(objects: list[dict], *, best_effort: bool = True) -> None:
    for obj in reversed(objects):
        try:
            kube.delete(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
        except kube.KubeError as exc:
            if not best_effort:
                raise
            log.warning("could not remove %s %s after a failed key creation: %s", obj["kind"], obj["metadata"]["name"], exc)


def issue_key(project: Project, key_name: str, service_account: str, role: str, *, tenant_slug: str,
              expiration_seconds: int, namespace: str | None = None) -> tuple[str, str]:
    """Issuing a key, the cluster's part (inside the web request: the token must be in its
    response): the ServiceAccount (in the keys namespace unless `namespace` says), its RoleBinding
    and a token, all or nothing. Returns (token, expiry as the server wrote it). On any failure
    what may exist is removed again (the periodic sweep removes what that missed) and the error
    is raised."""
    objects = key_objects(project, key_name, service_account, role, tenant_slug=tenant_slug, namespace=namespace)
    made: list[dict] = []
    with kube.in_request():
        try:
            for obj in objects:
                made.append(obj)  # before the call: a timed-out create may still have happened
                kube.create(obj)
            return kube.request_token(objects[0]["metadata"]["namespace"], service_account,
                                      expiration_seconds=expiration_seconds)
        except Exception:  # anything: remove what may exist; the periodic pass sweeps leftovers
            remove_objects(made)
            raise


def remove_key_objects(key: AccessKey, *, tenant_slug: str) -> None:
    """A key's ServiceAccount, wherever it lives (legacy keys: the project's namespace), and its
    RoleBinding; 404 is success."""
    remove_objects(key_objects(key.project, key.name, key.service_account, key.role, tenant_slug=tenant_slug,
                               namespace=key.service_account_namespace or None),
                   best_effort=False)


def _key_selector(tenant_slug: str, project_slug: str | None = None) -> str:
    labels = {**kube.labels(tenant=tenant_slug, project=project_slug), ACCESS_KEY_LABEL: "true"}
    return ",".join(f"{k}={v}" for k, v in labels.items())


def remove_keys_namespace_accounts(*, tenant_slug: str, project: Project | None = None) -> dict[str, str]:
    """A project (or, without one, a whole tenant) is going away: its keys' ServiceAccounts in the
    keys namespace go too (their RoleBindings, and legacy keys' ServiceAccounts, go with the
    project's namespace). Safe to run on every pass of a teardown."""
    outcomes = {}
    selector = _key_selector(tenant_slug, project.slug if project is not None else None)
    for account in kube.list_objects("ServiceAccount", keys_namespace(), label_selector=selector):
        name = account["metadata"]["name"]
        if kube.delete("ServiceAccount", name, keys_namespace()):
            outcomes[f"ServiceAccount/{keys_namespace()}/{name}"] = "deleted"
    return outcomes


def _list(observed: Observed | None, kind: str, namespace: str, labels: dict[str, str]) -> list[dict]:
    if observed is not None:
        return observed.listed(kind, namespace, labels)
    return kube.list_objects(kind, namespace, label_selector=",".join(f"{k}={v}" for k, v in labels.items()))


def sweep_keys(project: Project, *, tenant_slug: str, observed: Observed | None = None) -> dict[str, str]:
    """Part of the periodic pass: remove key objects nobody can use any more: those of revoked or
    expired keys (their clean-up task may have been lost) and orphans of a creation that failed
    half-way (older than ten minutes, with no key row), in the keys namespace and (legacy keys)
    the project's."""
    # The keys namespace is shared by every tenant: the tenant's label, not only the project's.
    labels = {kube.LABEL_TENANT: tenant_slug, kube.LABEL_PROJECT: project.slug, ACCESS_KEY_LABEL: "true"}
    namespaces = (keys_namespace(), project.namespace)
    if observed is not None:
        accounts = [a for namespace in namespaces for a in observed.listed("ServiceAccount", namespace, labels)]
    else:  # one LIST for both namespaces (across namespaces, by label), only those two kept
        accounts = [a for a in kube.list_objects("ServiceAccount", None, label_selector=_key_selector(
            tenant_slug, project.slug)) if a["metadata"]["namespace"] in namespaces]
    if not accounts:
        return {}
    names = [a["metadata"]["name"] for a in accounts]
    rows = AccessKey.objects.filter(project=project, service_account__in=names)
    known = set(rows.values_list("service_account", "service_account_namespace"))
    live = set(rows.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
               .values_list("service_account", "service_account_namespace"))
    outcomes = {}
    cutoff = timezone.now() - timedelta(minutes=10)
    for account in accounts:
        name, namespace = account["metadata"]["name"], account["metadata"]["namespace"]
        created = datetime.fromisoformat(account["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        if (name, namespace) in live or ((name, namespace) not in known and created > cutoff):
            continue
        kube.delete("RoleBinding", name, project.namespace)
        kube.delete("ServiceAccount", name, namespace)
        outcomes[f"ServiceAccount/{name}"] = "deleted"
    return outcomes


@controller.register
class AccessKeyController(controller.Controller):
    """A key's controller: its objects exist while it is usable (the request that issued it made
    them, all or nothing); once revoked its ServiceAccount and RoleBinding are deleted (which also
    ends the token in the cluster) and `Removed` is True. Expired keys' objects go with the
    periodic sweep (sweep_keys)."""

    model = AccessKey
    derived_fields = ()  # the key's state (active, expired, revoked) is derived by AccessKey itself

    def derive(self, key: AccessKey) -> dict:
        return {}

    def reconcile(self, key_id: int, **context) -> dict[str, str]:
        key = AccessKey.objects.select_related("project").filter(pk=key_id).first()
        if key is None or key.is_usable or key.observed_generation == key.generation:
            return {}  # nothing to remove, or removed already (a redelivery)
        remove_key_objects(key, tenant_slug=connection.tenant.slug)
        self.record(key, "Removed", controller.TRUE, "Deleted", "its ServiceAccount and RoleBinding are deleted",
                    only_generation=key.generation, observed_generation=key.generation)
        return {f"ServiceAccount/{key.service_account}": "deleted"}

    def failed(self, key_id: int, exc: Exception, *, final: bool) -> bool:
        key = AccessKey.objects.filter(pk=key_id).first()
        if key is None:
            return False
        self.record(key, "Removed", controller.FALSE, "Error", f"{type(exc).__name__}: {exc}")
        return not final


KEYS: AccessKeyController = controller.controller_for(AccessKey._meta.label_lower)
