"""Scheduling through the CLI and the library, on SQLite and PostgreSQL (no daemon process here)."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from newsletter.errors import InputError
from newsletter.scheduling.times import parse_when, show

ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
UTC = UTC


def soon(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def letter(workspace, cli):
    """A workspace with an article and three readers: Paris, Tokyo and no zone."""
    shutil.copy(ARTICLE, workspace / "articles" / "budget.md")
    for email, zone in (("ada@example.org", "Europe/Paris"), ("bo@example.org", "Asia/Tokyo"),
                        ("cy@example.org", None)):
        args = ["subscribers", "add", email, "--list", "readers"] + (["--timezone", zone] if zone else [])
        assert cli(*args).exit_code == 0
    return workspace


def store_and_settings():
    from newsletter.config import load_settings
    from newsletter.store.db import open_store

    settings = load_settings()
    return open_store(settings), settings


# --- times and zones -----------------------------------------------------------

def test_times_are_stored_in_utc_and_shown_in_their_zone():
    now = datetime(2026, 11, 1, tzinfo=UTC)
    when = parse_when("2026-12-01 09:00", "America/New_York", now=now)
    assert when.utc == datetime(2026, 12, 1, 14, 0, tzinfo=UTC) and when.zone == "America/New_York"
    assert show(when.utc, when.zone) == "2026-12-01 09:00 EST"
    with_seconds = parse_when("2026-12-01T09:00:30", "Europe/Paris", now=now)
    assert with_seconds.utc == datetime(2026, 12, 1, 8, 0, 30, tzinfo=UTC)
    offset = parse_when("2026-12-01T09:00:00+02:00", None, now=now)
    assert offset.utc == datetime(2026, 12, 1, 7, 0, tzinfo=UTC) and show(offset.utc, offset.zone).endswith("UTC+02:00")
    assert parse_when("2026-12-01T09:00Z", None, now=now).zone == "UTC"
    summer = parse_when("2027-07-01 09:00", "America/New_York", now=now)
    assert summer.utc.hour == 13 and show(summer.utc, summer.zone) == "2027-07-01 09:00 EDT"


def test_dst_gap_is_refused_with_the_next_valid_time_and_fold_takes_the_first():
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InputError) as gap:
        parse_when("2027-03-14 02:30", "America/New_York", now=now)
    assert "does not exist" in gap.value.message and "2027-03-14 03:00" in gap.value.hint
    fold = parse_when("2027-11-07 01:30", "America/New_York", now=now)
    assert fold.utc == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)  # EDT, the first 01:30
    assert "happens twice" in fold.note and "UTC-04:00" in fold.note
    second = parse_when("2027-11-07T01:30:00-05:00", "America/New_York", now=now)
    assert second.utc == datetime(2027, 11, 7, 6, 30, tzinfo=UTC)


def test_schedule_errors_are_one_line_and_store_nothing(letter, cli):
    for args, expected in [
        (("--at", "2020-01-01 09:00"), "is in the past"),
        (("--at", soon(-5), "--tz", "UTC"), "is in the past"),
        (("--at", "2026-12-01 09:00", "--tz", "Mars/Olympus"), "unknown time zone"),
        (("--at", "next tuesday"), "cannot read the time"),
        (("--at", "2026-12-01"), "cannot read the time"),
        (("--at", "2027-03-14 02:30", "--tz", "America/New_York"), "does not exist"),
        ((), "say when to send"),
        (("--cron", "not a cron"), "cron expression"),
    ]:
        result = cli("schedule", "articles/budget.md", "--list", "readers", *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert expected in result.stderr and "Hint:" in result.stderr and "Traceback" not in result.stderr, args
    assert cli("schedule", "articles/missing.md", "--list", "readers", "--at", soon()).exit_code == 1
    assert cli("schedule", "articles/budget.md", "--list", "nobody", "--at", soon()).exit_code == 1
    assert cli("campaigns", "list", "--json").json() == []


def test_schedule_creates_a_scheduled_campaign_and_writes_no_job(letter, cli, monkeypatch):
    result = cli("schedule", "articles/budget.md", "--list", "readers", "--at", "2027-01-05 09:00",
                 "--tz", "America/New_York", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    campaign_id = data["campaign_id"]
    assert data["scheduled_at"] == "2027-01-05T14:00:00+00:00" and data["timezone"] == "America/New_York"
    assert data["audience"] == 3
    human = cli("schedule", "articles/budget.md", "--list", "readers", "--at", soon(), "--again")
    assert human.exit_code == 0 and human.stdout.strip().isdigit()  # prints its id
    from newsletter.store import scheduling as q
    from newsletter.vocabulary import CampaignStatus
    from sqlalchemy import inspect

    # The daemon's only input is the campaigns table (newsletter.scheduler.sync): the campaign is there,
    # scheduled at its UTC time; no job store table exists for a CLI process to write to.
    store, _ = store_and_settings()
    with store.session() as session:
        due = {c.id: c.scheduled_at for c in q.campaigns_in(session, (CampaignStatus.SCHEDULED,))}
    assert due[campaign_id] == datetime(2027, 1, 5, 14, 0, tzinfo=UTC) and len(due) == 2
    assert not inspect(store.engine).has_table("apscheduler_jobs")
    store.close()
    rows = {r["id"]: r for r in cli("campaigns", "list", "--json").json()}
    row = rows[campaign_id]
    assert row["status"] == "scheduled" and row["scheduled_local"] == "2027-01-05 09:00 EST"
    assert row["audience"] == 3 and row["local_time"] is False
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line a row: no wrapped cells
    table = cli("campaigns", "list").stdout
    assert "2027-01-05 09:00 EST" in table


def test_cancel_and_reschedule_until_the_send_starts(letter, cli):
    first = cli("schedule", "articles/budget.md", "--list", "readers", "--at", soon(), "--json").json()["campaign_id"]
    moved = cli("campaigns", "reschedule", first, "--at", "2027-02-01 10:00", "--tz", "Europe/Paris", "--json")
    assert moved.exit_code == 0, moved.stderr
    assert moved.json()["scheduled_at"] == "2027-02-01T09:00:00+00:00"
    row = cli("campaigns", "list", "--json").json()[0]
    assert row["timezone"] == "Europe/Paris" and row["scheduled_local"] == "2027-02-01 10:00 CET"
    past = cli("campaigns", "reschedule", first, "--at", "2020-01-01 10:00")
    assert past.exit_code == 1 and "in the past" in past.stderr
    assert cli("campaigns", "cancel", first).exit_code == 0
    assert cli("campaigns", "list", "--json").json()[0]["status"] == "cancelled"
    again = cli("campaigns", "reschedule", first, "--at", soon())
    assert again.exit_code == 1 and "cancelled" in again.stderr
    # once the send has started, both say so and change nothing
    second = cli("schedule", "articles/budget.md", "--list", "readers", "--at", soon(), "--json").json()["campaign_id"]
    store, settings = store_and_settings()
    from newsletter.delivery import get_transport
    from newsletter.engine.sender import start_campaign

    with get_transport(settings, "file") as transport:
        start_campaign(store, settings, second, transport)
    for args in (("cancel", second), ("reschedule", second, "--at", soon())):
        result = cli("campaigns", *args)
        assert result.exit_code == 1 and "already started (sent)" in result.stderr, result.stderr
    assert cli("campaigns", "cancel", 999).exit_code == 1


def test_a_campaign_whose_list_was_deleted_does_not_start_and_stays_scheduled(letter, cli):
    from newsletter.delivery import get_transport
    from newsletter.engine.sender import start_campaign
    from newsletter.errors import Conflict

    campaign_id = cli("schedule", "articles/budget.md", "--list", "readers", "--at", soon(),
                      "--json").json()["campaign_id"]
    assert cli("lists", "delete", "readers", "--yes").exit_code == 0
    store, settings = store_and_settings()
    with get_transport(settings, "file") as transport, pytest.raises(Conflict, match="'readers' was deleted"):
        start_campaign(store, settings, campaign_id, transport)
    store.close()
    row = cli("campaigns", "list", "--json").json()[0]
    assert row["id"] == campaign_id and row["status"] == "scheduled" and sum(row["counts"].values()) == 0


def test_a_campaign_starts_once_when_two_fire_at_the_same_time(letter, cli):
    """The exactly-once guarantee under two daemons is the conditional claim: race two job runs."""
    from newsletter.scheduler import jobs

    # two minutes ahead: the job run below does not wait for the time, and a second ahead was already past
    # when a loaded machine took longer than that to start the CLI (schedule refuses a past time)
    campaign_id = cli("schedule", "articles/budget.md", "--list", "readers", "--at", soon(120),
                      "--json").json()["campaign_id"]
    store, settings = store_and_settings()
    # no wait for the time: a job run starts the campaign it is given (the race is the subject)
    runtimes = [jobs.Runtime(store, settings, f"test-{n}") for n in range(2)]
    barrier = threading.Barrier(2)

    def daemon(rt):
        barrier.wait()
        _fire_with(rt, campaign_id)

    threads = [threading.Thread(target=daemon, args=(rt,)) for rt in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shown = cli("campaigns", "show", campaign_id, "--json").json()
    assert shown["status"] == "sent" and shown["counts"]["sent"] == 3
    assert len(list((letter / "outbox").glob("*.eml"))) == 3


def _fire_with(rt, campaign_id):
    """fire_campaign's body for an explicit runtime (two daemons in one test process)."""
    from newsletter.scheduler import jobs
    from newsletter.usecases.dispatch import ThisMachine, Watch

    jobs.send(rt, campaign_id, "file", "starting",
              lambda: ThisMachine(rt.store, rt.settings).start(campaign_id, Watch(stop=rt.stop)))


