"""The circuit breaker: a running campaign pauses on complaints, hard bounces and a dead transport.

Real parts: the SMTP transport against a closed port and then a real aiosmtpd
server, the official sendgrid client against a closed port and then
tests/fake_sendgrid.py, complaint and bounce events through the event
pipeline, the CLI in-process; SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from newsletter.delivery.message import Outcome, SendResult

from fake_sendgrid import FakeSendGrid
from smtp_server import SmtpServer, free_port
from support.cli import populate

API_KEY = "SG.breaker-test.secret-value"


def configure(workspace, delivery: str, batch: int = 1000) -> None:
    """Add keys to [delivery] of the workspace's newsletter.toml."""
    config = workspace / "newsletter.toml"
    text = config.read_text().replace("processes = 0\n", f"processes = 0\n{delivery}\n", 1)
    config.write_text(text.replace("batch_size = 1000\n", f"batch_size = {batch}\n", 1))


# ---------------------------------------------------------------- the streak, without a database

def _thresholds(**values):
    from newsletter.config import Breaker as Thresholds

    return Thresholds(**values)


def _results(count: int, cause: str | None, start: int = 0, outcome=Outcome.FAILED):
    results = [SendResult(f"m{i}", outcome, retryable=True, error="x", cause=cause)
               for i in range(start, start + count)]
    return results, {r.message_id: i for i, r in enumerate(results, start)}


def test_fifty_failures_in_a_row_of_one_kind_trip_it_across_batches():
    from newsletter.engine.breaker import Breaker

    breaker = Breaker(_thresholds())
    assert breaker.observe(*_results(30, "connection")) is None
    reason = breaker.observe(*_results(30, "connection", start=30))
    assert reason is not None and "60 recipients in a row failed" in reason and "(connection)" in reason
    assert breaker.streak == list(range(60))


def test_a_success_or_another_kind_starts_the_streak_again():
    from newsletter.engine.breaker import Breaker

    breaker = Breaker(_thresholds())
    assert breaker.observe(*_results(49, "dns")) is None
    assert breaker.observe(*_results(1, None, start=49, outcome=Outcome.SENT)) is None
    assert breaker.observe(*_results(49, "dns", start=50)) is None
    assert breaker.observe(*_results(49, "connection", start=99)) is None
    # a failure the recipient caused (no transport cause) ends a streak too
    assert breaker.observe(*_results(1, None, start=148)) is None
    assert breaker.streak == []


def test_the_transport_threshold_is_configurable_and_zero_turns_it_off():
    from newsletter.engine.breaker import Breaker

    assert Breaker(_thresholds(transport_failures=3)).observe(*_results(3, "timeout")) is not None
    assert Breaker(_thresholds(transport_failures=0)).observe(*_results(500, "timeout")) is None


def test_connect_failures_name_their_cause():
    import socket

    from newsletter.delivery.message import cause_of

    assert cause_of(socket.gaierror(-2, "Name or service not known")) == "dns"
    assert cause_of(TimeoutError("timed out")) == "timeout"
    assert cause_of(ConnectionRefusedError(111, "Connection refused")) == "connection"


def test_an_unresolvable_smtp_host_is_a_dns_failure_of_every_recipient(monkeypatch):
    """No lookup leaves the machine: the resolver is replaced by one that fails as a missing name does."""
    import socket

    from newsletter.delivery.smtp import SmtpTransport

    from support.delivery import make_message, make_recipients

    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    transport = SmtpTransport("smtp.nowhere.invalid", 25, tls="none")
    recipients = make_recipients(3)
    with transport:
        results = transport.send_batch(make_message(), recipients)
    assert [(r.outcome, r.cause) for r in results] == [(Outcome.FAILED, "dns")] * 3


def test_the_rates_are_read_at_most_every_check_seconds(monkeypatch):
    from newsletter.engine import breaker as module
    from newsletter.store.ledger import Reception

    reads, looks, now = [], [], [100.0]
    monkeypatch.setattr(module.ledger, "troubles", lambda session, campaign_id: looks.append(now[0]) or (1, 0))
    monkeypatch.setattr(module.ledger, "reception", lambda session, campaign_id: reads.append(now[0]) or
                        Reception(sent=2000, complained=1, hard_bounced=0))
    breaker = module.Breaker(_thresholds(check_seconds=5.0), clock=lambda: now[0])
    for step in (0.0, 1.0, 4.9, 5.0, 9.9, 10.0):
        now[0] = 100.0 + step
        breaker.check(None, 1)
    assert looks == reads == [100.0, 105.0, 110.0]


