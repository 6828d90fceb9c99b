"""Celery tasks for projects: the periodic pass. A project's or a key's own reconcile runs on the
kernel's one task (portal.controller.reconcile_object, enqueued by portal.controller.enqueue)."""

from __future__ import annotations

from celery import shared_task

from portal import audit
from tenants.projects import reconcile


@shared_task
def reconcile_all_projects() -> dict:
    """Per tenant (fan-out from beat): repair drift and pick up stuck, failed or deleting projects."""
    with audit.source("task"):
        return reconcile.reconcile_all()