def test_lease_one_holder_at_a_time_and_takeover_after_expiry(letter):
    from newsletter.scheduler.daemon import LEASE_NAME, take_lease
    from newsletter.store import scheduling as q

    store, _ = store_and_settings()
    assert take_lease(store, "host-a:1:x", 0.5)[0]
    ours, lease = take_lease(store, "host-b:2:y", 30)
    assert not ours and lease.holder == "host-a:1:x"
    assert take_lease(store, "host-a:1:x", 0.5)[0]  # renewing is taking again
    import time

    time.sleep(0.7)
    assert take_lease(store, "host-b:2:y", 30)[0]
    with store.session() as session:
        assert not q.renew_lease(session, LEASE_NAME, "host-a:1:x", 30)  # a has lost it
        assert q.renew_lease(session, LEASE_NAME, "host-b:2:y", 30)


def test_lease_of_a_dead_local_process_is_taken_at_once(letter):
    import os
    import socket
    import subprocess
    import sys

    from newsletter.scheduler.daemon import take_lease

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store, _ = store_and_settings()
    dead = f"{socket.gethostname()}:{child.pid}:gone"
    assert take_lease(store, dead, 60)[0]
    assert take_lease(store, f"{socket.gethostname()}:{os.getpid()}:me", 60)[0]  # no waiting for expiry
    assert not take_lease(store, f"other-host:{os.getpid()}:x", 60)[0]  # a live holder keeps it


