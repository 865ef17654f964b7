"""check, send and schedule refuse links to this machine when the mail leaves it (issue 11)."""

from __future__ import annotations

from datetime import date

from support.articles import RECENT, SEED

REAL_SMTP = "smtp://user:secret@smtp.mailhost.example:587"


def _local_base_url(workspace):
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace("https://news.clinic.example", "http://127.0.0.1:8000"))


def test_check_send_and_schedule_refuse_a_localhost_base_url_for_a_real_smtp_host(workspace, cli, monkeypatch):
    _local_base_url(workspace)
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", REAL_SMTP)
    check = cli("check", SEED, "--recent-url", RECENT, "--json")
    assert check.exit_code == 1
    (finding,) = check.json()["errors"]
    assert finding["code"] == "base-url-unsafe" and "base_url" in finding["message"]
    assert "secret" not in check.stdout  # the SMTP password never shows
    for args in (("send", SEED, "--list", "readers", "--yes"),
                 ("schedule", SEED, "--list", "readers", "--at", f"{date.today().year + 1}-01-01 09:00")):
        result = cli(*args, "--recent-url", RECENT)
        assert result.exit_code == 1, result.stderr
        assert "base_url" in result.stderr and "Hint:" in result.stderr and "Traceback" not in result.stderr
    assert cli("campaigns", "list", "--json").json() == []


def test_send_with_a_transport_override_is_refused_too(workspace, cli, monkeypatch):
    _local_base_url(workspace)
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    result = cli("send", SEED, "--list", "readers", "--yes", "--transport", "sendgrid", "--recent-url", RECENT)
    assert result.exit_code == 1 and "base_url" in result.stderr and "api.sendgrid.com" in result.stderr
    assert cli("campaigns", "list", "--json").json() == []


def test_local_set_ups_keep_working(workspace, cli, monkeypatch):
    _local_base_url(workspace)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", "smtp://127.0.0.1:1025")  # a local Mailpit
    assert cli("check", SEED, "--recent-url", RECENT, "--json").json()["errors"] == []
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "file")
    assert cli("check", SEED, "--recent-url", RECENT, "--json").json()["errors"] == []
