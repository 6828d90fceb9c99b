"""Celery tasks for projects: thin, they take ids and call the reconciler. Enqueued from a tenant's
request or fan-out, so they run in that tenant's schema."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import connection

from portal import audit, locks, retries
from tenants.projects import reconcile
from tenants.projects.models import AccessKey

log = logging.getLogger(__name__)


def backoff_seconds(failures: int) -> float:
    return retries.backoff(failures, base=settings.PIER_PROJECT_BACKOFF)


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def reconcile_project(self, project_id: int, failures: int = 0) -> None:
    """Make the cluster match the project; `failures` counts failed attempts only (waiting for
    another worker or for a namespace to empty is not one)."""
    again = {"args": [project_id], "kwargs": {"failures": failures}}
    with audit.source("task"):
        try:
            reconcile.run(project_id)
        except locks.Busy:
            # Another worker is on it, maybe with older data: come back when it is done.
            raise self.retry(countdown=settings.PIER_NAMESPACE_POLL_SECONDS, **again)
        except retries.NotDoneYet:  # the namespace is still terminating: a wait, not a failure
            raise self.retry(countdown=settings.PIER_NAMESPACE_POLL_SECONDS, **again)
        except Exception as exc:  # a cluster fault, a conflict, …: show it, retry with backoff
            final = failures >= settings.PIER_PROJECT_MAX_RETRIES
            try:
                recorded = reconcile.record_error(project_id, exc, final=final)
            except Exception:  # the database went away: the retry must not be lost with the note
                log.exception("project %s: could not record the error; retrying anyway", project_id)
                recorded = True
            if not recorded:
                log.warning("project %s: giving up after %s failed attempts: %s", project_id, failures, exc)
                return
            raise self.retry(args=[project_id], kwargs={"failures": failures + 1},
                             countdown=backoff_seconds(failures), exc=exc)


@shared_task
def reconcile_all_projects() -> dict:
    """Per tenant (fan-out from beat): repair drift and pick up stuck, failed or deleting projects."""
    with audit.source("task"):
        return reconcile.reconcile_all()


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def delete_key_objects(self, key_id: int) -> None:
    """After a revocation: delete the key's ServiceAccount and RoleBinding (404 is success)."""
    with audit.source("task"):
        key = AccessKey.objects.select_related("project").filter(pk=key_id).first()
        if key is None:
            return
        try:
            reconcile.remove_key_objects(key, tenant_slug=connection.tenant.slug)
        except Exception as exc:
            raise self.retry(countdown=backoff_seconds(self.request.retries), exc=exc)
