"""Sequences in process: the timing rules, the command line, and daemon rounds with an injected clock.

The rounds are the daemon's own (``newsletter.engine.sequences.run_round``)
on a real store (SQLite and PostgreSQL), sending through the memory
transport; the clock each round sees is passed in, so "three days later" is
one call. The real daemon, killed and restarted, is tests/test_sequences_daemon.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from newsletter.errors import InputError
from newsletter.scheduling.sequences import Timing, due_after, parse_at, parse_delay

STEPS = (("01-welcome.md", "Welcome aboard", "0d", None),
         ("02-tips.md", "Three tips for your first week", "3d", None),
         ("03-stories.md", "Stories from our readers", "1w", None))


def write_sequence(folder: Path, steps=STEPS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, title, after, at in steps:
        at_line = f'at: "{at}"\n' if at else ""
        (folder / file_name).write_text(
            f"---\ntitle: {title}\nafter: {after}\n{at_line}---\n\n"
            f"Hello, this is *{title.lower()}*. A short paragraph so the message has a body to read.\n")
    return folder


# -- timing rules --------------------------------------------------------------------------------

def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("base", "timing", "zone", "expected"), [
    ("2026-12-07 15:00", Timing(0), None, "2026-12-07 15:00"),
    ("2026-12-07 15:00", Timing(3 * 86400), None, "2026-12-10 15:00"),
    # Monday 15:00 in London, "3d at 09:00": Thursday 09:00 (the calendar day, not 3 x 24 h then the next 09:00)
    ("2026-12-07 15:00", Timing(3 * 86400, "09:00"), "Europe/London", "2026-12-10 09:00"),
    # "0d at 09:00": today's 09:00 if still ahead, else tomorrow's
    ("2026-12-07 08:00", Timing(0, "09:00"), "Europe/London", "2026-12-07 09:00"),
    ("2026-12-07 15:00", Timing(0, "09:00"), "Europe/London", "2026-12-08 09:00"),
    # in the reader's zone: 09:00 in New York is 14:00 UTC in winter
    ("2026-12-07 15:00", Timing(86400, "09:00"), "America/New_York", "2026-12-08 14:00"),
    # a sub-day delay: the first 09:00 at or after base + 12 h
    ("2026-12-07 15:00", Timing(12 * 3600, "09:00"), "UTC", "2026-12-08 09:00"),
    # 02:30 does not exist in New York on 2026-03-08: moved forward by the gap (03:30 EDT = 07:30 UTC)
    ("2026-03-07 12:00", Timing(86400, "02:30"), "America/New_York", "2026-03-08 07:30"),
])
def test_due_times(base, timing, zone, expected):
    assert due_after(utc(base), timing, zone, "UTC") == utc(expected)


def test_a_reader_without_a_zone_gets_the_sequences_zone():
    assert due_after(utc("2026-12-07 15:00"), Timing(86400, "09:00"), None, "Europe/Paris") == utc("2026-12-08 08:00")


# Instants from 2020 to 2035 to the second (cheaper to draw than st.datetimes with a zone).
BASES = st.integers(0, 15 * 365 * 86400).map(lambda s: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=s))
ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]


@given(base=BASES,
       days=st.integers(0, 60), hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 59]),
       zone=st.sampled_from(ZONES))
def test_a_whole_day_step_at_a_time_falls_on_that_time_after_the_base(base, days, hour, minute, zone):
    at = f"{hour:02d}:{minute:02d}"
    due = due_after(base, Timing(days * 86400, at), zone, "UTC")
    assert due > base
    local = due.astimezone(ZoneInfo(zone))
    exists = local.replace(tzinfo=None).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC).astimezone(
        ZoneInfo(zone)).strftime("%H:%M") == at
    if exists:  # outside a DST gap the reader's clock shows exactly the time asked
        assert local.strftime("%H:%M") == at
    # never more than a day (plus a DST shift) after the calendar day it was due
    assert due - base <= timedelta(days=days + 1, hours=3)


@given(base=BASES,
       seconds=st.integers(0, 366 * 86400))
def test_a_step_without_a_time_is_exactly_its_delay_later(base, seconds):
    assert due_after(base, Timing(seconds), "Europe/London", "UTC") == base + timedelta(seconds=seconds)


@pytest.mark.parametrize(("value", "seconds"), [("0d", 0), ("3d", 259200), ("1w", 604800), ("90s", 90),
                                                ("2h", 7200), (0, 0), (2, 172800), (" 5m ", 300)])
def test_delays(value, seconds):
    assert parse_delay(value, "a.md") == seconds


@pytest.mark.parametrize("value", [None, "", "3", "3 days", "-1d", "1y", "367d", True, "1.5d", "d"])
def test_bad_delays_are_refused(value):
    with pytest.raises(InputError, match="a.md: after"):
        parse_delay(value, "a.md")


@pytest.mark.parametrize("value", [540, "9", "24:00", "09:60", "9am", True])
def test_bad_times_of_day_are_refused(value):
    with pytest.raises(InputError, match="a.md: at"):
        parse_at(value, "a.md")


def test_times_of_day():
    assert parse_at("9:05", "a.md") == "09:05" and parse_at(None, "a.md") is None


# -- the command line ----------------------------------------------------------------------------

@pytest.fixture
def readers(workspace, cli):
    """A workspace with list ``readers`` holding one existing member, and the sequence's folder."""
    assert cli("subscribers", "add", "early@example.org", "--list", "readers").exit_code == 0
    write_sequence(workspace / "sequences" / "onboarding")
    return workspace


