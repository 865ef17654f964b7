"""Rendering: the default theme's structure, escaping, theme swap and override, errors, text part."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from newsletter.compose.edition import compose_edition, merge_values
from newsletter.delivery.merge import MergeTemplate
from newsletter.errors import TemplateError

from support.articles import ARTICLES, RECENT, SEED


def test_default_theme_structure(seed):
    html = seed.html
    assert re.search(r'<html lang="en"', html)
    assert re.search(r'<meta name="color-scheme" content="light dark" ?/?>', html)
    assert "@media (prefers-color-scheme:dark)" in html
    assert html.count("<h1") == 1 and ">Ketamine Therapy Explained: Meaning, Importance, and Top Benefit</h1>" in html
    assert len(re.findall(r"<h2\b", html)) == 8 + 2  # sections, recent card, author
    assert html.count("<ul") == 3 and html.count("<blockquote") == 1
    assert "A New Path for Mental Wellness" in html.split("<body")[1].split("</div>")[0]  # preheader first in body
    assert len(html.encode()) < 20 * 1024  # far under Gmail's 102 KB clip
    assert f'href="{RECENT}"' in html and "Read the article" in html
    assert "Adrienne D. Mullins" in html and "Driven by a deep passion" in html
    assert 'href="%%unsubscribe_url%%"' in html and 'href="%%web_url%%"' in html
    assert "1 Main Street, Springfield" in html and "You get this as a subscriber of %%list_name%%" in html
    assert "fonts.googleapis" not in html and "@import" not in html  # no network at read time
    for chrome in ("There are no comments", "Be the first to respond", "About the Creator"):
        assert chrome not in html
    assert "@media only screen and (max-width:480px)" in html


def test_article_markup_is_escaped(settings, tmp_path):
    article = tmp_path / "evil.md"
    article.write_text(
        "---\ntitle: <b>Bold</b> & co\nrecently_published: {title: '<i>x</i>', url: 'https://x.example/?a=1&b=2'}\n---\n"
        'Hello <script>alert(1)</script> and <img src=x onerror=alert(2)>.\n\n'
        "[click](javascript:alert(3)) and %%name:raw%% here.\n"
    )
    edition = compose_edition(article, settings)
    html = edition.html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in html
    assert 'href="javascript' not in html.lower()
    assert 'href="https://x.example/?a=1&amp;b=2"' in html
    # a raw merge token in article text would put a subscriber's name unescaped into HTML
    assert "%%name:raw%%" not in html
    rendered = MergeTemplate(html).render({"name": "<svg onload=alert(4)>"})
    assert "<svg onload" not in rendered
    assert edition.subject == "<b>Bold</b> & co"


def test_unsafe_link_schemes_are_dropped(settings, tmp_path):
    article = tmp_path / "links.html"
    article.write_text('<h1>Links test</h1><p><a href=" JavaScript:alert(1)">one</a>'
                       ' <a href="data:text/html,x">two</a></p>')
    html = compose_edition(article, settings).html
    assert "javascript" not in html.lower() and "data:text" not in html
    assert ">one</p>" not in html and "one two" in html.replace("</p>", "")


def test_plain_theme_is_swappable(settings):
    edition = compose_edition(SEED, settings, recent_url=RECENT, theme="plain")
    assert edition.theme == "plain"
    assert "Georgia" in edition.html and "nl-card" not in edition.html
    assert f'href="{RECENT}"' in edition.html and 'href="%%unsubscribe_url%%"' in edition.html
    assert "What Is Ketamine Therapy, Really?" in edition.html
    assert not [f for f in edition.findings if f.level == "error"]


def test_workspace_templates_override_builtins(settings):
    theme = settings.workspace / "templates" / "default"
    shutil.copytree(Path(__file__).parents[1] / "templates" / "default", theme)
    source = (theme / "email.mjml.j2").read_text().replace("View in your browser", "Read it on the web")
    (theme / "email.mjml.j2").write_text(source)
    edition = compose_edition(SEED, settings, recent_url=RECENT)
    assert "Read it on the web" in edition.html


def _broken_theme(settings, text: str) -> Path:
    folder = settings.workspace / "templates" / "broken"
    folder.mkdir(parents=True)
    (folder / "email.mjml.j2").write_text(text)
    return folder / "email.mjml.j2"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("<mjml>\n<mj-body>\n{% if %}\n</mj-body></mjml>", 3, "Expected an expression"),
        ("<mjml>\n<mj-body>\n<mj-section><mj-column><mj-text>{{ nothing.here }}</mj-text></mj-column></mj-section>\n"
         "</mj-body></mjml>", 3, "nothing"),
        ("<mjml>\n<mj-body>\n<mj-section>\n  <mj-colum><mj-text>x</mj-text></mj-colum>\n</mj-section>\n"
         "</mj-body></mjml>",
         4, "unknown MJML tag"),
        ("<mjml>\n<mj-body>\n<mj-section>\n<mj-column><mj-text>x</mj-text>\n</mj-section>\n</mj-body></mjml>",
         5, "</mj-column>"),
    ],
)
def test_template_errors_name_file_and_line(settings, text, line, words):
    path = _broken_theme(settings, text)
    with pytest.raises(TemplateError) as error:
        compose_edition(SEED, settings, recent_url=RECENT, theme="broken")
    assert f"{path}:{line}" in error.value.message
    assert words in error.value.message


def test_unknown_theme(settings):
    with pytest.raises(TemplateError) as error:
        compose_edition(SEED, settings, theme="nope")
    assert "unknown theme" in error.value.message and "default, plain" in error.value.hint


def test_recent_link_without_url_is_never_an_empty_href(settings):
    edition = compose_edition(SEED, settings)
    assert 'href=""' not in edition.html and "Read the article" not in edition.html
    assert [f.code for f in edition.findings if f.level == "error"] == ["recent-url-missing"]


def test_text_part_from_the_model(settings):
    edition = compose_edition(ARTICLES / "front-matter-budget.md", settings)
    text = edition.text
    assert "Five budgeting habits that actually stick\n=========" in text
    assert "2. Use a weekly number\n----" in text
    assert "- Work out what is left after bills" in text and "1. Rainy day" in text
    assert "> A budget is telling your money" in text
    assert "our reader survey [1]" in text and "[1] https://blog.example.org/survey-2026" in text
    assert "[Image: A jar of coins on a kitchen table]" in text
    assert "jar.jpg" not in text and "budget.jpg" not in text  # no image URLs
    assert "Saving for a rainy day: how much is enough?\nhttps://blog.example.org/rainy-day-fund" in text
    assert "Unsubscribe from %%list_name:raw%%: %%unsubscribe_url:raw%%" in text
    assert "1 Main Street, Springfield" in text
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 72
    assert '<script>alert("hi")</script>' in text  # text is not HTML: shown as written


def test_personalisation_fills_every_field(settings, seed):
    values = merge_values(settings, seed.slug, email="ann@example.org", name="", token="tok123")
    html = MergeTemplate(seed.html).render(values)
    text = MergeTemplate(seed.text).render(values)
    assert "%%" not in html and "%%" not in text
    assert "Hi there," in html and "Hi there," in text
    assert 'href="https://news.clinic.example/unsubscribe/tok123"' in html
    assert f"https://news.clinic.example/archive/{seed.slug}" in text


def test_every_article_shape_composes(settings):
    for path in sorted(ARTICLES.iterdir()):
        edition = compose_edition(path, settings, recent_url=RECENT)
        assert edition.html.startswith("<!doctype html>") and edition.article.title in edition.text


def test_the_footer_names_the_list_and_escapes_a_hostile_name(seed, settings):
    """The footer's list name is a merge value: escaped in HTML, as written in the text part; without one
    (a preview, a sample) it is the newsletter's name."""
    hostile = "Zoë's <b>\"Clinic\"</b> & Bücher"
    values = merge_values(settings, seed.slug, email="zoë@bücher.example", token="t", list_name=hostile)
    html = MergeTemplate(seed.html).render(values)
    assert ("You get this as a subscriber of Zoë&#x27;s &lt;b&gt;&quot;Clinic&quot;&lt;/b&gt; &amp; Bücher"
            " at zoë@bücher.example.") in html
    assert ">Unsubscribe from Zoë&#x27;s &lt;b&gt;&quot;Clinic&quot;&lt;/b&gt; &amp; Bücher</a>" in html
    text = " ".join(MergeTemplate(seed.text).render(values).split())
    assert f"You get this as a subscriber of {hostile} at zoë@bücher.example." in text
    assert f"Unsubscribe from {hostile}: https://news.clinic.example/unsubscribe/t" in text
    plain = MergeTemplate(seed.html).render(merge_values(settings, seed.slug, email="a@example.org", token="t"))
    assert f"You get this as a subscriber of {settings.name} at a@example.org." in plain
