"""Hourly and daily caps, the warm-up plan and pausing at a cap: counted in the database, on SQLite and
PostgreSQL, with an injected UTC clock (never wall time)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from support.cli import populate


class Clock:
    """An injected UTC clock."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def configure(workspace, delivery: str = "", extra: str = "", batch: int = 1000) -> None:
    """Add keys to [delivery] (and sections at the end) of the workspace's newsletter.toml."""
    config = workspace / "newsletter.toml"
    text = config.read_text().replace("processes = 0\n", f"processes = 0\n{delivery}\n", 1)
    text = text.replace("batch_size = 1000\n", f"batch_size = {batch}\n", 1)
    config.write_text(text + "\n" + extra)


def sent_files(workspace) -> int:
    return len(list((workspace / "outbox").glob("*.eml")))


# ---------------------------------------------------------------- the plan, without a database

def test_a_warm_up_plan_over_a_simulated_week():
    """500 a day doubling, under a daily cap of 20,000: each day's cap over a week (before the start: the first's)."""
    from newsletter.config import Limits, Warmup
    from newsletter.engine.quotas import DAY, windows

    plan, limits = Warmup(500, 2.0, date(2026, 12, 1)), Limits(daily_cap=20_000)
    clock = Clock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    caps = []
    for _ in range(8):
        (window,) = [w for w in windows(limits, plan, clock()) if w.kind == DAY]
        caps.append(window.cap)
        clock.now += timedelta(days=1)
    assert caps == [500, 500, 1000, 2000, 4000, 8000, 16000, 20000]


def test_windows_are_utc_calendar_hours_and_days():
    from newsletter.config import Limits
    from newsletter.engine.quotas import windows

    now = datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)
    hour, day = windows(Limits(hourly_cap=10, daily_cap=100), None, now)
    assert (hour.starts_at, hour.ends_at) == (datetime(2026, 12, 2, 23, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))
    assert (day.starts_at, day.ends_at) == (datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))
    assert windows(Limits(rate=5), None, now) == []


def test_limits_come_from_delivery_and_a_transport_section(workspace):
    from newsletter.config import Limits, load_settings

    configure(workspace, "hourly_cap = 100\ndaily_cap = 1000",
              '[delivery.warmup]\nstart = 50\nfactor = 1.5\nstart_date = 2026-12-01\n')
    text = (workspace / "newsletter.toml").read_text().replace("[smtp]\n", "[smtp]\nrate = 2\ndaily_cap = 300\n", 1)
    (workspace / "newsletter.toml").write_text(text)
    settings = load_settings(workspace)
    assert settings.limits_for("smtp") == Limits(rate=2, hourly_cap=100, daily_cap=300)
    assert settings.limits_for("file") == Limits(rate=0, hourly_cap=100, daily_cap=1000)
    assert (settings.warmup.start, settings.warmup.factor, settings.warmup.start_date) == (50, 1.5, date(2026, 12, 1))


@pytest.mark.parametrize(("keys", "message"), [
    ("daily_cap = -1", "must be at least 0"),
    ("hourly_cap = 2.5", "must be a whole number"),
    ("daily_cap = nan", "finite"),
])
def test_bad_caps_are_one_line_errors(workspace, cli, keys, message):
    configure(workspace, keys)
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_a_bad_warm_up_is_a_one_line_error(workspace, cli):
    configure(workspace, extra='[delivery.warmup]\nstart = 500\nstart_date = "next week"\n')
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and "start_date must be a date" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- counters in the database

def _quota(database_url, clock, daily_cap=100, hourly_cap=0, warmup=None):
    from newsletter.config import Limits
    from newsletter.engine.quotas import Quota

    return Quota("smtp", "smtp:test", Limits(hourly_cap=hourly_cap, daily_cap=daily_cap), warmup, clock)


def _take_all(store, quota, batch):
    """Take ``batch`` at a time until the cap; returns what was granted in all."""
    from newsletter.engine.quotas import QuotaReached

    total = 0
    while True:
        try:
            with store.session() as session:
                granted, _ = quota.take(session, batch)
        except QuotaReached as exc:
            return total, exc
        total += granted