def create(cli, *extra: str):
    result = cli("sequences", "create", "onboarding", "--list", "readers", "--folder", "sequences/onboarding",
                 "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_create_composes_every_step_and_shows_them(readers, cli):
    data = create(cli)
    assert [(s["step"], s["after"], s["subject"]) for s in data["steps"]] == [
        (0, "0d", "Welcome aboard"), (1, "3d", "Three tips for your first week"), (2, "1w", "Stories from our readers")]
    assert data["status"] == "active" and data["list"] == "readers"
    listed = cli("sequences", "list", "--json").json()
    assert [(r["name"], r["steps"], r["enrolled"]) for r in listed] == [("onboarding", 3, 0)]
    table = cli("sequences", "show", "onboarding")
    assert table.exit_code == 0 and "Three tips for your first week" in table.stdout
    # each step's campaign is listed among the campaigns, as automated
    automated = cli("campaigns", "list", "--status", "automated", "--json").json()
    assert len(automated) == 3


@pytest.mark.parametrize(("front_matter", "message"), [
    ("title: A\n", "after: is missing"),
    ("title: A\nafter: soon\n", "is not a delay"),
    ("title: A\nafter: 0d\nat: 9:00\n", "is not a time of day"),  # YAML reads 9:00 as 540
    ("title: A\nafter: 0d\nat: [1\n", "front matter is not valid YAML"),
])
def test_bad_front_matter_is_one_line(workspace, cli, front_matter, message):
    assert cli("lists", "create", "readers").exit_code == 0
    folder = workspace / "sequences" / "bad"
    folder.mkdir(parents=True)
    (folder / "01.md").write_text(f"---\n{front_matter}---\n\nBody text.\n")
    result = cli("sequences", "create", "bad", "--list", "readers", "--folder", "sequences/bad")
    assert result.exit_code == 1 and message in result.stderr and "Hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("sequences", "list", "--json").json() == []  # nothing stored


@pytest.mark.parametrize(("args", "message"), [
    (("Bad Name", "--list", "readers", "--folder", "sequences/onboarding"), "a sequence name is"),
    (("x", "--list", "nobody", "--folder", "sequences/onboarding"), "no list named 'nobody'"),
    (("x", "--list", "readers", "--folder", "sequences/none"), "no folder sequences/none"),
    (("x", "--list", "readers", "--folder", "sequences/onboarding", "--tz", "Mars/Base"), "unknown time zone"),
])
def test_bad_arguments_are_one_line(readers, cli, args, message):
    result = cli("sequences", "create", *args)
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_a_name_is_taken_once(readers, cli):
    create(cli)
    again = cli("sequences", "create", "onboarding", "--list", "readers", "--folder", "sequences/onboarding")
    assert again.exit_code == 1 and "exists" in again.stderr


def test_unknown_sequence_is_one_line(workspace, cli):
    for command in (("show", "nope"), ("pause", "nope"), ("resume", "nope"), ("show", "nope", "--dry-run")):
        result = cli("sequences", *command)
        assert result.exit_code == 1 and "no sequence named 'nope'" in result.stderr


# -- rounds with an injected clock ---------------------------------------------------------------

class Rounds:
    """Runs the daemon's round on the workspace's store at chosen times, through one memory transport."""

    def __init__(self):
        from newsletter.delivery.memory import MemoryTransport

        self.transport = MemoryTransport()
        self.first = True

    def at(self, when: datetime):
        from newsletter.config import load_settings
        from newsletter.engine.sequences import run_round
        from newsletter.store.db import open_store

        settings = load_settings()
        store = open_store(settings)
        try:
            report = run_round(store, settings, lambda _name: self.transport, lambda _session: True,
                               first=self.first, clock=lambda: when)
        finally:
            store.close()
        self.first = False
        return report

    def received(self) -> Counter:
        """(address, subject) -> how many messages."""
        return Counter((m["To"].addresses[0].addr_spec, str(m["Subject"])) for m in self.transport.outbox)


WELCOME, TIPS, STORIES = (title for _f, title, _a, _t in STEPS)


def now() -> datetime:
    return datetime.now(UTC)


def test_a_new_member_gets_each_step_once_at_its_time_and_existing_members_none(readers, cli):
    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    rounds.at(start + timedelta(seconds=1))  # a second round sends nothing more
    assert rounds.received() == Counter({("new@example.org", WELCOME): 1})
    rounds.at(start + timedelta(days=2, hours=23))  # not yet
    assert sum(rounds.received().values()) == 1
    rounds.at(start + timedelta(days=3, seconds=1))
    rounds.at(start + timedelta(days=3, seconds=2))
    assert rounds.received()[("new@example.org", TIPS)] == 1
    rounds.at(start + timedelta(days=10, seconds=2))  # 3d + 1w after joining
    assert rounds.received() == Counter({("new@example.org", WELCOME): 1, ("new@example.org", TIPS): 1,
                                         ("new@example.org", STORIES): 1})
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert [(s["sent"], s["skipped"], s["pending"]) for s in shown["steps"]] == [(1, 0, 0)] * 3
    assert shown["readers"] == {"active": 0, "finished": 1, "stopped": 0}
    # the messages carry the list's one-click unsubscribe, as campaign messages do
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in rounds.transport.outbox)


