"""Work enqueued from inside a tenant's schema lands in that schema, whatever schema the
transaction commits in: the schema is named when the work is enqueued, not when it is sent.

(tenant-schemas-celery runs a task in the schema of its `_schema_name` header; a task published
with the public schema's name would look for the project in the wrong tables.)"""

import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context

from tenants.projects import services as project_services
from tenants.projects.access import Access
from tenants.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """The arguments and headers of every reconcile task published (nothing reaches a broker)."""
    from portal import controller

    sent = []
    monkeypatch.setattr(controller.reconcile_object, "apply_async",
                        lambda args=None, headers=None, **kw: sent.append((args, headers)))
    return sent


def test_a_project_change_made_in_a_tenant_schema_inside_a_public_transaction_runs_in_that_schema(
        users, alpha, published, django_capture_on_commit_callbacks):
    assert connection.schema_name == "public"
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with schema_context(alpha.schema_name):
            project = project_services.project_create(tenant=alpha, slug="queued", acting_user=users["alice"])
            project_services.project_update(tenant=alpha, project=project, acting_user=users["alice"],
                                            access=Access("admin", "test"), description="changed")
            project_pk = project.pk
    assert connection.schema_name == "public"  # the commit happens back in the public schema
    for callback in callbacks:
        callback()
    assert published and all(headers == {"_schema_name": alpha.schema_name} for _args, headers in published)
    assert {tuple(args) for args, _headers in published} == {("projects.project", project_pk, alpha.schema_name)}
    with schema_context(alpha.schema_name):
        assert Project.objects.get(pk=project_pk).description == "changed"
