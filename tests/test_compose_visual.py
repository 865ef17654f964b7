"""The composer's HTML (mjml-python, MRML) looks like the reference JavaScript MJML's in Chromium.

The seed article is rendered by each theme to MJML once; both compilers turn
that MJML into HTML, filled for the sample reader; Chromium screenshots each
at 375 and 1200 px, light and dark, into test-artifacts/ (visual-<theme>-
<width>-<scheme>-{mrml,mjml-js}.png), and the two screenshots must match:
same size, and almost every pixel the same (anti-aliasing aside).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from newsletter.compose.edition import merge_values, theme_context
from newsletter.compose.readers import read_article
from newsletter.compose.render import compile_mjml, environment, render_mjml
from newsletter.delivery.merge import MergeTemplate

from browser import artefact_path, launch_chromium
from support.articles import RECENT, SEED
from support.mjml_js import compile_js

WIDTHS = (375, 1200)
SCHEMES = ("light", "dark")
MAX_DIFFERENT = 0.002  # share of pixels that may differ (text anti-aliasing at a sub-pixel offset)

_COMPARE = """async ([first, second]) => {
  const load = (src) => new Promise((ok, fail) => { const image = new Image(); image.onload = () => ok(image); image.onerror = fail; image.src = src; });
  const [a, b] = await Promise.all([load(first), load(second)]);
  if (a.width !== b.width || a.height !== b.height) return { sizes: [a.width, a.height, b.width, b.height], different: -1 };
  const canvas = document.createElement("canvas");
  canvas.width = a.width; canvas.height = a.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(a, 0, 0);
  const pixelsA = context.getImageData(0, 0, a.width, a.height).data;
  context.clearRect(0, 0, a.width, a.height);
  context.drawImage(b, 0, 0);
  const pixelsB = context.getImageData(0, 0, a.width, a.height).data;
  let different = 0;
  for (let i = 0; i < pixelsA.length; i += 4) {
    if (Math.abs(pixelsA[i] - pixelsB[i]) + Math.abs(pixelsA[i + 1] - pixelsB[i + 1]) + Math.abs(pixelsA[i + 2] - pixelsB[i + 2]) > 48) different++;
  }
  return { sizes: [a.width, a.height], different, total: a.width * a.height };
}"""  # noqa: E501 - JavaScript source, one statement per line


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


def _both(settings, theme: str, reference: bool = True) -> tuple[str, str | None]:
    """The seed's HTML from MRML and (with ``reference``) from JavaScript MJML, filled for the sample reader."""
    article = read_article(SEED)
    article.recently_published.url = RECENT
    source = render_mjml(environment(None), f"{theme}/email.mjml.j2", theme_context(article, settings))
    values = merge_values(settings, article.slug, email="reader@example.org", name="Sample Reader",
                          token="sample-token")
    ours = MergeTemplate(compile_mjml(source)).render(values)
    return ours, MergeTemplate(compile_js(source)).render(values) if reference else None


def _screenshot(browser, html: str, width: int, scheme: str, name: str) -> bytes:
    context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
    try:
        context.route("**/*", lambda route: route.abort())  # an email opens with nothing fetched
        page = context.new_page()
        page.set_content(html, wait_until="load")
        shot = page.screenshot(full_page=True)
    finally:
        context.close()
    artefact_path(name).write_bytes(shot)
    return shot


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_mrml_renders_like_javascript_mjml(settings, browser, theme):
    mrml, reference = _both(settings, theme)
    assert len(mrml.encode()) < 20 * 1024
    for width in WIDTHS:
        for scheme in SCHEMES:
            stem = f"visual-{theme}-{width}-{scheme}"
            ours = _screenshot(browser, mrml, width, scheme, f"{stem}-mrml.png")
            theirs = _screenshot(browser, reference, width, scheme, f"{stem}-mjml-js.png")
            page = browser.new_page()
            try:
                result = page.evaluate(_COMPARE, [f"data:image/png;base64,{base64.b64encode(x).decode()}"
                                                  for x in (ours, theirs)])
            finally:
                page.close()
            assert result["different"] >= 0, f"{stem}: page sizes differ {result['sizes']}"
            share = result["different"] / result["total"]
            assert share <= MAX_DIFFERENT, f"{stem}: {share:.2%} of pixels differ (see test-artifacts/{stem}-*.png)"


def test_cards_keep_rounded_corners_in_dark_mode(settings, browser):
    """Dark mode paints the cards' own boxes: each painted box keeps the card's 10 px corners."""
    article = read_article(SEED)
    article.recently_published.url = RECENT
    html = compile_mjml(render_mjml(environment(None), "default/email.mjml.j2", theme_context(article, settings)))
    context = browser.new_context(viewport={"width": 1200, "height": 800}, color_scheme="dark")
    try:
        context.route("**/*", lambda route: route.abort())
        page = context.new_page()
        page.set_content(html, wait_until="load")
        painted = page.evaluate("""() => [...document.querySelectorAll('.nl-card, .nl-card > table')]
            .map((el) => getComputedStyle(el))
            .filter((style) => style.backgroundColor !== 'rgba(0, 0, 0, 0)')
            .map((style) => [style.backgroundColor, style.borderTopLeftRadius, style.borderBottomRightRadius])""")
    finally:
        context.close()
    assert len(painted) >= 3  # the article card and the recent card
    assert all(top == bottom == "10px" for _colour, top, bottom in painted), painted


AXE = Path(__file__).parent / "data" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("theme", ["default", "plain"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_axe_core_finds_no_wcag_a_or_aa_violation(settings, browser, theme, scheme):
    """axe-core (vendored in tests/data) on the seed as the sample reader gets it: no WCAG 2 A/AA violation."""
    mrml, _reference = _both(settings, theme, reference=False)
    context = browser.new_context(viewport={"width": 1200, "height": 800}, color_scheme=scheme)
    try:
        context.route("**/*", lambda route: route.abort())
        page = context.new_page()
        page.set_content(mrml, wait_until="load")
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
        violations = page.evaluate("""async () => (await axe.run(document, {
            runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"] } }))
            .violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length}) ${v.nodes.slice(0, 2).map((n) => n.html.slice(0, 120)).join(" | ")}`)""")  # noqa: E501 - JavaScript
    finally:
        context.close()
    assert violations == []