def test_without_complaints_or_hard_bounces_the_campaign_is_not_scanned(monkeypatch):
    """The first reading counts the troubled rows (a partial index); the whole campaign is read only
    when there are some, and what was there at the start of the run is what a resume has seen."""
    from newsletter.engine import breaker as module
    from newsletter.store.ledger import Reception

    reads, found, now = [], [(0, 0)], [100.0]
    monkeypatch.setattr(module.ledger, "troubles", lambda session, campaign_id: found[0])
    monkeypatch.setattr(module.ledger, "reception", lambda session, campaign_id: reads.append(now[0]) or
                        Reception(sent=2000, complained=found[0][0], hard_bounced=found[0][1]))
    breaker = module.Breaker(_thresholds(check_seconds=5.0), clock=lambda: now[0])
    breaker.check(None, 1)
    assert reads == [] and breaker.seen_at_start == Reception(0, 0, 0)
    found[0], now[0] = (10, 0), 106.0  # 10 complaints of 2,000 since the start: 0.5%
    with pytest.raises(module.BreakerTripped, match="complaint rate 0.5%"):
        breaker.check(None, 1)
    assert reads == [106.0]


def test_thresholds_come_from_delivery(workspace):
    from newsletter.config import Breaker as Thresholds
    from newsletter.config import load_settings

    assert load_settings(workspace).breaker == Thresholds()
    configure(workspace, "breaker_complaint_pause = 0.005\nbreaker_min_sample = 200\nbreaker_transport_failures = 10")
    breaker = load_settings(workspace).breaker
    assert (breaker.complaint_pause, breaker.min_sample, breaker.transport_failures) == (0.005, 200, 10)


@pytest.mark.parametrize(("keys", "message"), [
    ("breaker_complaint_pause = 3", "is a fraction, at most 1"),
    ("breaker_min_sample = 10.5", "must be a whole number"),
    ("breaker_transport_failures = -1", "must be at least 0"),
])
def test_bad_thresholds_are_one_line_errors(workspace, cli, keys, message):
    configure(workspace, keys)
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- an unreachable host

def _closed_port() -> int:
    return free_port()  # bound and closed again: nothing listens there, connections are refused


def _send(workspace):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.dispatch import Watch

    settings = load_settings(workspace)
    store = open_store(settings)
    try:
        plan = use.plan_send(store, settings, "articles/welcome.md", "readers", again=True)
        return use.send_now(store, settings, plan, Watch(note=lambda _: None))
    finally:
        store.close()


def _assert_paused_with_everything_pending(cli, report, total: int, started: float) -> None:
    assert time.monotonic() - started < 30, "the breaker should pause within seconds"
    assert (report.status, report.sent, report.failed) == ("paused", 0, 0)
    assert report.pause_reason.startswith("circuit breaker:") and "(connection)" in report.pause_reason
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["status"] == "paused" and data["pause_reason"] == report.pause_reason and data["resume_at"] is None
    assert (data["counts"]["pending"], data["counts"]["failed"], data["counts"]["sent"]) == (total, 0, 0)
    shown = " ".join(cli("campaigns", "show", str(report.campaign_id)).stdout.split())
    assert f"paused: {report.pause_reason}" in shown
    assert f"resume it with: newsletter campaigns resume {report.campaign_id}" in shown


def test_an_unreachable_smtp_host_pauses_a_2000_recipient_send_and_resume_finishes_it(
        workspace, cli, tmp_path, monkeypatch):
    emails = populate(cli, tmp_path, 2000)
    configure(workspace, "", batch=500)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{_closed_port()}?tls=none")
    started = time.monotonic()
    report = _send(workspace)
    _assert_paused_with_everything_pending(cli, report, 2000, started)
    # the cause is fixed: a server listens, and a person resumes the campaign
    with SmtpServer(sink=False) as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none")
        result = cli("campaigns", "resume", str(report.campaign_id), "--json")
        assert result.exit_code == 0, result.stderr
        got = Counter(to for m in server.messages for to in m.rcpt_tos)
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["status"] == "sent" and data["counts"]["sent"] == 2000 and not data.get("pause_reason")


