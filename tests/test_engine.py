"""The send engine: ledger, batches, faults, resume and retry, on both backends.

Real parts: the official sendgrid client against tests/fake_sendgrid.py (every
body validated against SendGrid's spec), the SMTP transport against a real
aiosmtpd server, and the CLI in-process.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.store.db import open_store

from fake_sendgrid import FakeSendGrid
from support.cli import populate

API_KEY = "SG.engine-test.secret-value"


def sendgrid_env(monkeypatch, server: FakeSendGrid) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")


def recipients_of(server: FakeSendGrid) -> list[str]:
    return [to["email"] for body in server.bodies for p in body["personalizations"] for to in p["to"]]


@pytest.fixture
def sendgrid(monkeypatch):
    with FakeSendGrid(api_key=API_KEY) as server:
        sendgrid_env(monkeypatch, server)
        yield server


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    """The SendGrid transport's waits (backoff, X-RateLimit-Reset) take no real time here.

    Returns the waits asked for, in seconds."""
    from newsletter.delivery import retry

    waits: list[float] = []
    monkeypatch.setattr(retry, "pause", waits.append)
    return waits


def test_click_tracking_and_the_web_version_cost_per_edition_not_per_recipient(workspace, cli, tmp_path, sendgrid):
    """Aggregate click tracking (the default) and the web version's URL are the same for every reader:
    they are filled into the request's shared content once, never sent as substitutions per recipient."""
    import re
    import shutil

    emails = populate(cli, tmp_path, 1500)
    shutil.copy(Path(__file__).parent / "articles" / "front-matter-budget.md", Path("articles") / "budget.md")
    result = cli("send", "articles/budget.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    campaign_id = result.json()["campaign_id"]
    assert sorted(recipients_of(sendgrid)) == sorted(emails) and len(sendgrid.bodies) == 2
    contents = {tuple(part["value"] for part in body["content"]) for body in sendgrid.bodies}
    assert len(contents) == 1  # one content for everyone: nothing of a reader in it
    (text, html), = contents
    links = re.findall(r'href="https://news\.clinic\.example/c/([^"]+)"', html)
    assert links and all(re.fullmatch(rf"{campaign_id}\.\d+\.[\w-]{{16}}", token) for token in links)
    assert 'href="https://news.clinic.example/archive/' in html and "%%web_url" not in html + text
    assert "%%click_ref" not in html + text and "%%open_ref" not in html + text
    for body in sendgrid.bodies:
        for personalization in body["personalizations"]:
            fields = {key.strip("%").split(":")[0] for key in personalization["substitutions"]}
            assert fields == {"first_name", "email", "unsubscribe_url", "preferences_url"}


def test_send_through_sendgrid_one_request_per_thousand(workspace, cli, tmp_path, sendgrid):
    emails = populate(cli, tmp_path, 2500)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["campaign_id"] and report["sent"] == 2500 and report["status"] == "sent"
    assert len(sendgrid.bodies) == 3  # 1,000 + 1,000 + 500, each validated against the spec
    assert sorted(recipients_of(sendgrid)) == sorted(emails)
    body = sendgrid.bodies[0]
    first = body["personalizations"][0]
    assert first["headers"]["List-Unsubscribe"].startswith("<https://news.clinic.example/unsubscribe/")
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert set(first["custom_args"]) >= {"campaign_id", "subscriber_id", "message_id"}
    assert all(isinstance(v, str) for v in first["custom_args"].values())
    assert first["substitutions"]["%%first_name:raw%%"] == "Reader"  # the greeting (text part)
    assert first["substitutions"]["%%email%%"] == "reader0@example.org"
    shown = cli("campaigns", "show", str(report["campaign_id"]), "--json").json()
    assert shown["status"] == "sent"
    assert shown["counts"] == {"pending": 0, "sending": 0, "sent": 2500, "failed": 0, "unknown": 0, "skipped": 0}
    deliveries = cli("subscribers", "show", "reader7@example.org", "--json").json()["deliveries"]
    assert [(d["campaign_id"], d["status"]) for d in deliveries] == [(report["campaign_id"], "sent")]


def test_429_and_500_lose_and_double_nothing(workspace, cli, tmp_path, sendgrid, _fast_retries):
    emails = populate(cli, tmp_path, 1500)
    sendgrid.fail_next(429, times=2, reset_in=1)
    sendgrid.fail_next(500)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    sent = recipients_of(sendgrid)
    assert sorted(sent) == sorted(emails)  # each exactly once
    assert sendgrid.requests == 2 + 3  # the faulted attempts, then two accepted batches
    assert len(_fast_retries) == 3 and all(wait > 0 for wait in _fast_retries)  # waited, in no real time


def test_401_pauses_at_once_with_a_hint_and_keeps_rows_pending(workspace, cli, tmp_path, sendgrid, monkeypatch):
    populate(cli, tmp_path, 1500)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong.key-that-must-not-leak")
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes")
    assert result.exit_code == 1, result.stderr
    said = " ".join((result.stderr + result.stdout).split())
    assert "Paused: the relay refused the login" in said and "SENDGRID_API_KEY" in said
    assert "resume it with: newsletter campaigns resume 1" in said and "Traceback" not in said
    assert "key-that-must-not-leak" not in said
    assert sendgrid.requests == 1
    shown = cli("campaigns", "show", "1", "--json").json()
    assert shown["status"] == "paused" and "SENDGRID_API_KEY" in shown["pause_reason"]
    assert shown["counts"]["pending"] == 1500 and shown["counts"]["sent"] == 0
    assert "key-that-must-not-leak" not in (shown["error"] or "") + shown["pause_reason"]
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    resumed = cli("campaigns", "resume", "1", "--json")
    assert resumed.exit_code == 0 and resumed.json()["status"] == "sent"
    assert len(recipients_of(sendgrid)) == 1500


def test_dropped_connection_leaves_unknown_rows_listed_not_resent(workspace, cli, tmp_path, sendgrid):
    emails = populate(cli, tmp_path, 1200)
    sendgrid.fail_next("drop")
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0  # unknown rows do not change the exit code...
    assert "campaigns retry 1 --unknown" in result.stderr  # ...but are announced with the command
    shown = cli("campaigns", "show", "1", "--json").json()
    assert shown["counts"]["unknown"] == 1000 and shown["counts"]["sent"] == 200
    assert shown["status"] == "sent" and len(shown["unknown"]) == 50  # the first 50 listed
    again = cli("campaigns", "resume", "1", "--json").json()
    assert again["sent"] == 0 and len(recipients_of(sendgrid)) == 200  # nothing re-sent blindly
    retried = cli("campaigns", "retry", "1", "--unknown", "--json")
    assert retried.exit_code == 0 and retried.json()["sent"] == 1000
    assert sorted(recipients_of(sendgrid)) == sorted(emails)


def test_failed_recipients_exit_2_and_retry_failed(workspace, cli, tmp_path):
    populate(cli, tmp_path, 5)
    MemoryTransport.clear_shared()
    store, settings = open_store(load_settings()), load_settings()
    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import retry_campaign, start_campaign

    edition = compose_edition("articles/welcome.md", settings)
    campaign_id = create_campaign(store, settings, edition, "readers", "memory")
    report = start_campaign(store, settings, campaign_id,
                            MemoryTransport(reject={"reader1@example.org"}, fail={"reader2@example.org"}))
    assert (report.sent, report.failed, report.status) == (3, 2, "sent")
    shown = cli("campaigns", "show", str(campaign_id), "--json").json()
    assert {r["email"] for r in shown["failed"]} == {"reader1@example.org", "reader2@example.org"}
    report = retry_campaign(store, settings, campaign_id, MemoryTransport(), "failed")
    assert report.sent == 2 and report.counts["failed"] == 0
    assert sorted(m["To"] for m in MemoryTransport.shared_outbox).count("Reader 1 <reader1@example.org>") == 1
    store.close()


def test_cli_exit_code_2_when_recipients_failed(workspace, cli, tmp_path):
    from smtp_server import SmtpServer

    populate(cli, tmp_path, 4)
    with SmtpServer() as server:
        server.handler.rcpt_faults["reader3@example.org"] = (550, "no such user")
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp")
        assert result.exit_code == 1 and "NEWSLETTER_SMTP_URL" in result.stderr  # not configured yet
        import os

        os.environ["NEWSLETTER_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}?tls=none"
        try:
            result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp")
        finally:
            del os.environ["NEWSLETTER_SMTP_URL"]
        assert result.exit_code == 2, result.stderr
        assert "campaigns retry 1 --failed" in result.stderr
        received = [rcpt for m in server.handler.messages for rcpt in m.rcpt_tos]
        assert sorted(received) == ["reader0@example.org", "reader1@example.org", "reader2@example.org"]
        message = server.handler.messages[0].parsed()
        assert message["List-Unsubscribe"].startswith("<https://news.clinic.example/unsubscribe/")
        assert message.get_content_type() == "multipart/alternative"
        assert all(len(line) <= 998 for line in server.handler.messages[0].data.split(b"\r\n"))


def test_unsubscribe_during_the_send_is_honoured(workspace, cli, tmp_path):
    populate(cli, tmp_path, 30)
    settings = dataclasses.replace(load_settings(), batch_size=10)
    store = open_store(settings)
    from newsletter.audience.manage import unsubscribe
    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign

    campaign_id = create_campaign(store, settings, compose_edition("articles/welcome.md", settings), "readers",
                                  "memory")
    transport = MemoryTransport()

    def leave_after_first_batch(done, total):
        if done == 10:
            unsubscribe(store, "reader25@example.org", "readers")
            unsubscribe(store, "reader26@example.org")

    report = start_campaign(store, settings, campaign_id, transport, on_progress=leave_after_first_batch)
    sent_to = {m["To"].addresses[0].addr_spec for m in transport.outbox}
    assert "reader25@example.org" not in sent_to and "reader26@example.org" not in sent_to
    assert len(sent_to) == 28 and report.skipped == 2
    assert report.counts["skipped"] == 2 and report.status == "sent"
    assert len(transport.batches) == 3
    store.close()


def test_limit_pauses_and_resume_finishes_without_doubles(workspace, cli, tmp_path):
    populate(cli, tmp_path, 7)
    MemoryTransport.clear_shared()
    first = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "memory",
                "--limit", "3", "--json").json()
    assert first["status"] == "paused" and first["sent"] == 3 and first["counts"]["pending"] == 4
    listed = cli("campaigns", "list", "--json").json()
    assert listed[0]["id"] == first["campaign_id"] and listed[0]["status"] == "paused"
    second = cli("campaigns", "resume", str(first["campaign_id"]), "--json").json()
    assert second["status"] == "sent" and second["sent"] == 4
    addresses = [m["To"].addresses[0].addr_spec for m in MemoryTransport.shared_outbox]
    assert sorted(addresses) == sorted(f"reader{i}@example.org" for i in range(7))


def test_send_refuses_without_postal_address_empty_list_or_failed_check(workspace, cli, tmp_path, monkeypatch):
    cli("lists", "create", "empty")
    empty = cli("send", "articles/welcome.md", "--list", "empty", "--yes")
    assert empty.exit_code == 1 and "no confirmed" in empty.stderr
    populate(cli, tmp_path, 2)
    broken = tmp_path / "broken.md"
    broken.write_text("---\ntitle: A broken issue of the letter\nrecently_published:\n  title: Older post\n---\n"
                      "\nBody.\n")
    failed_check = cli("send", str(broken), "--list", "readers", "--yes")
    assert failed_check.exit_code == 1 and "--recent-url" in failed_check.stderr
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", "")
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace('postal_address = "1 Main Street, Springfield"',
                                                 'postal_address = ""'))
    no_address = cli("send", "articles/welcome.md", "--list", "readers", "--yes")
    assert no_address.exit_code == 1 and "postal_address" in no_address.stderr
    assert cli("campaigns", "list", "--json").json() == []


