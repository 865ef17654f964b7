"""The accessibility pre-flight (WCAG 2.1 AA for an email): each rule failing and passing.

Most cases compose a real article with a real theme (MRML's HTML, as
``check`` and ``send`` see it); a few feed the lint hand-written HTML where
no article could produce the fault (a theme's own markup). A copy of the
default theme in the workspace with one dark-mode colour changed shows the
dark-mode contrast rule reading the theme's ``prefers-color-scheme`` block,
and Chromium confirms that the colours the lint computes are the ones a
browser paints.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from newsletter.compose.accessibility import (
    accessibility_findings,
    colour,
    contrast,
    hex_of,
    text_runs,
)
from newsletter.compose.checks import check_edition
from newsletter.compose.edition import compose_edition
from newsletter.compose.render import builtin_templates_dir

from support.articles import ARTICLES, RECENT, SEED

A11Y = {"lang-missing", "dir-missing", "heading-order", "low-contrast", "link-text", "font-size", "table-role"}


def a11y(findings) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in findings if f.code in A11Y]


def codes(findings) -> list[str]:
    return [code for code, _message in a11y(findings)]


def page(body: str, *, head: str = "", lang: str = "en", dir: str = "ltr") -> str:
    """A minimal email document around ``body`` (one h1 and nothing else to complain about)."""
    return (f'<!doctype html><html lang="{lang}" dir="{dir}"><head><title>t</title>{head}</head>'
            f'<body style="font-size:16px"><h1>Title</h1>{body}</body></html>')


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("theme", ["default", "plain"])
@pytest.mark.parametrize("article", ["seed-ketamine.txt", "front-matter-budget.md", "wrapped-garden.txt"])
def test_the_built_in_themes_and_test_articles_pass_clean(settings, theme, article):
    edition = compose_edition(ARTICLES / article, settings, recent_url=RECENT, theme=theme)
    assert a11y(edition.findings) == []


def test_the_lint_runs_in_the_pre_flight_checks(settings, seed):
    html = seed.html.replace('lang="en"', 'lang="und"')
    assert "lang-missing" in codes(check_edition(dataclasses.replace(seed, html=html), settings))


# -- lang and dir -----------------------------------------------------------

@pytest.mark.parametrize("lang", ["", "und", "english please", "e"])
def test_a_missing_or_meaningless_lang_is_warned(lang):
    (finding,) = [f for f in accessibility_findings(page("<p>Hello</p>", lang=lang)) if f.code == "lang-missing"]
    assert "language" in finding.message and "newsletter.toml" in finding.message


@pytest.mark.parametrize("lang", ["en", "pt-BR", "zh-Hant-TW", "de"])
def test_a_language_tag_passes(lang):
    assert accessibility_findings(page("<p>Hello</p>", lang=lang)) == []


def test_a_right_to_left_language_needs_dir_rtl():
    (finding,) = accessibility_findings(page("<p>مرحبا</p>", lang="ar", dir="ltr"))
    assert finding.code == "dir-missing" and "'ar'" in finding.message and 'dir="rtl"' in finding.message
    assert accessibility_findings(page("<p>مرحبا</p>", lang="ar", dir="rtl")) == []
    assert accessibility_findings(page("<p>שלום</p>", lang="he-IL", dir="rtl")) == []


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_the_themes_write_dir_rtl_for_an_arabic_workspace(settings, theme):
    arabic = dataclasses.replace(settings, language="ar")
    edition = compose_edition(SEED, arabic, recent_url=RECENT, theme=theme)
    assert '<html lang="ar" dir="rtl"' in edition.html
    assert a11y(edition.findings) == []


# -- heading order ----------------------------------------------------------

def test_a_skipped_heading_level_in_an_article_is_warned(settings, tmp_path):
    article = write(tmp_path, "skip.md", "---\ntitle: Headings that skip a level\npreheader: p\n---\n"
                                          "Intro.\n\n## A section\n\nText.\n\n#### Too deep\n\nMore text.\n")
    edition = compose_edition(article, settings)
    (finding,) = [f for f in edition.findings if f.code == "heading-order"]
    assert finding.level == "warning" and "h2 then h4" in finding.message and "'Too deep'" in finding.message
    fixed = write(tmp_path, "fixed.md", article.read_text().replace("#### Too deep", "### Deep enough"))
    assert codes(compose_edition(fixed, settings).findings) == []


def test_no_h1_or_two_h1s_are_warned():
    no_title = page("<h2>Section</h2><p>x</p>").replace("<h1>Title</h1>", "")
    (finding,) = accessibility_findings(no_title)
    assert finding.code == "heading-order" and "no <h1>" in finding.message
    (finding,) = accessibility_findings(page("<h1>Second title</h1>"))
    assert finding.code == "heading-order" and "2 <h1>" in finding.message and "'Second title'" in finding.message
    assert accessibility_findings(page("<h2>a</h2><h3>b</h3><h2>c</h2><h3>d</h3>")) == []


def test_headings_in_hidden_or_head_markup_do_not_count():
    assert accessibility_findings(page('<div style="display:none"><h1>Hidden title</h1></div>')) == []


# -- contrast ---------------------------------------------------------------

def test_low_contrast_text_is_warned_with_its_colours_and_ratio():
    (finding,) = accessibility_findings(page('<p style="color:#999999">Pale words</p>'))
    assert finding.code == "low-contrast"
    assert "light mode" in finding.message and "'Pale words'" in finding.message
    assert "#999999 on #ffffff" in finding.message and "2.85:1" in finding.message and "4.5:1" in finding.message
    assert accessibility_findings(page('<p style="color:#595959">Dark enough words</p>')) == []  # 7.0:1


def test_large_text_needs_only_three_to_one():
    grey = "color:#808080"  # 3.95:1 on white
    assert codes(accessibility_findings(page(f'<p style="{grey};font-size:18px">Small</p>'))) == ["low-contrast"]
    assert accessibility_findings(page(f'<p style="{grey};font-size:24px">Large</p>')) == []
    assert accessibility_findings(page(f'<p style="{grey};font-size:19px;font-weight:bold">Large bold</p>')) == []
    assert accessibility_findings(page(f'<h2 style="{grey};font-size:19px">A bold heading</h2>')) == []


def test_the_background_comes_from_the_nearest_painted_ancestor_and_bgcolor():
    body = ('<table role="presentation"><tr><td bgcolor="#1b5e4f"><div><p style="color:#163f35">Green on'
            ' green</p></div></td></tr></table>')
    (finding,) = accessibility_findings(page(body))
    assert "#163f35 on #1b5e4f" in finding.message
    light = body.replace("#163f35", "#ffffff")
    assert accessibility_findings(page(light)) == []


def test_text_over_a_background_image_is_not_judged():
    body = '<div style="background:url(https://x.example/a.png)"><p style="color:#eeeeee">Over a photo</p></div>'
    assert accessibility_findings(page(body)) == []


def test_head_rules_colour_text_as_css_ranks_them():
    head = "<style>.muted{color:#aaaaaa} p.ok{color:#333333} .box > p{color:#bbbbbb!important}</style>"
    assert codes(accessibility_findings(page('<p class="muted">Pale</p>', head=head))) == ["low-contrast"]
    # the style attribute beats a normal rule; an important rule beats the style attribute
    assert accessibility_findings(page('<p class="muted" style="color:#222222">Inline wins</p>', head=head)) == []
    (finding,) = accessibility_findings(page('<div class="box"><p style="color:#222222">Important</p></div>',
                                             head=head))
    assert "#bbbbbb" in finding.message
    # an unmodelled selector ([data-ogsc], :hover) is left out instead of guessed
    head = "<style>[data-ogsc] p{color:#eeeeee!important} p:hover{color:#eeeeee}</style>"
    assert accessibility_findings(page("<p>Plain</p>", head=head)) == []


def test_unstyled_links_are_the_browser_blue_and_hidden_text_is_not_read():
    assert accessibility_findings(page('<div style="background:#000080"><p style="color:#ffffff">On navy '
                                       '<a href="https://x.example/">the hours page</a></p></div>'))[0].code \
        == "low-contrast"
    hidden = '<div style="display:none;color:#fefefe">the preheader</div><p style="font-size:0">x</p>'
    assert accessibility_findings(page(hidden)) == []


def test_dark_mode_rules_are_checked_only_in_dark_mode():
    head = ("<style>@media (prefers-color-scheme: dark){body,.card{background-color:#121212!important}"
            "h1{color:#eeeeee}.card p{color:#444444!important}}</style>")
    (finding,) = accessibility_findings(page('<div class="card"><p style="color:#222222">Night text</p></div>',
                                             head=head))
    assert finding.code == "low-contrast" and finding.message.startswith("dark mode:")
    assert "#444444 on #121212" in finding.message and "prefers-color-scheme: dark" in finding.message
    fixed = head.replace("#444444", "#dddddd")
    assert accessibility_findings(page('<div class="card"><p style="color:#222222">Night text</p></div>',
                                       head=fixed)) == []


def test_phone_layout_rules_do_not_change_the_colours():
    head = "<style>@media only screen and (max-width:480px){p{color:#eeeeee!important}}</style>"
    assert accessibility_findings(page("<p>Read on a phone</p>", head=head)) == []


def test_a_workspace_theme_with_a_low_contrast_dark_colour_is_caught(settings):
    themes = Path(settings.workspace) / "templates" / "dusk"
    shutil.copytree(builtin_templates_dir() / "default", themes)
    source = (themes / "email.mjml.j2").read_text()
    source = source.replace("color:#e6e8ea!important", "color:#3a3f44!important")  # dark grey on #1d2023
    (themes / "email.mjml.j2").write_text(source)
    edition = compose_edition(SEED, settings, recent_url=RECENT, theme="dusk")
    found = [f for f in edition.findings if f.code == "low-contrast"]
    assert found and all(f.message.startswith("dark mode:") for f in found)
    assert any("#3a3f44 on #1d2023" in f.message for f in found)
    assert "Ketamine Therapy Explained" in found[0].message  # the title is the first text it hides
    assert not [f for f in edition.findings if f.level == "error"]  # a warning: the send still goes


def test_an_article_cannot_bring_its_own_colours():
    """The readers keep no style attribute of an article: colours are the theme's alone (so the theme is
    what the contrast rule judges)."""
    html = '<h1>Title here</h1><p style="color:#fefefe">Invisible?</p><p><font color="#ffffff">x</font></p>'
    from newsletter.compose.html_reader import read_html

    article = read_html(html)
    assert "fefefe" not in repr(article) and "#ffffff" not in repr(article)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_contrast_is_symmetric_and_within_one_and_twenty_one(r, g, b):
    c = (r, g, b, 1.0)
    white, black = (255, 255, 255, 1.0), (0, 0, 0, 1.0)
    assert contrast(c, white) == pytest.approx(contrast(white, c))
    assert 1.0 <= contrast(c, white) <= 21.0
    assert contrast(c, c) == pytest.approx(1.0)
    assert max(contrast(c, white), contrast(c, black)) >= 4.5  # one of them always reads (WCAG's known property)


def test_colour_values():
    assert colour("#abc") == (170, 187, 204, 1.0)
    assert colour("#1b5e4f") == (27, 94, 79, 1.0)
    assert colour("rgb(255, 0, 0)") == (255, 0, 0, 1.0)
    assert colour("rgba(0 0 0 / 50%)") == (0, 0, 0, 0.5)
    assert colour("White") == (255, 255, 255, 1.0)
    assert colour("url(x.png) no-repeat") is None
    assert colour("hsl(0 0% 50%)") is None  # not modelled: not judged
    assert contrast(colour("#777777"), colour("#ffffff")) == pytest.approx(4.48, abs=0.01)


# -- link text --------------------------------------------------------------

@pytest.mark.parametrize("text", ["click here", "Here", "Read more…", "more", "link"])
def test_vague_link_text_is_warned(settings, tmp_path, text):
    article = write(tmp_path, "vague.md", f"---\ntitle: The new opening hours\npreheader: p\n---\n"
                                          f"Our hours changed: [{text}](https://clinic.example/hours).\n")
    (finding,) = [f for f in compose_edition(article, settings).findings if f.code == "link-text"]
    assert repr(text) in finding.message and "out of context" in finding.message


def test_meaningful_link_text_passes_and_a_bare_url_is_warned(settings, tmp_path):
    good = write(tmp_path, "good.md", "---\ntitle: The new opening hours\npreheader: p\n---\n"
                                      "See [the new opening hours](https://clinic.example/hours).\n")
    assert codes(compose_edition(good, settings).findings) == []
    bare = write(tmp_path, "bare.txt", "The new opening hours\n\nSee https://clinic.example/hours for the new hours.\n")
    (finding,) = [f for f in compose_edition(bare, settings).findings if f.code == "link-text"]
    assert "bare URL" in finding.message and "https://clinic.example/hours" in finding.message


def test_a_link_without_text_is_warned_and_an_image_alt_names_it():
    (finding,) = accessibility_findings(page('<a href="https://x.example/"> </a>'))
    assert finding.code == "link-text" and "without text" in finding.message
    assert accessibility_findings(page('<a href="https://x.example/"><img src="https://x.example/l.png" '
                                       'alt="The clinic&#39;s home page"></a>')) == []


# -- font size --------------------------------------------------------------

def test_text_under_14px_is_warned():
    (finding,) = accessibility_findings(page('<p style="font-size:12px">Fine print</p>'))
    assert finding.code == "font-size" and "12px" in finding.message and "'Fine print'" in finding.message
    (finding,) = accessibility_findings(page('<div style="font-size:16px"><p style="font-size:0.8em">Em</p></div>'))
    assert "12.8px" in finding.message
    assert accessibility_findings(page('<p style="font-size:14px">Footer</p><p style="font-size:11pt">Pt</p>'
                                       '<small style="font-size:1em">s</small>')) == []


def test_a_theme_footer_in_13px_is_warned(seed, settings):
    html = seed.html.replace("font-size:14px;line-height:1.6", "font-size:13px;line-height:1.6")
    found = [f for f in check_edition(dataclasses.replace(seed, html=html), settings) if f.code == "font-size"]
    assert found and "13px" in found[0].message and "You get this as a subscriber" in found[0].message


# -- layout tables ----------------------------------------------------------

def test_a_layout_table_without_role_presentation_is_warned():
    (finding,) = accessibility_findings(page("<table><tr><td>Column one</td><td>Column two</td></tr></table>"))
    assert finding.code == "table-role" and "1 layout table" in finding.message
    assert accessibility_findings(page('<table role="presentation"><tr><td>Laid out</td></tr></table>')) == []
    assert accessibility_findings(page("<table><tr><th>Day</th><th>Hours</th></tr>"
                                       "<tr><td>Monday</td><td>9 to 5</td></tr></table>")) == []


def test_mrml_marks_its_own_tables_but_not_an_mj_table():
    from newsletter.compose.render import compile_mjml

    html = compile_mjml('<mjml lang="en"><mj-body><mj-section><mj-column><mj-text><h1>Hours</h1></mj-text>'
                        "<mj-table><tr><td>Monday</td><td>9 to 5</td></tr></mj-table>"
                        "</mj-column></mj-section></mj-body></mjml>")
    assert html.count("<table") > 2
    (finding,) = [f for f in accessibility_findings(html) if f.code == "table-role"]
    assert "1 layout table" in finding.message
    data = compile_mjml('<mjml lang="en"><mj-body><mj-section><mj-column><mj-text><h1>Hours</h1></mj-text>'
                        "<mj-table><tr><th>Day</th><th>Hours</th></tr><tr><td>Monday</td><td>9 to 5</td></tr>"
                        "</mj-table></mj-column></mj-section></mj-body></mjml>")
    assert "table-role" not in [f.code for f in accessibility_findings(data)]


# -- hostile and large input ------------------------------------------------

@pytest.mark.parametrize("html", ["", "<", "<html>", "<p>unclosed <b>bold", "</div></div></td>",
                                  "<style>{{{</style><p style='color:;;:'>x</p>", "\x00\x01<p>\u202e</p>"])
def test_broken_html_gives_findings_not_errors(html):
    accessibility_findings(html)  # no exception; whatever it finds is a warning
    assert all(f.level == "warning" for f in accessibility_findings(html))


def test_the_same_markup_under_different_ancestors_is_styled_by_its_own_path():
    """Computed styles are kept between documents per path of markup: the same ``<p>`` inside and outside
    ``.box`` must not share one, in either order, in one document or across documents."""
    head = "<style>.box p{color:#bbbbbb} .box{background-color:#ffffff}</style>"
    inside_first = page('<div class="box"><p>Pale inside</p></div><p>Dark outside</p>', head=head)
    outside_first = page('<p>Dark outside</p><div class="box"><p>Pale inside</p></div>', head=head)
    for html in (inside_first, outside_first, inside_first, page("<p>Dark outside</p>", head=head)):
        found = accessibility_findings(html)
        if "Pale inside" in html:
            (finding,) = found
            assert "'Pale inside'" in finding.message and "#bbbbbb on #ffffff" in finding.message
        else:
            assert found == []


@pytest.mark.parametrize("html", ["<a " + "b" * 40 + "<" * 3, "<a" * 20_000, "</a" * 20_000, "<p>" * 20_000,
                                  '<a title="' + "x" * 100_000, "<!--" + "-x" * 50_000, "<style>" + "<" * 50_000])
def test_unfinished_tags_and_deep_nesting_are_read_in_linear_time(html):
    import time

    started = time.perf_counter()
    accessibility_findings(html)
    assert time.perf_counter() - started < 5  # ~0.1 s; a backtracking tokenizer takes minutes on the first


def test_a_large_email_is_linted_quickly(settings, tmp_path):
    import time

    body = "\n\n".join(f"## Section {i}\n\n" + "Words that fill up the email. " * 40 for i in range(250))
    article = write(tmp_path, "long.md", f"---\ntitle: A very long edition\npreheader: Long\n---\n{body}\n")
    edition = compose_edition(article, settings)
    assert len(edition.html) > 300_000
    started = time.perf_counter()
    assert accessibility_findings(edition.html) == []
    assert time.perf_counter() - started < 5  # ~0.5 s on a quiet machine


# -- the model against a browser --------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from browser import launch_chromium

    with launch_chromium() as chromium:
        yield chromium


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_lint_computes_the_colours_chromium_paints(settings, browser, scheme):
    """Every text the lint judges in the seed has the colour Chromium computes for it, in both schemes."""
    edition = compose_edition(SEED, settings, recent_url=RECENT)
    expected = {(run.text, hex_of(run.style.colour)) for run in text_runs(edition.html, scheme)}
    context = browser.new_context(viewport={"width": 1200, "height": 800}, color_scheme=scheme)
    try:
        context.route("**/*", lambda route: route.abort())
        tab = context.new_page()
        tab.set_content(edition.html, wait_until="load")
        painted = tab.evaluate("""() => {
            const out = [];
            const hex = (c) => '#' + c.match(/\\d+/g).slice(0, 3).map((n) => (+n).toString(16).padStart(2, '0')).join('');
            for (const el of document.body.querySelectorAll('*')) {
                const own = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.data).join(' ');
                const words = own.replace(/[\\u034f\\u00a0\\u200b-\\u200d\\ufeff]/g, ' ').split(/\\s+/).filter(Boolean).join(' ');
                if (!words || !el.checkVisibility()) continue;
                out.push([words, hex(getComputedStyle(el).color)]);
            }
            return out;
        }""")  # noqa: E501 - JavaScript
    finally:
        context.close()
    assert len(expected) > 20
    assert expected == {(text, colour_) for text, colour_ in painted}


def test_check_lists_the_accessibility_warnings_and_still_passes(plain_workspace, cli):
    (plain_workspace / "articles" / "hours.md").write_text(
        "---\ntitle: The new opening hours\npreheader: From Monday\n---\n"
        "Our hours changed: [click here](https://clinic.example/hours).\n\n## Mornings\n\nText.\n\n"
        "#### Saturdays\n\nText.\n", encoding="utf-8")
    result = cli("check", "articles/hours.md", "--json")
    assert result.exit_code == 0, result.stderr  # warnings never stop a send
    found = {w["code"]: w["message"] for w in result.json()["warnings"]}
    assert "'click here'" in found["link-text"] and "h2 then h4" in found["heading-order"]
    table = cli("check", "articles/hours.md")
    assert table.exit_code == 0 and "link-text" in table.stdout + table.stderr