def test_an_unreachable_sendgrid_host_pauses_a_2000_recipient_send_and_resume_finishes_it(
        workspace, cli, tmp_path, monkeypatch):
    from newsletter.delivery import retry

    monkeypatch.setattr(retry, "pause", lambda seconds: None)  # the backoff between attempts: not waited here
    emails = populate(cli, tmp_path, 2000)
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    report = _send(workspace)
    _assert_paused_with_everything_pending(cli, report, 2000, started)
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
        result = cli("campaigns", "resume", str(report.campaign_id), "--json")
        assert result.exit_code == 0, result.stderr
        got = Counter(to["email"] for body in server.bodies for p in body["personalizations"] for to in p["to"])
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}


# ---------------------------------------------------------------- complaints and hard bounces

class Reporting:
    """A memory transport whose recipients complain (or bounce hard) while the campaign runs: after
    batch ``after``, events for ``count`` of its recipients go through the event pipeline."""

    def __init__(self, store, settings, *, kind: str, count: int, after: int = 1):
        from newsletter.delivery.memory import MemoryTransport

        self.inner, self.store, self.settings = MemoryTransport(), store, settings
        self.kind, self.count, self.after, self.batches = kind, count, after, 0
        self.name, self.max_batch = self.inner.name, self.inner.max_batch

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def send_batch(self, message, recipients):
        from newsletter.events.pipeline import record_events
        from newsletter.tracking import EventKind, TrackingEvent

        results = self.inner.send_batch(message, recipients)
        self.batches += 1
        if self.batches == self.after:
            now = datetime.now(UTC)
            kind = EventKind.COMPLAINED if self.kind == "complaint" else EventKind.BOUNCED
            events = [TrackingEvent("sendgrid", kind, f"{self.kind}-{r.message_id}", r.email, now,
                                    {"event": self.kind}, message_id=r.message_id, hard=self.kind == "bounce")
                      for r in recipients[:self.count]]
            assert record_events(self.store, events, self.settings.secret_keys, now)["matched"] == self.count
        return results


def _campaign(workspace, cli, tmp_path, count: int, delivery: str, batch: int = 100):
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.engine.campaigns import create_campaign
    from newsletter.store.db import open_store

    emails = populate(cli, tmp_path, count)
    configure(workspace, "breaker_check_seconds = 0\n" + delivery, batch=batch)  # read the rates before each batch
    settings = load_settings(workspace)
    store = open_store(settings)
    campaign_id = create_campaign(store, settings, compose_edition("articles/welcome.md", settings), "readers",
                                  "memory")
    return emails, settings, store, campaign_id


def _delivered(transports) -> Counter:
    return Counter(str(m["To"].addresses[0].addr_spec) for t in transports for m in t.inner.outbox)


def test_complaint_events_pause_the_campaign_and_resume_finishes_it_with_nobody_doubled(workspace, cli, tmp_path):
    from newsletter.engine.sender import resume_campaign, start_campaign

    emails, settings, store, campaign_id = _campaign(workspace, cli, tmp_path, 500, "breaker_min_sample = 100")
    first = Reporting(store, settings, kind="complaint", count=1)
    report = start_campaign(store, settings, campaign_id, first)
    # 1 complaint of 100 sent is 1%, over 0.3%: the next batch is not sent
    assert (report.status, report.sent, report.counts["pending"]) == ("paused", 100, 400)
    assert report.pause_reason.startswith("circuit breaker: complaint rate 1% (1 of 100 sent) reached 0.3%")
    data = cli("campaigns", "show", str(campaign_id), "--json").json()
    assert data["pause_reason"] == report.pause_reason and data["resume_at"] is None
    # the scheduler does not resume it by itself: only a quota's pause has a time
    from newsletter.store.scheduling import paused_until

    with store.session() as session:
        assert paused_until(session, datetime(2100, 1, 1, tzinfo=UTC)) == []
    second = Reporting(store, settings, kind="complaint", count=0)
    report = resume_campaign(store, settings, campaign_id, second)
    assert (report.status, report.sent) == ("sent", 400)
    got = _delivered([first, second])
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    store.close()


def test_a_new_complaint_after_a_resume_pauses_again(workspace, cli, tmp_path):
    from newsletter.engine.sender import resume_campaign, start_campaign

    _, settings, store, campaign_id = _campaign(workspace, cli, tmp_path, 400, "breaker_min_sample = 100")
    assert start_campaign(store, settings, campaign_id,
                          Reporting(store, settings, kind="complaint", count=1)).status == "paused"
    report = resume_campaign(store, settings, campaign_id, Reporting(store, settings, kind="complaint", count=1))
    assert (report.status, report.sent, report.counts["pending"]) == ("paused", 100, 200)
    assert "(2 of 200 sent)" in report.pause_reason
    store.close()


