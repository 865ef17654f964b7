"""Each pre-flight rule, on real composed editions."""

from __future__ import annotations

import dataclasses

import pytest
from newsletter.compose.checks import check_edition, errors, warnings
from newsletter.compose.edition import compose_edition

from support.articles import ARTICLES, SEED


def codes(findings, level=None):
    return [f.code for f in findings if level is None or f.level == level]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed_with_recent_url_is_clean(seed):
    assert seed.findings == []


def test_missing_base_url_and_postal_address_are_errors(settings, seed):
    bare = dataclasses.replace(settings, base_url="", postal_address="")
    found = codes(check_edition(seed, bare), "error")
    assert "base-url-missing" in found and "postal-address-missing" in found


def test_theme_without_unsubscribe_link_or_address_is_an_error(settings, seed):
    html = seed.html.replace('href="%%unsubscribe_url%%"', 'href="https://example.org/prefs"')
    html = html.replace("1 Main Street, Springfield", "")
    found = codes(check_edition(dataclasses.replace(seed, html=html), settings), "error")
    assert found == ["unsubscribe-missing", "postal-address-missing"]
    text = seed.text.replace("%%unsubscribe_url:raw%%", "")
    assert codes(check_edition(dataclasses.replace(seed, text=text), settings), "error") == ["unsubscribe-missing"]


def test_recent_link_without_url_is_an_error(settings):
    edition = compose_edition(SEED, settings)
    (finding,) = errors(edition.findings)
    assert finding.code == "recent-url-missing" and "--recent-url" in finding.message


def test_unresolved_template_tags_are_errors(settings, seed):
    html = seed.html.replace("</body>", "{{ article.summary }} %%first name%%</body>")
    found = [f for f in check_edition(dataclasses.replace(seed, html=html), settings) if f.code == "unresolved-tags"]
    assert found and "{{ article.summary }}" in found[0].message and "%%first name%%" in found[0].message


def test_template_syntax_written_in_the_article_is_content(settings, tmp_path):
    article = write(tmp_path, "jinja.md", "---\ntitle: Writing Jinja templates\npreheader: A short guide\n---\n"
                                          "Write `{{ name }}` to print a name.\n")
    assert "unresolved-tags" not in codes(compose_edition(article, settings).findings)


def test_html_over_102_kb_is_a_warning(settings, tmp_path):
    body = "\n\n".join(f"Paragraph {i}: " + "words that fill up the email " * 20 for i in range(250))
    article = write(tmp_path, "long.md", f"---\ntitle: A very long edition\npreheader: Long\n---\n{body}\n")
    found = [f for f in compose_edition(article, settings).findings if f.code == "html-size"]
    assert found and found[0].level == "warning" and "Gmail" in found[0].message


def test_images_without_alt_text(settings):
    edition = compose_edition(ARTICLES / "clinic-update.html", settings)
    alt = [f.message for f in edition.findings if f.code == "image-alt"]
    assert alt == ["image without alt text: https://clinic.example.org/img/decor.png"]


def test_insecure_relative_and_empty_links(settings, tmp_path):
    article = write(tmp_path, "links.html", '<h1>Links and more links</h1><p class="dek">x</p>'
                    '<p><a href="http://old.example/a">old</a> '
                    '<a href="/hours">hours</a> <a href="mailto:a@b.example">mail</a></p>')
    edition = compose_edition(article, settings)
    assert codes(edition.findings, "warning") == ["link-insecure", "link-relative"]
    html = edition.html.replace('href="mailto:a@b.example"', 'href=""')
    assert "link-empty" in codes(check_edition(dataclasses.replace(edition, html=html), settings))


@pytest.mark.parametrize("subject, flagged", [("Hi", True), ("x" * 79, True), ("A good subject line", False)])
def test_subject_length(settings, tmp_path, subject, flagged):
    article = write(tmp_path, "s.md",
                    f"---\ntitle: Title of the article\nsubject: {subject}\npreheader: p\n---\nBody.\n")
    assert ("subject-length" in codes(compose_edition(article, settings).findings)) is flagged


