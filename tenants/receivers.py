"""Signal receivers of the tenants app (connected in TenantsConfig.ready)."""

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django_tenants.signals import schema_migrated


@receiver(user_logged_in, dispatch_uid="pier_claim_pending_memberships")
def claim_memberships_at_sign_in(sender, request, user, **kwargs):
    from tenants.services import claim_pending_memberships

    claim_pending_memberships(user=user)


@receiver(schema_migrated, dispatch_uid="pier_record_schema_version")
def record_schema_version(sender, schema_name, **kwargs):
    """After `migrate_schemas` brought a tenant schema up to date, its requests are served again."""
    from portal import tenancy
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(schema_name=schema_name).first()
    if tenant is not None:
        Tenant.objects.filter(pk=tenant.pk).update(schema_version=tenancy.code_schema_version())
        tenancy.invalidate(tenant.slug)
