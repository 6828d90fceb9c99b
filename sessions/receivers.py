"""How sessions follow the organization's lifecycle, through the hooks of tenants/signals.py (the
tenants app never imports this one): suspension stops running sessions (reason TenantSuspended)
and new ones are refused while it lasts; resuming restarts nothing."""

from django.dispatch import receiver
from django_tenants.utils import schema_context

from portal.signals import cluster_objects
from tenants.projects.signals import keys_revoked, project_deleting
from tenants.signals import tenant_admin_sections, tenant_suspended


@receiver(tenant_suspended, dispatch_uid="pier_sessions_stop_on_suspension")
def stop_sessions_of_suspended_tenant(sender, tenant, **kwargs):
    from sessions.controller import stop_all

    with schema_context(tenant.schema_name):
        stop_all(tenant=tenant, reason="TenantSuspended", by="the organization was suspended")


@receiver(cluster_objects, dispatch_uid="pier_sessions_crd")
def session_crd(sender, **kwargs):
    from sessions.cluster import crd

    return [crd()]


@receiver(keys_revoked, dispatch_uid="pier_sessions_stop_with_their_key")
def stop_sessions_of_revoked_keys(sender, key_ids, reason, **kwargs):
    """Revoking a key stops the sessions it started (documented in the README: a revoked key's
    work stops with it; clone a session to run it again under a person or another key)."""
    from django.db import connection

    from sessions.models import AgenticSession
    from sessions.controller import stop_all
    from tenants.models import Tenant

    tenant = Tenant.objects.get(schema_name=connection.schema_name)  # keys live in their tenant's schema
    stop_all(tenant=tenant, reason="KeyRevoked", by=reason,
             rows=AgenticSession.objects.filter(created_by_key_id__in=key_ids))


@receiver(project_deleting, dispatch_uid="pier_sessions_go_before_their_project")
def remove_sessions_of_deleted_project(sender, project, **kwargs):
    """A project's sessions go before its namespace: their custom resources (and with them what
    they own) are deleted, so nothing of theirs runs while the namespace terminates."""
    from sessions.controller import remove_cluster_objects

    remove_cluster_objects(project)


@receiver(tenant_admin_sections, dispatch_uid="pier_sessions_admin_section")
def sessions_in_tenant_admin(sender, tenant, **kwargs):
    """The tenant's sessions by phase, and the unfinished ones, for staff (runs in its schema)."""
    from django.db.models import Count
    from django.utils.html import format_html, format_html_join

    from sessions.models import AgenticSession

    counts = dict(AgenticSession.objects.values_list("phase").annotate(n=Count("pk")).order_by())
    if not counts:
        return {"title": "Sessions", "html": "none"}
    live = (AgenticSession.objects.exclude(phase__in=AgenticSession.TERMINAL).select_related("project")
            .order_by("created_at")[:20].values_list("project__slug", "name", "phase", "created_by_name"))
    summary = ", ".join(f"{phase} {n}" for phase, n in sorted(counts.items()))
    return {"title": "Sessions", "html": format_html("{}{}", summary, format_html_join(
        "", "<div>{}/{} {} (started by {})</div>", live))}
