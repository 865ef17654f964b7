"""One sender per campaign, on both backends: claims that count, heartbeats that beat, fencing, pacing.

The failure these guard against (issue 11): a send stalled by a long 429
wait looks dead to a daemon on another machine, which resumes the campaign
while the first sender carries on; both claim the same rows and the ledger
hides it.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from newsletter.config import load_settings
from newsletter.store.db import open_store

from support.cli import populate
from support.senders import Blocking, Scripted, campaign_row, ledger_counts, ready_campaign, wait_until


@pytest.fixture
def store_settings(workspace, cli, tmp_path):
    populate(cli, tmp_path, 60)
    settings = load_settings()
    store = open_store(settings)
    yield store, settings
    store.close()


def _list_id(store, campaign_id):
    return campaign_row(store, campaign_id).list_id


def _snapshot(store, campaign_id):
    """Move the draft to ``sending`` with its ledger rows, as start_campaign does before its loop."""
    from newsletter.store import ledger

    list_id = _list_id(store, campaign_id)
    with store.session() as session:
        assert ledger.claim_campaign(session, campaign_id, ("draft",), "sending", sender="test:1:x")
        ledger.snapshot_audience(session, campaign_id, list_id)


def test_a_claim_returns_only_the_rows_it_moved_while_another_claim_holds_them(store_settings, workspace):
    """Two claimers with the same after_id: the second gets other rows, never the first one's."""
    from newsletter.engine.sender import SendReport, claim_batch
    from newsletter.store import ledger

    store, _ = store_settings
    if store.dialect == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): a second claim waits; see the threaded test")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    list_id = _list_id(store, campaign_id)
    first: list[int] = []
    holding, go = threading.Event(), threading.Event()

    def hold_a_claim():
        with store.session() as session:
            first.extend(c.delivery_id for c in ledger.claim_pending(session, campaign_id, list_id, 0, 10).rows)
            holding.set()
            go.wait(30)  # the claim is not committed yet

    holder = threading.Thread(target=hold_a_claim)
    holder.start()
    assert holding.wait(30)
    second: list = []
    other = threading.Thread(target=lambda: second.append(
        claim_batch(store, campaign_id, list_id, 0, 10, SendReport(campaign_id, "sending"))))
    other.start()
    other.join(20)  # the second claim must not wait for the first: it skips the rows held
    blocked = other.is_alive()
    go.set()
    holder.join(30)
    other.join(30)
    assert not blocked, "the second claim waited for rows another claim holds"
    second_ids = [c.delivery_id for c in second[0].rows]
    assert len(first) == 10 and len(second_ids) == 10
    assert not set(first) & set(second_ids)
    assert ledger_counts(store, campaign_id)["sending"] == 20


def test_concurrent_claimers_from_the_same_point_claim_each_row_once(store_settings, workspace):
    from newsletter.engine.sender import SendReport, claim_batch

    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    list_id = _list_id(store, campaign_id)
    claimed: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(index):
        start.wait(30)
        after = 0
        for _ in range(100):  # bounded: 60 rows, at least one per claim
            claim = claim_batch(store, campaign_id, list_id, after, 7, SendReport(campaign_id, "sending"))
            if claim is None:
                return
            claimed[index].extend(c.delivery_id for c in claim.rows)
            after = claim.last_id

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [row for rows in claimed for row in rows]
    assert len(every) == 60 and len(set(every)) == 60  # each row claimed by exactly one claimer
    assert ledger_counts(store, campaign_id)["sending"] == 60


def test_the_heartbeat_beats_while_the_transport_waits(store_settings, workspace):
    from newsletter.engine.sender import start_campaign

    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace)
    # The settings are loaded already (an environment variable now would change nothing): beat every 0.2 s.
    settings = dataclasses.replace(settings, sender_stale_seconds=1.0)
    transport = Blocking()
    outcome: list = []
    sender = threading.Thread(target=lambda: outcome.append(start_campaign(store, settings, campaign_id, transport)))
    sender.start()
    try:
        assert transport.entered.wait(30)
        before = campaign_row(store, campaign_id).heartbeat_at
        # the transport is still inside its first (and only) batch: only a heartbeat thread can move this
        wait_until(lambda: campaign_row(store, campaign_id).heartbeat_at > before, what="a fresh heartbeat")
        assert not transport.release.is_set()
    finally:
        transport.release.set()
        sender.join(60)
    assert outcome[0].status == "sent" and len(transport.sent) == 60


