"""Pier's Celery app, tenant-aware through tenant-schemas-celery.

A task enqueued while a tenant is active carries that tenant's schema in a message header and
runs in that schema. The request id of the enqueuing request travels in another header, so a
task's log lines and audit rows name the request that caused them.
"""

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = CeleryApp("pier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from portal import request_id  # noqa: E402  (connects the Celery signal handlers)

request_id.connect_celery_signals()
