"""The periodic pass at scale: one label-selected LIST per kind for a tenant, compared in memory,
instead of a GET per object; nothing written when nothing changed; drift still repaired."""

import pytest
from django_tenants.utils import tenant_context

import kubehelp
from portal import kube
from tenants.projects import reconcile
from tenants.projects import services as project_services

pytestmark = pytest.mark.django_db

WRITES = ("create", "update", "patch", "delete")


def _during(action) -> dict[str, int]:
    before = kubehelp.requests_by_verb()
    action()
    after = kubehelp.requests_by_verb()
    return {verb: after.get(verb, 0) - before.get(verb, 0) for verb in set(before) | set(after)
            if after.get(verb, 0) != before.get(verb, 0)}


def test_a_pass_over_a_tenant_lists_each_kind_once_and_writes_nothing_when_nothing_changed(alpha, users):
    with tenant_context(alpha):
        for slug in ("pass-a", "pass-b", "pass-c"):
            project = project_services.project_create(tenant=alpha, slug=slug, acting_user=users["alice"])
            reconcile.run(project.pk)
        requests = _during(reconcile.reconcile_all)
    assert requests == {"list": len(reconcile.Observed.KINDS)}  # no GET per object, no write


def test_the_pass_still_repairs_drift_it_sees_in_its_lists(alpha, users):
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="pass-drift", acting_user=users["alice"])
        reconcile.run(project.pk)
        kube.delete("ResourceQuota", reconcile.QUOTA_NAME, project.namespace)  # by hand, outside Pier
        counts = reconcile.reconcile_all()
    assert counts["changed"] >= 1 and counts["errors"] == 0
    assert kube.get("ResourceQuota", reconcile.QUOTA_NAME, project.namespace) is not None


def test_a_pass_that_cannot_list_is_skipped_and_counted_not_half_done(alpha, users):
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="pass-down", acting_user=users["alice"])
        reconcile.run(project.pk)
        kubehelp.inject_fault(verb="list", resource="limitranges", status=503)
        counts = {}
        try:
            requests = _during(lambda: counts.update(reconcile.reconcile_all()))
        finally:
            kubehelp.clear_faults()
    assert counts["errors"] == 1 and counts["changed"] == 0
    assert not set(requests) & set(WRITES)  # nothing written on a partial view


def test_a_cycles_copies_expire_after_one_interval_so_a_slow_cycle_never_piles_up(alpha, beta, monkeypatch):
    """Beat sends the fan-out every PIER_RECONCILE_INTERVAL; a copy still queued when the next one is
    sent would only repeat it, so the worker drops copies older than an interval (Celery `expires`)."""
    from celery import current_app
    from django.conf import settings

    from tenants.tasks import fan_out_to_active_tenants

    name = "tenants.projects.tasks.reconcile_all_projects"
    sent = []
    monkeypatch.setattr(current_app.tasks[name], "apply_async", lambda *a, **kw: sent.append(kw))
    count = fan_out_to_active_tenants(name)
    assert count == len(sent) >= 2
    assert {kw["headers"]["_schema_name"] for kw in sent} >= {alpha.schema_name, beta.schema_name}
    assert all(kw["expires"] == settings.PIER_RECONCILE_INTERVAL for kw in sent)


def test_the_passs_lists_are_answered_from_the_api_servers_cache(alpha, users, monkeypatch):
    """resourceVersion=0: the API server answers from its watch cache. Without it a LIST is a quorum
    read: every object of the kind read from etcd to be filtered by label, once per tenant."""
    with tenant_context(alpha):
        project = project_services.project_create(tenant=alpha, slug="pass-cache", acting_user=users["alice"])
        reconcile.run(project.pk)
        sent = []
        real = kube._request
        monkeypatch.setattr(kube, "_request", lambda method, path, **kw: sent.append((method, kw.get("query"))) or
                            real(method, path, **kw))
        reconcile.reconcile_all()
    lists = [query for method, query in sent if method == "GET"]
    assert len(lists) == len(reconcile.Observed.KINDS)
    assert all(("resourceVersion", "0") in query for query in lists), lists
