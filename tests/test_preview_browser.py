"""The preview page in a real browser: Playwright driving Debian's Chromium.

Each test runs the preview app under uvicorn on 127.0.0.1 and loads the page
with every non-local request refused (the page needs no network; only the
test article's own image URL is refused). Screenshots of the desktop, phone
and dark views go to test-artifacts/.
"""

from __future__ import annotations

import shutil
import time

import pytest

from browser import artefact_path, launch_chromium, local_only, serve_app
from test_preview import ARTICLE, BUILTIN_THEME, break_theme, letter, settings_of  # noqa: F401 - fixture

ARTICLE_IMAGES = "https://cdn.example.org/img/"  # in the test article: the email's, not the page's
PHONE, DESKTOP = 375, 1200


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def preview(letter, browser):
    """``open(hash="", dark=False)`` -> a page showing the preview of the test article."""
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.web.preview import create_preview_app

    transport = MemoryTransport()
    app = create_preview_app(settings_of(letter), letter / ARTICLE, transport_factory=lambda: transport)
    with serve_app(app) as base_url:
        context = browser.new_context(viewport={"width": 1320, "height": 900})
        refused = local_only(context, base_url)

        def open_page(hash: str = "", dark: bool = False):
            page = context.new_page()
            page.set_default_timeout(5000)
            if dark:
                page.emulate_media(color_scheme="dark")
            page.goto(f"{base_url}/#{hash}")
            wait_for_frame(page)
            return page

        open_page.transport = transport
        yield open_page
        context.close()
    assert all(url.startswith(ARTICLE_IMAGES) for url in refused), f"the page asked the network for {refused}"


def wait_for_frame(page, version: int | None = None):
    """Wait until the email frame shows the page's current version (or ``version``)."""
    page.wait_for_function(
        "want => document.body.dataset.version"
        " && document.body.dataset.frameVersion === (want || document.body.dataset.version)",
        arg=str(version) if version else None,
    )


def email(page):
    return page.frame_locator("#frame")


def frame_width(page) -> float:
    return page.locator("#frame").evaluate("el => el.clientWidth")


def background(page, selector: str) -> str:
    return email(page).locator(selector).first.evaluate("el => getComputedStyle(el).backgroundColor")


def test_phone_width_has_no_horizontal_scroll_and_desktop_is_wide(preview):
    page = preview("width=phone")
    assert frame_width(page) == PHONE
    sizes = page.frame_locator("#frame").locator("html").evaluate(
        "el => ({scroll: el.scrollWidth, client: el.clientWidth})")
    assert sizes["scroll"] <= sizes["client"] == PHONE
    page.screenshot(path=artefact_path("preview-phone.png"), full_page=True)
    page.click("button[data-width=desktop]")
    assert frame_width(page) == DESKTOP
    assert "width=desktop" in page.url
    page.screenshot(path=artefact_path("preview-desktop.png"))


def test_dark_mode_follows_the_browser_and_the_toggle(preview):
    card = ".nl-card > table"
    page = preview("width=phone", dark=True)
    assert background(page, card) == "rgb(29, 32, 35)", "the email's own dark rules apply"
    page.screenshot(path=artefact_path("preview-phone-dark.png"), full_page=True)
    page.click("button[data-scheme=light]")
    wait_for_frame(page)
    page.wait_for_function(
        "() => document.querySelector('#frame').contentDocument.querySelector('meta[content=light]')")
    assert background(page, card) == "rgb(255, 255, 255)"
    light = preview("")
    assert background(light, card) == "rgb(255, 255, 255)"
    light.click("button[data-scheme=dark]")
    light.wait_for_function(
        "() => document.querySelector('#frame').contentDocument.querySelector('meta[content=dark]')")
    assert background(light, card) == "rgb(29, 32, 35)"
    light.screenshot(path=artefact_path("preview-desktop-dark.png"))


def test_views_switch_and_survive_a_reload(preview):
    page = preview("")
    page.click("button[data-view=text]")
    assert page.locator("#text").is_visible() and not page.locator("#frame").is_visible()
    assert "\nHi Sample,\n" in page.locator("#text").inner_text()
    page.click("button[data-view=source]")
    assert ("List-Unsubscribe: <https://news.clinic.example/unsubscribe/preview-token>"
            in page.locator("#source").inner_text())
    page.click("button[data-view=checks]")
    assert "client-support" in page.locator("#findings").inner_text()  # caniemail's findings
    page.click("button[data-width=phone]")
    page.reload()
    wait_for_frame(page)
    assert page.locator("#findings").is_visible()
    assert page.locator("button[data-width=phone]").get_attribute("aria-pressed") == "true"


def test_the_checks_tab_shows_spamassassin_rules(preview):
    if not shutil.which("spamassassin"):
        from support.services import need_service

        need_service("SpamAssassin is not installed (apt-get install spamassassin)")
    page = preview("view=checks")
    spam = page.locator("#spam")
    spam.locator("li").first.wait_for(timeout=60_000)  # SpamAssassin takes a second or two
    assert spam.locator("h2").inner_text().startswith("SpamAssassin: content score 0.0 (total")
    assert "HTML_MESSAGE BODY: HTML included in message" in " ".join(spam.inner_text().split())
    assert "(css-border-radius) is not supported in Outlook for Windows" in page.locator("#findings").inner_text()


def test_every_link_in_the_email_has_an_href(preview):
    page = preview("")
    hrefs = email(page).locator("a").evaluate_all("links => links.map(a => a.getAttribute('href') || '')")
    assert hrefs and all(href.strip() for href in hrefs), hrefs
    assert "https://news.clinic.example/unsubscribe/preview-token" in hrefs


def test_saving_the_article_updates_the_page_keeping_width_and_view(preview, letter):
    page = preview("width=phone&view=email")
    before = int(page.evaluate("document.body.dataset.version"))
    article = letter / ARTICLE
    article.write_text(article.read_text().replace("Five budgeting habits", "Seven budgeting habits"))
    started = time.monotonic()
    email(page).locator("h1", has_text="Seven budgeting habits").wait_for(timeout=5000)
    assert time.monotonic() - started < 3, "the page updated within about two seconds"
    assert int(page.evaluate("document.body.dataset.version")) > before
    assert page.locator("#subject").inner_text() == "Seven budgeting habits that actually stick"
    assert frame_width(page) == PHONE and "width=phone" in page.url


def test_a_template_error_shows_on_the_page_then_clears(preview, letter):
    page = preview("")
    line = break_theme(letter)
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=5000)
    assert f"email.mjml.j2:{line}" in error.inner_text()
    page.screenshot(path=artefact_path("preview-template-error.png"))
    shutil.copy(BUILTIN_THEME / "email.mjml.j2", letter / "templates" / "default" / "email.mjml.j2")
    error.wait_for(state="hidden", timeout=5000)


def test_send_test_from_the_page(preview):
    page = preview("")
    page.fill("#send-to", "writer@example.org")
    page.click("#send-form button")
    page.locator("#notice").wait_for(state="visible")
    assert "Sent \"[TEST] Five budgeting habits" in page.locator("#notice").inner_text()
    [message] = preview.transport.outbox
    assert message["Subject"].startswith("[TEST] ")
