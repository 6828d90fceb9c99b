"""Access keys: issuing one is the one web request that talks to the cluster (the token must be
in the response). Bounded timeouts, all or nothing: if any step fails, what was made in the
cluster is removed again, nothing is stored, and the answer is 503."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import audit, kube
from portal.errors import Conflict, Forbidden, InvalidInput, Unavailable
from tenants.models import Tenant
from tenants.projects.access import RANK, Access
from tenants.projects.authentication import token_hash
from tenants.projects.models import AccessKey, Project, ProjectRole

log = logging.getLogger(__name__)
MIN_SECONDS = 600  # the API server refuses shorter tokens


def _person(acting_user) -> None:
    if getattr(acting_user, "is_access_key", False):
        raise Forbidden("Access keys cannot manage access keys.")


def key_objects(project: Project, key_name: str, service_account: str, role: str, *, tenant_slug: str) -> list[dict]:
    labels = {**kube.labels(tenant=tenant_slug, project=project.slug), "pier.dev/access-key": "true"}
    meta = {"namespace": project.namespace, "labels": labels, "annotations": {"pier.dev/key-name": key_name[:250]}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": service_account, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"pier-project-{role}"},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": project.namespace}]},
    ]


def _remove(objects: list[dict], *, best_effort: bool = True) -> None:
    for obj in reversed(objects):
        try:
            kube.delete(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
        except kube.KubeError as exc:
            if not best_effort:
                raise
            log.warning("could not remove %s %s after a failed key creation: %s", obj["kind"], obj["metadata"]["name"], exc)


def key_create(*, tenant: Tenant, project: Project, name: str, role: str, expires_in: int | None = None,
               acting_user, access: Access) -> tuple[AccessKey, str]:
    """Returns the key and its token (shown once, never stored)."""
    _person(acting_user)
    access.require("share", project=project)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("name: give a name of 1 to 100 characters.", details={"name": ["1 to 100 characters."]})
    if role not in ProjectRole.values:
        raise InvalidInput(f"role: '{role}' is not one of {', '.join(ProjectRole.values)}.", details={"role": ["Not a role."]})
    if RANK[role] > RANK[access.role]:
        raise Forbidden(f"You cannot issue a key with more rights ({role}) than your own ({access.role}).")
    limit = tenant.effective_max_key_days
    longest = limit * 86400
    seconds = min(settings.PIER_KEY_DEFAULT_DAYS * 86400, longest) if expires_in is None else expires_in
    if not MIN_SECONDS <= seconds <= longest:
        raise InvalidInput(
            f"expires_in: give {MIN_SECONDS} to {longest} seconds ({limit} days, the longest this organization "
            "allows; the cluster refuses less than 10 minutes).",
            details={"expires_in": [f"{MIN_SECONDS} to {longest} seconds."]})
    if project.reconciled_generation == 0 or project.status == Project.Status.DELETING:
        # No namespace yet (or going away): wait until the project was ready once.
        raise Conflict(f"The project '{project.slug}' is {project.status}; keys need its namespace to exist.",
                       code="invalid_state")
    if AccessKey.objects.filter(project=project, name=name, revoked_at__isnull=True).exists():
        raise Conflict(f"name: a key named '{name}' exists in '{project.slug}'.", code="key_exists",
                       details={"name": ["Already used."]})

    service_account = f"pier-key-{secrets.token_hex(5)}"
    objects = key_objects(project, name, service_account, role, tenant_slug=tenant.slug)
    made: list[dict] = []
    try:
        for obj in objects:
            made.append(obj)  # before the call: a timed-out create may still have happened
            kube.create(obj)
        token, expires = kube.request_token(project.namespace, service_account,
                                            expiration_seconds=seconds)
    except Exception as exc:  # anything: remove what may exist; the periodic pass sweeps leftovers
        _remove(made)
        if isinstance(exc, kube.KubeUnavailable):
            raise Unavailable(f"The cluster did not answer in time; no key was created. ({exc})",
                              code="cluster_unavailable")
        if isinstance(exc, kube.KubeError):
            raise Unavailable(f"The cluster refused the key; no key was created. ({exc})", code="cluster_refused")
        raise
    try:
        with transaction.atomic():
            key = AccessKey.objects.create(
                project=project, name=name, role=role, service_account=service_account,
                token_hash=token_hash(token), token_last4=token[-4:],
                expires_at=datetime.fromisoformat(expires.replace("Z", "+00:00")), created_by=acting_user,
            )
            audit.record(action="key.create", actor=acting_user, tenant=tenant, target_type="access_key",
                         target=f"{project.slug}/{name}",
                         details={"role": role, "expires_at": key.expires_at.isoformat(), "service_account": service_account})
    except IntegrityError:
        _remove(made)
        raise Conflict(f"name: a key named '{name}' exists in '{project.slug}'.", code="key_exists",
                       details={"name": ["Already used."]})
    except Exception:
        _remove(made)
        raise
    return key, token


def key_revoke(*, tenant: Tenant, project: Project, key: AccessKey, acting_user, access: Access) -> AccessKey:
    """Refused at once (the hash check sees revoked_at); a task deletes its ServiceAccount, which
    also ends the token's validity in the cluster."""
    _person(acting_user)
    access.require("share", project=project)
    with transaction.atomic():
        key = AccessKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict(f"The key '{key.name}' is already revoked.", code="invalid_state")
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(action="key.revoke", actor=acting_user, tenant=tenant, target_type="access_key",
                     target=f"{project.slug}/{key.name}")
        _enqueue_delete(key.pk)
    return key


