from django.dispatch import receiver

from tenants.signals import tenant_deleting


@receiver(tenant_deleting, dispatch_uid="pier_projects_tenant_teardown")
def remove_namespaces_of_deleted_tenant(sender, tenant, **kwargs):
    from tenants.projects.reconcile import tenant_teardown

    tenant_teardown(tenant)
