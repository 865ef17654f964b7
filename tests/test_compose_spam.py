"""``newsletter check --spam``: SpamAssassin run locally on the sample message, with and without it installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.articles import RECENT, SEED
from support.services import need_service


def _need_spamassassin():
    if not shutil.which("spamassassin"):
        need_service("SpamAssassin is not installed (apt-get install spamassassin)")


@pytest.mark.parametrize("theme", ["default", "plain"])
def test_both_themes_score_zero_on_content(cli, plain_workspace, theme):
    """The preheader is hidden in a readable colour: no HTML_FONT_LOW_CONTRAST, content score 0."""
    _need_spamassassin()
    result = cli("check", SEED, "--recent-url", RECENT, "--theme", theme, "--spam", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    spam = data["spam"]
    assert spam["available"] is True and spam["required"] == 5.0
    assert spam["content_score"] == 0
    names = {rule["name"] for rule in spam["rules"]}
    assert "HTML_FONT_LOW_CONTRAST" not in names and "HTML_MESSAGE" in names
    assert all(rule["description"] for rule in spam["rules"])
    assert "spam-score" not in [w["code"] for w in data["warnings"]]


def test_white_preheader_is_reported_with_rule_and_description(cli, plain_workspace):
    """MJML's own <mj-preview> is white text on the page colour: SpamAssassin says so, check reports it."""
    _need_spamassassin()
    theme = plain_workspace / "templates" / "whitepre"
    builtin = Path(__file__).parents[1] / "templates" / "default"
    shutil.copytree(builtin, theme)
    source = (theme / "email.mjml.j2").read_text()
    source = source.replace("<mj-title>{{ subject }}</mj-title>",
                            "<mj-title>{{ subject }}</mj-title>\n    <mj-preview>{{ preheader }}</mj-preview>")
    source = source.replace('{% from "default/blocks.mjml.j2"', '{% from "whitepre/blocks.mjml.j2"')
    (theme / "email.mjml.j2").write_text(source.replace(
        '<mj-raw><div class="nl-preheader"', '<mj-raw><div hidden class="nl-unused"'))
    result = cli("check", SEED, "--recent-url", RECENT, "--theme", "whitepre", "--spam", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    rules = {rule["name"]: rule for rule in data["spam"]["rules"]}
    assert rules["HTML_FONT_LOW_CONTRAST"]["points"] > 0
    assert "font color" in rules["HTML_FONT_LOW_CONTRAST"]["description"]
    assert data["spam"]["content_score"] >= rules["HTML_FONT_LOW_CONTRAST"]["points"]
    warning = [w for w in data["warnings"] if w["code"] == "spam-score"]
    assert len(warning) == 1 and "HTML_FONT_LOW_CONTRAST" in warning[0]["message"]
    human = cli("check", SEED, "--recent-url", RECENT, "--theme", "whitepre", "--spam")
    assert human.exit_code == 0
    assert "HTML_FONT_LOW_CONTRAST" in human.stderr and "font color" in human.stderr
    assert "SpamAssassin: content score" in human.stderr


def test_without_spamassassin_it_says_how_to_install_and_nothing_else_changes(cli, plain_workspace, tmp_path,
                                                                                monkeypatch):
    plain = cli("check", SEED, "--recent-url", RECENT, "--json")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli("check", SEED, "--recent-url", RECENT, "--spam", "--json")
    assert result.exit_code == plain.exit_code == 0
    data = result.json()
    assert data["spam"]["available"] is False
    assert "apt-get install spamassassin" in data["spam"]["hint"]
    assert {k: v for k, v in data.items() if k != "spam"} == plain.json()
    human = cli("check", SEED, "--recent-url", RECENT, "--spam")
    assert human.exit_code == 0 and "Traceback" not in human.stderr
    assert "SpamAssassin is not installed" in human.stderr and "apt-get install spamassassin" in human.stderr
    assert "ready to send" in human.stderr


def test_a_report_with_wrapped_descriptions_is_parsed():
    from newsletter.compose.spam import parse_report

    report = parse_report(
        "Content analysis details:   (1.7 points, 5.0 required)\n\n"
        " pts rule name              description\n"
        "---- ---------------------- --------------------------------------------------\n"
        "-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
        " 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or\n"
        "                            identical to background\n"
        " 1.0 NORDNS_LOW_CONTRAST    No rDNS + dark on light background\n"
        "\nThe original message was not completely plain text\n"
    )
    assert report.score == 1.7 and report.required == 5.0
    assert [(r.name, r.points) for r in report.rules] == [
        ("NO_RELAYS", -0.0), ("HTML_FONT_LOW_CONTRAST", 0.7), ("NORDNS_LOW_CONTRAST", 1.0)]
    assert report.rules[1].description == "BODY: HTML font color similar or identical to background"
    assert report.content_score == 1.7
    assert parse_report("no report here") is None
