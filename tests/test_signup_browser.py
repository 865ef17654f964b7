"""The signup page's proof of work in a real browser (Playwright driving Debian's Chromium).

The page's own script (``/subscribe/altcha.js``, under the page's CSP)
solves the ALTCHA challenge with WebCrypto and the server verifies it: the
signup goes through with one confirmation email. With JavaScript off the
form still posts, and the signup waits in the quarantine with no email.
The store parts are tested on both backends in test_signup_protection.py;
here SQLite serves the page.
"""

from __future__ import annotations

import dataclasses

import pytest
from newsletter.store import audience as q
from newsletter.store import signups as held_store

from browser import launch_chromium, local_only, serve_app

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def signup_site(workspace):
    """``(open(javascript, path) -> page, outbox, store)`` on a served public app with the proof of work on
    and a signup form ``clinic`` (a city field) for the list."""
    from newsletter.audience.forms import create_form
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.store.db import open_store
    from newsletter.web.app import create_app

    settings = dataclasses.replace(load_settings(), signup_proof_of_work=True, signup_proof_of_work_cost=50)
    store = open_store(settings)
    with store.session() as session:
        q.create_list(session, "news", public=True, double_opt_in=True, display_name="Clinic News")
    create_form(store, settings, "clinic", "news", ("city:text",), None)
    transport = MemoryTransport()
    app = create_app(settings, store, transport_factory=lambda _s: transport)
    try:
        with launch_chromium() as browser, serve_app(app) as base_url:
            # The served app's own origin is where the form comes from.
            app.state.ctx.settings = dataclasses.replace(settings, signup_origins=(base_url,))
            contexts = []

            def open_page(javascript: bool, path: str = "/subscribe"):
                context = browser.new_context(java_script_enabled=javascript)
                contexts.append(context)
                open_page.refused += local_only(context, base_url)
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(f"{base_url}{path}")
                return page

            open_page.refused = []
            yield open_page, transport.outbox, store
            for context in contexts:
                context.close()
            assert open_page.refused == [], "the page asked the network"
    finally:
        store.close()


def _held(store) -> list[str]:
    with store.session() as session:
        return [h.email for h in held_store.held(session)]


def test_the_page_solves_its_challenge_and_the_signup_is_confirmed_by_email(signup_site):
    open_page, outbox, store = signup_site
    page = open_page(javascript=True)
    page.fill("#email", "ada@example.org")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    assert [m["To"] for m in outbox] == ["ada@example.org"]
    assert _held(store) == []


def test_without_javascript_the_signup_is_held_and_no_email_goes_out(signup_site):
    open_page, outbox, store = signup_site
    page = open_page(javascript=False)
    page.fill("#email", "nojs@example.org")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    assert outbox == []
    assert _held(store) == ["nojs@example.org"]


def test_a_hosted_form_page_solves_its_challenge_and_keeps_its_prefilled_field(signup_site):
    open_page, outbox, store = signup_site
    page = open_page(javascript=True, path="/forms/clinic?city=Paris")
    assert page.input_value("#f-city") == "Paris"
    page.fill("#email", "bea@example.org")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    assert [m["To"] for m in outbox] == ["bea@example.org"]
    assert _held(store) == []
    with store.session() as session:
        assert q.find_subscriber(session, "bea@example.org").attributes == {"city": "Paris"}