def test_missing_preheader(settings, tmp_path):
    article = write(tmp_path, "p.md", "# Title of the article\n\nFirst paragraph says something.\n")
    edition = compose_edition(article, settings)
    assert codes(edition.findings) == ["preheader-missing"]
    assert edition.preheader == "First paragraph says something."  # inboxes still get a sensible preview


@pytest.mark.parametrize("text", ["The figure is TK until we hear back.", "Lorem ipsum dolor sit amet."])
def test_placeholders(settings, tmp_path, text):
    article = write(tmp_path, "t.md", f"---\ntitle: Title of the article\npreheader: p\n---\n{text}\n")
    assert codes(compose_edition(article, settings).findings) == ["placeholder"]


def test_errors_come_first(settings, tmp_path):
    article = write(tmp_path, "e.md", "---\ntitle: TK\nrecently_published: {title: Old}\n---\nBody.\n")
    findings = compose_edition(article, settings).findings
    levels = [f.level for f in findings]
    assert levels == sorted(levels)  # "error" < "warning"
    assert errors(findings) and warnings(findings)


LONG_ADDRESS = "Clinique Saint-Étienne, 1500 Market Street, Suite 200, Philadelphia, PA 19102, USA"


def test_a_long_postal_address_wrapped_in_the_text_part_is_found(settings):
    from support.articles import RECENT

    edition = compose_edition(SEED, dataclasses.replace(settings, postal_address=LONG_ADDRESS), recent_url=RECENT)
    assert LONG_ADDRESS not in edition.text  # the text part wrapped the footer line...
    assert " ".join(LONG_ADDRESS.split()) in " ".join(edition.text.split())
    assert edition.findings == []  # ...and the check still sees it


def test_an_article_quoting_jinja_in_wrapped_text_is_content(settings, tmp_path):
    quoted = 'Write {% if reader.plan == "pro" and reader.city == "Lyon" %} then {{ reader.first_name | title }}'
    paragraph = " ".join(f"Step {i}: {quoted}." for i in range(6))
    article = write(tmp_path, "jinja.md", "---\ntitle: Writing Jinja templates\npreheader: A short guide\n---\n"
                    f"{paragraph}\n\nAnd in a list:\n\n- `{{{{ name }}}}` prints the\n  name, `{{% if %}}` tests\n")
    edition = compose_edition(article, settings)
    split = [line for line in edition.text.splitlines() if ("{%" in line and "%}" not in line.split("{%")[-1])
             or ("{{" in line and "}}" not in line.split("{{")[-1])]
    assert split, "the text part should wrap inside a quoted tag"
    assert "unresolved-tags" not in codes(edition.findings)
    leftover = dataclasses.replace(edition, html=edition.html.replace("</body>", "{{ article.summary }}</body>"))
    assert codes(check_edition(leftover, settings), "error") == ["unresolved-tags"]  # a real leftover still is


def test_check_accepts_a_long_postal_address(cli, plain_workspace, monkeypatch):
    from support.articles import RECENT

    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", LONG_ADDRESS)
    result = cli("check", SEED, "--recent-url", RECENT)
    assert result.exit_code == 0, result.stderr
    assert "ready to send" in result.stderr


def test_check_accepts_an_article_quoting_jinja(cli, plain_workspace, tmp_path):
    quoted = "Write {% if reader.plan == 'pro' and reader.city == 'Lyon' %} around a block, {{ reader.name | title }}"
    article = write(tmp_path, "jinja.md", "---\ntitle: Writing Jinja templates\npreheader: A short guide\n---\n"
                    + " ".join(f"Step {i}: {quoted}." for i in range(5)) + "\n")
    result = cli("check", str(article), "--json")
    assert result.exit_code == 0, result.stdout
    assert result.json()["errors"] == []
