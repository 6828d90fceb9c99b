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