def remove_key_objects(key: AccessKey, *, tenant_slug: str) -> None:
    _remove(key_objects(key.project, key.name, key.service_account, key.role, tenant_slug=tenant_slug),
            best_effort=False)


def expires_soon(key: AccessKey) -> bool:
    return key.expires_at - timezone.now() < timedelta(days=7)


def sweep(project: Project, *, tenant_slug: str) -> dict[str, str]:
    """Part of the periodic pass: remove key objects nobody can use any more: those of revoked or
    expired keys (their clean-up task may have been lost) and orphans of a creation that failed
    half-way (older than ten minutes, with no key row)."""
    selector = f"{kube.LABEL_PROJECT}={project.slug},pier.dev/access-key=true"
    accounts = kube.list_objects("ServiceAccount", project.namespace, label_selector=selector)
    if not accounts:
        return {}
    names = [a["metadata"]["name"] for a in accounts]
    live = set(AccessKey.objects.filter(project=project, service_account__in=names, revoked_at__isnull=True,
                                        expires_at__gt=timezone.now()).values_list("service_account", flat=True))
    known = set(AccessKey.objects.filter(project=project, service_account__in=names)
                .values_list("service_account", flat=True))
    outcomes = {}
    cutoff = timezone.now() - timedelta(minutes=10)
    for account in accounts:
        name = account["metadata"]["name"]
        created = datetime.fromisoformat(account["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        if name in live or (name not in known and created > cutoff):
            continue
        for kind in ("RoleBinding", "ServiceAccount"):
            kube.delete(kind, name, project.namespace)
        outcomes[f"ServiceAccount/{name}"] = "deleted"
    return outcomes


def revoke_beyond_issuer(*, tenant: Tenant, reason: str, user=None, project: Project | None = None) -> list[AccessKey]:
    """A key never has more than its issuer: revoke (at once, audited) every live key in the
    current tenant whose issuer no longer holds the key's role in its project: demoted in the
    organization, a group grant removed, a group no longer theirs. Call it inside the transaction
    that took the role away, so both commit together."""
    from portal.access import member_role
    from portal.services import groups_of
    from tenants.projects.access import project_access

    live = AccessKey.objects.filter(revoked_at__isnull=True).select_related("project", "created_by")
    if user is not None:
        live = live.filter(created_by=user)
    if project is not None:
        live = live.filter(project=project)
    roles: dict[int, tuple[str | None, list[str]]] = {}
    revoked = []
    for key in live.select_for_update(of=("self",)):
        issuer = key.created_by
        if issuer.pk not in roles:
            tenant_role = "staff" if issuer.is_staff else member_role(tenant, issuer)
            roles[issuer.pk] = (tenant_role, groups_of(issuer))
        tenant_role, groups = roles[issuer.pk]
        held = project_access(key.project, user=issuer, tenant_role=tenant_role or "", groups=groups).role
        if held is not None and RANK[held] >= RANK[key.role]:
            continue
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(action="key.revoke", actor=None, tenant=tenant, target_type="access_key",
                     target=f"{key.project.slug}/{key.name}",
                     details={"reason": reason, "issuer": issuer.get_username(), "key_role": key.role,
                              "issuer_role": held})
        _enqueue_delete(key.pk)
        revoked.append(key)
    return revoked


def revoke_keys_of(*, user, reason: str) -> int:
    """In the current tenant: revoke every key the person issued (they left or lost their role)."""
    ids = list(AccessKey.objects.filter(created_by=user, revoked_at__isnull=True).values_list("pk", flat=True))
    AccessKey.objects.filter(pk__in=ids).update(revoked_at=timezone.now())
    for key_id in ids:
        _enqueue_delete(key_id)
    return len(ids)


def _enqueue_delete(key_id: int) -> None:
    """After the commit, in this tenant's schema (named now: the commit may happen elsewhere)."""
    from django.db import connection

    from tenants.projects.tasks import delete_key_objects

    schema_name = connection.schema_name
    transaction.on_commit(lambda: delete_key_objects.apply_async(args=[key_id], headers={"_schema_name": schema_name}))
