"""The preference centre in a real browser: Playwright driving Debian's Chromium, keyboard only.

The public app runs under uvicorn on 127.0.0.1 with every non-local request
refused (the pages load nothing from elsewhere). At 375 px (a phone) and
1200 px, every action is done with the keyboard alone (Tab, Enter, Space,
typing), and axe-core (tests/support/axe.py: vendored in tests/data, never
downloaded here) finds no violation on the page, after an action, in
dark mode, and on the refusal page of a tampered link. Screenshots go to
test-artifacts/. The store parts are tested on both backends in
test_preferences.py; here SQLite serves the pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import preferences_url
from newsletter.store import audience as q

from browser import artefact_path, launch_chromium, local_only, serve_app
from support import axe as support_axe
from support.axe import axe_violations
from support.web import path_of
from test_preferences import tampered

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PHONE, DESKTOP = 375, 1200
MAX_TABS = 80


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def axe_source() -> str:
    return support_axe.axe_source()


@pytest.fixture
def centre(workspace, browser):
    """``(open(width, dark=False) -> page, reader's page path, store)`` on a served public app."""
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.store.db import open_store
    from newsletter.web.app import create_app

    settings = load_settings()
    store = open_store(settings)
    with store.session() as session:
        q.create_list(session, "news", public=True, display_name="Clinic News")
        q.create_list(session, "events", public=True, display_name="Open Days")
    reader = manage.add_subscriber(store, "ann@example.org", name="Ann Reader", list_name="news", confirmed=True)
    path = path_of(preferences_url(settings, reader.subscriber_id, reader.email))
    app = create_app(settings, store, transport_factory=lambda _s: MemoryTransport())
    contexts = []
    try:
        with serve_app(app) as base_url:
            def open_page(width: int, dark: bool = False, at: str = path):
                context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
                contexts.append(context)
                context_refused = local_only(context, base_url)
                open_page.refused.append(context_refused)
                page = context.new_page()
                page.set_default_timeout(10_000)
                if dark:
                    page.emulate_media(color_scheme="dark")
                open_page.last_response = page.goto(f"{base_url}{at}")
                return page

            open_page.refused = []
            yield open_page, path, store
            for context in contexts:
                context.close()
            assert not [url for urls in open_page.refused for url in urls], "a page asked the network"
    finally:
        store.close()


def tab_to(page, selector: str) -> None:
    """Press Tab until ``selector`` has the focus (the keyboard's way to a control)."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def press(page, selector: str, key: str = "Enter") -> None:
    """Reach ``selector`` with Tab from the top of the page and press ``key``; wait for the next page."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab_to(page, selector)
    with page.expect_navigation():
        page.keyboard.press(key)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def status_text(page) -> str:
    return page.locator("#done").inner_text()


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_every_action_by_keyboard_and_axe_clean(centre, axe_source, width):
    open_page, path, store = centre
    page = open_page(width)
    assert open_page.last_response.status == 200
    assert axe_violations(page, axe_source) == []
    assert no_sideways_scroll(page)
    page.screenshot(path=artefact_path(f"preferences-{width}.png"), full_page=True)

    press(page, "#join-2")
    assert status_text(page) == "You are now on Open Days."
    press(page, "#leave-1")
    assert status_text(page) == "You are no longer on Clinic News."
    press(page, "#snooze-30")
    assert status_text(page).startswith("Your email is paused until ")
    assert page.locator("#resume").is_visible()
    assert axe_violations(page, axe_source) == []

    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab_to(page, "#name")
    page.keyboard.press("Control+A")
    page.keyboard.type("Ann Berger")
    tab_to(page, "#timezone")
    page.keyboard.type("Europe/Vienna")
    tab_to(page, "#save-details")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert status_text(page) == "Saved your name and time zone."

    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab_to(page, "#download")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert (data["name"], data["timezone"]) == ("Ann Berger", "Europe/Vienna")
    assert {entry["name"]: entry["status"] for entry in data["lists"]} == {"events": "confirmed",
                                                                           "news": "unsubscribed"}

    held = manage.describe(store, "ann@example.org")
    assert held["snoozed_until"] is not None
    assert [c["action"] for c in held["consent"]][-5:] == ["subscribe", "unsubscribe", "snooze", "profile", "export"]
    assert {c["ip"] for c in held["consent"][-5:]} == {"127.0.0.1"}

    press(page, "#unsubscribe-all")
    assert status_text(page).startswith("You are unsubscribed from every list")
    assert manage.describe(store, "ann@example.org")["suppressed"] == "unsubscribed"

    # Erasing needs the box: Enter on the button alone is stopped by the browser (required).
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab_to(page, "#confirm-erase")
    page.keyboard.press("Space")
    tab_to(page, "#erase")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "Your data is erased"
    assert axe_violations(page, axe_source) == []
    with store.session() as session:
        assert q.find_subscriber(session, "ann@example.org") is None


def test_dark_mode_and_the_refusal_of_a_tampered_link_are_axe_clean(centre, axe_source):
    open_page, path, store = centre
    page = open_page(DESKTOP, dark=True)
    assert axe_violations(page, axe_source) == []
    page.screenshot(path=artefact_path("preferences-dark.png"), full_page=True)
    before = manage.describe(store, "ann@example.org")
    head, token = path.rsplit("/", 1)
    refused = open_page(PHONE, at=f"{head}/{tampered(token)}")
    assert open_page.last_response.status == 400
    assert refused.locator("h1").inner_text() == "This did not work"
    assert "This link is not valid" in refused.locator("main").inner_text()
    assert refused.locator("form").count() == 0
    assert axe_violations(refused, axe_source) == []
    assert manage.describe(store, "ann@example.org") == before


def test_the_other_public_pages_share_the_layout_and_are_axe_clean(centre, axe_source):
    """Unsubscribe, confirm, subscribe and archive: the same branded layout, clean at phone width and in dark."""
    from newsletter.audience.tokens import confirm_url, unsubscribe_url
    from newsletter.config import load_settings

    open_page, _path, store = centre
    settings = load_settings()
    with store.session() as session:
        q.update_list(session, "events", double_opt_in=True)
    pending = manage.add_subscriber(store, "bob@example.org", list_name="events")
    reader = manage.add_subscriber(store, "ann@example.org", list_name="news")
    pages = {"unsubscribe": path_of(unsubscribe_url(settings, reader.subscriber_id, reader.list_id, reader.email)),
             "confirm": path_of(confirm_url(settings, pending.subscriber_id, pending.list_id, pending.email)),
             "subscribe": "/subscribe", "archive": "/archive"}
    before = (manage.describe(store, "ann@example.org"), manage.describe(store, "bob@example.org"))
    for name, at in pages.items():
        for dark in (False, True):
            page = open_page(PHONE, dark=dark, at=at)
            assert open_page.last_response.status == 200, name
            assert page.locator("header.brand").inner_text() == settings.name, name
            assert axe_violations(page, axe_source) == [], (name, dark)
            assert no_sideways_scroll(page), name
    assert (manage.describe(store, "ann@example.org"), manage.describe(store, "bob@example.org")) == before


def _tracking_of(store) -> tuple[str | None, list[str]]:
    """Ann's tracking attribute and the details of her ``tracking`` consent rows, oldest first."""
    held = manage.describe(store, "ann@example.org")
    return ((held.get("attributes") or {}).get("tracking_consent"),
            [c.get("detail") for c in held["consent"] if c["action"] == "tracking"])


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_tracking_consent_given_and_withdrawn_by_keyboard_and_by_the_mails_link(centre, axe_source, width):
    from newsletter.audience import tracking_consent as tc

    open_page, path, store = centre
    page = open_page(width)
    assert tc.DEFAULT_TEXT in page.locator("#tracking-state").inner_text()
    assert _tracking_of(store) == (None, [])
    press(page, "#tracking-give")
    assert status_text(page).startswith("Thank you: we will see which links")
    assert page.locator("#tracking-state").inner_text().startswith("You agreed:")
    assert _tracking_of(store) == ("yes", ["given"])
    assert axe_violations(page, axe_source) == []
    press(page, "#tracking-withdraw", key="Space")
    assert status_text(page).startswith("Done: we no longer record")
    assert _tracking_of(store) == ("no", ["given", "withdrawn"])
    press(page, "#tracking-give")

    # the withdrawal link every personally tracked message carries: a page with one button
    mail_link = open_page(width, at=f"{path}/tracking")
    assert open_page.last_response.status == 200 and _tracking_of(store)[0] == "yes"  # opening changes nothing
    assert axe_violations(mail_link, axe_source) == [] and no_sideways_scroll(mail_link)
    mail_link.screenshot(path=artefact_path(f"tracking-withdraw-{width}.png"), full_page=True)
    press(mail_link, "#withdraw-tracking")
    assert status_text(mail_link).startswith("Done: we no longer record")
    assert _tracking_of(store) == ("no", ["given", "withdrawn", "given", "withdrawn"])
    held = manage.describe(store, "ann@example.org")
    assert {c["ip"] for c in held["consent"] if c["action"] == "tracking"} == {"127.0.0.1"}
