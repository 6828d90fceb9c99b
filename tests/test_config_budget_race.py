"""A budget holds under concurrent creates (committed data, real transactions in threads)."""

from __future__ import annotations

import threading

from django.db import connection, connections
from django_tenants.utils import tenant_context

from conftest import provision_now
from tenants.projects import selectors, services
from tenants.projects.models import Project


def test_concurrent_creates_cannot_race_past_the_budget(committed, unique_slug, monkeypatch):
    """Four creates at once with room for two: the tenant row lock makes them take turns. Each
    create is slowed while it reads the usage, so without the lock all four would see room."""
    from django.contrib.auth import get_user_model

    slug = unique_slug("race")
    tenant = provision_now(slug, "bob")
    bob = get_user_model().objects.get(username="bob")
    try:
        tenant.config_budget = {"quota.pods": "100"}
        tenant.save(update_fields=["config_budget"])
        real_usage = selectors.budget_usage

        def slow_usage(*args, **kwargs):
            result = real_usage(*args, **kwargs)
            threading.Event().wait(0.3)
            return result

        monkeypatch.setattr(selectors, "budget_usage", slow_usage)
        outcomes: list[str] = []
        start = threading.Barrier(4)

        def create(i: int) -> None:
            try:
                connection.set_tenant(tenant)
                start.wait()
                services.project_create(tenant=tenant, slug=f"p{i}", acting_user=bob)
                outcomes.append("created")
            except Exception as exc:  # the refusal is what we count
                outcomes.append(getattr(exc, "code", repr(exc)))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["budget_exceeded", "budget_exceeded", "created", "created"]
        with tenant_context(tenant):
            assert Project.objects.count() == 2
    finally:
        from tenants import provisioning, services as tenant_services

        connection.set_schema_to_public()
        tenant.refresh_from_db()
        _, job = tenant_services.tenant_delete(tenant=tenant, acting_user=None)
        provisioning.run_job(job.pk)