def test_a_daily_cap_holds_across_a_restart_and_opens_the_next_day(database_url):
    from newsletter.store.db import Store

    clock = Clock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))
    store = Store(database_url)
    first, _ = _take_all_upto(store, _quota(database_url, clock), 7, 60)
    store.close()
    store = Store(database_url)  # a restart: a new engine, the same database
    rest, reached = _take_all(store, _quota(database_url, clock), 7)
    assert first + rest == 100
    assert reached.resume_at == datetime(2026, 12, 3, tzinfo=UTC)
    assert reached.reason == "daily cap of 100 for transport smtp reached; resumes at 2026-12-03 00:00 UTC"
    clock.now = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    tomorrow, _ = _take_all(store, _quota(database_url, clock), 7)
    assert tomorrow == 100
    store.close()


def _take_all_upto(store, quota, batch, most):
    total = 0
    while total < most:
        with store.session() as session:
            granted, _ = quota.take(session, min(batch, most - total))
        total += granted
    return total, None


def test_the_hourly_cap_pauses_until_the_next_hour_and_the_tighter_cap_wins(database_url):
    from newsletter.store.db import Store

    clock = Clock(datetime(2026, 12, 2, 10, 30, tzinfo=UTC))
    store = Store(database_url)
    got, reached = _take_all(store, _quota(database_url, clock, daily_cap=25, hourly_cap=10), 4)
    assert got == 10 and reached.resume_at == datetime(2026, 12, 2, 11, tzinfo=UTC)
    assert reached.reason.startswith("hourly cap of 10 for transport smtp reached")
    clock.now = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    got, _ = _take_all(store, _quota(database_url, clock, daily_cap=25, hourly_cap=10), 4)
    assert got == 10
    clock.now = datetime(2026, 12, 2, 12, 5, tzinfo=UTC)
    got, reached = _take_all(store, _quota(database_url, clock, daily_cap=25, hourly_cap=10), 4)
    assert got == 5 and reached.window.kind == "day"
    store.close()


def test_the_warm_up_caps_each_day_of_a_simulated_week_in_the_database(database_url):
    from newsletter.config import Warmup
    from newsletter.store.db import Store

    plan = Warmup(5, 2.0, date(2026, 12, 1))
    clock = Clock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    store = Store(database_url)
    per_day, reasons = [], []
    for _ in range(7):
        got, reached = _take_all(store, _quota(database_url, clock, daily_cap=200, warmup=plan), 7)
        per_day.append(got)
        reasons.append(reached.reason)
        clock.now += timedelta(days=1)
    store.close()
    assert per_day == [5, 10, 20, 40, 80, 160, 200]
    assert reasons[0] == "daily cap of 5 for transport smtp reached (warm-up day 1); resumes at 2026-12-02 00:00 UTC"
    assert reasons[-1] == "daily cap of 200 for transport smtp reached; resumes at 2026-12-08 00:00 UTC"


CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from newsletter.config import Limits
    from newsletter.engine.quotas import Quota, QuotaReached
    from newsletter.store.db import Store

    store = Store(sys.argv[1])
    quota = Quota("smtp", "smtp:test", Limits(daily_cap=500), None, lambda: datetime(2026, 12, 2, 9, tzinfo=UTC))
    print("ready", flush=True)
    sys.stdin.readline()  # both start together
    total = 0
    while True:
        try:
            with store.session() as session:
                granted, _ = quota.take(session, 3)
        except QuotaReached:
            break
        if total == 0:  # after the first take, wait for the other's: both surely take part
            print("took", flush=True)
            sys.stdin.readline()
        total += granted
    print(total, flush=True)
