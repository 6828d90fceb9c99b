"""The Django admin for platform staff: lifecycle actions through the services (audited),
read-only jobs and audit, users deactivated and never deleted."""

import pytest

from portal.models import AuditEvent
from tenants.models import ProvisioningJob, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, users):
    client.force_login(users["staff"])
    return client


def _action(client, action, *pks, url="/admin/tenants/tenant/"):
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)


def test_admin_pages_render(staff_client, alpha):
    for url in ["/admin/", "/admin/tenants/tenant/", f"/admin/tenants/tenant/{alpha.pk}/change/",
                "/admin/tenants/provisioningjob/", "/admin/portal/auditevent/", "/admin/auth/user/",
                "/admin/tenants/membership/"]:
        assert staff_client.get(url).status_code == 200, url


def test_a_tenants_page_shows_its_projects_from_its_schema(staff_client, alpha, users):
    """The projects app contributes the section through tenants.signals.tenant_admin_sections
    (the tenants app does not import it)."""
    from django_tenants.utils import schema_context

    from tenants.projects.models import Project

    with schema_context(alpha.schema_name):
        Project.objects.create(slug="admin-sees-me", namespace="alpha-admin-sees-me", created_by=users["alice"],
                               status="failed", status_message="quota refused")
    page = staff_client.get(f"/admin/tenants/tenant/{alpha.pk}/change/").content.decode()
    assert "<b>Projects</b>: <div><b>admin-sees-me</b> (alpha-admin-sees-me) failed quota refused</div>" in page


def test_suspend_resume_and_retry_actions_go_through_the_services(staff_client, alpha, beta, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _action(staff_client, "suspend", alpha.pk, beta.pk)
    assert "Suspended 2 tenant(s)." in response.content.decode()
    assert set(Tenant.objects.filter(slug__in=["alpha", "beta"]).values_list("status", flat=True)) == {"suspended"}
    assert AuditEvent.objects.filter(action="tenant.suspend", source="admin", actor="staff").count() == 2
    response = _action(staff_client, "retry", alpha.pk)
    assert "only a failed provisioning or deletion can be retried" in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        _action(staff_client, "resume", alpha.pk)
    assert Tenant.objects.get(pk=alpha.pk).status == "active"


def test_delete_action_asks_first_then_starts_a_deletion_job(staff_client, beta, django_capture_on_commit_callbacks):
    response = _action(staff_client, "delete_tenants", beta.pk)
    page = response.content.decode()
    assert "are you sure?" in page and "beta" in page and 'name="post" value="yes"' in page
    assert Tenant.objects.get(pk=beta.pk).status == "active"  # nothing happened yet
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post("/admin/tenants/tenant/", {"action": "delete_tenants", "post": "yes",
                                                                "_selected_action": [str(beta.pk)]}, follow=True)
    assert "Deleting 1 tenant(s)." in response.content.decode()
    assert Tenant.objects.get(pk=beta.pk).status == "deleting"
    assert ProvisioningJob.objects.filter(tenant=beta, kind="delete", status="queued").exists()
    assert callbacks  # the job is enqueued on commit


def test_jobs_and_audit_are_read_only(staff_client):
    job = ProvisioningJob.objects.first()
    page = staff_client.get(f"/admin/tenants/provisioningjob/{job.pk}/change/").content.decode()
    assert "create_schema" in page and 'name="_save"' not in page
    event = AuditEvent.objects.first()
    assert staff_client.post(f"/admin/portal/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_audit_rows_cannot_be_changed_even_in_sql(alpha):
    from django.db import connection, transaction
    from django.db.utils import DatabaseError

    event = AuditEvent.objects.first()
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE portal_auditevent SET outcome = 'success' WHERE id = %s", [event.pk])


def test_users_are_deactivated_not_deleted(staff_client, users):
    bob = users["bob"]
    assert staff_client.get(f"/admin/auth/user/{bob.pk}/delete/").status_code == 403
    response = _action(staff_client, "deactivate", bob.pk, url="/admin/auth/user/")
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.is_active is False
    assert AuditEvent.objects.filter(action="user.deactivate", target="bob", actor="staff").exists()


def test_staff_set_groups_and_deactivate_through_the_users_api(api, users):
    client = api(users["staff"])
    response = client.patch("/api/v1/admin/users/bob", {"groups": ["system:authenticated", "/acme/dev", "ops", "ops"]},
                            format="json")
    assert response.status_code == 200
    assert response.json()["groups"] == ["/acme/dev", "ops", "system:authenticated"]
    assert client.get("/api/v1/admin/users/bob").json()["groups"] == ["/acme/dev", "ops", "system:authenticated"]
    for bad in ({"groups": "ops"}, {"groups": [""]}, {"groups": ["x" * 256]}, {"username": "robert"}):
        response = client.patch("/api/v1/admin/users/bob", bad, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()["error"]["details"]) <= {"groups", "username", "groups.0"} and response.json()["error"]["details"]
    assert client.patch("/api/v1/admin/users/bob", {"is_active": False}, format="json").json()["is_active"] is False
    assert AuditEvent.objects.filter(action="user.deactivate", target="bob", source="api").exists()
    assert client.get("/api/v1/admin/users/nobody").status_code == 404
    listed = client.get("/api/v1/admin/users?is_active=false").json()["results"]
    assert [u["username"] for u in listed] == ["bob"]


def test_staff_edit_a_users_groups_in_the_admin(staff_client, users):
    import re

    from portal.models import UserProfile

    bob = users["bob"]
    url = f"/admin/auth/user/{bob.pk}/change/"

    def read_form() -> dict:
        form = {}
        for tag in re.findall(r"<input[^>]*>", staff_client.get(url).content.decode()):
            name = re.search(r'name="([^"]+)"', tag)
            if not name or name.group(1) == "csrfmiddlewaretoken":
                continue
            kind = (re.search(r'type="([^"]+)"', tag) or [None, "text"])[1]
            if kind == "checkbox":
                if "checked" in tag:
                    form[name.group(1)] = "on"
            elif kind not in ("submit", "button"):
                value = re.search(r'value="([^"]*)"', tag)
                form[name.group(1)] = value.group(1) if value else ""
        return form

    form = read_form()
    form["profile-0-groups"] = "system:authenticated,/acme/dev"
    response = staff_client.post(url, form)
    assert response.status_code == 302, re.findall(r'class="errorlist[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    assert UserProfile.objects.get(user=bob).groups == ["/acme/dev", "system:authenticated"]
    assert AuditEvent.objects.filter(action="user.set_groups", target="bob", source="admin").exists()

    # Unticking "active" on the same page goes through the service too: audited, and followed.
    form = read_form()
    form.pop("is_active", None)
    response = staff_client.post(url, form)
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.is_active is False
    assert AuditEvent.objects.filter(action="user.deactivate", target="bob", source="admin").exists()
