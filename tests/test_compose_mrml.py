"""The composer on mjml-python (MRML): escaping kept, errors at the theme's line,
nothing loaded from the network, the workspace's language, one landmark, the greeting."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from newsletter.compose.edition import compose_edition, first_name, merge_values, without_greeting
from newsletter.compose.filters import CONTROL
from newsletter.delivery.merge import MergeTemplate
from newsletter.errors import TemplateError

from support.articles import RECENT, SEED

HOSTILE = [
    'a "quoted" name & <b>bold</b>',
    "Zoë Ñúñez-Øster \u202ereversed",
    "Jose\u0301 (NFD) \U0001F469\u200D\U0001F4BB\uFE0F\u00a0nbsp soft\u00adhyphen",
    "C:\\path\\to and \\u{301}",
    "line\r\nbreak\x01soh\x0bvt\x85nel\tand tab",
    "%%name:raw%% {{ 7*7 }} {% if %}",
    "münchen.example ＜ ＞ & < > ' \"",
]


class _Collect(HTMLParser):
    """Every start tag's attributes and every text run of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attributes: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    return parser


def _article(tmp_path: Path, value: str) -> Path:
    import yaml

    front = yaml.safe_dump({
        "title": f"Title {value}", "subtitle": f"Sub {value}", "author": f"Author {value}",
        "image": f"https://img.example/a.png?x={value}", "image_alt": f"Alt {value}",
        "recently_published": {"title": f"Recent {value}", "url": "https://x.example/?a=1&b=2"},
    }, allow_unicode=True)
    path = tmp_path / "hostile.md"
    path.write_text(f"---\n{front}---\nText {value}\n\n[link {value}](https://l.example/?q=1&r=2)\n\n![Img {value}](https://i.example/p.png)\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("theme", ["default", "plain"])
@pytest.mark.parametrize("value", HOSTILE)
def test_article_text_reaches_text_attributes_and_links_as_written(settings, tmp_path, theme, value):
    """What the article says reads back exactly, in text and in attributes (MRML
    rewrites attribute values with Rust escapes: ``\\u{301}``, doubled backslashes)."""
    edition = compose_edition(_article(tmp_path, value), settings, theme=theme)
    expected = " ".join(CONTROL.sub("", value).replace("%%name:raw%%", "%%name%%").split())
    page = _parse(edition.html)
    alts = [v for tag, name, v in page.attributes if tag == "img" and name == "alt"]
    assert f"Img {expected}" in [" ".join(a.split()) for a in alts]  # the article's image
    text = " ".join(" ".join(page.text).split())
    assert f"Text {expected}" in text
    assert ("a", "href", "https://x.example/?a=1&b=2") in page.attributes
    assert ("a", "href", "https://l.example/?q=1&r=2") in page.attributes
    assert "<b>bold</b>" not in edition.html and "%%name:raw%%" not in edition.html
    labels = [v for tag, name, v in page.attributes if name == "aria-label"]
    title = CONTROL.sub("", edition.article.title).replace("%%name:raw%%", "%%name%%")
    assert [" ".join(label.split()) for label in labels] == [" ".join(title.split())]
    assert edition.article.title.startswith("Title ")


@hsettings(max_examples=30, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_any_title_is_escaped_once(settings, value):
    """A title of any characters: the parsed <h1> text equals the article's title exactly."""
    from newsletter.compose.edition import build_edition
    from newsletter.compose.model import Article, Paragraph, Span

    title = " ".join(value.split())
    article = Article(title=title, blocks=[Paragraph([Span("body")])], source="", slug="s")
    html = build_edition(article, settings, theme="default", workspace_templates=None).html
    expected = CONTROL.sub("", title)  # control characters are dropped, nothing else changes
    h1 = re.search(r"<h1\b[^>]*>(.*?)</h1>", html, re.S).group(1)
    assert "".join(_parse(h1).text) == expected
    assert "".join(_parse(re.search(r"<title>(.*?)</title>", html, re.S).group(1)).text) == expected
    labels = [value for _tag, name, value in _parse(html).attributes if name == "aria-label"]
    assert labels == [expected]  # an attribute MRML writes itself, from <mj-title>


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_nothing_is_loaded_from_the_network(settings, theme):
    html = compose_edition(SEED, settings, recent_url=RECENT, theme=theme).html
    assert "fonts.googleapis" not in html and "@import" not in html
    assert not re.search(r"<link\b", html)
    page = _parse(html)
    loaded = [v for tag, name, v in page.attributes if name == "src" or (tag == "link" and name == "href")]
    assert loaded == []  # the seed has no image: nothing at all is fetched on open


def test_a_font_the_theme_asks_for_is_kept(settings):
    folder = settings.workspace / "templates" / "fonty"
    folder.mkdir(parents=True)
    (folder / "email.mjml.j2").write_text(
        '<mjml><mj-head><mj-font name="Lato" href="https://fonts.example/lato.css" /></mj-head><mj-body>'
        '<mj-section><mj-column><mj-text font-family="Lato, Ubuntu, sans-serif">'
        '{{ article.title }} %%unsubscribe_url%%</mj-text>'
        "</mj-column></mj-section></mj-body></mjml>")
    html = compose_edition(SEED, settings, recent_url=RECENT, theme="fonty").html
    assert "https://fonts.example/lato.css" in html
    assert "fonts.googleapis" not in html  # Ubuntu is one of MRML's defaults: not fetched unasked


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_language_and_one_landmark(settings, theme):
    settings = dataclasses.replace(settings, language="fr")
    html = compose_edition(SEED, settings, recent_url=RECENT, theme=theme).html
    assert re.search(r'<html lang="fr" dir="ltr"', html) and 'lang="und"' not in html
    landmarks = re.findall(r'<[^>]*role="article"[^>]*>', html)
    assert len(landmarks) == 1
    assert 'lang="fr"' in landmarks[0] and 'aria-label="Ketamine Therapy Explained' in landmarks[0]


def _broken_theme(settings, name: str, text: str) -> Path:
    folder = settings.workspace / "templates" / name
    folder.mkdir(parents=True)
    (folder / "email.mjml.j2").write_text(text)
    return folder / "email.mjml.j2"


HEAD = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n"
TAIL = "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"


@pytest.mark.parametrize(
    "body, line, words",
    [
        # MRML passes these silently: the scan before compiling refuses them
        ("<mj-text>x</mj-text>\n<mj-txt>y</mj-txt>\n", 7, "unknown MJML tag <mj-txt>"),
        ("<mj-text>x</mj-text>\n</mj-colum>\n", 7, "unknown MJML tag <mj-colum>"),
        ("<mj-text>x</mj-text>\n</mj-section>\n", 7, "</mj-section> where </mj-column> was expected"),
        # MRML refuses these without saying where: the scan of every tag finds the line
        ("<mj-text>\n<p>one\n<p>two</p>\n</mj-text>\n", 7, "<p> is never closed"),
        ("<mj-text>{{ article.title }}\n<i><b>bold</i>\n</mj-text>\n", 7, "<b> is never closed"),
    ],
)
def test_mjml_errors_point_at_the_theme_line(settings, body, line, words):
    path = _broken_theme(settings, "broken", HEAD + "{# a comment line #}\n" + body + TAIL)
    with pytest.raises(TemplateError) as error:
        compose_edition(SEED, settings, recent_url=RECENT, theme="broken")
    assert error.value.message.startswith(f"{path}:{line}: ")
    assert words in error.value.message


def test_an_mrml_position_is_mapped_to_the_theme_line(settings):
    """An error only MRML sees (text inside <mj-spacer>) is found from the byte offset MRML reports."""
    path = _broken_theme(settings, "spacer",
                         HEAD + "{# é: offsets are bytes #}\n<mj-text>é</mj-text>\n<mj-spacer>q</mj-spacer>\n" + TAIL)
    with pytest.raises(TemplateError) as error:
        compose_edition(SEED, settings, recent_url=RECENT, theme="spacer")
    assert error.value.message.startswith(f"{path}:7: MJML failed to compile near 'q'")


def test_the_old_mjml_package_is_refused_with_the_fix(tmp_path):
    """An environment whose ``mjml`` module is the pure-Python port gets one line and the fix."""
    fake = tmp_path / "mjml"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "def mjml_to_html(source):\n    raise AssertionError('the old package was called')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from newsletter.compose.render import compile_mjml\n"
        "from newsletter.errors import NewsletterError\n"
        "try:\n    compile_mjml('<mjml><mj-body></mj-body></mjml>')\n"
        "except NewsletterError as exc:\n    print(exc.message); print(exc.hint)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    message, hint = done.stdout.splitlines()
    assert "not mjml-python" in message
    assert hint == "pip uninstall -y mjml && pip install --force-reinstall mjml-python"


def test_both_mjml_packages_installed_is_refused_with_the_fix(tmp_path):
    """mjml-python's module next to the old package's metadata: a silent mix, refused."""
    import mjml

    site = tmp_path / "site"
    shutil.copytree(Path(mjml.__file__).parent, site / "mjml")
    (site / "mjml-0.12.0.dist-info").mkdir()
    (site / "mjml-0.12.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mjml\nVersion: 0.12.0\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from newsletter.compose.render import compile_mjml\n"
        "from newsletter.errors import NewsletterError\n"
        "try:\n    compile_mjml('<mjml><mj-body></mj-body></mjml>')\n"
        "except NewsletterError as exc:\n    print(exc.message); print(exc.hint)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    message, hint = done.stdout.splitlines()
    assert "both the pure-Python 'mjml' package and mjml-python are installed" in message
    assert hint.startswith("pip uninstall -y mjml")


@pytest.mark.parametrize("name, attribute, expected", [
    ("Maria Gonzalez-Ruiz", None, "Maria"),
    ("  Zoë   Ng ", None, "Zoë"),
    ("Maria Gonzalez-Ruiz", "Mari", "Mari"),
    ("", "", "there"),
    ("", None, "there"),
    ("Ada Lovelace", "  ", "Ada"),
])
def test_the_greeting_uses_the_first_name(name, attribute, expected):
    assert first_name(name, attribute) == expected


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_greeting_per_reader_and_none_in_the_archive_copy(settings, seed, theme):
    edition = compose_edition(SEED, settings, recent_url=RECENT, theme=theme)
    values = merge_values(settings, edition.slug, email="m@example.org", name="Maria Gonzalez-Ruiz", token="t")
    html = MergeTemplate(edition.html).render(values)
    text = MergeTemplate(edition.text).render(values)
    assert "Hi Maria,</p>" in html and "\nHi Maria,\n" in text
    attribute = merge_values(settings, edition.slug, email="m@example.org", name="Maria Gonzalez-Ruiz", token="t",
                             attributes={"first_name": "Mari"})
    assert "Hi Mari,</p>" in MergeTemplate(edition.html).render(attribute)
    archive = without_greeting(edition.html)
    assert "Hi " not in archive and "%%first_name%%" not in archive
    assert archive.count("<p") == edition.html.count("<p") - 1  # only the greeting line is gone


def test_values_without_a_first_name_greet_by_the_first_word_of_the_name(settings, seed):
    """The archive's neutral values ({"name": "there"}) predate first_name: still "Hi there,", never "Hi ,"."""
    html = MergeTemplate(seed.html).render({"name": "there", "email": ""})
    assert "Hi there,</p>" in html
    assert "Hi Ann,</p>" in MergeTemplate(seed.html).render({"name": "Ann Lee"})


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_the_inbox_snippet_is_the_preheader_then_blanks_and_the_greeting_follows_the_title(settings, theme):
    """Issue #22: the greeting first in the card ate the snippet ("...Wellness Hi Patricia Dubois, Ketamine...")."""
    import re

    from newsletter.compose.edition import PREHEADER_PADDING

    edition = compose_edition(SEED, settings, recent_url=RECENT, theme=theme)
    html = MergeTemplate(edition.html).render(
        merge_values(settings, edition.slug, email="p@example.org", name="Patricia Dubois", token="t"))
    from html import unescape

    body = unescape(re.sub(r"<[^>]+>", " ", html.split("<body", 1)[1].split(">", 1)[1]))
    snippet = body.lstrip()[:400]
    assert snippet.startswith("A New Path for Mental Wellness")
    after_preheader = snippet.split("Wellness", 1)[1]
    blanks = len(after_preheader) - len(after_preheader.lstrip(" \u034f\u00a0"))
    assert blanks >= len(PREHEADER_PADDING) >= 90  # a snippet of ~120 characters shows nothing more
    text_order = [m.start() for m in (re.search(p, body) for p in (r"Ketamine Therapy Explained", r"Hi Patricia,",
                                                                     r"It\u2019s 2 a\.m\.")) if m]
    assert len(text_order) == 3 and text_order == sorted(text_order)  # title, then greeting, then the body
    text = MergeTemplate(edition.text).render({"first_name": "Patricia", "name": "Patricia Dubois"})
    assert text.index("Ketamine Therapy Explained") < text.index("Hi Patricia,") < text.index("2 a.m.")
