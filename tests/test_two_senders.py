"""Two senders, two hosts, one campaign on PostgreSQL: every address exactly once.

Issue 11's reproduction: ``newsletter send`` meets a long 429 wait; a
``newsletter run`` daemon on another machine (a different host name, through
``unshare --uts``) sees the campaign ``sending``. The daemon must take a
sender whose heartbeat is fresh for alive and leave it alone; and when a
sender really stops beating (frozen with SIGSTOP) and is taken over, it must
notice at its next write and stop without sending anything more.

The staleness limit is lowered to 2 s (NEWSLETTER_SENDER_STALE_SECONDS) so the
daemon's judgement comes within the test; the SendGrid stand-in counts what
it receives. Waits are on events (the stand-in's requests, log lines, rows),
with generous timeouts as a safety net.
"""

from __future__ import annotations

import os
import signal

import pytest

from support.cli import populate
from support.senders import campaign_row, ledger_counts, wait_until
from support.services import need_service
from support.two_hosts import HoldingSendGrid, Process, newsletter_argv, other_host_argv, unshare_available

API_KEY = "SG.two-senders.secret-value"
READERS = 30
STALE = "2"


@pytest.fixture
def letter(workspace, cli, tmp_path, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the two-host test runs on PostgreSQL (the issue's set-up); SQLite is one machine's file")
    if not unshare_available():
        need_service("unshare --uts (root) to run a daemon under another host name")
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace("batch_size = 1000", "batch_size = 10"))
    emails = populate(cli, tmp_path, READERS)
    return workspace, emails


def _env(server, database_url) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(SENDGRID_API_KEY=API_KEY, NEWSLETTER_SENDGRID_HOST=server.url, NEWSLETTER_TRANSPORT="sendgrid",
               NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SENDER_STALE_SECONDS=STALE)
    return env


def _store(database_url):
    from newsletter.store.db import Store

    return Store(database_url)


def test_a_send_in_a_long_429_wait_is_not_resumed_by_a_daemon_on_another_host(letter, database_url):
    workspace, emails = letter
    with HoldingSendGrid(api_key=API_KEY) as server:
        # The first request: 429 with a reset 8 s away (4 staleness limits); then two 500s (retried).
        server.fail_next(429, reset_in=8)
        server.fail_next(500, times=2)
        env = _env(server, database_url)
        sender = Process(newsletter_argv("send", "articles/welcome.md", "--list", "readers", "--yes", "--json"),
                         workspace, "sender", env)
        daemon = None
        store = _store(database_url)
        try:
            wait_until(lambda: server.requests >= 1, 60, "the sender's first request (the 429)")
            daemon = Process(other_host_argv(newsletter_argv("run", "--sync-interval", "0.2", "--lease-seconds", "2")),
                             workspace, "daemon", env)
            wait_until(lambda: "scheduler started" in daemon.text(), 60, "the daemon to start")
            assert "mail-2.clinic.example" in daemon.text()  # it runs "on another host"
            # The sender sits in its 429 wait with a batch in flight; its heartbeat keeps beating
            # for more than one staleness limit while the daemon syncs every 0.2 s.
            first_beat = campaign_row(store, 1).heartbeat_at
            wait_until(lambda: (campaign_row(store, 1).heartbeat_at or first_beat).timestamp()
                       - first_beat.timestamp() > 2 * float(STALE) or sender.process.poll() is not None,
                       60, "the sender to beat through its wait")
            assert sender.wait(120) == 0, sender.text()
        finally:
            if daemon is not None:
                daemon.process.send_signal(signal.SIGTERM)
                daemon.wait(60)
            sender.kill()
            store.close()
        received = server.recipients()
    assert "resuming" not in daemon.text() and "Traceback" not in daemon.text(), daemon.text()
    assert sorted(received) == sorted(emails)  # every address exactly once
    store = _store(database_url)
    try:
        counts = ledger_counts(store, 1)
        assert counts["sent"] == len(received) == READERS and counts["unknown"] == 0
        assert campaign_row(store, 1).status == "sent"
    finally:
        store.close()


def test_a_frozen_sender_taken_over_by_another_host_sends_nothing_more(letter, database_url):
    """SIGSTOP the sender with its first batch in flight; a daemon on another host takes over; the
    old sender, woken while the daemon is still at it, stops at its next write."""
    workspace, emails = letter
    with HoldingSendGrid(api_key=API_KEY, hold=(1, 2)) as server:
        env = _env(server, database_url)
        sender = Process(newsletter_argv("send", "articles/welcome.md", "--list", "readers", "--yes"),
                         workspace, "sender", env)
        daemon = None
        store = _store(database_url)
        try:
            assert server.held[1].wait(60), sender.text()  # the old sender's batch (rows 1-10) is at the provider
            sender.process.send_signal(signal.SIGSTOP)  # frozen: no heartbeat any more
            old_sender = campaign_row(store, 1).sender
            daemon = Process(other_host_argv(newsletter_argv("run", "--sync-interval", "0.2", "--lease-seconds", "2")),
                             workspace, "daemon", env)
            assert server.held[2].wait(90), daemon.text()  # the daemon took over and sends rows 11-20
            taken = campaign_row(store, 1)
            assert taken.sender != old_sender and taken.sender.startswith("mail-2.clinic.example:")
            assert ledger_counts(store, 1)["unknown"] == 10  # the old batch in flight, for the new owner
            server.let_go(1)  # the provider accepts the old batch...
            sender.process.send_signal(signal.SIGCONT)  # ...and the old sender wakes up
            assert sender.wait(60) == 1
            assert server.requests == 2  # it sent nothing after it was fenced
            server.let_go(2)
            wait_until(lambda: campaign_row(store, 1).status == "sent", 90, "the daemon to finish")
        finally:
            for held in (1, 2):
                server.let_go(held)
            if daemon is not None:
                daemon.process.send_signal(signal.SIGTERM)
                daemon.wait(60)
            sender.process.send_signal(signal.SIGCONT)
            sender.kill()
            store.close()
        received = server.recipients()
    assert "taken over by another sender" in sender.text() and "Traceback" not in sender.text(), sender.text()
    assert "Traceback" not in daemon.text(), daemon.text()
    assert sorted(received) == sorted(emails)  # every address exactly once
    store = _store(database_url)
    try:
        counts = ledger_counts(store, 1)
        # the old batch went out but stays unknown (the new owner cannot know); everything else is sent
        assert counts["sent"] == READERS - 10 and counts["unknown"] == 10 and counts["sending"] == 0
    finally:
        store.close()
