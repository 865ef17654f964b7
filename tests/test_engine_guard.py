"""The duplicate-send guard and the ``failed`` campaign, through the CLI on both backends.

Sending the same article to the same list twice (a second ``send`` instead
of ``campaigns resume`` after a crash) must not mail everyone again without
a word; a campaign nobody received must not look ``sent``.
"""

from __future__ import annotations

import os
from datetime import date

import pytest
from newsletter.delivery.memory import MemoryTransport

from fake_sendgrid import FakeSendGrid
from smtp_server import SmtpServer
from support.cli import populate

API_KEY = "SG.guard-test.secret-value"
LATER = f"{date.today().year + 5}-01-01 09:00"  # far ahead, within the ten years a schedule allows


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    """The transports' own waits (backoff) take no real time here. Returns the waits asked for, in seconds."""
    from newsletter.delivery import retry

    waits: list[float] = []
    monkeypatch.setattr(retry, "pause", waits.append)
    return waits


def _outbox_addresses():
    return [m["To"].addresses[0].addr_spec for m in MemoryTransport.shared_outbox]


def _send(cli, *extra):
    return cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "memory", *extra)


def test_the_same_edition_to_the_same_list_is_refused_unless_again(workspace, cli, tmp_path):
    emails = populate(cli, tmp_path, 4)
    MemoryTransport.clear_shared()
    assert _send(cli, "--json").json()["status"] == "sent"
    second = _send(cli)
    assert second.exit_code == 1 and "Traceback" not in second.stderr
    assert "already sent to readers: campaign 1 sent it to 4 subscriber(s) on 20" in second.stderr
    assert " UTC (status sent)" in second.stderr
    assert "newsletter campaigns show 1" in second.stderr and "--again" in second.stderr
    assert "resume" not in second.stderr  # it finished: nothing to resume
    assert len(second.stderr.strip().splitlines()) <= 3  # one error line and its hint
    assert sorted(_outbox_addresses()) == sorted(emails)  # nobody mailed twice
    assert [c["id"] for c in cli("campaigns", "list", "--json").json()] == [1]
    again = _send(cli, "--again", "--json")
    assert again.exit_code == 0 and again.json()["sent"] == 4
    assert sorted(_outbox_addresses()) == sorted(emails * 2)


def test_a_paused_send_is_resumed_not_sent_again(workspace, cli, tmp_path):
    populate(cli, tmp_path, 5)
    MemoryTransport.clear_shared()
    assert _send(cli, "--limit", "2", "--json").json()["status"] == "paused"
    refused = _send(cli)
    assert refused.exit_code == 1 and "campaigns resume 1" in refused.stderr
    assert len(MemoryTransport.shared_outbox) == 2
    # the same content under another file name (and so another slug) is the same edition
    copy = tmp_path / "welcome-copy.md"
    copy.write_text((workspace / "articles" / "welcome.md").read_text())
    renamed = cli("send", str(copy), "--list", "readers", "--yes", "--transport", "memory")
    assert renamed.exit_code == 1 and "campaigns resume 1" in renamed.stderr
    # another list may have it
    other = tmp_path / "other.csv"
    other.write_text("email\nreader0@example.org\n")
    assert cli("subscribers", "import", str(other), "--list", "staff").exit_code == 0
    assert cli("send", "articles/welcome.md", "--list", "staff", "--yes", "--transport", "memory").exit_code == 0


def test_a_send_in_progress_is_refused_even_with_again(workspace, cli, tmp_path):
    from newsletter.config import load_settings
    from newsletter.store import ledger
    from newsletter.store.db import open_store
    from newsletter.store.models import utcnow

    populate(cli, tmp_path, 3)
    MemoryTransport.clear_shared()
    assert _send(cli, "--limit", "1").exit_code == 0
    store = open_store(load_settings())
    with store.session() as session:  # another machine is sending it right now
        ledger.set_campaign(session, 1, status="sending", sender="mail-2.clinic.example:4242:0a1b2c",
                            heartbeat_at=utcnow())
    store.close()
    for extra in ((), ("--again",)):
        refused = _send(cli, *extra)
        assert refused.exit_code == 1 and "sending" in refused.stderr and "right now" in refused.stderr
        assert "campaigns resume 1" in refused.stderr and "Traceback" not in refused.stderr
    later = cli("schedule", "articles/welcome.md", "--list", "readers", "--at", LATER, "--again")
    assert later.exit_code == 1 and "right now" in later.stderr
    assert len(MemoryTransport.shared_outbox) == 1