# --- local-time waves ----------------------------------------------------------

def test_local_time_plans_one_wave_per_utc_time(letter, cli):
    result = cli("schedule", "articles/budget.md", "--list", "readers", "--at", "2027-01-05 09:00",
                 "--tz", "America/New_York", "--local-time", "--json")
    assert result.exit_code == 0, result.stderr
    waves = result.json()["waves"]
    assert [(w["send_at"], w["zones"], w["audience"]) for w in waves] == [
        ("2027-01-05T00:00:00+00:00", ["Asia/Tokyo"], 1),
        ("2027-01-05T08:00:00+00:00", ["Europe/Paris"], 1),
        ("2027-01-05T14:00:00+00:00", [None], 1),  # no zone: the campaign's (New York)
    ]
    row = cli("campaigns", "list", "--json").json()[0]
    assert row["local_time"] and row["scheduled_at"] == "2027-01-05T00:00:00+00:00" and len(row["waves"]) == 3


def test_local_time_refuses_a_time_already_past_somewhere(letter, cli):
    tomorrow_early = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    result = cli("schedule", "articles/budget.md", "--list", "readers", "--at", tomorrow_early, "--tz", "UTC",
                 "--local-time")
    assert result.exit_code == 1 and "has already passed in Asia/Tokyo" in result.stderr
    assert cli("campaigns", "list", "--json").json() == []