def test_existing_members_are_enrolled_only_with_enrol_existing(readers, cli):
    create(cli, "--enrol-existing")
    rounds = Rounds()
    rounds.at(now())
    assert rounds.received() == Counter({("early@example.org", WELCOME): 1})


def test_a_step_later_than_the_grace_is_skipped_and_recorded_and_the_next_still_goes(readers, cli):
    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    # no round runs for four days: step 1 (due at 3 d) is a day late, beyond the default grace of an hour
    report = rounds.at(start + timedelta(days=4))
    assert report.missed == 1 and report.sent == 0
    assert ("new@example.org", TIPS) not in rounds.received()
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert [(s["sent"], s["skipped"]) for s in shown["steps"]] == [(1, 0), (0, 1), (0, 0)]
    tips_campaign = shown["steps"][1]["campaigns"][0]
    detail = cli("campaigns", "show", tips_campaign, "--json").json()
    assert detail["counts"]["skipped"] == 1
    rounds.at(start + timedelta(days=10, seconds=1))  # step 2 keeps its own time (3 d + 1 w after joining)
    assert rounds.received()[("new@example.org", STORIES)] == 1


def test_unsubscribing_stops_the_sequence_and_joining_again_does_not_restart_it(readers, cli):
    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    assert cli("subscribers", "unsubscribe", "new@example.org", "--list", "readers").exit_code == 0
    rounds.at(start + timedelta(seconds=1))
    assert cli("sequences", "show", "onboarding", "--json").json()["readers"]["stopped"] == 1
    assert cli("subscribers", "add", "new@example.org", "--list", "readers", "--resubscribe").exit_code == 0
    for days in (0.001, 3.01, 10.01):
        rounds.at(start + timedelta(days=days))
    assert rounds.received() == Counter({("new@example.org", WELCOME): 1})