""")


def test_a_daily_cap_holds_across_two_processes(database_url, tmp_path):
    """Two processes taking 3 at a time from one cap of 500: together exactly 500, never more."""
    from newsletter.store.db import Store

    Store(database_url).close()  # migrated before the children race
    children = [subprocess.Popen([sys.executable, "-c", CHILD, database_url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:  # each has taken once; then they race for the rest
        assert child.stdout.readline().strip() == "took"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    totals = [int(child.communicate(timeout=120)[0].strip()) for child in children]
    assert sum(totals) == 500
    assert all(total > 0 for total in totals), totals  # both took part: the race was real


# ---------------------------------------------------------------- campaigns at a cap

def _send(workspace, clock, *, limit=None, waiter=None):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.dispatch import Watch

    settings = load_settings(workspace)
    store = open_store(settings)
    plan = use.plan_send(store, settings, "articles/welcome.md", "readers", again=True)
    notes: list[str] = []
    watch = Watch(note=notes.append, clock=clock, waiter=waiter or (lambda when: False))
    report = use.send_now(store, settings, plan, watch, limit=limit)
    store.close()
    return report, notes


def test_a_campaign_pauses_at_the_daily_cap_and_the_count_holds_across_campaigns(workspace, cli, tmp_path):
    populate(cli, tmp_path, 5)
    configure(workspace, "daily_cap = 3", batch=2)
    clock = Clock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))
    report, notes = _send(workspace, clock)
    assert (report.status, report.sent) == ("paused", 3)
    assert sent_files(workspace) == 3
    reason = "daily cap of 3 for transport file reached; resumes at 2026-12-03 00:00 UTC"
    assert report.pause_reason == reason and notes[-1].startswith(f"Paused: {reason}. Waiting until")
    shown = cli("campaigns", "show", str(report.campaign_id))
    assert f"paused: {reason}" in " ".join(shown.stdout.split())
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["pause_reason"] == reason and data["resume_at"].startswith("2026-12-03T00:00:00")
    # another campaign the same day: the cap is the transport's, not the campaign's
    second, _ = _send(workspace, clock)
    assert (second.status, second.sent) == ("paused", 0) and sent_files(workspace) == 3


def test_a_foreground_send_waits_for_the_window_and_goes_on(workspace, cli, tmp_path):
    """The waiter stands for the wait: it moves the injected clock to the time it is asked to wait for."""
    populate(cli, tmp_path, 7)
    configure(workspace, "daily_cap = 3", batch=2)
    clock = Clock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))
    waited = []

    def waiter(when):
        waited.append(when)
        clock.now = when
        return True

    report, notes = _send(workspace, clock, waiter=waiter)
    assert (report.status, sent_files(workspace)) == ("sent", 7)
    assert waited == [datetime(2026, 12, 3, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)]
    assert sum(1 for note in notes if note.startswith("Paused: daily cap of 3")) == 2


def test_a_cap_holds_across_the_sending_processes_of_one_campaign(workspace, cli, tmp_path):
    """Two child processes share the cap: together exactly 3. (The children read the real clock: the
    window is today's, so nothing here depends on which day it is.)"""
    populate(cli, tmp_path, 12)
    configure(workspace, "daily_cap = 3", batch=2)
    text = (workspace / "newsletter.toml").read_text().replace("processes = 0\n", "processes = 2\n", 1)
    (workspace / "newsletter.toml").write_text(text)
    report, _ = _send(workspace, Clock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC)))  # waits for no window
    assert (report.status, report.counts["sent"], sent_files(workspace)) == ("paused", 3, 3)
    assert report.pause_reason.startswith("daily cap of 3 for transport file reached; resumes at ")


def test_the_last_row_at_the_cap_finishes_the_campaign(workspace, cli, tmp_path):
    populate(cli, tmp_path, 4)
    configure(workspace, "daily_cap = 4", batch=2)
    report, _ = _send(workspace, Clock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC)))
    assert (report.status, report.sent) == ("sent", 4)


def test_the_scheduler_resumes_a_campaign_paused_at_a_cap_when_the_window_opens(workspace, cli, tmp_path):
    from newsletter.config import load_settings
    from newsletter.scheduler import jobs
    from newsletter.scheduler.sync import paused_due
    from newsletter.store.db import open_store

    populate(cli, tmp_path, 5)
    configure(workspace, "daily_cap = 2", batch=2)
    clock = Clock(datetime(2026, 12, 2, 22, 0, tzinfo=UTC))
    report, _ = _send(workspace, clock)
    assert (report.status, sent_files(workspace)) == ("paused", 2)
    settings = load_settings(workspace)
    store = open_store(settings)
    runtime = jobs.Runtime(store, settings, "test-daemon", clock=clock)
    jobs.install(runtime)
    try:
        clock.now = datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)
        assert paused_due(runtime) == []  # not yet
        clock.now = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
        assert paused_due(runtime) == [report.campaign_id]
        jobs.resume_after_quota(report.campaign_id)
        assert sent_files(workspace) == 4
        assert _daemon_would_resume(store, settings, clock) == {report.campaign_id: False}
        data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
        assert data["status"] == "paused" and data["resume_at"].startswith("2026-12-04T00:00:00")
        clock.now = datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC)
        assert paused_due(runtime) == [report.campaign_id]
        assert _daemon_would_resume(store, settings, clock) == {report.campaign_id: True}
        jobs.resume_after_quota(report.campaign_id)
        assert sent_files(workspace) == 5
        data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
        assert (data["status"], data["pause_reason"], data["resume_at"]) == ("sent", None, None)
        assert paused_due(runtime) == []
    finally:
        jobs.install(None)
        store.close()