def test_waves_send_each_zone_at_its_time(letter, cli):
    """Drive the wave job by hand: only the zones whose time has come get a ledger row."""
    from newsletter.scheduler import jobs
    from newsletter.scheduling import waves as wave_runs
    from newsletter.store import scheduling as q
    from newsletter.store.models import Campaign

    campaign_id = cli("schedule", "articles/budget.md", "--list", "readers", "--at", "2027-01-05 09:00",
                      "--tz", "America/New_York", "--local-time", "--json").json()["campaign_id"]
    store, settings = store_and_settings()
    now = datetime.now(UTC)
    with store.session() as session:  # bring the plan forward: Tokyo due now, the rest later
        waves = q.waves_of(session, campaign_id)
        waves[0].send_at = now - timedelta(seconds=1)
        session.get(Campaign, campaign_id).scheduled_at = waves[0].send_at
        waves[0].local_time = waves[0].send_at.astimezone(wave_runs.zone_or("Asia/Tokyo", "UTC")).replace(
            tzinfo=None).isoformat()
        for wave in waves:
            wave.local_time = waves[0].local_time
        waves[1].send_at = now + timedelta(hours=8)
        waves[2].send_at = now + timedelta(hours=14)
    rt = jobs.Runtime(store, settings, "test")
    jobs.install(rt)
    try:
        jobs.fire_campaign(campaign_id)
    finally:
        jobs.install(None)
    shown = cli("campaigns", "show", campaign_id, "--json").json()
    assert shown["status"] == "scheduled" and shown["counts"]["sent"] == 1
    assert shown["scheduled_at"] == (now + timedelta(hours=8)).isoformat()
    with store.session() as session:
        assert [w.status for w in q.waves_of(session, campaign_id)] == ["sent", "pending", "pending"]
    # cancelling between waves stops the rest
    assert cli("campaigns", "cancel", campaign_id).exit_code == 0
    with store.session() as session:
        assert [w.status for w in q.waves_of(session, campaign_id)] == ["sent", "cancelled", "cancelled"]


# --- recurring -----------------------------------------------------------------

def test_recurring_sends_the_newest_new_article_then_skips(letter, cli):
    import os

    from newsletter.scheduler import jobs
    from newsletter.scheduler.jobs import run_schedule

    folder = letter / "weekly"
    folder.mkdir()
    for n, name in enumerate(["old.md", "new.md"]):
        text = ARTICLE.read_text().replace("Five budgeting habits", f"Issue {name}")
        (folder / name).write_text(text)
        os.utime(folder / name, (1_700_000_000 + n * 100, 1_700_000_000 + n * 100))
    created = cli("schedule", "weekly", "--list", "readers", "--cron", "0 9 * * MON", "--tz", "Europe/Paris",
                  "--json")
    assert created.exit_code == 0, created.stderr
    schedule_id = created.json()["schedule_id"]
    next_run = datetime.fromisoformat(created.json()["next_run"])
    in_paris = next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert next_run.utcoffset() == in_paris.utcoffset()  # shown in the schedule's zone
    assert (in_paris.weekday(), in_paris.hour, in_paris.minute) == (0, 9, 0)  # Monday 09:00 there
    store, settings = store_and_settings()
    rt = jobs.Runtime(store, settings, "test")
    first = run_schedule(rt, schedule_id)
    assert first is not None
    assert run_schedule(rt, schedule_id) is None  # new.md is on its way: nothing new
    runs = cli("campaigns", "recurring", "--json").json()[0]["runs"]
    assert [r["outcome"] for r in runs] == ["skipped", "sent"]
    assert runs[1]["article"].endswith("new.md") and runs[0]["detail"] == "nothing new in the folder"
    # a newer article is picked up by the next run; the older unsent one never is
    (folder / "newest.md").write_text(ARTICLE.read_text().replace("Five budgeting habits", "Issue 3"))
    third = run_schedule(rt, schedule_id)
    assert third is not None
    assert cli("campaigns", "show", third, "--json").json()["article"].endswith("newest.md")
    assert cli("campaigns", "stop-recurring", schedule_id).exit_code == 0
    assert run_schedule(rt, schedule_id) is None
