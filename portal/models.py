from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class UserProfile(models.Model):
    """What Pier knows about a person beyond Django's user: the groups they belong to (edited by
    staff until SSO fills them from the token's groups claim). Group names are kept as the
    identity provider spells them (`system:authenticated`, Keycloak paths like `/org/team`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True,
                                related_name="profile")
    groups = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} ({', '.join(self.groups) or 'no groups'})"


class AuditEvent(models.Model):
    """One row per mutating action, successful or refused. Append-only (a database trigger
    refuses UPDATE and DELETE). The tenant is a plain value, not a foreign key, so the history
    outlives the tenant."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "success"
        DENIED = "denied", "denied"
        INVALID = "invalid", "invalid input"
        NOT_FOUND = "not_found", "not found"
        CONFLICT = "conflict", "conflict"
        FAILED = "failed", "failed"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, blank=True, help_text="Username, or 'system' / 'anonymous'.")
    actor_id = models.BigIntegerField(null=True, blank=True)
    tenant = models.CharField(max_length=64, blank=True, db_index=True, help_text="The tenant's slug then.")
    # The tenant's id as a plain value: a slug can be reused after a deletion, an id cannot.
    tenant_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=120, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    source = models.CharField(max_length=16, blank=True, help_text="html, api, admin, task or cli")
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant_id", "-at"], name="audit_tenant_id_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} {self.outcome}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")
