"""The main journeys in a real browser (Debian chromium driven by Playwright) against a real web
server process: a member signs in, sees only their organizations, and manages members; staff
suspend a tenant from the Django admin."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from conftest import PASSWORD, provision_now
from portal.models import AuditEvent
from tenants import provisioning, services
from tenants.models import Membership, Tenant

CHROMIUM = os.environ.get("PIER_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("PIER_STATE_DIR", ".pier/test")) / "screenshots"


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django then refuses ORM calls
    # "from an async context". The test's ORM calls never overlap the loop's work.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def org(committed, unique_slug):
    staff = get_user_model().objects.get(username="staff")
    tenant = provision_now(unique_slug("web"), "alice", name="Harbour Works", acting_user=staff)
    yield tenant
    tenant = Tenant.objects.filter(pk=tenant.pk).first()
    if tenant is not None:
        if tenant.status == "suspended":
            Tenant.objects.filter(pk=tenant.pk).update(status="active")
            tenant.refresh_from_db()
        with transaction.atomic():
            _t, job = services.tenant_delete(tenant=tenant, acting_user=staff)
        for _ in range(50):  # its namespaces take a moment to go; the step is retried
            try:
                provisioning.run_job(job.pk)
                break
            except Exception:
                time.sleep(0.2)


def _sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_member_signs_in_sees_only_their_tenants_and_manages_members(browser, web_process, org):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    _sign_in(page, web_process, "alice")
    page.wait_for_selector("text=Your organizations")
    assert page.is_visible("text=Harbour Works") and page.is_visible("text=Alpha Org")
    assert not page.is_visible("text=Beta Org")
    page.screenshot(path=str(SCREENSHOTS / "picker.png"), full_page=True)

    page.click("text=Harbour Works")
    page.wait_for_selector("h1:has-text('Harbour Works')")
    page.click("nav >> text=Members")
    page.fill("#id_username", "carol")
    page.select_option("#id_role", "admin")
    page.click("button:has-text('Add')")
    page.wait_for_selector("text=carol was added as admin")
    assert Membership.objects.get(tenant=org, user__username="carol").role == "admin"

    row = page.locator("tr[data-username=carol]")
    row.locator("select").select_option("member")
    row.locator("button:has-text('Change')").click()
    page.wait_for_selector("text=carol is now member")
    page.screenshot(path=str(SCREENSHOTS / "members.png"), full_page=True)

    # The last owner is protected; the refusal is shown on the page.
    page.once("dialog", lambda dialog: dialog.accept())  # removing a member asks first
    page.locator("tr[data-username=alice] button:has-text('Remove')").click()
    page.wait_for_selector("text=at least one owner")
    assert Membership.objects.get(tenant=org, user__username="alice").role == "owner"

    page.goto(f"{web_process}/t/{org.slug}/audit")
    page.wait_for_selector("text=member.add")
    assert page.is_visible("td.outcome-conflict")
    page.close()


def test_staff_suspend_a_tenant_from_the_admin_and_members_are_told(browser, web_process, org):
    page = browser.new_page()
    _sign_in(page, web_process, "staff")
    page.goto(f"{web_process}/admin/tenants/tenant/")
    page.check(f"tr:has-text('{org.slug}') input[name=_selected_action]")
    page.select_option("select[name=action]", "suspend")
    page.click("button[name=index]")
    page.wait_for_selector("text=Suspended 1 tenant(s).")
    assert Tenant.objects.get(pk=org.pk).status == "suspended"
    assert AuditEvent.objects.filter(action="tenant.suspend", tenant=org.slug, actor="staff", source="admin").exists()
    page.close()

    member = browser.new_page()
    _sign_in(member, web_process, "alice")
    member.goto(f"{web_process}/t/{org.slug}/")
    member.wait_for_selector("text=is suspended")
    assert member.is_visible(f"text=The organization '{org.slug}' is suspended")
    member.close()


def test_member_creates_configures_and_deletes_a_project(browser, web_process, celery_worker_process, org):
    from django_tenants.utils import tenant_context

    from portal import kube
    from tenants.projects.models import Project

    page = browser.new_page()
    _sign_in(page, web_process, "alice")
    page.goto(f"{web_process}/t/{org.slug}/projects")
    page.fill("#id_slug", "shop")
    page.fill("#id_display_name", "Web Shop")
    page.click("button:has-text('Create project')")
    page.wait_for_selector(f"text=is being created in namespace {org.slug}-shop")
    assert page.is_visible("text=local simulated cluster")

    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    # No reload: the status fragment polls itself until the project is ready, then stops.
    page.wait_for_selector("#project-status:text-is('ready')", timeout=30_000)
    assert page.get_attribute("#live-status", "hx-get") is None  # the last answer stopped the polling
    assert errors == []
    assert kube.get("Namespace", f"{org.slug}-shop") is not None
    page.screenshot(path=str(SCREENSHOTS / "project.png"), full_page=True)

    page.fill("tr[data-key='quota.pods'] input", "7")
    page.click("button:has-text('Save overrides')")
    page.wait_for_selector("text=Configuration saved")
    assert page.inner_text("tr[data-key='quota.pods'] .value") == "7"
    assert page.inner_text("tr[data-key='quota.pods'] .badge") == "project"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        quota = kube.get("ResourceQuota", "pier-quota", f"{org.slug}-shop")
        if quota and quota["spec"]["hard"]["pods"] == "7":
            break
        time.sleep(0.2)
    assert quota["spec"]["hard"]["pods"] == "7"

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete project')")
    page.wait_for_selector("text=is being deleted")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with tenant_context(Tenant.objects.get(pk=org.pk)):
            if not Project.objects.filter(slug="shop").exists():
                break
        time.sleep(0.3)
    assert kube.get("Namespace", f"{org.slug}-shop") is None
    page.reload()
    assert not page.is_visible("tr[data-project=shop]")
    page.close()


def test_a_key_created_in_the_browser_works_like_curl_and_dies_when_revoked(browser, web_process, org):
    """The key journey: create it in the browser, copy the token shown once, use it over HTTP for its
    project and role only, revoke it in the browser: refused at once."""
    import urllib.error
    import urllib.request

    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile
    from tenants.projects import services as project_services

    alice = get_user_model().objects.get(username="alice")
    with tenant_context(org):
        project = project_services.project_create(tenant=org, slug="api", acting_user=alice)
        reconcile.run(project.pk)
    page = browser.new_page()
    _sign_in(page, web_process, "alice")
    page.goto(f"{web_process}/t/{org.slug}/projects/api/keys")
    page.fill("#id_name", "ci")
    page.select_option("#id_role", "view")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("text=the only time Pier shows it")
    token = page.input_value("#new-token")
    assert page.is_visible("#copy-token")

    def call(method: str, path: str) -> int:
        request = urllib.request.Request(f"{web_process}{path}", method=method,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                         data=b'{"description": "by curl"}' if method == "PATCH" else None)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    base = f"/api/v1/tenants/{org.slug}/projects/api"
    assert call("GET", base) == 200
    assert call("PATCH", base) == 403  # a view key cannot change the project
    assert call("GET", f"/api/v1/tenants/{org.slug}/members") == 403  # nor act outside it
    page.goto(f"{web_process}/t/{org.slug}/projects/api/keys")
    # Destructive: it asks first. Declined, nothing happens; accepted, the key is revoked.
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.click("tr[data-key=ci] button:has-text('Revoke')")
    page.wait_for_timeout(300)
    assert questions and "Revoke the key ci?" in questions[0]
    assert call("GET", base) == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-key=ci] button:has-text('Revoke')")
    page.wait_for_selector("text=was revoked")
    assert call("GET", base) == 401
    page.close()
