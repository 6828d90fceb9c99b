"""How projects react to changes elsewhere (the tenants app and the kernel never import this app)."""

from django.dispatch import receiver
from django_tenants.utils import schema_context

from portal.signals import user_active_changed, user_groups_changed
from tenants.models import MANAGER_ROLES, Membership, Tenant
from tenants.signals import (home_sections, member_removed, member_role_changed, tenant_admin_sections, tenant_deleting,
                             tenant_seeding, tenant_updated)

LIVE = (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED)


@receiver(tenant_seeding, dispatch_uid="pier_projects_tenant_settings")
def seed_tenant_settings(sender, tenant, new, **kwargs):
    """A new organization starts with its settings row (the periodic repair puts a lost one back)."""
    from tenants.projects.services import tenant_settings_seed

    return tenant_settings_seed(new=new)


@receiver(tenant_deleting, dispatch_uid="pier_projects_tenant_teardown")
def remove_namespaces_of_deleted_tenant(sender, tenant, **kwargs):
    from tenants.projects.reconcile import tenant_teardown

    tenant_teardown(tenant)


@receiver(member_role_changed, dispatch_uid="pier_projects_keys_follow_role")
def keys_follow_member_role(sender, tenant, user, **kwargs):
    from tenants.projects.services import revoke_beyond_issuer

    if tenant.status in LIVE:
        with schema_context(tenant.schema_name):
            revoke_beyond_issuer(tenant=tenant, user=user, reason="the issuer's organization role changed")


@receiver(member_role_changed, dispatch_uid="pier_projects_managers_follow_role")
@receiver(member_removed, dispatch_uid="pier_projects_managers_follow_removal")
def cluster_follows_organization_managers(sender, tenant, user, **kwargs):
    """Owners and admins are admins of every project, in the cluster too: their bindings follow."""
    from tenants.projects.services import reconcile_every_project

    if tenant.status in LIVE:
        reconcile_every_project(tenant)


@receiver(user_active_changed, dispatch_uid="pier_projects_managers_follow_activation")
def cluster_follows_deactivated_managers(sender, user, active, **kwargs):
    """A deactivated owner or admin leaves the managers' binding of every project they ran."""
    from tenants.projects.services import reconcile_every_project

    for membership in (Membership.objects.filter(user=user, role__in=MANAGER_ROLES, tenant__status__in=LIVE)
                       .select_related("tenant")):
        reconcile_every_project(membership.tenant)


@receiver(member_removed, dispatch_uid="pier_projects_keys_leave_with_member")
def keys_leave_with_member(sender, tenant, user, **kwargs):
    """Someone who leaves an organization takes their access keys with them."""
    from portal import audit
    from tenants.projects.services import revoke_keys_of

    if tenant.status in LIVE:
        with schema_context(tenant.schema_name):
            count = revoke_keys_of(user=user, reason="left the organization")
        if count:
            audit.record(action="key.revoke", actor=None, tenant=tenant, target_type="member",
                         target=user.get_username(), details={"keys": count, "reason": "left the organization"})


@receiver(user_groups_changed, dispatch_uid="pier_projects_keys_follow_groups")
def keys_follow_groups(sender, user, **kwargs):
    from tenants.projects.services import revoke_beyond_issuer

    for membership in Membership.objects.filter(user=user, tenant__status__in=LIVE).select_related("tenant"):
        with schema_context(membership.tenant.schema_name):
            revoke_beyond_issuer(tenant=membership.tenant, user=user, reason="the issuer's groups changed")


@receiver(home_sections, dispatch_uid="pier_projects_home_summary")
def projects_on_organization_home(sender, request, **kwargs):
    from tenants.projects.selectors import home_summary

    return {"template": "projects/_home_summary.html", **home_summary(request)}


@receiver(tenant_admin_sections, dispatch_uid="pier_projects_admin_section")
def projects_in_tenant_admin(sender, tenant, **kwargs):
    """The tenant's projects and their status, for staff in the admin (runs in its schema)."""
    from django.utils.html import format_html_join

    from tenants.projects.models import Project

    rows = list(Project.objects.order_by("slug").values_list("slug", "namespace", "status", "status_message"))
    return {"title": "Projects", "html": format_html_join("", "<div><b>{}</b> ({}) {} {}</div>", rows) if rows else "none"}


@receiver(tenant_updated, dispatch_uid="pier_projects_follow_runtime_mode")
def namespaces_follow_runtime_mode(sender, tenant, changed, **kwargs):
    """Switching an organization to dedicated nodes (or back) changes its namespaces' node
    selector; pods already running stay where they are."""
    from tenants.projects.services import reconcile_every_project

    if "runtime_mode" in changed and tenant.status in LIVE:
        reconcile_every_project(tenant)
