"""``newsletter run`` as a real process: on time, restarts, misfires, two daemons, SIGTERM, cron.

Each test starts ``python -m newsletter run`` in a workspace on SQLite or
PostgreSQL with a sub-second sync and a short lease; the ``file`` transport
writes each message into outbox/, so counting files counts sends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
UTC = UTC
READERS = 3


@pytest.fixture
def letter(workspace, cli):
    shutil.copy(ARTICLE, workspace / "articles" / "budget.md")
    for n in range(READERS):
        assert cli("subscribers", "add", f"reader{n}@example.org", "--list", "readers").exit_code == 0
    return workspace


class Daemon:
    """A ``newsletter run`` child process with its log in a file."""

    count = 0

    def __init__(self, folder: Path, *args: str):
        Daemon.count += 1
        self.log_path = folder / f"daemon{Daemon.count}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "run", "--sync-interval", "0.2", "--lease-seconds", "1.5", *args],
            cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy())

    def text(self) -> str:
        return self.log_path.read_text()

    # The waits below end at the event they wait for; their deadlines are only
    # there to fail a stuck test, so they allow for a loaded CI machine.
    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.process.poll() is not None and needle not in self.text():
                raise AssertionError(f"daemon exited {self.process.returncode} before {needle!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in the daemon log:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.log.close()
        return code


@contextmanager
def started_daemons(folder: Path) -> Iterator[Callable[..., Daemon]]:
    """A starter of `newsletter run` processes in ``folder``; on exit, those still running are killed."""
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        daemon = Daemon(folder, *args)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()


@pytest.fixture
def daemons(letter):
    with started_daemons(letter) as start:
        yield start


def at(seconds: float) -> str:
    """At least ``seconds`` from now, in whole seconds (rounded up: never already past)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return (moment + timedelta(microseconds=-moment.microsecond % 1_000_000)).strftime("%Y-%m-%dT%H:%M:%S")


