"""Pier's Celery app, tenant-aware through tenant-schemas-celery.

A task enqueued while a tenant is active carries that tenant's schema in a message header and
runs in that schema. The request id of the enqueuing request travels in another header, so a
task's log lines and audit rows name the request that caused them.
"""

import os
from pathlib import Path

from celery.beat import PersistentScheduler
from django.core.exceptions import ImproperlyConfigured
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = CeleryApp("pier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from portal import request_id  # noqa: E402  (connects the Celery signal handlers)

request_id.connect_celery_signals()


class Scheduler(PersistentScheduler):
    """Celery's file-backed beat scheduler, which also makes the folder of its schedule file
    (under PIER_STATE_DIR by default; only the launcher made that folder before)."""

    def setup_schedule(self):
        folder = Path(self.schedule_filename).resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"beat cannot create the folder of its schedule file {self.schedule_filename} "
                f"({exc.strerror}): set PIER_STATE_DIR to a writable folder, or pass --schedule FILE."
            ) from exc
        super().setup_schedule()
