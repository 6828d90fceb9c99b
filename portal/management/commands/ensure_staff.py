"""Make sure a platform staff account exists for a local run.

PIER_ADMIN_USERNAME / PIER_ADMIN_PASSWORD (environment) name it; without a password, one is
generated and printed once, when the account is created."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from portal import audit


class Command(BaseCommand):
    help = "Create the local staff account if it does not exist."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("PIER_ADMIN_USERNAME", "admin")
        password = os.environ.get("PIER_ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                audit.record(action="user.set_password", actor=None, target_type="user", target=username, source="cli")
            self.stdout.write(f"Staff account '{username}' exists.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        audit.record(action="user.create_staff", actor=None, target_type="user", target=username, source="cli")
        if generated:
            self.stdout.write(f"Created staff account '{username}' with password: {password}")
            self.stdout.write("(shown once; set PIER_ADMIN_PASSWORD to choose it)")
        else:
            self.stdout.write(f"Created staff account '{username}'.")
