"""Pages as a platform engineer uses them, in a real browser (Debian chromium driven by Playwright)
against a real web server process: sharing a project on its Access tab, errors shown at their
fields, a confirmation before every destructive action, and a tour of every page as an owner, a
plain member and staff, at desktop width and 320 px wide (console errors, Pier's static files, no
sideways scrolling, every field named, valid aria-describedby, the skip link, every link and button
reachable with Tab). The tour's screenshots are the test's artifacts: SCREENSHOTS/tour/<role>-<page>-<width>.png
(SCREENSHOTS is under PIER_STATE_DIR; the test prints the folder)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from conftest import PASSWORD, wait_for
from test_browser import SCREENSHOTS, browser, org  # noqa: F401 (fixtures)
from tenants.models import Membership, PendingMembership, Tenant

DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 320, "height": 640}


# --- helpers -------------------------------------------------------------------------------------

def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "/login" not in page.url, f"{username} could not sign in"


def answer_next_dialog(page, *, accept: bool) -> list[str]:
    """The next confirm() is answered; returns the list its question is put in."""
    asked: list[str] = []

    def handle(dialog):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", handle)
    return asked


def declined(page, selector: str) -> str:
    """Click a destructive button and decline its confirmation: returns the question asked."""
    url = page.url
    asked = answer_next_dialog(page, accept=False)
    page.click(selector)
    page.wait_for_timeout(250)  # a submit that was not prevented would have navigated by now
    assert asked, f"{selector} did not ask before acting"
    assert page.url == url
    return asked[0]


def accepted(page, selector: str, then: str) -> str:
    asked = answer_next_dialog(page, accept=True)
    page.click(selector)
    page.wait_for_selector(then)
    assert asked, f"{selector} did not ask before acting"
    return asked[0]


def make_project(tenant, slug: str, *, owner: str = "alice", **fields):
    from django_tenants.utils import tenant_context

    from tenants.projects import reconcile
    from tenants.projects import services as project_services

    with tenant_context(tenant):
        project = project_services.project_create(tenant=tenant, slug=slug, acting_user=get_user_model().objects.get(
            username=owner), **fields)
        reconcile.run(project.pk)
        project.refresh_from_db()
    return project


def owner_access(tenant, project, username: str = "alice"):
    from tenants.projects.selectors import project_access

    return project_access(project, user=get_user_model().objects.get(username=username), tenant_role="owner", groups=[])


def binding(namespace: str, kind: str, subject: str):
    from portal import kube
    from tenants.projects.reconcile import grant_binding_name

    return kube.get("RoleBinding", grant_binding_name(kind, subject), namespace)


def field_errors(page, field_id: str) -> str:
    """The error shown at a field: the error list Django ties to it (aria-describedby → *_error)."""
    field = page.locator(f"[id='{field_id}']")
    assert field.get_attribute("aria-invalid") == "true", f"{field_id} is not marked invalid"
    described = (field.get_attribute("aria-describedby") or "").split()
    error_id = f"{field_id}_error"
    assert error_id in described, f"{field_id}'s error is not tied to it ({described})"
    return page.locator(f"[id='{error_id}']").inner_text()


def banner(page) -> str:
    return " ".join(page.locator("main [role=alert]").all_inner_texts())


# --- sharing ------------------------------------------------------------------------------------

def test_sharing_with_a_person_and_a_group_role_in_place_and_removal(browser, web_process, celery_worker_process, org):
    bob = get_user_model().objects.get(username="bob")
    Membership.objects.create(tenant=org, user=bob, role="member")
    project = make_project(org, "shared", display_name="Shared things")
    ns = project.namespace

    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, web_process, "alice")
    page.goto(f"{web_process}/t/{org.slug}/projects/shared/sharing")
    assert page.is_visible("text=Nobody but the organization's admins")

    page.select_option("#id_kind", "user")
    page.fill("#id_name", "bob")
    page.select_option("#id_role", "view")
    page.click("button:has-text('Share')")
    page.wait_for_selector("text=User bob now has the view role.")
    page.select_option("#id_kind", "group")
    page.fill("#id_name", "developers")
    page.select_option("#id_role", "edit")
    page.click("button:has-text('Share')")
    page.wait_for_selector("text=Group developers now has the edit role.")

    person = page.locator("tr[data-subject='user:bob']")
    group = page.locator("tr[data-subject='group:developers']")
    assert person.locator("td").nth(0).inner_text() == "person" and group.locator("td").nth(0).inner_text() == "group"
    # Who granted it and when, on the row.
    assert person.locator("td").nth(3).inner_text() == "alice"
    assert person.locator("td").nth(4).locator("time").get_attribute("datetime")
    assert person.locator("select").input_value() == "view" and group.locator("select").input_value() == "edit"
    wait_for(lambda: (binding(ns, "user", "bob") or {}).get("roleRef", {}).get("name") == "pier-project-view",
             message="bob's RoleBinding")
    wait_for(lambda: (binding(ns, "group", "developers") or {}).get("roleRef", {}).get("name") == "pier-project-edit",
             message="the group's RoleBinding")
    assert binding(ns, "group", "developers")["subjects"][0] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                                                "name": "developers"}

    # The role changes in place: still one row, the change says who and when.
    group.locator("select").select_option("admin")
    group.locator("button:has-text('Change')").click()
    page.wait_for_selector("text=Group developers now has the admin role.")
    assert page.locator("tr[data-subject='group:developers']").count() == 1
    assert group.locator("select").input_value() == "admin"
    assert group.locator("td").nth(5).inner_text().startswith("alice, ")
    assert group.locator("td").nth(5).locator("time").count() == 1
    wait_for(lambda: (binding(ns, "group", "developers") or {}).get("roleRef", {}).get("name") == "pier-project-admin",
             message="the group's RoleBinding to follow the role")

    # A second grant for the same subject is refused at the field, in plain words.
    page.select_option("#id_kind", "group")
    page.fill("#id_name", "developers")
    page.click("button:has-text('Share')")
    assert "The group 'developers' already has access to 'shared'" in field_errors(page, "id_name")
    assert page.input_value("#id_name") == "developers"  # what was typed is kept
    assert "name:" not in banner(page)
    assert page.locator("tr[data-subject='group:developers']").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sharing-duplicate.png"), full_page=True)

    # Removal asks first: declined, nothing happens; accepted, the row and the RoleBinding go.
    question = declined(page, "tr[data-subject='user:bob'] button:has-text('Remove')")
    assert "bob" in question
    assert page.is_visible("tr[data-subject='user:bob']")
    assert binding(ns, "user", "bob") is not None
    accepted(page, "tr[data-subject='user:bob'] button:has-text('Remove')", "text=User bob no longer has access.")
    assert not page.is_visible("tr[data-subject='user:bob']")
    wait_for(lambda: binding(ns, "user", "bob") is None, message="bob's RoleBinding to go")
    assert binding(ns, "group", "developers") is not None
    page.close()


# --- errors at their fields ---------------------------------------------------------------------

def test_several_bad_values_are_each_shown_at_their_field(browser, web_process, org):
    make_project(org, "errs")
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, web_process, "alice")

    # Three bad overrides at once: three errors, each at its own field, no API prefixes.
    page.goto(f"{web_process}/t/{org.slug}/projects/errs")
    page.fill("[id='id_quota.requests.cpu']", "lots")
    page.fill("[id='id_quota.pods']", "-3")
    page.fill("[id='id_limits.default.memory']", "12 GB")
    page.click("button:has-text('Save overrides')")
    page.wait_for_selector(".errorlist")
    messages = {key: field_errors(page, f"id_{key}") for key in ("quota.requests.cpu", "quota.pods", "limits.default.memory")}
    for key, message in messages.items():
        assert message and "config_overrides" not in message and key not in message, (key, message)
        assert page.locator(f"tr[data-key='{key}'] .errorlist").count() == 1  # in its own row
    assert page.locator(".errorlist").count() == 3
    assert page.input_value("[id='id_quota.pods']") == "-3"  # what was typed is kept
    main = page.inner_text("main")
    assert "config_overrides" not in main
    assert "Configuration saved" not in main
    page.screenshot(path=str(SCREENSHOTS / "errors-overrides.png"), full_page=True)

    # The key form asks in days and answers in days, every bad field at once.
    page.goto(f"{web_process}/t/{org.slug}/projects/errs/keys")
    page.eval_on_selector("#id_expires_in_days", "el => el.form.noValidate = true")  # past the browser's own check
    page.fill("#id_name", "")
    page.fill("#id_expires_in_days", "9999")
    page.click("button:has-text('Create key')")
    page.wait_for_selector(".errorlist")
    days = field_errors(page, "id_expires_in_days")
    assert "365 days" in days and "second" not in days
    assert field_errors(page, "id_name")
    assert "second" not in page.inner_text("main")
    page.screenshot(path=str(SCREENSHOTS / "errors-key.png"), full_page=True)

    # The create form: a bad slug and a too-long display name, both at once.
    page.goto(f"{web_process}/t/{org.slug}/projects")
    page.eval_on_selector("#id_display_name", "el => { el.removeAttribute('maxlength'); el.form.noValidate = true; }")
    page.fill("#id_slug", "Bad Slug!")
    page.fill("#id_display_name", "x" * 250)
    page.click("button:has-text('Create project')")
    page.wait_for_selector(".errorlist")
    assert "lowercase" in field_errors(page, "id_slug").lower()
    assert "200" in field_errors(page, "id_display_name")
    assert "slug:" not in page.inner_text("main")
    page.screenshot(path=str(SCREENSHOTS / "errors-create.png"), full_page=True)
    page.close()


# --- confirmations ------------------------------------------------------------------------------

def test_every_destructive_action_asks_first(browser, web_process, celery_worker_process, org, unique_slug):
    from django_tenants.utils import tenant_context

    from tenants import services
    from tenants.projects import services as project_services
    from tenants.projects.models import AccessKey, Project

    alice = get_user_model().objects.get(username="alice")
    bob = get_user_model().objects.get(username="bob")
    Membership.objects.create(tenant=org, user=bob, role="member")
    services.member_add(tenant=org, person="newcomer@example.com", role="member", acting_user=alice, acting_role="owner")
    project = make_project(org, "doomed")
    with tenant_context(org):
        project_services.key_create(tenant=org, project=project, name="deploy", role="view", expires_in=86400, acting_user=alice,
                        access=owner_access(org, project))

    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, web_process, "alice")
    base = f"{web_process}/t/{org.slug}"

    # Removing a member.
    page.goto(f"{base}/members")
    assert "bob" in declined(page, "tr[data-username=bob] button:has-text('Remove')")
    assert Membership.objects.filter(tenant=org, user=bob).exists()
    accepted(page, "tr[data-username=bob] button:has-text('Remove')", "text=bob was removed.")
    assert not Membership.objects.filter(tenant=org, user=bob).exists()
    assert not page.is_visible("tr[data-username=bob]")

    # Withdrawing an invitation.
    withdraw = "tr:has-text('newcomer@example.com') button:has-text('Withdraw')"
    assert "newcomer@example.com" in declined(page, withdraw)
    assert PendingMembership.objects.filter(tenant=org, email="newcomer@example.com").exists()
    accepted(page, withdraw, "text=The invitation for newcomer@example.com was withdrawn.")
    assert not PendingMembership.objects.filter(tenant=org, email="newcomer@example.com").exists()
    assert page.locator(withdraw).count() == 0

    # Revoking a key.
    page.goto(f"{base}/projects/doomed/keys")
    assert "deploy" in declined(page, "tr[data-key=deploy] button:has-text('Revoke')")
    with tenant_context(org):
        assert AccessKey.objects.get(name="deploy").revoked_at is None
    accepted(page, "tr[data-key=deploy] button:has-text('Revoke')", "text=was revoked")
    with tenant_context(org):
        assert AccessKey.objects.get(name="deploy").revoked_at is not None

    # Deleting a project.
    page.goto(f"{base}/projects/doomed")
    assert "doomed" in declined(page, "button:has-text('Delete project')")
    with tenant_context(org):
        assert Project.objects.get(slug="doomed").status != "deleting"
    accepted(page, "button:has-text('Delete project')", "text=is being deleted")
    page.close()

    # The admin's "delete tenants" action: Django's intermediate page first, nothing deleted before.
    staff = get_user_model().objects.get(username="staff")
    with transaction.atomic():  # the worker provisions it (and would race provision_now)
        victim, _job = services.tenant_create(slug=unique_slug("gone"), name="Short Lived", owner="carol",
                                              acting_user=staff)
    wait_for(lambda: Tenant.objects.get(pk=victim.pk).status == "active", message="the tenant to be provisioned")
    try:
        admin = browser.new_page(viewport=DESKTOP)
        sign_in(admin, web_process, "staff")

        def choose_delete():
            admin.goto(f"{web_process}/admin/tenants/tenant/?q={victim.slug}")
            admin.check(f"tr:has-text('{victim.slug}') input[name=_selected_action]")
            admin.select_option("select[name=action]", "delete_tenants")
            with admin.expect_navigation():
                admin.click("button[name=index]")
            admin.wait_for_selector("text=Delete tenants: are you sure?")
            assert admin.is_visible(f"#content li:has-text('{victim.slug}')")
            assert Tenant.objects.get(pk=victim.pk).status == "active"

        choose_delete()
        admin.screenshot(path=str(SCREENSHOTS / "admin-delete-tenants.png"), full_page=True)
        admin.click("text=No, take me back")
        admin.wait_for_selector("#changelist")
        assert Tenant.objects.get(pk=victim.pk).status == "active"
        choose_delete()
        with admin.expect_navigation():
            admin.click("input[value='Yes, delete them']")
        admin.wait_for_selector("text=Deleting 1 tenant(s)")
        assert Tenant.objects.filter(pk=victim.pk).exclude(status="active").exists() or \
            not Tenant.objects.filter(pk=victim.pk).exists()
        admin.close()
    finally:
        _finish_deleting(victim.pk, staff)


def _finish_deleting(pk: int, staff) -> None:
    from tenants import provisioning, services

    for _ in range(100):
        tenant = Tenant.objects.filter(pk=pk).first()
        if tenant is None:
            return
        if tenant.status == "active":
            with transaction.atomic():
                services.tenant_delete(tenant=tenant, acting_user=staff)
            continue
        job = tenant.jobs.order_by("-pk").first()
        try:
            if job is not None:
                provisioning.run_job(job.pk)
        except Exception:
            pass
        time.sleep(0.2)


# --- the page tour ------------------------------------------------------------------------------

FOCUSABLE = """() => {
  const all = Array.from(document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]'));
  const shown = el => {
    if (el.disabled || el.type === 'hidden' || el.tabIndex < 0 || !el.getClientRects().length) return false;
    for (let e = el; e; e = e.parentElement) { const s = getComputedStyle(e); if (s.visibility === 'hidden' || s.display === 'none') return false; }
    return true;
  };
  const wanted = all.filter(shown);
  wanted.forEach((el, i) => el.setAttribute('data-tour', String(i)));
  window.__tourFocus = [];
  document.addEventListener('focusin', e => window.__tourFocus.push(e.target.getAttribute('data-tour')), true);
  return wanted.map(el => (el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
                           (el.innerText || el.value || el.getAttribute('aria-label') || el.name || '').trim().slice(0, 40) + '"'));
}"""

UNNAMED_FIELDS = """() => Array.from(document.querySelectorAll('input, select, textarea')).filter(el => {
  if (el.type === 'hidden' || !el.getClientRects().length) return false;
  if (el.getAttribute('aria-label')) return false;
  const by = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean);
  if (by.length && by.every(id => document.getElementById(id))) return false;
  if (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) return false;
  return true;
}).map(el => el.outerHTML.slice(0, 120))"""

DANGLING_DESCRIBEDBY = """() => Array.from(document.querySelectorAll('[aria-describedby]')).flatMap(el =>
  el.getAttribute('aria-describedby').split(/\\s+/).filter(id => id && !document.getElementById(id))
    .map(id => (el.id || el.tagName) + ' → #' + id))"""

# The outermost elements that stick out of the viewport and are not inside a scroll container.
OUTERMOST_OVERFLOWING = """w => {
  const clips = e => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(e).overflowX);
  const out = e => e.getBoundingClientRect().right > w + 1;
  return Array.from(document.querySelectorAll('body *')).filter(e => {
    if (!out(e)) return false;
    if (getComputedStyle(e).position === 'absolute') return true;  // escapes its scrolling ancestors
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) { if (clips(a) || out(a)) return false; }
    return true;
  }).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).split(' ').join('.') : '') +
                          ' (right edge ' + Math.round(e.getBoundingClientRect().right) + 'px)');
}"""


def _tour_pages(slug: str, project: str) -> dict[str, list[tuple[str, str]]]:
    org, proj = f"/t/{slug}", f"/t/{slug}/projects/{project}"
    common = [("picker", "/"), ("home", f"{org}/"), ("members", f"{org}/members"), ("settings", f"{org}/settings"),
              ("projects", f"{org}/projects"), ("overview", proj), ("access", f"{proj}/sharing"),
              ("keys", f"{proj}/keys"), ("history", f"{proj}/history"), ("api-docs", "/api/v1/docs"),
              ("404", f"{proj}-missing")]
    return {
        "owner": [*common, ("audit", f"{org}/audit")],
        "member": [*common, ("403", f"{org}/audit")],
        "staff": [*common, ("audit", f"{org}/audit"), ("admin", "/admin/")],
        "anonymous": [("login", "/login"), ("404", "/no-such-page")],
    }


# Third-party pages: Django's admin passes every check; the Swagger UI (drf-spectacular's template)
# has no skip link.
FOREIGN = {"admin": set(), "api-docs": {"skip"}}


def _check_page(page, base: str, role: str, name: str, path: str, width: int, problems: list[str], shots) -> None:
    events: list[str] = []

    def on_console(message):
        if message.type == "error":
            # The page's own status (403, 404) is logged as a failed load: that is the page, not an error.
            if "Failed to load resource" in message.text and message.location.get("url", "").rstrip("/") == page.url.rstrip("/"):
                return
            events.append(f"console error: {message.text} ({message.location.get('url')})")

    def on_response(response):
        if "/static/" in response.url and response.status >= 400:
            events.append(f"static {response.url} answered {response.status}")

    def on_failed(request):
        # ERR_ABORTED: the browser dropped a request because the test moved on to the next page.
        if "/static/" in request.url and request.failure != "net::ERR_ABORTED":
            events.append(f"static {request.url} failed: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: events.append(f"script error: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    try:
        response = page.goto(base + path)
        code = response.status if response else None
        if name == "api-docs":  # the Swagger UI draws itself from the schema after the load
            page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        where = f"{role} {name} ({path}) at {width}px"
        skip = set(FOREIGN.get(name, ()))
        expected = {"404": 404, "403": 403}.get(name, 200)
        if code != expected:
            problems.append(f"{where}: answered {code}, expected {expected}")
        shot = shots / f"{role}-{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)

        if "overflow" not in skip:  # at every width: nothing makes the page scroll sideways
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > width + 1:
                wide = page.evaluate(OUTERMOST_OVERFLOWING, width)
                problems.append(f"{where}: {scroll}px wide (overflows: {wide}) — {shot}")
        if "names" not in skip:
            for html in page.evaluate(UNNAMED_FIELDS):
                problems.append(f"{where}: field without an accessible name: {html}")
        if "describedby" not in skip:
            for dangling in page.evaluate(DANGLING_DESCRIBEDBY):
                problems.append(f"{where}: aria-describedby names a missing id: {dangling}")

        if "keyboard" not in skip or "skip" not in skip:
            focusable = page.evaluate(FOCUSABLE)
            page.keyboard.press("Tab")
            first = page.evaluate("[document.activeElement.className, document.activeElement.textContent.trim()]")
            if "skip" not in skip and not ("skip-link" in first[0] or first[1].lower().startswith("skip")):
                problems.append(f"{where}: the first Tab reaches {first}, not the skip link")
            if "keyboard" not in skip:
                # Date and time fields take several Tab stops each: walk until everything was
                # reached or focus went round the page more than once.
                wanted, missed = {str(i) for i in range(len(focusable))}, []
                for presses in range(1, 4 * len(focusable) + 20):
                    page.keyboard.press("Tab")
                    if presses % 10 == 0 and wanted <= set(page.evaluate("window.__tourFocus")):
                        break
                reached = set(page.evaluate("window.__tourFocus"))
                missed = [label for i, label in enumerate(focusable) if str(i) not in reached]
                if missed:
                    problems.append(f"{where}: not reachable with Tab: {missed[:8]}")
            if "skip" not in skip:
                page.focus(".skip-link, a[href^='#'][class*=skip]")
                page.keyboard.press("Enter")
                inside = page.evaluate("!!document.activeElement.closest('main')")
                if not inside:
                    problems.append(f"{where}: the skip link does not move focus to main")
        for event in events:
            problems.append(f"{where}: {event}")
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("response", on_response)
        page.remove_listener("requestfailed", on_failed)


def test_tour_of_every_page_as_owner_member_and_staff_wide_and_narrow(browser, web_process, org):
    from django_tenants.utils import tenant_context

    from tenants import services
    from tenants.projects import services as project_services
    from tenants.projects import services as project_services

    alice = get_user_model().objects.get(username="alice")
    bob = get_user_model().objects.get(username="bob")
    Membership.objects.create(tenant=org, user=bob, role="member")
    services.member_add(tenant=org, person="someone.with.a.rather.long.address@subsidiary.example.com", role="member",
                        acting_user=alice, acting_role="owner")
    long_name = "Customer-facing payments gateway for the north-european region (staging)"
    project = make_project(org, "payments-gateway-staging", display_name=long_name,
                           description="Talks to the card processors; owned by the payments team.")
    with tenant_context(org):
        access = owner_access(org, project)
        project_services.grant_add(tenant=org, project=project, kind="user", name="bob", role="view", acting_user=alice,
                                   access=access)
        project_services.grant_add(tenant=org, project=project, kind="group", name="/acme/platform-engineering/on-call",
                                   role="edit", acting_user=alice, access=access)
        project_services.key_create(tenant=org, project=project, name="github-actions-deploy-to-staging", role="edit",
                        expires_in=30 * 86400, acting_user=alice, access=access)

    shots = SCREENSHOTS / "tour"
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the tour: {shots.resolve()}")
    problems: list[str] = []
    pages = _tour_pages(org.slug, project.slug)
    for role, username in (("owner", "alice"), ("member", "bob"), ("staff", "staff"), ("anonymous", None)):
        signed_in = None
        for viewport in (DESKTOP, NARROW):
            context = browser.new_context(viewport=viewport, storage_state=signed_in)
            page = context.new_page()
            if username and signed_in is None:
                sign_in(page, web_process, username)
                signed_in = context.storage_state()
            for name, path in pages[role]:
                _check_page(page, web_process, role, name, path, viewport["width"], problems, shots)
            context.close()
    assert not problems, f"{len(problems)} problems (screenshots in {shots.resolve()}):\n" + "\n".join(problems)