def test_schedule_refuses_an_edition_already_sent_or_scheduled(workspace, cli, tmp_path):
    populate(cli, tmp_path, 2)
    MemoryTransport.clear_shared()
    assert _send(cli).exit_code == 0
    args = ("schedule", "articles/welcome.md", "--list", "readers", "--at", LATER, "--json")
    refused = cli(*args)
    assert refused.exit_code == 1 and "--again" in refused.stderr and "campaigns show 1" in refused.stderr
    scheduled = cli(*args, "--again")
    assert scheduled.exit_code == 0, scheduled.stderr
    campaign_id = scheduled.json()["campaign_id"]
    twice = cli(*args)
    assert twice.exit_code == 1 and f"already scheduled for readers (campaign {campaign_id})" in twice.stderr
    for command, verb in (("send", "Send"), ("schedule", "Schedule")):
        help_text = " ".join(cli(command, "--help").stdout.split())
        assert f"--again {verb} it even though this list already received this edition" in help_text


def test_a_campaign_every_recipient_failed_ends_failed_and_can_be_retried(workspace, cli, tmp_path):
    emails = populate(cli, tmp_path, 3)
    with SmtpServer() as server:
        for email in emails:
            server.handler.rcpt_faults[email] = (550, "mailbox unavailable")
        os.environ["NEWSLETTER_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}?tls=none"
        try:
            result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp", "--json")
            assert result.exit_code == 2 and result.json()["status"] == "failed"
            assert "Nobody received campaign 1" in result.stderr
            shown = cli("campaigns", "show", "1")
            assert "failed" in shown.stdout and "Nobody received this campaign" in shown.stdout
            assert cli("campaigns", "show", "1", "--json").json()["status"] == "failed"
            assert [c["id"] for c in cli("campaigns", "list", "--status", "failed", "--json").json()] == [1]
            server.handler.rcpt_faults.clear()
            retried = cli("campaigns", "retry", "1", "--failed", "--json")
        finally:
            del os.environ["NEWSLETTER_SMTP_URL"]
    assert retried.exit_code == 0 and retried.json()["status"] == "sent" and retried.json()["sent"] == 3
    assert sorted(r for m in server.handler.messages for r in m.rcpt_tos) == sorted(emails)


def test_a_campaign_whose_every_request_was_dropped_ends_failed(workspace, cli, tmp_path, monkeypatch):
    emails = populate(cli, tmp_path, 5)
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
        server.fail_next("drop")
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "sendgrid", "--json")
        assert result.json()["status"] == "failed" and result.json()["counts"]["unknown"] == 5
        assert "campaigns retry 1 --unknown" in result.stderr
        retried = cli("campaigns", "retry", "1", "--unknown", "--json")
        assert retried.exit_code == 0 and retried.json()["status"] == "sent"
        assert sorted(to["email"] for b in server.bodies for p in b["personalizations"] for to in p["to"]) == \
            sorted(emails)


def test_the_guard_with_a_hostile_title_and_list_name(workspace, cli, tmp_path):
    """Accents, quotes, an emoji and a very long title: the same edition is still recognised, in one line."""
    title = "Café « naïve » — Renée's \"special\" édition 🚀 " + "très longue " * 12
    article = tmp_path / "hostile.md"
    article.write_text(f"---\ntitle: '{title.replace(chr(39), chr(39) * 2)}'\n---\n\nBonjour à tous, ça va ?\n",
                       encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text("email,name\nrenee@example.org,\"Dupont, Renée\"\nzoe@example.org,Zoë\n", encoding="utf-8")
    list_name = "Patients-Crème"
    assert cli("subscribers", "import", str(people), "--list", list_name).exit_code == 0
    MemoryTransport.clear_shared()
    first = cli("send", str(article), "--list", list_name, "--yes", "--transport", "memory", "--json")
    assert first.exit_code == 0, first.stderr
    again = cli("send", str(article), "--list", list_name, "--yes", "--transport", "memory")
    assert again.exit_code == 1 and "Traceback" not in again.stderr
    assert f"already sent to {list_name}: campaign 1 sent it to 2 subscriber(s)" in again.stderr
    assert "--again" in again.stderr
    assert len(MemoryTransport.shared_outbox) == 2


def test_again_makes_no_sense_with_a_recurring_schedule(workspace, cli, tmp_path):
    populate(cli, tmp_path, 1)
    result = cli("schedule", "articles", "--list", "readers", "--cron", "0 9 * * MON", "--again")
    assert result.exit_code == 1 and "--again" in result.stderr and "Traceback" not in result.stderr
    assert cli("campaigns", "recurring", "--json").json() == []