def test_a_complaint_rate_at_the_warning_threshold_warns_and_goes_on(workspace, cli, tmp_path):
    from newsletter.engine.sender import start_campaign

    _, settings, store, campaign_id = _campaign(workspace, cli, tmp_path, 300,
                                                "breaker_min_sample = 100\nbreaker_complaint_pause = 0.5")
    report = start_campaign(store, settings, campaign_id, Reporting(store, settings, kind="complaint", count=1))
    assert (report.status, report.sent) == ("sent", 300)
    assert report.warnings == ["complaint rate 1% (1 of 100 sent) is at or over 0.1%; the campaign pauses at 50%"]
    store.close()


def test_hard_bounces_at_two_percent_pause_the_campaign(workspace, cli, tmp_path):
    from newsletter.engine.sender import start_campaign

    _, settings, store, campaign_id = _campaign(workspace, cli, tmp_path, 300, "breaker_min_sample = 100")
    report = start_campaign(store, settings, campaign_id, Reporting(store, settings, kind="bounce", count=2))
    assert (report.status, report.sent, report.counts["pending"]) == ("paused", 100, 200)
    assert report.pause_reason.startswith("circuit breaker: hard-bounce rate 2% (2 of 100 sent) reached 2%")
    store.close()


def test_below_the_minimum_sample_a_bounce_does_not_pause(workspace, cli, tmp_path):
    """The default minimum sample is 1,000 sent: the first bounce of 10 sends is not a rate yet."""
    from newsletter.engine.sender import start_campaign

    _, settings, store, campaign_id = _campaign(workspace, cli, tmp_path, 10, "", batch=2)
    report = start_campaign(store, settings, campaign_id, Reporting(store, settings, kind="bounce", count=1))
    assert (report.status, report.sent) == ("sent", 10)
    store.close()


def test_scale_out_workers_pause_on_an_unreachable_host_and_resume_sends_everyone_once(
        workspace, cli, tmp_path, monkeypatch):
    pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.distributed.chunks import WorkerContext, run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign, resume_distributed
    from newsletter.engine.campaigns import create_campaign
    from newsletter.store import ledger
    from newsletter.store.db import open_store
    from newsletter.store.distributed import campaign_chunks

    emails = populate(cli, tmp_path, 2000)
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{_closed_port()}?tls=none")
    settings = load_settings(workspace)
    store, broker = open_store(settings), StubBroker()
    try:
        c = create_campaign(store, settings, compose_edition("articles/welcome.md", settings), "readers", "smtp")
        assert enqueue_campaign(store, settings, c, broker=broker) == 2
        with store.session() as session:
            chunks = [(chunk.first_id, chunk.last_id) for chunk in campaign_chunks(session, c)]
        first = run_chunk(WorkerContext(store, settings), c, *chunks[0])
        assert (first.outcome, first.campaign_status, first.failed) == ("paused", "paused", 0)
        assert run_chunk(WorkerContext(store, settings), c, *chunks[1]).outcome == "not-sending"
        data = cli("campaigns", "show", str(c), "--json").json()
        assert data["status"] == "paused" and data["pause_reason"].startswith("circuit breaker:")
        assert data["resume_at"] is None
        with store.session() as session:
            assert ledger.counts(session, c)["pending"] == 2000
        with SmtpServer() as server:
            monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none")
            fixed = load_settings(workspace)
            assert resume_distributed(store, fixed, c, broker=broker) == 2
            for first_id, last_id in chunks:
                run_chunk(WorkerContext(store, fixed), c, first_id, last_id)
            got = Counter(to for m in server.messages for to in m.rcpt_tos)
        assert sorted(got) == sorted(emails) and set(got.values()) == {1}
        assert cli("campaigns", "show", str(c), "--json").json()["status"] == "sent"
    finally:
        broker.close()
        store.close()


def test_several_sending_processes_pause_together_on_an_unreachable_host(workspace, cli, tmp_path, monkeypatch):
    populate(cli, tmp_path, 2000)
    configure(workspace, "", batch=200)
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace("processes = 0\n", "processes = 2\n", 1))
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{_closed_port()}?tls=none")
    started = time.monotonic()
    report = _send(workspace)
    _assert_paused_with_everything_pending(cli, report, 2000, started)