def test_a_sender_taken_over_stops_and_sends_nothing_more(store_settings, workspace):
    """Between its claim and its record, another process takes the campaign over."""
    from newsletter.engine.fencing import Fenced
    from newsletter.engine.sender import start_campaign, take_over

    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace, batch_size=10)
    taken: list[str] = []

    def take_it_over(number, _recipients):
        if number == 1:  # the batch is in flight; a resume elsewhere takes the campaign
            taken.append(take_over(store, settings, campaign_id))

    old = Scripted(take_it_over)
    with pytest.raises(Fenced) as caught:
        start_campaign(store, settings, campaign_id, old)
    assert "taken over" in caught.value.message and caught.value.hint
    assert old.batches == 1 and len(old.sent) == 10  # nothing after the batch in flight
    counts = ledger_counts(store, campaign_id)
    # its batch in flight stays as the new owner's takeover left it: unknown, not "sent" by the old one
    assert counts["unknown"] == 10 and counts["pending"] == 50 and counts["sent"] == 0 and counts["sending"] == 0
    row = campaign_row(store, campaign_id)
    assert row.status == "sending" and row.sender == taken[0]  # the old sender did not settle it


def test_a_sender_taken_over_during_a_long_wait_claims_nothing_more(store_settings, workspace, monkeypatch):
    """Taken over while its transport waits (a 429): its heartbeat or its next write notices; it stops."""
    from newsletter.engine.fencing import Fenced
    from newsletter.engine.sender import start_campaign, take_over

    monkeypatch.setenv("NEWSLETTER_SENDER_STALE_SECONDS", "1")
    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace, batch_size=10)
    transport = Blocking()
    errors: list = []

    def run():
        try:
            start_campaign(store, settings, campaign_id, transport)
        except Fenced as exc:
            errors.append(exc)

    sender = threading.Thread(target=run)
    sender.start()
    try:
        assert transport.entered.wait(30)
        new_owner = take_over(store, settings, campaign_id)
    finally:
        transport.release.set()
        sender.join(60)
    assert len(errors) == 1 and transport.batches == 1 and len(transport.sent) == 10
    assert campaign_row(store, campaign_id).sender == new_owner
    assert ledger_counts(store, campaign_id)["pending"] == 50


def test_sender_identities_are_unique_and_liveness_reads_them():
    import os
    import socket
    from datetime import timedelta

    from newsletter.engine.fencing import new_sender_id, sender_alive
    from newsletter.store.models import utcnow

    first, second = new_sender_id(), new_sender_id()
    assert first != second and first.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    fresh, old = utcnow(), utcnow() - timedelta(seconds=30)
    assert sender_alive("db-host-2:77:abcdef", fresh, 20)  # another machine, fresh heartbeat: alive
    assert not sender_alive("db-host-2:77:abcdef", old, 20)
    assert not sender_alive("db-host-2:77:abcdef", None, 20)
    assert sender_alive(f"{socket.gethostname()}:{os.getppid()}:abc", old, 20)  # a live local process
    assert not sender_alive(f"{socket.gethostname()}:{os.getpid()}:abc", fresh, 20)  # this one is not sending it
    from newsletter.engine.fencing import same_process

    assert same_process("db-host-2:77:abcdef", "db-host-2:77:0a1b2c3d")  # a send of the daemon db-host-2:77
    assert not same_process("db-host-2:77:abcdef", "db-host-3:77:0a1b2c3d")
    assert not same_process("db-host-2:77:abcdef", "db-host-2:78:0a1b2c3d") and not same_process(None, "a:1:b")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5", "soon"])