def schedule(cli, seconds: float) -> int:
    # --again: these tests schedule one article several times on purpose (the duplicate-send guard's override)
    result = cli("schedule", "articles/budget.md", "--list", "readers", "--at", at(seconds), "--again", "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()["campaign_id"]


def sent_files(folder: Path) -> int:
    return len(list((folder / "outbox").glob("*.eml")))


def due_time(cli, campaign_id: int) -> datetime:
    """When the campaign is scheduled to go out (UTC)."""
    return datetime.fromisoformat(cli("campaigns", "show", campaign_id, "--json").json()["scheduled_at"])


def wait_until(condition, timeout: float = 60) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds (a stuck test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def wait_status(cli, campaign_id: int, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        shown = cli("campaigns", "show", campaign_id, "--json").json()
        if shown["status"] == status or time.monotonic() > deadline:
            assert shown["status"] == status, shown
            return shown
        time.sleep(0.1)


def test_send_fires_on_time_when_scheduled_while_the_daemon_runs(letter, cli, daemons):
    daemon = daemons()
    daemon.wait_for("scheduler started")
    campaign_id = schedule(cli, 1.5)
    scheduled_at = datetime.fromisoformat(cli("campaigns", "show", campaign_id, "--json").json()["scheduled_at"])
    shown = wait_status(cli, campaign_id, "sent")
    started = datetime.fromisoformat(shown["started_at"])
    # never early; late only by what a loaded machine adds to a 0.2 s sync (not by a minute or a restart)
    assert scheduled_at - timedelta(seconds=0.5) <= started <= scheduled_at + timedelta(seconds=10)
    assert shown["counts"]["sent"] == READERS and sent_files(letter) == READERS
    assert daemon.stop() == 0
    log = daemon.text()
    assert f"campaign {campaign_id}: starting" in log and f"campaign {campaign_id}: sent" in log
    assert "newsletter run: stopped" in log


def test_killed_before_the_time_and_restarted_within_the_grace_sends_once(letter, cli, daemons):
    first = daemons()
    first.wait_for("scheduler started")
    campaign_id = schedule(cli, 1.5)
    first.wait_for(f"campaign {campaign_id}: queued")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    due = due_time(cli, campaign_id)
    wait_until(lambda: datetime.now(UTC) > due)  # the time passes while no daemon runs
    assert cli("campaigns", "show", campaign_id, "--json").json()["status"] == "scheduled"
    second = daemons()  # the dead daemon's lease is taken at once (its process is gone)
    shown = wait_status(cli, campaign_id, "sent")
    assert shown["counts"]["sent"] == READERS and sent_files(letter) == READERS
    third_look = cli("campaigns", "show", campaign_id, "--json").json()
    assert third_look["counts"]["sent"] == READERS
    assert second.stop() == 0


def test_beyond_the_grace_the_campaign_is_missed_and_listed(letter, cli, daemons):
    config = letter / "newsletter.toml"
    config.write_text(re.sub(r"(?m)^misfire_grace_seconds = .*$", "misfire_grace_seconds = 1", config.read_text()))
    campaign_id = schedule(cli, 1)
    missed_from = due_time(cli, campaign_id) + timedelta(seconds=1)  # grace 1 s
    wait_until(lambda: datetime.now(UTC) > missed_from)  # missed by the time a daemon starts
    daemon = daemons()
    shown = wait_status(cli, campaign_id, "missed")
    assert "missed" in shown["error"] and shown["counts"]["sent"] == 0
    time.sleep(0.5)
    assert sent_files(letter) == 0
    listed = cli("campaigns", "list", "--status", "missed", "--json").json()
    assert [row["id"] for row in listed] == [campaign_id]
    assert "missed" in cli("campaigns", "list").stdout
    assert daemon.stop() == 0
    assert f"campaign {campaign_id} missed" in daemon.text()
    # a missed campaign can be sent later on purpose
    moved = cli("campaigns", "reschedule", campaign_id, "--at", at(3600))
    assert moved.exit_code == 0, moved.stderr


def test_cancel_and_reschedule_while_the_daemon_runs(letter, cli, daemons):
    daemon = daemons()
    daemon.wait_for("scheduler started")
    cancelled = schedule(cli, 1.5)
    moved = schedule(cli, 1.5)
    assert cli("campaigns", "cancel", cancelled).exit_code == 0
    first_time = due_time(cli, moved)
    assert cli("campaigns", "reschedule", moved, "--at", at(3.5)).exit_code == 0
    # past the first time by a few syncs (0.2 s): a daemon that kept the old time would have sent
    wait_until(lambda: datetime.now(UTC) > first_time + timedelta(seconds=0.6))
    assert sent_files(letter) == 0
    assert cli("campaigns", "show", moved, "--json").json()["status"] == "scheduled"
    wait_status(cli, moved, "sent")
    assert cli("campaigns", "show", cancelled, "--json").json()["status"] == "cancelled"
    assert sent_files(letter) == READERS
    late = cli("campaigns", "cancel", moved)
    assert late.exit_code == 1 and "already started" in late.stderr
    assert daemon.stop() == 0


def test_two_daemons_send_once_and_the_second_takes_over_an_expired_lease(letter, cli, daemons):
    first = daemons()
    first.wait_for("scheduler started")
    second = daemons()
    assert second.process.wait(60) == 1  # a bound, not a sleep: start-up on a loaded machine
    assert "another newsletter run holds the scheduler lease" in second.text() and "Traceback" not in second.text()
    campaign_id = schedule(cli, 1.5)
    standby = daemons("--wait")
    standby.wait_for("waiting for the scheduler lease")
    wait_status(cli, campaign_id, "sent")
    assert first.stop() == 0  # releases the lease: the standby takes over
    standby.wait_for("scheduler started")
    again = schedule(cli, 1.5)
    wait_status(cli, again, "sent")
    assert sent_files(letter) == 2 * READERS
    assert standby.stop() == 0


def test_sigterm_mid_send_finishes_the_batch_and_the_next_daemon_continues(letter, cli, daemons):
    for n in range(READERS, 20):
        cli("subscribers", "add", f"reader{n}@example.org", "--list", "readers")
    config = letter / "newsletter.toml"
    # one batch of 5 a second: the signal lands while later batches are still due
    text = re.sub(r"(?m)^rate = .*$", "rate = 5", config.read_text())
    config.write_text(re.sub(r"(?m)^batch_size = .*$", "batch_size = 5", text))
    daemon = daemons()
    daemon.wait_for("scheduler started")
    campaign_id = schedule(cli, 1)
    daemon.wait_for(f"campaign {campaign_id}: starting")
    wait_until(lambda: sent_files(letter) > 0)  # mid-send: the first batch is out
    assert daemon.stop() == 0, daemon.text()
    assert "the next newsletter run continues it" in daemon.text()
    paused = cli("campaigns", "show", campaign_id, "--json").json()
    assert paused["counts"]["sending"] == 0 and 0 < paused["counts"]["sent"] < 20
    assert paused["counts"]["sent"] % 5 == 0  # whole batches only
    restarted = daemons()
    shown = wait_status(cli, campaign_id, "sent")
    assert shown["counts"]["sent"] == 20 and sent_files(letter) == 20
    assert restarted.stop() == 0
    assert "resuming" in restarted.text()


def test_recurring_folder_sends_the_newest_then_skips(letter, cli, daemons):
    folder = letter / "weekly"
    folder.mkdir()
    shutil.copy(ARTICLE, folder / "issue-1.md")
    created = cli("schedule", "weekly", "--list", "readers", "--cron", "* * * * * *", "--json")
    assert created.exit_code == 0, created.stderr
    daemon = daemons()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        runs = cli("campaigns", "recurring", "--json").json()[0]["runs"]
        if any(r["outcome"] == "skipped" for r in runs):
            break
        time.sleep(0.2)
    assert daemon.stop() == 0
    outcomes = [r["outcome"] for r in reversed(runs)]
    assert outcomes[0] == "sent" and "skipped" in outcomes and outcomes.count("sent") == 1
    assert sent_files(letter) == READERS