def _daemon_would_resume(store, settings, clock) -> dict[int, bool]:
    """One sync of a daemon (its scheduler built, not started) on the injected clock: for each paused
    campaign, whether the sync queued its resume job."""
    from newsletter.scheduler.daemon import Daemon
    from newsletter.scheduler.sync import plan_sync
    from newsletter.store import scheduling as q
    from newsletter.vocabulary import CampaignStatus

    daemon = Daemon(store, settings)
    daemon.runtime.clock = clock
    daemon.scheduler = daemon._build()
    plan_sync(daemon)
    with store.session() as session:
        paused = [c.id for c in q.campaigns_in(session, (CampaignStatus.PAUSED,))]
    return {campaign_id: daemon.scheduler.get_job(f"resume-{campaign_id}") is not None for campaign_id in paused}


# ---------------------------------------------------------------- the rate, shared and never credited

class EpochClock:
    """Epoch seconds that sleeping advances (one clock for both senders: they take turns)."""

    def __init__(self, now: float):
        self.now, self.slept = now, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_is_shared_by_two_senders_and_idle_time_is_not_credited(database_url):
    """Two senders (two engines on one database) at 100/s in batches of 50: one timeline; after 30 s idle
    they go on at the rate, never in a burst. Counted per one-second window of the injected clock."""
    from newsletter.engine.quotas import shared_pace
    from newsletter.engine.sender import _Pacer
    from newsletter.store.db import Store

    clock = EpochClock(datetime(2026, 12, 2, 10, 0, tzinfo=UTC).timestamp())
    stores = [Store(database_url), Store(database_url)]
    pacers = [_Pacer(100, clock.sleep, clock, book=shared_pace(store, "smtp:test")) for store in stores]
    starts = []
    for turn in range(8):
        pacers[turn % 2].turn(50)
        starts.append(clock.now)
    first = starts[0]
    assert [round(s - first, 6) for s in starts] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    clock.now += 30.0  # idle: a 429 pause, a quota pause
    resumed = clock.now
    later = []
    for turn in range(6):
        pacers[turn % 2].turn(50)
        later.append(clock.now)
    assert later[0] == resumed  # the booking that ended long ago is not carried into the future
    per_second = [sum(50 for s in later if resumed + k <= s < resumed + k + 1) for k in range(3)]
    assert per_second == [100, 100, 100]  # the rate, not a burst of what the idle time would have allowed
    for store in stores:
        store.close()


@pytest.fixture(scope="module")
def one_store(tmp_path_factory):
    """One SQLite store for every example (each uses a scope of its own)."""
    from newsletter.store.db import Store

    store = Store(f"sqlite:///{tmp_path_factory.mktemp('quota') / 'q.db'}")
    yield store
    store.close()


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), min_size=1, max_size=40),
       hourly=st.integers(1, 60), daily=st.integers(1, 150))
def test_whatever_the_takes_no_window_holds_more_than_its_cap(one_store, steps, hourly, daily):
    """Takes of any size at any minutes: every hour and day counts at most its cap, and a take is cut
    only by a full window."""
    import uuid

    from newsletter.config import Limits
    from newsletter.engine.quotas import Quota, QuotaReached

    clock = Clock(datetime(2026, 12, 2, 20, 0, tzinfo=UTC))
    quota = Quota("smtp", f"smtp:{uuid.uuid4().hex}", Limits(hourly_cap=hourly, daily_cap=daily), None, clock)
    per_hour: dict[datetime, int] = {}
    per_day: dict[date, int] = {}
    for minutes, want in steps:
        clock.now += timedelta(minutes=minutes)
        hour, day = clock.now.replace(minute=0, second=0, microsecond=0), clock.now.date()
        try:
            with one_store.session() as session:
                granted, _ = quota.take(session, want)
        except QuotaReached:
            granted = 0
        room = min(hourly - per_hour.get(hour, 0), daily - per_day.get(day, 0))
        assert granted == min(want, room)
        per_hour[hour] = per_hour.get(hour, 0) + granted
        per_day[day] = per_day.get(day, 0) + granted
    assert max(per_hour.values()) <= hourly and max(per_day.values()) <= daily