def test_a_bad_staleness_limit_is_a_one_line_error(value, plain_workspace, monkeypatch):
    from newsletter.config import load_settings
    from newsletter.errors import ConfigError

    monkeypatch.setenv("NEWSLETTER_SENDER_STALE_SECONDS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(plain_workspace)
    assert "NEWSLETTER_SENDER_STALE_SECONDS" in caught.value.message and caught.value.hint


def test_the_staleness_limit_is_read_from_newsletter_toml(plain_workspace, settings, monkeypatch):
    from newsletter.config import load_settings
    from newsletter.engine.fencing import stale_seconds

    assert stale_seconds(settings) == 120
    config = plain_workspace / "newsletter.toml"
    config.write_text(config.read_text() + "\n[delivery]\nsender_stale_seconds = 45\n"
                      if "[delivery]" not in config.read_text()
                      else config.read_text().replace("[delivery]", "[delivery]\nsender_stale_seconds = 45", 1))
    assert stale_seconds(load_settings(plain_workspace)) == 45
    monkeypatch.setenv("NEWSLETTER_SENDER_STALE_SECONDS", "7.5")
    assert stale_seconds(load_settings(plain_workspace)) == 7.5


def test_retry_is_refused_while_another_machine_sends_and_the_ledger_is_untouched(store_settings, workspace, cli):
    from newsletter.store import ledger
    from newsletter.store.models import utcnow

    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    list_id = _list_id(store, campaign_id)
    with store.session() as session:
        ids = [c.delivery_id for c in ledger.claim_pending(session, campaign_id, list_id, 0, 5).rows]
        ledger.mark(session, ids, "failed", "sending", error="mailbox full")
        ledger.set_campaign(session, campaign_id, sender="mail-2.clinic.example:4242:0a1b2c", heartbeat_at=utcnow())
    result = cli("campaigns", "retry", str(campaign_id), "--failed")
    assert result.exit_code == 1 and "being sent by another process" in result.stderr
    assert "Traceback" not in result.stderr
    counts = ledger_counts(store, campaign_id)
    assert counts["failed"] == 5 and counts["pending"] == 55  # nothing requeued behind the live sender's back


class _Clock:
    """A fake monotonic clock that sleeping advances."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_does_not_credit_idle_time():
    """At 100/s in batches of 100, after a 25 s wait (a 429) the next 1,000 take about 10 s, not 0."""
    from newsletter.engine.sender import _Pacer

    clock = _Clock()
    pacer = _Pacer(100, clock.sleep, clock)
    pacer.turn(100)
    clock.now += 25.0  # the batch met a 429 and waited for X-RateLimit-Reset
    started = clock.now
    for _ in range(10):
        pacer.turn(100)
    # the tenth batch may start only 9 s after the first one after the wait
    assert clock.now - started >= 9.0


def test_the_pacer_keeps_the_rate_when_sending_takes_time():
    """The time a request takes counts towards the pace: batches of 100 at 100/s start 1 s apart."""
    from newsletter.engine.sender import _Pacer

    clock = _Clock()
    pacer, starts = _Pacer(100, clock.sleep, clock), []
    for _ in range(5):
        pacer.turn(100)
        starts.append(clock.now - 1000.0)
        clock.now += 0.4  # the request itself
    assert starts == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


@hypothesis_settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.sampled_from([0.5, 1, 7, 100, 2500]),
       batches=st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 300, allow_nan=False)), min_size=1, max_size=30))
def test_the_pacer_never_sends_faster_than_its_rate_whatever_the_idle_gaps(rate, batches):
    """Between the starts of any two batches, at most ``rate`` messages a second went out before."""
    from newsletter.engine.sender import _Pacer

    clock = _Clock()
    pacer, starts = _Pacer(rate, clock.sleep, clock), []
    for count, idle in batches:
        clock.now += idle  # a 429 wait, a slow request, an unsubscribe storm
        pacer.turn(count)
        starts.append(clock.now)
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            sent_before_j = sum(count for count, _ in batches[i:j])
            assert sent_before_j / rate <= starts[j] - starts[i] + 1e-6


class _RollBack(Exception):
    pass


def test_a_row_another_claim_held_and_let_go_is_read_again_not_sent_unchecked(store_settings, workspace,
                                                                            database_url):
    """PostgreSQL: a claim's range update moves a row its read skipped (held by a claim that then rolled
    back): that row was never checked against the list, so it goes back to pending and the next claim
    reads it."""
    import uuid

    from newsletter.engine.sender import SendReport, claim_batch
    from newsletter.store import ledger
    from newsletter.store.db import Store
    from sqlalchemy import text

    store, _ = store_settings
    if store.dialect == "sqlite":
        pytest.skip("SQLite serialises writers: no claim can hold rows while another reads")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    list_id = _list_id(store, campaign_id)
    with store.session() as session:
        ids = sorted(session.scalars(text("SELECT id FROM deliveries WHERE campaign_id = :c"), {"c": campaign_id}))
    held = ids[4]
    name = f"claim-{uuid.uuid4().hex[:8]}"
    second_store = Store(f"{database_url}&application_name={name}")
    holding, go = threading.Event(), threading.Event()

    def hold_then_roll_back():
        try:
            with store.session() as session:
                assert ledger.claim_range(session, campaign_id, list_id, held, held, 1)
                holding.set()
                go.wait(30)
                raise _RollBack
        except _RollBack:
            pass

    holder = threading.Thread(target=hold_then_roll_back)
    holder.start()
    assert holding.wait(30)
    result: list = []
    claimer = threading.Thread(target=lambda: result.append(
        claim_batch(second_store, campaign_id, list_id, 0, 20, SendReport(campaign_id, "sending"))))
    claimer.start()
    try:
        def waiting_on_the_held_row():
            with store.session() as session:
                return session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
                                            "AND wait_event_type = 'Lock'"), {"n": name}).scalar() == 1
        wait_until(waiting_on_the_held_row, what="the second claim to wait for the held row")
    finally:
        go.set()
        holder.join(30)
        claimer.join(30)
        second_store.close()
    claim = result[0]
    claimed = [c.delivery_id for c in claim.rows]
    assert held not in claimed and claimed == ids[:4] + ids[5:21]  # the 20 rows its read returned
    assert claim.last_id == held - 1
    counts = ledger_counts(store, campaign_id)
    assert counts["sending"] == 20 and counts["pending"] == 40
    with store.session() as session:  # put back as it was: no attempt counted
        assert session.execute(text("SELECT status, attempts FROM deliveries WHERE id = :i"),
                               {"i": held}).one() == ("pending", 0)
    again = claim_batch(store, campaign_id, list_id, claim.last_id, 20, SendReport(campaign_id, "sending"))
    assert again.rows[0].delivery_id == held


def test_rows_claimed_before_a_takeover_are_not_sent_by_the_old_sender(store_settings, workspace, monkeypatch):
    """The takeover lands right after the old sender's claim committed (it froze there): it sends nothing."""
    from newsletter.engine import sender as engine
    from newsletter.engine.fencing import Fenced

    store, _ = store_settings
    settings, campaign_id = ready_campaign(store_settings, workspace, batch_size=10)
    original = engine.claim_batch

    def claim_then_lose_it(*args, **kwargs):
        claim = original(*args, **kwargs)
        engine.take_over(store, settings, campaign_id)
        return claim

    monkeypatch.setattr(engine, "claim_batch", claim_then_lose_it)
    transport = Scripted()
    with pytest.raises(Fenced):
        engine.start_campaign(store, settings, campaign_id, transport)
    assert transport.batches == 0 and transport.sent == []
    counts = ledger_counts(store, campaign_id)
    assert counts["unknown"] == 10 and counts["pending"] == 50 and counts["sent"] == 0


