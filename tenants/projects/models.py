"""Tenant-schema models. Projects, group access and keys arrive with their issues; the tenant's
own settings row is seeded by provisioning so that every schema starts complete."""

from django.db import models
from django.utils import timezone


class TenantSettings(models.Model):
    """The tenant level of the effective configuration (platform defaults → tenant → project).
    One row per schema, created by provisioning."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    project_defaults = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant settings"

    def __str__(self) -> str:
        return "tenant settings"