def test_with_restart_a_reader_who_joins_again_starts_over(readers, cli):
    create(cli, "--restart")
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    assert cli("subscribers", "unsubscribe", "new@example.org", "--list", "readers").exit_code == 0
    rounds.at(start + timedelta(seconds=1))
    assert cli("subscribers", "add", "new@example.org", "--list", "readers", "--resubscribe").exit_code == 0
    rounds.at(now() + timedelta(seconds=1))
    assert rounds.received() == Counter({("new@example.org", WELCOME): 2})
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert shown["steps"][0]["sent"] == 2 and len(shown["steps"][0]["campaigns"]) == 2  # round 0 and round 1


def test_a_suppressed_reader_is_stopped_before_the_next_step(readers, cli):
    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    assert cli("subscribers", "unsubscribe", "new@example.org").exit_code == 0  # from everything: suppressed
    rounds.at(start + timedelta(days=3, seconds=1))
    assert rounds.received() == Counter({("new@example.org", WELCOME): 1})
    assert cli("sequences", "show", "onboarding", "--json").json()["readers"]["stopped"] == 1


def test_a_paused_sequence_sends_nothing_until_resumed(readers, cli):
    create(cli)
    assert cli("sequences", "pause", "onboarding").exit_code == 0
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    assert rounds.received() == Counter()
    again = cli("sequences", "pause", "onboarding")
    assert again.exit_code == 1 and "already paused" in again.stderr
    assert cli("sequences", "resume", "onboarding").exit_code == 0
    rounds.at(start + timedelta(seconds=1))
    assert rounds.received() == Counter({("new@example.org", WELCOME): 1})
    assert cli("sequences", "list", "--json").json()[0]["status"] == "active"


def test_rows_left_in_flight_by_a_dead_daemon_become_unknown_and_are_not_resent(readers, cli):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.store.models import Delivery
    from sqlalchemy import update

    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    store = open_store(load_settings())
    with store.session() as session:  # as a daemon killed between its claim and the provider's answer leaves it
        session.execute(update(Delivery.__table__).values(status="sending"))
    store.close()
    later = Rounds()  # a new daemon: its first round
    report = later.at(start + timedelta(seconds=1))
    assert report.orphans == 1 and later.received() == Counter()
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert (shown["steps"][0]["sent"], shown["steps"][0]["unknown"]) == (0, 1)


def test_dry_run_prints_who_gets_what_when(readers, cli):
    create(cli)
    assert cli("subscribers", "add", "new@example.org", "--list", "readers", "--timezone",
               "Europe/Paris").exit_code == 0
    planned = cli("sequences", "show", "onboarding", "--dry-run", "--days", "5", "--json").json()
    assert [(r["email"], r["step"], r["subject"]) for r in planned["rows"]] == [
        ("new@example.org", 0, WELCOME), ("new@example.org", 1, TIPS)]  # the third step is 10 days out
    first, second = (datetime.fromisoformat(r["when"]) for r in planned["rows"])
    assert second - first == timedelta(days=3)
    assert planned["rows"][1]["local"].endswith("CET")  # shown in the reader's own zone
    people = cli("sequences", "show", "onboarding", "--dry-run", "--days", "14")
    assert people.exit_code == 0 and "new@example.org" in people.stdout and STORIES in people.stdout
    assert "early@example.org" not in people.stdout  # not enrolled without --enrol-existing
    # after the welcome has gone, the dry run starts from the next step
    Rounds().at(now())
    planned = cli("sequences", "show", "onboarding", "--dry-run", "--days", "14", "--json").json()
    assert [r["step"] for r in planned["rows"]] == [1, 2]
    bad = cli("sequences", "show", "onboarding", "--dry-run", "--days", "0")
    assert bad.exit_code == 1 and "--days" in bad.stderr