def test_a_takeover_waits_for_a_claim_in_progress_and_then_sees_its_rows(store_settings, workspace, database_url):
    """PostgreSQL: the fence locks the campaign row, so a takeover racing a claim serialises after it, and the
    rows that claim took are then the new owner's ``unknown``, never left ``sending`` for nobody."""
    import uuid

    from newsletter.engine.sender import take_over
    from newsletter.store import ledger
    from newsletter.store.db import Store
    from sqlalchemy import text

    store, _ = store_settings
    if store.dialect == "sqlite":
        pytest.skip("SQLite serialises writers: a takeover cannot start while a claim is open")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    list_id = _list_id(store, campaign_id)
    name = f"takeover-{uuid.uuid4().hex[:8]}"
    other = Store(f"{database_url}&application_name={name}")
    claiming, go = threading.Event(), threading.Event()
    claimed: list[int] = []

    def claim_and_hold():
        with store.session() as session:
            assert ledger.fence(session, campaign_id, "test:1:x")
            claimed.extend(c.delivery_id for c in ledger.claim_pending(session, campaign_id, list_id, 0, 10).rows)
            claiming.set()
            go.wait(30)

    holder = threading.Thread(target=claim_and_hold)
    holder.start()
    assert claiming.wait(30)
    new_owner: list[str] = []
    taker = threading.Thread(target=lambda: new_owner.append(take_over(other, settings, campaign_id)))
    taker.start()
    try:
        def takeover_waits():
            with store.session() as session:
                return session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
                                            "AND wait_event_type = 'Lock'"), {"n": name}).scalar() == 1
        wait_until(takeover_waits, what="the takeover to wait for the claim's transaction")
    finally:
        go.set()
        holder.join(30)
        taker.join(30)
        other.close()
    assert len(claimed) == 10 and new_owner
    counts = ledger_counts(store, campaign_id)
    assert counts["unknown"] == 10 and counts["sending"] == 0 and counts["pending"] == 50
    with store.session() as session:
        assert not ledger.fence(session, campaign_id, "test:1:x")  # the old sender is fenced out


