"""How sessions follow the organization's lifecycle, through the hooks of tenants/signals.py (the
tenants app never imports this one): suspension stops running sessions (reason TenantSuspended)
and new ones are refused while it lasts; resuming restarts nothing."""

from django.dispatch import receiver
from django_tenants.utils import schema_context

from portal.signals import cluster_objects
from tenants.signals import tenant_suspended


@receiver(tenant_suspended, dispatch_uid="pier_sessions_stop_on_suspension")
def stop_sessions_of_suspended_tenant(sender, tenant, **kwargs):
    from sessions.services import stop_all

    with schema_context(tenant.schema_name):
        stop_all(reason="TenantSuspended", by="the organization was suspended")


@receiver(cluster_objects, dispatch_uid="pier_sessions_crd")
def session_crd(sender, **kwargs):
    from sessions.cluster import crd

    return [crd()]