def test_at_sends_at_the_readers_own_morning(readers, cli):
    steps = (("01-welcome.md", "Welcome aboard", "0d", None), ("02-tips.md", "Morning tips", "1d", "09:00"))
    write_sequence(readers / "sequences" / "morning", steps)
    result = cli("sequences", "create", "morning", "--list", "readers", "--folder", "sequences/morning")
    assert result.exit_code == 0, result.stderr
    assert cli("subscribers", "add", "tokyo@example.org", "--list", "readers", "--timezone",
               "Asia/Tokyo").exit_code == 0
    rounds, start = Rounds(), now()
    rounds.at(start)
    joined_local = start.astimezone(ZoneInfo("Asia/Tokyo"))
    due_local = datetime.combine(joined_local.date() + timedelta(days=1), datetime.min.time().replace(hour=9),
                                 tzinfo=ZoneInfo("Asia/Tokyo"))
    rounds.at(due_local.astimezone(UTC) - timedelta(seconds=1))
    assert ("tokyo@example.org", "Morning tips") not in rounds.received()
    rounds.at(due_local.astimezone(UTC) + timedelta(seconds=1))
    assert rounds.received()[("tokyo@example.org", "Morning tips")] == 1


def test_a_step_campaign_is_not_resumed_retried_or_cancelled_by_hand(readers, cli):
    campaign_id = create(cli)["steps"][0]["campaigns"][0]
    for command in (("resume", campaign_id), ("retry", campaign_id, "--unknown")):
        result = cli("campaigns", *command)
        assert result.exit_code == 1 and "is a step of a sequence" in result.stderr
    cancelled = cli("campaigns", "cancel", campaign_id)
    assert cancelled.exit_code == 1 and "can no longer be cancelled" in cancelled.stderr


def test_two_rounds_racing_hand_over_and_send_each_step_once(readers, cli, tmp_path):
    """The daemon runs one round at a time under its lease; were two to race, the conditional
    hand-over and the ledger's claims still give each reader's step to exactly one of them."""
    import threading

    from support.cli import populate

    create(cli)
    emails = populate(cli, tmp_path, 40, "readers")
    first, start = Rounds(), now()
    first.at(start)
    assert sum(first.received().values()) == 40
    racers = [Rounds(), Rounds()]
    for racer in racers:
        racer.first = False
    barrier = threading.Barrier(2)
    errors = []

    def race(racer):
        barrier.wait()
        try:
            racer.at(start + timedelta(days=3, seconds=1))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(racer,)) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    together = racers[0].received() + racers[1].received()
    assert together == Counter({(email, TIPS): 1 for email in emails})
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert (shown["steps"][1]["sent"], shown["steps"][1]["skipped"]) == (40, 0)


def test_a_step_that_fails_its_pre_flight_check_stops_the_creation(workspace, cli):
    from support.articles import SEED

    assert cli("lists", "create", "readers").exit_code == 0
    folder = workspace / "sequences" / "seed"
    folder.mkdir(parents=True)
    # the seed names its recently published article without a URL: composing it is an error, as for a send
    (folder / "01-welcome.txt").write_text("---\nafter: 0d\n---\n" + SEED.read_text(encoding="utf-8"))
    result = cli("sequences", "create", "seed", "--list", "readers", "--folder", "sequences/seed")
    assert result.exit_code == 1 and "has no URL" in result.stderr and "Hint:" in result.stderr
    assert cli("sequences", "list", "--json").json() == []
