"""Tenant-schema models: the tenant's settings and its projects (Kubernetes namespaces)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.controller import Reconciled
from tenants.validators import validate_project_slug


class TenantSettings(models.Model):
    """The tenant level of the effective configuration (platform defaults → tenant → project).
    One row per schema, created by provisioning."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    project_defaults = models.JSONField(default=dict, blank=True)
    # Keys the organization's admins locked: projects cannot override them.
    locked_keys = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant settings"

    def __str__(self) -> str:
        return "tenant settings"


class Project(Reconciled):
    """A Kubernetes namespace with its quota, limits, network isolation and bindings. The database
    holds what should be; its controller (tenants/projects/reconcile.py, on the kernel in
    portal/controller.py) makes the cluster match. `status` and `status_message` are derived from
    the conditions (`Ready`, and `Removed` once a deletion is asked for), never written by hand."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROVISIONING = "provisioning", "provisioning"
        READY = "ready", "ready"
        FAILED = "failed", "failed"
        DELETING = "deleting", "deleting"

    slug = models.CharField(max_length=62, unique=True, validators=[validate_project_slug])
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    namespace = models.CharField(max_length=63, unique=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_message = models.TextField(blank=True)
    # Project level of the effective configuration; keys as in tenants/projects/config.py.
    config_overrides = models.JSONField(default=dict, blank=True)
    # PROTECT: users are deactivated, never deleted.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # The desired state "gone": the controller tears the namespace down, then the row goes.
    deletion_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Failed attempts in a row (reset when the cluster matches).
    reconcile_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def name(self) -> str:
        return self.display_name or self.slug

    @property
    def is_settled(self) -> bool:
        """Nothing is under way: the pages stop watching its status."""
        return self.status in (self.Status.READY, self.Status.FAILED)


class ProjectEvent(models.Model):
    """The project's history: each status change and each error the reconciler met."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Project.Status.choices)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.project} {self.status} {self.message[:40]}"


class ProjectRole(models.TextChoices):
    ADMIN = "admin", "admin"
    EDIT = "edit", "edit"
    VIEW = "view", "view"


class ProjectGrant(models.Model):
    """A person's or a group's role in a project, one per subject (like the OpenShift console's
    Project access tab): in Pier (who sees and changes the project) and in the cluster (one
    RoleBinding per subject to the ClusterRole pier-project-<role>)."""

    class Kind(models.TextChoices):
        USER = "user", "user"
        GROUP = "group", "group"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.GROUP)
    # The group as the identity provider spells it, or the person's username.
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                             related_name="+")
    role = models.CharField(max_length=8, choices=ProjectRole.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "subject"]
        constraints = [models.UniqueConstraint(fields=["project", "kind", "subject"], name="project_grant_one_per_subject")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} {self.role} on {self.project}"


class AccessKey(Reconciled):
    """A key for automation: a ServiceAccount in Pier's keys namespace (PIER_KEYS_NAMESPACE),
    bound into the project's namespace to the role's ClusterRole, and a TokenRequest token. Pier
    keeps only a peppered hash of the token; the token itself is shown once. Keys issued before
    the move have their ServiceAccount in the project's namespace (`is_legacy`). Its revocation is
    a new generation its controller follows (tenants/projects/reconcile.py: the objects are
    deleted, condition `Removed`)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=8, choices=ProjectRole.choices)
    service_account = models.CharField(max_length=63)
    service_account_namespace = models.CharField(
        max_length=63, help_text="Where the ServiceAccount is: the keys namespace, or (legacy) the project's.")
    token_hash = models.CharField(max_length=64, unique=True)
    token_last4 = models.CharField(max_length=4)
    expires_at = models.DateTimeField(help_text="As the cluster granted it (it may shorten what was asked).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], condition=models.Q(revoked_at__isnull=True),
                                               name="access_key_unique_live_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}) on {self.project}"

    @property
    def is_legacy(self) -> bool:
        """Issued in the project's namespace, where whoever may run pods there can act as it."""
        return self.service_account_namespace == self.project.namespace

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def state(self) -> str:
        """active, expired or revoked ("revoked, not yet removed" while removing its objects fails)."""
        if self.revoked_at is None:
            return "active" if self.expires_at > timezone.now() else "expired"
        removed = next((c for c in self.conditions if c.get("type") == "Removed"), None)
        return "revoked, not yet removed" if removed and removed.get("status") == "False" else "revoked"