def test_a_worker_pauses_on_complaints_recorded_between_its_chunks(workspace, cli, tmp_path):
    """A worker process keeps its breaker's reading from chunk to chunk: complaints that come in
    after its first chunk pause the campaign at its next one (a breaker made afresh for each chunk
    took them as already seen, and read the whole ledger every time)."""
    pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker
    from newsletter.distributed.chunks import WorkerContext, run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.store.distributed import campaign_chunks

    _, settings, store, c = _campaign(workspace, cli, tmp_path, 2500, "breaker_min_sample = 1000", batch=1000)
    complaining = Reporting(store, settings, kind="complaint", count=5)  # 5 of the first 1,000 complain: 0.5%

    class Context(WorkerContext):
        def transport(self, name):
            return complaining

    broker = StubBroker()
    try:
        assert enqueue_campaign(store, settings, c, broker=broker) == 3
        with store.session() as session:
            chunks = [(chunk.first_id, chunk.last_id) for chunk in campaign_chunks(session, c)]
        worker = Context(store, settings)
        first = run_chunk(worker, c, *chunks[0])
        assert (first.outcome, first.sent) == ("done", 1000)
        second = run_chunk(worker, c, *chunks[1])
        assert (second.outcome, second.campaign_status, second.sent) == ("paused", "paused", 0)
        data = cli("campaigns", "show", str(c), "--json").json()
        assert data["pause_reason"].startswith("circuit breaker: complaint rate 0.5% (5 of 1000 sent) reached 0.3%")
        assert data["counts"]["sent"] == 1000 and data["counts"]["pending"] == 1500
        assert len(complaining.inner.outbox) == 1000
    finally:
        broker.close()
        store.close()


# ---------------------------------------------------------------- a refused login pauses, never fails anyone

def _assert_paused_for_the_login(cli, report, total: int, started: float, setting: str) -> None:
    assert time.monotonic() - started < 30, "a refused login should pause at once"
    assert (report.status, report.sent, report.failed) == ("paused", 0, 0)
    assert report.pause_reason.startswith("the relay refused the login")
    assert report.pause_reason.endswith("check the credentials, then resume") and setting in report.pause_reason
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["status"] == "paused" and data["pause_reason"] == report.pause_reason and data["resume_at"] is None
    assert (data["counts"]["pending"], data["counts"]["failed"], data["counts"]["sent"]) == (total, 0, 0)
    shown = " ".join(cli("campaigns", "show", str(report.campaign_id)).stdout.split())
    assert f"resume it with: newsletter campaigns resume {report.campaign_id}" in shown


def test_an_smtp_login_refused_pauses_with_everyone_pending_and_resume_sends_each_once(
        workspace, cli, tmp_path, monkeypatch):
    emails = populate(cli, tmp_path, 1200)
    configure(workspace, "", batch=500)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    with SmtpServer(credentials=("news", "right-password")) as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL",
                           f"smtp://news:wrong-password-must-not-leak@127.0.0.1:{server.port}?tls=none")
        started = time.monotonic()
        report = _send(workspace)
        _assert_paused_for_the_login(cli, report, 1200, started, "NEWSLETTER_SMTP_URL")
        assert server.messages == [] and "must-not-leak" not in report.pause_reason
        # the credentials are fixed: a person resumes the campaign
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://news:right-password@127.0.0.1:{server.port}?tls=none")
        result = cli("campaigns", "resume", str(report.campaign_id), "--json")
        assert result.exit_code == 0, result.stderr
        got = Counter(to for m in server.messages for to in m.rcpt_tos)
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["status"] == "sent" and data["counts"]["sent"] == 1200 and not data.get("pause_reason")


def test_a_sendgrid_key_refused_pauses_with_everyone_pending_and_resume_sends_each_once(
        workspace, cli, tmp_path, monkeypatch):
    emails = populate(cli, tmp_path, 1500)
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong.key-that-must-not-leak")
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
        started = time.monotonic()
        report = _send(workspace)
        _assert_paused_for_the_login(cli, report, 1500, started, "SENDGRID_API_KEY")
        assert server.bodies == [] and "must-not-leak" not in report.pause_reason
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        result = cli("campaigns", "resume", str(report.campaign_id), "--json")
        assert result.exit_code == 0, result.stderr
        got = Counter(to["email"] for body in server.bodies for p in body["personalizations"] for to in p["to"])
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
