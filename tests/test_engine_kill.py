"""A send killed with SIGKILL mid-way, then resumed: nothing lost, nothing acknowledged sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from smtp_server import SmtpServer
from support.cli import populate


def _slow(handler, seconds: float) -> None:
    """Make the server take ``seconds`` per message, so the kill lands mid-send."""
    original = handler.handle_DATA

    async def handle_DATA(server, session, envelope):
        await asyncio.sleep(seconds)
        return await original(server, session, envelope)

    handler.handle_DATA = handle_DATA


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sigkill_then_resume_sends_each_acknowledged_recipient_once(workspace, cli, tmp_path, monkeypatch, processes):
    emails = populate(cli, tmp_path, 400)
    monkeypatch.setenv("NEWSLETTER_SEND_PROCESSES", processes)
    with SmtpServer() as server:
        _slow(server.handler, 0.01)
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none&connections=2")
        sender = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", "articles/welcome.md", "--list", "readers", "--yes",
             "--transport", "smtp"],
            cwd=workspace, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(server.handler.messages) < 150 and time.monotonic() < deadline and sender.poll() is None:
            time.sleep(0.01)
        assert sender.poll() is None, sender.stderr.read().decode()
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        settled = len(server.handler.messages)
        time.sleep(0.5)  # sending processes die with the one killed: nothing more arrives
        assert len(server.handler.messages) - settled <= 2 * 2  # at most what was mid-DATA per connection
        before = cli("campaigns", "show", "1", "--json").json()
        assert before["status"] == "sending" and before["counts"]["pending"] > 0

        resumed = cli("campaigns", "resume", "1", "--json")
        assert resumed.exit_code == 0, resumed.stderr
        after = cli("campaigns", "show", "1", "--json").json()

    received = [rcpt for message in server.handler.messages for rcpt in message.rcpt_tos]
    assert len(received) == len(set(received)), "a recipient got the message twice"
    counts = after["counts"]
    assert after["status"] == "sent"
    assert counts["pending"] == counts["sending"] == counts["failed"] == 0
    assert counts["sent"] + counts["unknown"] == len(emails)
    assert 0 < counts["unknown"] <= 100 * int(processes)  # at most the batches in flight
    assert set(received) >= _emails_with_status("sent")  # every acknowledged row really arrived
    assert set(received) <= set(emails)


def _emails_with_status(status: str) -> set[str]:
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.store.models import Delivery
    from sqlalchemy import select

    store = open_store(load_settings())
    with store.session() as session:
        found = set(session.scalars(select(Delivery.email).where(Delivery.status == status)))
    store.close()
    return found
