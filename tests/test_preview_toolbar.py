"""The preview page as a new user meets it (issue #22): one toolbar row at 1440 px, the first frame with the
page, a favicon, a searchable recipient picker, and the missing-link banner that saves the URL into the article.

Chromium (Playwright) measures the toolbar's bounding boxes; the screenshots go to test-artifacts/
(docs/preview.png in the README is one of them).
"""

from __future__ import annotations

import shutil

import pytest

from browser import artefact_path, launch_chromium, local_only, serve_app
from support.articles import RECENT, SEED

LONG_NAME = "Maximiliane Anastasia Konstantinopoulou-Vandenberghe de la Fontaine-Östergaard"
WIDE = 1440


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def seed_letter(workspace, cli):
    """A workspace holding the seed article as shipped (no URL) and three subscribers, one with a long name."""
    shutil.copy(SEED, workspace / "articles" / "ketamine.txt")
    people = workspace / "people.csv"
    people.write_text(f'email,name\npatricia@example.org,Patricia Dubois\nlong@example.org,"{LONG_NAME}"\n'
                      "plain@example.org,\n", encoding="utf-8")
    assert cli("subscribers", "import", str(people), "--list", "patients").exit_code == 0
    return workspace


@pytest.fixture
def open_preview(seed_letter, browser):
    """``open_preview(width)`` -> a page on the preview of the seed article, its first frame loaded."""
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.store.db import open_store
    from newsletter.web.preview import create_preview_app

    settings = load_settings(seed_letter)
    app = create_preview_app(settings, seed_letter / "articles" / "ketamine.txt", watch=False,
                             store_opener=lambda: open_store(settings), transport_factory=MemoryTransport)
    contexts = []
    with serve_app(app) as base_url:

        def open_page(width: int = WIDE):
            context = browser.new_context(viewport={"width": width, "height": 900})
            contexts.append(context)
            local_only(context, base_url)
            page = context.new_page()
            page.set_default_timeout(8000)
            page.goto(base_url + "/")
            page.wait_for_function("document.body.dataset.frameVersion === document.body.dataset.version")
            return page

        open_page.base_url = base_url
        yield open_page
        for context in contexts:
            context.close()


def _controls(page) -> list[dict]:
    return page.locator("nav.controls > *").evaluate_all(
        "els => els.map(el => { const r = el.getBoundingClientRect();"
        " return {text: el.textContent.trim().slice(0, 20), top: r.top, bottom: r.bottom, right: r.right}; })")


def test_the_toolbar_is_one_row_at_1440_px_with_a_long_subscriber_name(open_preview):
    page = open_preview(WIDE)
    page.wait_for_function("document.querySelectorAll('#people option').length === 4")  # sample + 3 people
    assert LONG_NAME in page.locator("#people").inner_html()
    boxes = _controls(page)
    assert len(boxes) == 5 and boxes[-1]["text"].endswith("Send test")
    tops = {round(box["top"]) for box in boxes}
    assert len(tops) == 1, f"the controls wrap onto {len(tops)} rows: {boxes}"
    assert max(box["right"] for box in boxes) <= WIDE
    send = page.locator("#send-form button").bounding_box()
    picker = page.locator("#as").bounding_box()
    assert abs(send["y"] - picker["y"]) < 8  # "Send test" beside the picker, not below it
    page.screenshot(path=artefact_path("preview-1440.png"))


def test_the_picker_keeps_its_width_whatever_is_chosen(open_preview):
    page = open_preview(WIDE)
    before = page.locator("#as").bounding_box()["width"]
    page.fill("#as", "long@example.org")
    page.locator("#as").dispatch_event("change")
    page.wait_for_function("document.body.dataset.frameVersion && location.hash.includes('long%40example.org')")
    page.frame_locator("#frame").get_by_text("Hi Maximiliane,").wait_for()
    assert page.locator("#as").bounding_box()["width"] == before
    assert len({round(box["top"]) for box in _controls(page)}) == 1


def test_the_first_frame_comes_with_the_page_and_the_favicon_is_served(open_preview):
    import httpx

    page = open_preview(WIDE)
    served = httpx.get(open_preview.base_url + "/").text
    assert 'src="/email.html?as=sample&amp;scheme=auto&amp;v=1"' in served  # no script round trip first
    assert "Loading…" not in served and "Ketamine Therapy Explained" in served
    icon = httpx.get(open_preview.base_url + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert page.locator("#subject").inner_text().startswith("Ketamine Therapy Explained")


def test_the_missing_link_banner_saves_the_url_into_the_article(open_preview, seed_letter):
    page = open_preview(WIDE)
    banner = page.locator("#link-form")
    banner.wait_for(state="visible")
    assert page.locator("#link-title").inner_text() == "Which Ketamine Therapy Type Is Right for You?"
    page.screenshot(path=artefact_path("preview-missing-link.png"))
    page.fill("#link-url", "javascript:alert(1)")
    page.click("#link-form button")  # the browser's own check refuses a non-URL: nothing is posted
    assert not (seed_letter / "articles" / "ketamine.txt.bak").exists()
    page.fill("#link-url", RECENT)
    page.click("#link-form button")
    banner.wait_for(state="hidden")
    assert "Saved the address into" in page.locator("#notice").inner_text()
    assert RECENT in (seed_letter / "articles" / "ketamine.txt").read_text(encoding="utf-8").splitlines()
    assert (seed_letter / "articles" / "ketamine.txt.bak").read_bytes() == SEED.read_bytes()
    page.wait_for_function("document.body.dataset.frameVersion === document.body.dataset.version")
    hrefs = page.frame_locator("#frame").locator("a").evaluate_all("els => els.map(a => a.href)")
    assert RECENT in hrefs


def test_save_link_refuses_a_script_url_at_the_door(open_preview, seed_letter):
    import httpx

    open_preview(WIDE)
    answer = httpx.post(open_preview.base_url + "/api/save-link", json={"url": "javascript:alert(1)"})
    assert answer.status_code == 400 and "not a web address" in answer.json()["error"]
    assert (seed_letter / "articles" / "ketamine.txt").read_bytes() == SEED.read_bytes()