def test_the_look_before_a_provider_call_takes_no_lock_and_sees_a_takeover(store_settings, workspace, database_url):
    """PostgreSQL: the check just before the transport is called only reads the campaign row: its transaction
    takes no transaction id (so its commit flushes nothing), a takeover does not wait for it, and once the
    takeover committed the same look fences the old sender out."""
    from newsletter.engine.sender import CampaignFence, take_over
    from newsletter.store.db import Store
    from sqlalchemy import text

    store, _ = store_settings
    if store.dialect == "sqlite":
        pytest.skip("SQLite: test_sqlite_the_look_before_a_provider_call_takes_no_lock_and_sees_a_takeover")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    fence = CampaignFence(campaign_id, "test:1:x")
    other = Store(database_url)
    taken: list[str] = []
    try:
        with store.session() as session:
            assert fence.peek(session)
            assert session.execute(text("SELECT pg_current_xact_id_if_assigned()")).scalar() is None
            taker = threading.Thread(target=lambda: taken.append(take_over(other, settings, campaign_id)))
            taker.start()
            taker.join(30)
            assert taken, "the takeover waited for the look's transaction"
        with store.session() as session:
            assert not fence.peek(session)
            assert not fence(session)
    finally:
        other.close()


def test_sqlite_batch_fence_reads_under_the_write_lock_and_sees_a_takeover(store_settings, workspace, database_url):
    """SQLite: the send loop's fence (``beat=False``) only reads the campaign row, yet no takeover can
    commit until its transaction ends (every transaction begins IMMEDIATE: another writer is refused
    at once); the heartbeat is left to the Heartbeat thread; after a takeover the same fence fails."""
    import sqlite3

    from newsletter.engine.sender import CampaignFence, take_over

    store, _ = store_settings
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL locks the row FOR SHARE (test_the_look_before_a_provider_call...)")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    beat_before = campaign_row(store, campaign_id).heartbeat_at
    fence = CampaignFence(campaign_id, "test:1:x")
    path = database_url.split("sqlite:///", 1)[1]
    with store.session() as session:
        for check in (fence, fence.peek):
            assert check(session)
        writes = session.connection().connection.driver_connection.total_changes
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # a takeover's transaction cannot even begin
        finally:
            other.close()
        assert session.connection().connection.driver_connection.total_changes == writes  # read, not written
    assert campaign_row(store, campaign_id).heartbeat_at == beat_before
    take_over(store, settings, campaign_id)  # the sender "test:1:x" has no heartbeat: taken for dead
    with store.session() as session:
        assert not fence(session)
        assert not fence.peek(session)


def test_sqlite_the_look_before_a_provider_call_takes_no_lock_and_sees_a_takeover(store_settings, workspace,
                                                                                 database_url):
    """SQLite: the look just before the transport is called runs in a read session (``BEGIN DEFERRED``):
    another process's writer is not held up by it (two sending processes no longer take turns on the
    write lock for a read), and once a takeover committed the same look fences the old sender out. The
    transaction ends before the call either way, so the lock held nothing back."""
    import sqlite3

    from newsletter.engine.sender import CampaignFence, take_over

    store, _ = store_settings
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL: test_the_look_before_a_provider_call_takes_no_lock_and_sees_a_takeover")
    settings, campaign_id = ready_campaign(store_settings, workspace)
    _snapshot(store, campaign_id)
    fence = CampaignFence(campaign_id, "test:1:x")
    path = database_url.split("sqlite:///", 1)[1]
    with store.read_session() as session:
        assert fence.peek(session)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer begins at once: the look holds no lock
            other.execute("ROLLBACK")
        finally:
            other.close()
    take_over(store, settings, campaign_id)
    with store.read_session() as session:
        assert not fence.peek(session)
