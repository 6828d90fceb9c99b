"""Admin for platform staff. Lifecycle actions go through the same services as the API, so they
are validated and audited the same way."""

from django.contrib import admin, messages

from portal.admin import ReadOnlyAdmin
from portal.errors import PierError
from tenants import services, signals
from tenants.models import JobStep, Membership, NamespaceRegistry, PendingMembership, ProvisioningJob, Tenant


def _run_for_each(modeladmin, request, queryset, service, verb):
    done = 0
    for tenant in queryset:
        try:
            service(tenant=tenant, acting_user=request.user)
            done += 1
        except PierError as exc:
            modeladmin.message_user(request, f"{tenant.slug}: {exc.message}", level=messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{verb} {done} tenant(s).", level=messages.SUCCESS)


class MembershipInline(admin.TabularInline):
    """Read-only: membership changes go through the members page or API (last-owner rule, audit)."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class JobInline(admin.TabularInline):
    model = ProvisioningJob
    extra = 0
    fields = ["id", "kind", "status", "attempts", "error", "created_at", "finished_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "status", "status_message", "max_projects", "max_members", "runtime_mode",
                    "created_at"]
    list_filter = ["status"]
    search_fields = ["slug", "name"]
    readonly_fields = ["slug", "schema_name", "status", "status_message", "conditions", "generation",
                       "observed_generation", "schema_version", "created_at", "updated_at", "suspended_at",
                       "deletion_requested_at", "schema_contents", "config_ceilings", "config_budget", "config_locks"]
    fields = ["slug", "name", "status", "status_message", "conditions", "generation", "observed_generation",
              "max_projects", "max_members", "max_running_sessions", "runtime_mode", "runner_image", "schema_name", "schema_version", "created_at", "updated_at",
              "suspended_at", "deletion_requested_at", "schema_contents",
              # Changed through PATCH /api/v1/admin/tenants/<slug>/policy (it re-checks the projects).
              "config_ceilings", "config_budget", "config_locks"]
    inlines = [MembershipInline, JobInline]
    actions = ["suspend", "resume", "retry", "delete_tenants"]

    def has_add_permission(self, request):
        return False  # tenants are created through the API (a provisioning job), not a bare row

    @admin.display(description="In its schema")
    def schema_contents(self, tenant):
        """What the apps inside the tenant's schema show staff (projects: each with its status),
        asked through a signal so that this app never imports them."""
        from django.utils.html import format_html_join
        from django_tenants.utils import schema_context

        if tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED):
            return "—"
        with schema_context(tenant.schema_name):
            sections = [s for _receiver, s in signals.tenant_admin_sections.send(sender=Tenant, tenant=tenant) if s]
        if not sections:
            return "—"
        return format_html_join("", "<div><b>{}</b>: {}</div>", ((s["title"], s["html"]) for s in sections))

    def has_delete_permission(self, request, obj=None):
        return False  # deletion is a job: the "Delete tenants" action

    def save_model(self, request, obj, form, change):
        """Through the service: validated, audited, and every process's tenant cache refreshed."""
        services.tenant_update(tenant=obj, acting_user=request.user,
                               **{field: form.cleaned_data[field] for field in form.changed_data})

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request, queryset):
        _run_for_each(self, request, queryset, services.tenant_suspend, "Suspended")

    @admin.action(description="Resume selected tenants")
    def resume(self, request, queryset):
        _run_for_each(self, request, queryset, services.tenant_resume, "Resumed")

    @admin.action(description="Retry failed provisioning or deletion")
    def retry(self, request, queryset):
        _run_for_each(self, request, queryset, services.tenant_retry, "Retried")

    @admin.action(description="Delete tenants (drops their schema)")
    def delete_tenants(self, request, queryset):
        """Destructive: first an intermediate confirmation page (as Django's own delete action),
        then the deletion jobs."""
        if request.POST.get("post") != "yes":
            from django.contrib.admin import helpers
            from django.template.response import TemplateResponse

            return TemplateResponse(request, "admin/tenants/delete_tenants_confirmation.html", {
                **self.admin_site.each_context(request), "title": "Delete tenants: are you sure?",
                "queryset": queryset, "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            })
        _run_for_each(self, request, queryset, services.tenant_delete, "Deleting")


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    """To change members, staff use the organization's Members page or API (they have every role
    there): the last-owner rule and the audit apply."""

    list_display = ["tenant", "user", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["tenant__slug", "user__username", "user__email"]


@admin.register(PendingMembership)
class PendingMembershipAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "username", "email", "role", "created_at"]
    search_fields = ["tenant__slug", "username", "email"]


@admin.register(NamespaceRegistry)
class NamespaceRegistryAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "project_id", "created_at"]
    search_fields = ["name", "tenant__slug"]


class JobStepInline(admin.TabularInline):
    model = JobStep
    extra = 0
    fields = ["position", "name", "status", "attempts", "error", "started_at", "finished_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ProvisioningJob)
class ProvisioningJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "tenant_slug", "status", "attempts", "error", "created_at", "finished_at"]
    list_filter = ["kind", "status"]
    search_fields = ["tenant_slug", "request_id"]
    readonly_fields = [f.name for f in ProvisioningJob._meta.fields]
    inlines = [JobStepInline]
