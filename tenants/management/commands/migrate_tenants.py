"""Migrate the tenant schemas that exist (active or suspended tenants), one by one.

Unlike a bare `migrate_schemas`, tenants still provisioning (no schema yet), failed or being
deleted are left alone. Each migrated tenant records its new schema version and is served again.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_exists

from tenants.models import Tenant


class Command(BaseCommand):
    help = "Apply migrations to every existing tenant schema (after `migrate_schemas --shared`)."

    def handle(self, *args, **options):
        tenants = Tenant.objects.filter(status__in=[Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED])
        count = 0
        for tenant in tenants.order_by("pk"):
            if not schema_exists(tenant.schema_name):
                self.stderr.write(f"{tenant.slug}: schema {tenant.schema_name} is missing; skipped")
                continue
            call_command("migrate_schemas", schema_name=tenant.schema_name, interactive=False,
                         verbosity=max(0, options["verbosity"] - 1))
            count += 1
        self.stdout.write(f"Migrated {count} tenant schema(s).")
