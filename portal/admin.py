"""Admin for the audit trail (read-only) and users (deactivate, never delete)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from portal import audit, services
from portal.errors import PierError
from portal.models import AuditEvent, UserProfile

admin.site.site_header = "Pier platform administration"
admin.site.site_title = "Pier admin"


class AuditedModelAdmin(admin.ModelAdmin):
    """Edits made through the admin's own forms are audited like any other change."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(
            action=f"admin.{'change' if change else 'add'}.{obj._meta.label_lower}", actor=request.user,
            tenant=getattr(getattr(obj, "tenant", None), "slug", "") or "", target_type=obj._meta.model_name,
            target=str(obj), details={"fields": sorted(form.changed_data)},
        )

    def delete_model(self, request, obj):
        target = str(obj)
        tenant = getattr(getattr(obj, "tenant", None), "slug", "") or ""
        super().delete_model(request, obj)
        audit.record(action=f"admin.delete.{obj._meta.label_lower}", actor=request.user, tenant=tenant,
                     target_type=obj._meta.model_name, target=target)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown to staff, never changed here: history, or data with its own services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "tenant", "action", "target", "outcome", "source", "request_id"]
    list_filter = ["outcome", "source", "action", "tenant"]
    search_fields = ["actor", "tenant", "action", "target", "request_id"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


class UserProfileForm(forms.ModelForm):
    class Meta:
        model = UserProfile
        fields = ["groups"]
        labels = {"groups": "Groups"}
        help_texts = {"groups": "Comma-separated, as the identity provider names them (what project sharing uses)."}

    def clean_groups(self):
        try:
            return services.clean_groups(self.cleaned_data["groups"])
        except PierError as exc:
            raise forms.ValidationError(exc.message)


class UserProfileInline(admin.StackedInline):
    model = UserProfile
    form = UserProfileForm
    can_delete = False


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class PierUserAdmin(AuditedModelAdmin, UserAdmin):
    actions = ["deactivate"]
    # One groups field: Pier's (the identity provider's groups, below). Django's permission groups
    # and per-user permissions are not how Pier grants access, so they are not offered here.
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Platform staff", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    list_filter = ("is_staff", "is_superuser", "is_active")

    def has_delete_permission(self, request, obj=None):
        return False  # users are deactivated, never deleted (tenant tables reference them)

    inlines = [UserProfileInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the add page is username and password only

    @admin.action(description="Deactivate selected users")
    def deactivate(self, request, queryset):
        for user in queryset.filter(is_active=True):
            services.user_set_active(user=user, active=False, acting_user=request.user)
        messages.success(request, "Deactivated.")

    def save_model(self, request, obj, form, change):
        """The user page's "active" box goes through the service (audited, and what depends on a
        person being active follows: the cluster's bindings of the organizations they run)."""
        if change and "is_active" in form.changed_data:
            active = obj.is_active
            obj.is_active = not active  # saved as it was; the service makes the change
            super().save_model(request, obj, form, change)
            services.user_set_active(user=obj, active=active, acting_user=request.user)
            return
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        """The groups inline goes through the service (validated, audited)."""
        if formset.model is not UserProfile:
            return super().save_formset(request, form, formset, change)
        for inline_form in formset.forms:
            if inline_form.has_changed() and inline_form.cleaned_data:
                services.user_set_groups(user=form.instance, groups=inline_form.cleaned_data.get("groups") or [],
                                         acting_user=request.user)
        # What the admin's change message reads after a formset saved itself.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
