"""Sequences in the real daemon (``python -m newsletter run``), killed with SIGKILL and restarted.

The clock is shortened rather than faked: steps say ``after: 3s`` (the same
rules as ``3d``, tests/test_sequences.py checks the rules themselves with an
injected clock). The ``file`` transport writes one file per message into
outbox/; the ledger's ``attempts`` shows whether a row was ever claimed
twice. The kill in the middle of a send uses the stand-in SMTP server,
which records every message it accepts, so a message sent twice is seen.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from smtp_server import SmtpServer
from test_daemon import started_daemons, wait_until

WELCOME, TIPS, STORIES = "Welcome aboard", "Three tips for your first week", "Stories from our readers"


def write_steps(folder: Path, steps) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, (title, after) in enumerate(steps, 1):
        (folder / f"{n:02d}.md").write_text(f"---\ntitle: {title}\nafter: {after}\n---\n\n"
                                            f"Hello, this is *{title.lower()}*, a short paragraph to read.\n")


def set_option(workspace: Path, key: str, value: str) -> None:
    config = workspace / "newsletter.toml"
    text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", config.read_text())
    assert count == 1
    config.write_text(text)


@pytest.fixture
def daemons(workspace):
    with started_daemons(workspace) as start:
        yield start


def create(cli, *extra: str) -> None:
    result = cli("sequences", "create", "onboarding", "--list", "readers", "--folder", "sequences/onboarding", *extra)
    assert result.exit_code == 0, result.stderr


def dry_run(cli) -> list[dict]:
    return cli("sequences", "show", "onboarding", "--dry-run", "--days", "1", "--json").json()["rows"]


def steps_of(cli) -> list[dict]:
    return cli("sequences", "show", "onboarding", "--json").json()["steps"]


def outbox(workspace: Path) -> Counter:
    """(address, subject) -> messages in outbox/."""
    found = Counter()
    for path in (workspace / "outbox").glob("*.eml"):
        if path.name.startswith(".tmp-"):  # the file transport's file being written, renamed when whole
            continue
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[(message["To"].addresses[0].addr_spec, str(message["Subject"]))] += 1
    return found


def ledger_rows() -> list[tuple[str, int, str, int]]:
    """(email, step, status, attempts) of every sequence ledger row."""
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.store.models import Delivery
    from newsletter.store.sequences import SequenceCampaign
    from sqlalchemy import select

    store = open_store(load_settings())
    with store.session() as session:
        rows = session.execute(select(Delivery.email, SequenceCampaign.position, Delivery.status, Delivery.attempts)
                               .join(SequenceCampaign, SequenceCampaign.campaign_id == Delivery.campaign_id)).all()
    store.close()
    return [tuple(row) for row in rows]


def test_welcome_within_seconds_then_killed_and_restarted_every_step_goes_once(workspace, cli, daemons):
    write_steps(workspace / "sequences" / "onboarding", [(WELCOME, "0s"), (TIPS, "4s"), (STORIES, "2s")])
    assert cli("subscribers", "add", "early@example.org", "--list", "readers").exit_code == 0
    create(cli)
    first = daemons()
    first.wait_for("scheduler started")
    joined = time.monotonic()
    readers = [f"reader{n}@example.org" for n in range(3)]
    for email in readers:
        assert cli("subscribers", "add", email, "--list", "readers").exit_code == 0
    wait_until(lambda: sum(outbox(workspace).values()) == 3)
    assert time.monotonic() - joined < 60  # "within a minute" of joining; here within a few sync intervals
    assert outbox(workspace) == Counter({(email, WELCOME): 1 for email in readers})
    wait_until(lambda: steps_of(cli)[0]["sent"] == 3)  # the outcomes are committed just after the files appear
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # killed while the next steps wait for their time
    assert [(s["sent"], s["pending"]) for s in steps_of(cli)] == [(3, 0), (0, 3), (0, 3)]
    due = next(r for r in dry_run(cli) if r["step"] == 1)["when"]
    wait_until(lambda: datetime.now(UTC) > datetime.fromisoformat(due))  # step 1's time comes while no daemon runs
    second = daemons()  # the dead daemon's lease is taken at once (its process is gone)
    wait_until(lambda: [s["sent"] for s in steps_of(cli)] == [3, 3, 3])
    assert outbox(workspace) == Counter({(email, subject): 1 for email in readers
                                         for subject in (WELCOME, TIPS, STORIES)})
    # each row was claimed once: nothing was sent, lost in a kill, and sent again
    assert sorted(ledger_rows()) == sorted((email, step, "sent", 1) for email in readers for step in range(3))
    assert second.stop() == 0
    assert "sequences: enrolled" in second.text() and "newsletter run: stopped" in second.text()
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert shown["readers"] == {"active": 0, "finished": 3, "stopped": 0}  # early@ was a member before: not enrolled


def _slow(handler, seconds: float) -> None:
    """Make the stand-in server take ``seconds`` per message, so the kill lands mid-send."""
    original = handler.handle_DATA

    async def handle_DATA(server, session, envelope):
        await asyncio.sleep(seconds)
        return await original(server, session, envelope)

    handler.handle_DATA = handle_DATA


def test_sigkill_in_the_middle_of_a_step_then_restart_sends_nobody_a_step_twice(workspace, cli, daemons, tmp_path,
                                                                             monkeypatch):
    from support.cli import populate

    emails = populate(cli, tmp_path, 60)
    write_steps(workspace / "sequences" / "onboarding", [(WELCOME, "0s"), (TIPS, "3s")])
    set_option(workspace, "batch_size", "10")
    with SmtpServer() as server:
        _slow(server.handler, 0.02)
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none&connections=1")
        create(cli, "--enrol-existing", "--transport", "smtp")
        first = daemons()
        wait_until(lambda: len(server.handler.messages) >= 25)  # halfway through the third batch of 10
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        time.sleep(0.3)  # whatever was mid-DATA lands now; nothing more comes from the dead daemon
        assert steps_of(cli)[0]["sent"] < 60
        second = daemons()
        wait_until(lambda: steps_of(cli)[1]["sent"] + steps_of(cli)[1]["unknown"] == 60, timeout=120)
        wait_until(lambda: steps_of(cli)[0]["pending"] == 0)
        assert second.stop() == 0
        received = Counter((rcpt, message.parsed()["Subject"]) for message in server.handler.messages
                           for rcpt in message.rcpt_tos)
    assert max(received.values()) == 1, "a reader got a step twice"
    welcome, tips = steps_of(cli)
    assert welcome["sent"] + welcome["unknown"] == 60 and welcome["failed"] == welcome["pending"] == 0
    assert 0 < welcome["unknown"] <= 10  # at most the batch in flight when the daemon died
    assert tips["sent"] == 60  # the next step went to everyone, after the restart
    welcomed = {rcpt for rcpt, subject in received if subject == WELCOME}
    assert welcomed >= {email for email, step, status, _ in ledger_rows() if step == 0 and status == "sent"}
    assert {rcpt for rcpt, subject in received if subject == TIPS} == set(emails)


def test_a_step_later_than_the_grace_is_skipped_and_recorded_not_sent_late(workspace, cli, daemons):
    write_steps(workspace / "sequences" / "onboarding", [(WELCOME, "0s"), (TIPS, "2s")])
    assert cli("lists", "create", "readers").exit_code == 0
    create(cli)
    first = daemons()
    first.wait_for("scheduler started")
    assert cli("subscribers", "add", "reader@example.org", "--list", "readers").exit_code == 0
    wait_until(lambda: steps_of(cli)[0]["sent"] == 1)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    set_option(workspace, "misfire_grace_seconds", "1")  # read by the next daemon at its start
    due = dry_run(cli)[0]["when"]
    wait_until(lambda: datetime.now(UTC) > datetime.fromisoformat(due) + timedelta(seconds=1.5))  # past the grace
    second = daemons()
    wait_until(lambda: steps_of(cli)[1]["skipped"] == 1)
    assert second.stop() == 0
    assert outbox(workspace) == Counter({("reader@example.org", WELCOME): 1})
    assert "later than the misfire grace" in second.text()
    rows = sorted(ledger_rows())
    assert rows == [("reader@example.org", 0, "sent", 1), ("reader@example.org", 1, "skipped", 0)]


def test_a_double_opt_in_confirmation_brings_the_welcome(workspace, cli, daemons):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store

    from support.web import Site

    write_steps(workspace / "sequences" / "onboarding", [(WELCOME, "0s"), (TIPS, "1w")])
    assert cli("lists", "create", "readers", "--double-opt-in").exit_code == 0
    create(cli)
    daemon = daemons()
    daemon.wait_for("scheduler started")
    added = cli("subscribers", "add", "reader@example.org", "--list", "readers", "--json")
    assert added.exit_code == 0, added.stderr
    link = added.json()["confirm_url"]
    time.sleep(0.6)  # three sync intervals: a pending member gets nothing
    assert outbox(workspace) == Counter()
    store = open_store(load_settings())
    try:
        site = Site(load_settings(), store, None)
        assert site.client.post(link.split("news.clinic.example", 1)[1]).status_code == 200
    finally:
        store.close()
    wait_until(lambda: outbox(workspace) == Counter({("reader@example.org", WELCOME): 1}))
    assert daemon.stop() == 0