def test_dry_run_shows_audience_and_a_sample_and_sends_nothing(workspace, cli, tmp_path):
    populate(cli, tmp_path, 3)
    MemoryTransport.clear_shared()
    result = cli("send", "articles/welcome.md", "--list", "readers", "--dry-run", "--transport", "memory", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["audience"] == 3 and data["campaign_id"] is None
    sample = Path(data["sample"]).read_text()
    assert "To: Reader 0 <reader0@example.org>" in sample and "List-Unsubscribe: <https://" in sample
    assert MemoryTransport.shared_outbox == [] and cli("campaigns", "list", "--json").json() == []


def test_without_yes_it_asks_and_a_no_sends_nothing(workspace, cli, tmp_path):
    populate(cli, tmp_path, 2)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--transport", "memory", input="n\n")
    assert result.exit_code == 1 and "Send 'Welcome to our newsletter' to 2 subscribers" in result.stderr
    assert cli("campaigns", "list", "--json").json() == []


def test_a_campaign_starts_only_once(workspace, cli, tmp_path):
    populate(cli, tmp_path, 3)
    settings = load_settings()
    store = open_store(settings)
    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign
    from newsletter.errors import Conflict

    campaign_id = create_campaign(store, settings, compose_edition("articles/welcome.md", settings), "readers",
                                  "memory")
    start_campaign(store, settings, campaign_id, MemoryTransport())
    with pytest.raises(Conflict):
        start_campaign(store, settings, campaign_id, MemoryTransport())
    store.close()


def test_several_processes_send_each_recipient_once(workspace, cli, tmp_path, monkeypatch):
    from newsletter.engine import parallel

    children = []  # the sending processes the parent followed
    follow = parallel._follow
    monkeypatch.setattr(parallel, "_follow", lambda started, *args: children.extend(started) or follow(started, *args))
    emails = populate(cli, tmp_path, 300)
    settings = dataclasses.replace(load_settings(), batch_size=40)
    store = open_store(settings)
    from newsletter.compose.edition import compose_edition
    from newsletter.delivery import get_transport
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign

    campaign_id = create_campaign(store, settings, compose_edition("articles/welcome.md", settings), "readers",
                                  "file")
    seen = []
    report = start_campaign(store, settings, campaign_id, get_transport(settings, "file"), processes=3,
                            on_progress=lambda done, total: seen.append(done))
    store.close()
    assert report.status == "sent" and report.sent == 300 and report.counts["sent"] == 300
    assert seen[-1] == 300
    written = [path.read_text() for path in (workspace / "outbox").glob("*.eml")]
    recipients = sorted(line.split("<")[-1].rstrip(">") for text in written for line in text.splitlines()
                        if line.startswith("To: "))
    assert recipients == sorted(emails)
    # three child processes sent (the parent sends nothing in-line on this path), and all finished well
    assert len(children) == 3 and len({child.pid for child in children} - {os.getpid()}) == 3
    assert [child.exitcode for child in children] == [0, 0, 0]


def test_the_loop_heap_freeze_collects_first_nests_and_always_thaws():
    """The send loop leaves the heap that existed before it out of the collector's full passes
    (gc.freeze): garbage is collected first (a dropped store's connections never wait frozen),
    a nested loop leaves the outer freeze alone, and the heap is thawed after, even on an error."""
    import gc
    import weakref

    from newsletter.engine.sender import _heap_frozen

    class Cycle:
        pass

    assert gc.get_freeze_count() == 0
    cycle = Cycle()
    cycle.me = cycle
    gone = weakref.ref(cycle)
    del cycle
    with _heap_frozen():
        assert gone() is None  # collected before the freeze
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with _heap_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # the inner one did not thaw the outer's
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), _heap_frozen():
        raise RuntimeError("a batch failed")
    assert gc.get_freeze_count() == 0
    with _heap_frozen(wanted=False):
        assert gc.get_freeze_count() == 0  # a small send: no freeze
