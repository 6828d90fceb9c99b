"""Public-schema models: tenants, who belongs to them, and the jobs that provision them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_tenants.models import TenantMixin

from portal.controller import Reconciled
from tenants.validators import validate_image_reference, validate_tenant_slug


class Tenant(TenantMixin, Reconciled):
    """An organization: a PostgreSQL schema. `status` and `status_message` are derived from its
    conditions and desired state by its controller (tenants/provisioning.py), never written by hand."""

    class Status(models.TextChoices):
        PROVISIONING = "provisioning", "provisioning"
        ACTIVE = "active", "active"
        SUSPENDED = "suspended", "suspended"
        DELETING = "deleting", "deleting"
        FAILED = "failed", "failed"

    slug = models.CharField(max_length=41, unique=True, validators=[validate_tenant_slug])
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONING, db_index=True)
    status_message = models.TextField(blank=True)
    max_projects = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the platform default (PIER_DEFAULT_MAX_PROJECTS)."
    )
    max_members = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the platform default (PIER_DEFAULT_MAX_MEMBERS)."
    )
    max_key_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest access-key lifetime; empty: the platform's (PIER_KEY_MAX_DAYS)."
    )
    # Where the organization's pods run (set by staff): `shared` nodes, or `dedicated` ones labelled
    # and tainted pier.dev/tenant=<slug> (its namespaces get the node-selector annotation; its
    # session runners tolerate the taint), with its own runner image if set.
    class RuntimeMode(models.TextChoices):
        SHARED = "shared", "shared"
        DEDICATED = "dedicated", "dedicated"

    runtime_mode = models.CharField(max_length=16, choices=RuntimeMode.choices, default=RuntimeMode.SHARED)
    runner_image = models.CharField(max_length=500, blank=True, validators=[validate_image_reference],
                                    help_text="The session runner's image here; empty: PIER_RUNNER_IMAGE.")
    max_running_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sessions running at once; empty: PIER_SESSION_RUNNING_PER_TENANT.")
    # Set by platform staff (tenants/projects/config.py): ceilings that replace the platform's for
    # this organization, a budget for the sum of its projects' quotas, keys nobody in it may change.
    config_ceilings = models.JSONField(default=dict, blank=True, help_text="{setting: quantity}, e.g. {\"quota.pods\": \"100\"}.")
    config_budget = models.JSONField(default=dict, blank=True, help_text="{quota setting: quantity}: the sum over all projects.")
    config_locks = models.JSONField(default=list, blank=True, help_text="Settings the organization and its projects cannot change.")
    # Which tenant-app migrations the schema has; compared with the code's at each request.
    schema_version = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The desired state "gone": the deletion job tears it down, then the row goes.
    deletion_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Schemas are created and dropped by the provisioning tasks, never by save()/delete().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def role_of(self, user) -> str | None:
        """The person's organization role here, or None. The kernel's access check asks the tenant
        (portal.access.member_role), so that it never names this app's models."""
        # order_by(): Membership's default ordering would join tenants and users into this lookup.
        roles = Membership.objects.filter(tenant_id=self.pk, user_id=user.pk).order_by().values_list("role", flat=True)[:1]
        return roles[0] if roles else None

    @property
    def effective_max_projects(self) -> int:
        return self.max_projects if self.max_projects is not None else settings.PIER_DEFAULT_MAX_PROJECTS

    @property
    def effective_max_key_days(self) -> int:
        platform = settings.PIER_KEY_MAX_DAYS
        return min(self.max_key_days, platform) if self.max_key_days else platform

    @property
    def effective_max_running_sessions(self) -> int:
        if self.max_running_sessions is not None:
            return self.max_running_sessions
        return settings.PIER_SESSION_RUNNING_PER_TENANT

    @property
    def node_selector(self) -> dict[str, str]:
        """Where its pods must run: its own nodes when dedicated, anywhere otherwise."""
        return {"pier.dev/tenant": self.slug} if self.runtime_mode == self.RuntimeMode.DEDICATED else {}

    @property
    def effective_max_members(self) -> int:
        return self.max_members if self.max_members is not None else settings.PIER_DEFAULT_MAX_MEMBERS


class Role(models.TextChoices):
    OWNER = "owner", "owner"
    ADMIN = "admin", "admin"
    MEMBER = "member", "member"


MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    # PROTECT: users are deactivated, never deleted.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["tenant__slug", "user__username"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class PendingMembership(models.Model):
    """A membership for someone who has not signed in yet, by username or verified email.
    Claimed at their first sign-in."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="pending_memberships")
    username = models.CharField(max_length=150, blank=True)
    email = models.EmailField(blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # The invitation email (invitations by email only): when it last went out, how often, and why
    # the last attempt failed, if it did.
    sent_at = models.DateTimeField(null=True, blank=True)
    send_count = models.PositiveIntegerField(default=0)
    send_error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(username="") | ~Q(email=""), name="pending_membership_has_identity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username or self.email} (pending) in {self.tenant}"


class ProvisioningJob(models.Model):
    """A tenant's provisioning or deletion, with its steps: what the admin, the API and the
    tenant's page show while the worker does the work."""

    class Kind(models.TextChoices):
        PROVISION = "provision", "provision"
        DELETE = "delete", "delete"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RETRYING = "retrying", "retrying"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    tenant_slug = models.CharField(max_length=41, db_index=True, help_text="Kept after the tenant is gone.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.tenant_slug} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class JobStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="jobstep_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class SchemaTemplate(models.Model):
    """The SQL that migrating an empty tenant schema runs, captured once per migration state and
    replayed in one transaction for each new tenant (see tenants/schema.py)."""

    migration_state = models.CharField(max_length=64, primary_key=True)
    statements = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"template {self.migration_state[:12]} ({len(self.statements)} statements)"


class NamespaceRegistry(models.Model):
    """Every Kubernetes namespace Pier manages, across all tenants: the unique name keeps two
    tenants' projects from sharing a namespace (`a-b` + `c` and `a` + `b-c` both make `a-b-c`).
    Projects live in tenant schemas, so the project is referenced by id, not by foreign key."""

    name = models.CharField(max_length=63, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="namespaces")
    project_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "namespace registry"
        constraints = [models.UniqueConstraint(fields=["tenant", "project_id"], name="namespace_one_per_project")]

    def __str__(self) -> str:
        return self.name
