"""Every public page passes axe-core in Chromium, at 375 and 1200 px, light and dark.

The public app runs under uvicorn on 127.0.0.1 (SQLite; every request that
is not to it refused). The pages: the archive and an archived issue (the
seed article, sent through the engine to a list, as readers open it from
"View in your browser"), the signup page, a hosted form, the confirmation,
unsubscribe and preference-centre pages of signed links and the pages after
their buttons, the help pages of the archive's links, a refused (tampered)
link, an unknown issue, and the thank-you pages after a signup: "Thank you
for subscribing", "Check your inbox" (double opt-in), and the answer a signup
held in the quarantine gets. axe-core's WCAG 2.1 A/AA rules and its best
practices must find nothing (tests/support/axe.py).
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import confirm_url, preferences_url, unsubscribe_url
from newsletter.store import audience as q
from newsletter.store import signups as held_store

from browser import launch_chromium, local_only, serve_app
from support.articles import RECENT, SEED
from support.axe import axe_source, axe_violations
from support.web import path_of
from test_preferences import tampered

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

WIDTHS = (375, 1200)
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def site(workspace, browser):
    """``(open(path, width, scheme) -> page, paths, store)`` on a served public app with a
    sent issue of the seed, a hosted form, and signed links for a reader."""
    from newsletter.audience.forms import create_form
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign
    from newsletter.store.db import open_store
    from newsletter.web.app import create_app

    axe_source()  # skip (or fail under NEWSLETTER_REQUIRE_SERVICES=1) before starting anything
    settings = load_settings()
    store = open_store(settings)
    with store.session() as session:
        q.create_list(session, "news", public=True, display_name="Clinic News")
        q.create_list(session, "events", public=True, double_opt_in=True, display_name="Open Days")
    reader = manage.add_subscriber(store, "ann@example.org", name="Ann Reader", list_name="news", confirmed=True)
    pending = manage.add_subscriber(store, "bob@example.org", list_name="events")
    create_form(store, settings, "clinic", "news", ("city:text", "consent_tracking:checkbox"), None)
    shutil.copy(SEED, workspace / "articles" / "seed.txt")
    edition = compose_edition(workspace / "articles" / "seed.txt", settings, recent_url=RECENT)
    start_campaign(store, settings, create_campaign(store, settings, edition, "news", "memory"), MemoryTransport())
    paths = {
        "archive": "/archive",
        "issue": f"/archive/{edition.slug}",
        "no such issue": "/archive/no-such-issue",
        "subscribe": "/subscribe",
        "form": "/forms/clinic?city=Paris",
        "confirm": path_of(confirm_url(settings, pending.subscriber_id, pending.list_id, pending.email)),
        "unsubscribe": path_of(unsubscribe_url(settings, reader.subscriber_id, reader.list_id, reader.email)),
        "preferences": path_of(preferences_url(settings, reader.subscriber_id, reader.email)),
        "unsubscribe help": "/unsubscribe",
        "preferences help": "/preferences",
    }
    paths["refused"] = paths["unsubscribe"].rsplit("/", 1)[0] + "/" + tampered(paths["unsubscribe"].rsplit("/", 1)[1])
    app = create_app(settings, store, transport_factory=lambda _s: MemoryTransport())
    contexts = []
    try:
        with serve_app(app) as base_url:
            app.state.ctx.settings = dataclasses.replace(settings, signup_origins=(base_url,))

            def open_page(path: str, width: int, scheme: str):
                # JavaScript on: axe-core's run needs timers (the pages' own scripts are their CSP's business)
                context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
                contexts.append(context)
                open_page.refused += local_only(context, base_url)
                page = context.new_page()
                page.set_default_timeout(15_000)
                open_page.status = page.goto(f"{base_url}{path}").status
                return page

            open_page.refused, open_page.app = [], app
            yield open_page, paths, store
            for context in contexts:
                context.close()
            assert open_page.refused == [], "a page asked the network"
    finally:
        store.close()


def clean(page) -> list[dict]:
    return axe_violations(page, axe_source())


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_every_public_page_is_axe_clean(site, width, scheme):
    open_page, paths, _store = site
    for name, path in paths.items():
        page = open_page(path, width, scheme)
        assert open_page.status == (404 if name == "no such issue" else 400 if name == "refused" else 200), name
        assert clean(page) == [], (name, width, scheme)
        page.context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_pages_after_each_button_are_axe_clean(site, width, scheme):
    """Confirming, unsubscribing, a signup thanked at once (a hosted form), one asked to confirm by email:
    each result page is clean."""
    open_page, paths, store = site
    for name, button in (("confirm", "button[type=submit]"), ("unsubscribe", "button[type=submit]")):
        page = open_page(paths[name], width, scheme)
        with page.expect_navigation():
            page.click(button)
        assert clean(page) == [], (name, width, scheme)
        page.context.close()

    page = open_page(paths["form"], width, scheme)
    page.fill("#email", f"form-{width}-{scheme}@example.org")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Thank you for subscribing"
    assert clean(page) == [], ("thanks", width, scheme)
    page.context.close()

    page = open_page(paths["subscribe"], width, scheme)
    page.fill("#email", f"later-{width}-{scheme}@example.org")
    page.select_option("#list", "events")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Check your inbox"
    assert clean(page) == [], ("check your inbox", width, scheme)
    page.context.close()


def test_a_held_signup_sees_an_axe_clean_page(site):
    """A signup from a disposable address is held in the quarantine, and answered as any signup to the list
    is, on a clean page."""
    open_page, paths, store = site
    for width in WIDTHS:
        page = open_page(paths["subscribe"], width, "light")
        page.fill("#email", f"held-{width}@mailinator.com")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Thank you for subscribing"  # answered as the others are
        assert clean(page) == [], ("held", width)
        page.context.close()
    with store.session() as session:
        assert sorted(h.email for h in held_store.held(session)) == ["held-1200@mailinator.com",
                                                                     "held-375@mailinator.com"]
