"""``newsletter compose`` and ``newsletter check`` driven through the CLI, with real files."""

from __future__ import annotations

import email
import shutil
from email import policy
from pathlib import Path

import pytest

from support.articles import ARTICLES, RECENT

SLUG = "ketamine-therapy-explained-meaning-importance-and-top-benefit"


@pytest.fixture
def letter(plain_workspace):
    """A workspace (cwd) holding the test articles."""
    for path in ARTICLES.iterdir():
        shutil.copy(path, plain_workspace / "articles" / path.name)
    return plain_workspace


def test_compose_writes_html_text_and_a_complete_eml(cli, letter):
    result = cli("compose", "articles/seed-ketamine.txt", "--recent-url", RECENT, "--out", "build")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Ketamine Therapy Explained" in result.stderr and "KB" in result.stderr
    files = sorted(p.name for p in (letter / "build").iterdir())
    assert files == [f"{SLUG}.eml", f"{SLUG}.html", f"{SLUG}.sample.html", f"{SLUG}.txt"]
    raw = (letter / "build" / f"{SLUG}.eml").read_bytes()
    assert max(len(line) for line in raw.split(b"\n")) <= 998
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe"] == "<https://news.clinic.example/unsubscribe/sample-token>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"].startswith("Ketamine Therapy Explained")
    text, html = [part.get_content() for part in message.iter_parts()]
    assert "%%" not in html and "%%" not in text
    assert f"https://news.clinic.example/archive/{SLUG}" in html
    assert "Hi Sample," in text
    assert "%%unsubscribe_url%%" in (letter / "build" / f"{SLUG}.html").read_text()


def test_compose_writes_the_html_as_the_sample_reader_sees_it(cli, letter):
    """Opening <slug>.html shows "Hi %%first_name%%,"; <slug>.sample.html is what a reader gets."""
    result = cli("compose", "articles/seed-ketamine.txt", "--recent-url", RECENT, "--out", "build", "--json")
    assert result.exit_code == 0, result.stderr
    sample = Path(result.json()["files"]["sample.html"])
    assert sample.name == f"{SLUG}.sample.html"
    html = (letter / "build" / sample.name).read_text()
    assert "%%" not in html and "Hi Sample,</p>" in html
    assert 'href="https://news.clinic.example/unsubscribe/sample-token"' in html
    assert "at reader@example.org." in html


@pytest.mark.parametrize("url", ["clinic.example/blog/x", "www.clinic.example", "//clinic.example/x",
                                 "javascript:alert(1)"])
def test_a_recent_url_without_a_web_scheme_is_refused_with_a_hint(cli, letter, url):
    result = cli("compose", "articles/seed-ketamine.txt", "--recent-url", url, "--out", "build")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 2 and "is not a web address" in result.stderr and "https://" in result.stderr
    assert not (letter / "build").exists()
    assert "Its https:// address" in cli("compose", "--help").stdout


def test_compose_json(cli, letter):
    result = cli("compose", "articles/front-matter-budget.md", "--json", "--theme", "plain")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["slug"] == "five-budgeting-habits-that-actually-stick" and data["theme"] == "plain"
    assert Path(data["files"]["eml"]).parent == letter / "build"
    assert data["sizes"]["html"] > 1000 and data["errors"] == []


def test_compose_refuses_a_recent_link_without_url(cli, letter):
    result = cli("compose", "articles/seed-ketamine.txt", "--out", "build")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 2 and "--recent-url" in result.stderr and "Traceback" not in result.stderr
    assert not (letter / "build").exists()


def test_missing_article_is_one_line_and_a_hint(cli, letter):
    for command in ("compose", "check"):
        result = cli(command, "articles/nope.md")
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: article not found: articles/nope.md\nHint: ")


def test_check_json_exit_codes(cli, letter):
    bad = cli("check", "articles/seed-ketamine.txt", "--json")
    assert bad.exit_code == 1
    assert [e["code"] for e in bad.json()["errors"]] == ["recent-url-missing"]
    good = cli("check", "articles/seed-ketamine.txt", "--recent-url", RECENT, "--json")
    assert good.exit_code == 0 and good.json()["errors"] == []
    assert {w["code"] for w in good.json()["warnings"]} == {"client-support"}  # caniemail's, see test_compose_caniemail
    warned = cli("check", "articles/clinic-update.html", "--json")
    assert warned.exit_code == 0
    assert {w["code"] for w in warned.json()["warnings"]} == {"image-alt", "link-relative", "client-support"}


def test_check_human_output(cli, letter):
    result = cli("check", "articles/seed-ketamine.txt", "--recent-title", "Another title", "--recent-url", RECENT)
    assert result.exit_code == 0 and "OK" in result.stderr and result.stdout == ""
    failed = cli("check", "articles/seed-ketamine.txt")
    assert failed.exit_code == 1 and "recent-url-missing" in failed.stderr and "Hint:" in failed.stderr


def test_template_error_is_reported_with_file_and_line(cli, letter):
    theme = letter / "templates" / "mine"
    theme.mkdir()
    (theme / "email.mjml.j2").write_text(
        "<mjml>\n<mj-body>\n<mj-section><mj-column>{{ oops(</mj-column></mj-section>\n</mj-body></mjml>\n")
    result = cli("compose", "articles/front-matter-budget.md", "--theme", "mine")
    assert result.exit_code == 1
    assert f"{theme / 'email.mjml.j2'}:3" in result.stderr and "Traceback" not in result.stderr


def test_help_has_examples(cli):
    for command in ("compose", "check"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout and "--recent-url" in result.stdout


def test_compose_options_decorator_is_reusable():
    import click
    from newsletter.cli.compose import compose_options

    @click.command()
    @compose_options
    def other(recent_title, recent_url, theme):
        pass

    names = {param.name for param in other.params}
    assert names == {"recent_title", "recent_url", "theme"}
