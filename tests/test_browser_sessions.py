"""The sessions journey in a real browser (Debian chromium driven by Playwright) against a real web
server process: an owner opens a ready project's Sessions tab, starts a session and watches it
finish without reloading, reads its log and result on the page, stops a long one, clones one into
another project and watches that one finish in the list; then the sessions pages pass the page
tour's checks (no sideways scrolling at 320 px, every field named, the keyboard reaches everything).

The controller runs in the test, as the periodic sync would run it in a worker, while the
emulator's clock moves. Screenshots: sessions-*.png in SCREENSHOTS, or in PIER_SESSIONS_SCREENSHOTS
(the test state folder is emptied by the next test run)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django_tenants.utils import tenant_context

import kubehelp
from test_browser import SCREENSHOTS, browser, org  # noqa: F401 (fixtures)
from test_browser_pages import DESKTOP, NARROW, _check_page, make_project, sign_in

SHOTS = Path(os.environ.get("PIER_SESSIONS_SCREENSHOTS") or SCREENSHOTS)
NO_RELOAD = "window.__sameDocument = 'yes'"  # gone if the page is loaded again


def _session(tenant, **match):
    from sessions.models import AgenticSession

    with tenant_context(tenant):
        return AgenticSession.objects.select_related("project").get(**match)


def _drive(tenant, s, page, *, until: tuple[str, ...], seconds: float = 40.0):
    """Reconcile the session (as the sync would) and move the emulator's clock until it reaches a
    phase; the page, meanwhile, is left alone: it updates itself."""
    from sessions.controller import SESSIONS

    deadline = time.monotonic() + seconds
    while True:
        with tenant_context(tenant):
            SESSIONS.run(s.pk)
            s.refresh_from_db()
        if s.phase in until:
            return s
        assert time.monotonic() < deadline, f"{s.name} stayed {s.phase} ({s.reason}: {s.message})"
        kubehelp.advance_clock(2)
        page.wait_for_timeout(300)


def _phase(page, selector: str = "#session-phase") -> str:
    return page.get_attribute(f"{selector} .badge", "data-phase")


def test_start_watch_read_stop_and_clone_sessions(browser, web_process, org):
    project = make_project(org, "agents", display_name="Agent runs")
    other = make_project(org, "agents-two", display_name="Second project")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=DESKTOP)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, web_process, "alice")

    # The project's Sessions tab: nothing yet, the start form, and which cluster this is.
    page.goto(f"{web_process}/t/{org.slug}/projects/{project.slug}")
    page.click("nav.tabs >> text=Sessions")
    page.wait_for_selector("h2:has-text('Start a session')")
    assert page.is_visible("text=No sessions yet.")
    assert "local simulated cluster" in page.inner_text("#sessions-cluster")

    # A refused value is shown at its field, and what was typed stays.
    page.eval_on_selector("#id_timeout_seconds", "el => el.form.noValidate = true")  # past the browser's own check
    page.fill("#id_prompt", "Summarise the README of the shop")
    page.fill("#id_timeout_seconds", "5")
    page.fill("#id_env", "MODE=fast\nPIER_SECRET=x")
    page.click("button:has-text('Start session')")
    page.wait_for_selector(".errorlist")
    assert "60 to" in page.inner_text("#id_timeout_seconds_error")
    assert page.input_value("#id_prompt") == "Summarise the README of the shop"
    assert page.get_attribute("#id_timeout_seconds", "aria-invalid") == "true"
    page.screenshot(path=str(SHOTS / "sessions-errors.png"), full_page=True)
    page.fill("#id_env", "MODE=fast\nPIER_SECRET=x")
    page.fill("#id_timeout_seconds", "600")
    page.eval_on_selector("#id_timeout_seconds", "el => el.form.noValidate = true")
    page.click("button:has-text('Start session')")
    page.wait_for_selector(".errorlist")
    assert "Line 2: names starting with PIER_" in page.inner_text("#id_env_error")
    errors.clear()  # the browser logs those two answers (400) as failed loads

    page.fill("#id_display_name", "Readme summary")
    page.fill("#id_model", "m1")
    page.fill("#id_temperature", "0.2")
    page.fill("#id_timeout_seconds", "600")
    page.fill("#id_repos", "https://git.example.com/shop.git main")
    page.fill("#id_env", "MODE=fast")
    page.click("button:has-text('Start session')")
    page.wait_for_selector("text=is starting in namespace")
    s = _session(org, display_name="Readme summary")
    assert page.url.endswith(f"/sessions/{s.name}")
    assert _phase(page) == "Pending" and page.get_attribute("#session-phase", "hx-get")
    assert "https://git.example.com/shop.git (branch main)" in page.inner_text("#session-settings")
    page.screenshot(path=str(SHOTS / "sessions-pending.png"), full_page=True)

    # It runs and finishes while the page is left alone: the polled fragments say so.
    page.evaluate(NO_RELOAD)
    s = _drive(org, s, page, until=("Completed", "Failed"))
    assert s.phase == "Completed", (s.reason, s.message)
    page.wait_for_selector("#session-phase .badge[data-phase=Completed]", timeout=10_000)
    page.wait_for_selector("#log-text:has-text('Simulated answer: Summarise the README')", timeout=10_000)
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert page.get_attribute("#session-phase", "hx-get") is None  # the last answer stopped the polling
    # The log polls on its own: its next answer (the final copy) stops it too.
    page.wait_for_function("!document.querySelector('#log-source').hasAttribute('hx-get')", timeout=10_000)
    assert "Simulated answer: Summarise the README of the shop" in page.inner_text("#session-result")
    assert "pier-runner (simulated)" in page.inner_text("#log-text")
    assert page.inner_text("#session-end") != "not yet"
    assert "the runner finished" in page.inner_text("#session-history")  # came with the last poll
    assert "Finished" in page.inner_text("#session-conditions")
    assert not page.is_visible("button:has-text('Stop session')")
    page.screenshot(path=str(SHOTS / "sessions-completed.png"), full_page=True)
    completed_url = page.url

    # A long one, stopped while it runs; its live log shows on the page.
    page.click("nav.breadcrumbs >> text=Sessions")
    row = page.locator(f"tr[data-session='{s.name}']")
    assert row.locator(".badge").get_attribute("data-phase") == "Completed"
    page.fill("#id_prompt", "Refactor everything, slowly pier:sleep=600")
    page.fill("#id_display_name", "Long refactor")
    page.click("button:has-text('Start session')")
    page.wait_for_selector("text=is starting in namespace")
    long = _session(org, display_name="Long refactor")
    page.evaluate(NO_RELOAD)
    long = _drive(org, long, page, until=("Running",))
    page.wait_for_selector("#session-phase .badge[data-phase=Running]", timeout=10_000)
    _drive(org, long, page, until=("Running",))  # a pass while it runs keeps its log
    page.wait_for_selector("#log-source:has-text('Live from the runner')", timeout=10_000)
    page.wait_for_selector("#log-text:has-text('pier-runner (simulated)')", timeout=10_000)
    assert page.evaluate("window.__sameDocument") == "yes"
    page.screenshot(path=str(SHOTS / "sessions-running.png"), full_page=True)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("button:has-text('Stop session')")
    page.wait_for_selector("text=is stopping")
    assert asked and "Long refactor" in asked[0]
    assert page.is_visible("#session-stopping") and not page.is_visible("button:has-text('Stop session')")
    page.evaluate(NO_RELOAD)
    long = _drive(org, long, page, until=("Running",))  # the runner is sent SIGTERM: the page says so
    page.wait_for_selector("#session-phase .reason:has-text('Stopping')", timeout=10_000)
    assert "SIGTERM" in page.inner_text("#session-message")
    page.screenshot(path=str(SHOTS / "sessions-stopping.png"), full_page=True)
    long = _drive(org, long, page, until=("Stopped",))
    page.wait_for_selector("#session-phase .badge[data-phase=Stopped]", timeout=10_000)
    assert "stopped by alice" in page.inner_text("#session-message")
    page.wait_for_selector("#log-text:has-text('stopped (SIGTERM)')", timeout=10_000)  # its last words, kept
    page.wait_for_selector("#session-history .badge[data-phase=Stopped]", timeout=5_000)
    assert page.evaluate("window.__sameDocument") == "yes"
    page.screenshot(path=str(SHOTS / "sessions-stopped.png"), full_page=True)

    # Clone the finished one into the other project; watch the clone finish in that list.
    page.goto(completed_url)
    assert page.locator("#id_project option").all_inner_texts() == ["Agent runs (agents)",
                                                                   "Second project (agents-two)"]
    page.select_option("#id_project", other.slug)
    page.click("button:has-text('Clone session')")
    page.wait_for_selector(f"text=a clone of {s.name}")
    clone = _session(org, project__slug=other.slug)
    assert clone.cloned_from == f"{project.slug}/{s.name}" and clone.prompt == s.prompt and clone.llm == s.llm
    assert page.url.endswith(f"/projects/{other.slug}/sessions/{clone.name}")
    page.screenshot(path=str(SHOTS / "sessions-clone.png"), full_page=True)
    page.click("nav.breadcrumbs >> text=Sessions")
    row = f"tr[data-session='{clone.name}']"
    assert page.get_attribute(f"{row} .live-status", "hx-get")  # under way: the row polls
    page.evaluate(NO_RELOAD)
    _drive(org, clone, page, until=("Completed",))
    page.wait_for_selector(f"{row} .badge[data-phase=Completed]", timeout=10_000)
    assert page.get_attribute(f"{row} .live-status", "hx-get") is None
    assert page.evaluate("window.__sameDocument") == "yes"
    page.screenshot(path=str(SHOTS / "sessions-list-other.png"), full_page=True)

    page.goto(f"{web_process}/t/{org.slug}/projects/{project.slug}/sessions")
    page.screenshot(path=str(SHOTS / "sessions-list.png"), full_page=True)
    assert errors == []
    page.close()

    # The tour's checks on these pages, wide and narrow (every session has finished: nothing moves).
    problems: list[str] = []
    signed_in = None
    base = f"/t/{org.slug}/projects/{project.slug}/sessions"
    for viewport in (DESKTOP, NARROW):
        context = browser.new_context(viewport=viewport, storage_state=signed_in)
        tour = context.new_page()
        if signed_in is None:
            sign_in(tour, web_process, "alice")
            signed_in = context.storage_state()
        for name, path in (("list", base), ("completed", f"{base}/{s.name}"), ("stopped", f"{base}/{long.name}")):
            _check_page(tour, web_process, "sessions-tour", name, path, viewport["width"], problems, SHOTS)
        context.close()
    assert not problems, "\n".join(problems)
