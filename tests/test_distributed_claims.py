"""Scale-out chunk logic on both backends, without a broker process (Dramatiq's StubBroker).

What a worker does with a chunk message: send only rows still pending; a
redelivered chunk sends only the rest; rows a dead worker left in flight
become ``unknown``, never re-sent; a live owner makes the message wait; the
last chunk settles the campaign once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from newsletter.config import load_settings
from newsletter.delivery.base import PermanentTransportError, Transport, results_for
from newsletter.delivery.message import Outcome
from newsletter.store.db import open_store

from support.cli import populate

pytest.importorskip("dramatiq")


class Recording(Transport):
    """Records every recipient; ``die_at``: raise PermanentTransportError on that batch number."""

    name, max_batch = "memory", 1000

    def __init__(self, sent: list[str], die_at: int | None = None, login_refused: bool = False):
        super().__init__()
        self.sent, self.die_at, self.batches, self.login_refused = sent, die_at, 0, login_refused

    def _send(self, message, recipients):
        self.batches += 1
        if self.batches == self.die_at:
            raise PermanentTransportError("refused", hint="fix SENDGRID_API_KEY", status=401,
                                          login_refused=self.login_refused)
        self.sent.extend(r.email for r in recipients)
        return results_for(recipients, Outcome.QUEUED, provider_id="p")


@pytest.fixture
def setup(workspace, cli, tmp_path):
    """A workspace with 2,500 readers and a campaign queued on a StubBroker (not yet sent)."""
    from dramatiq.brokers.stub import StubBroker
    from newsletter.compose.edition import compose_edition
    from newsletter.distributed.chunks import WorkerContext
    from newsletter.engine.campaigns import create_campaign

    emails = populate(cli, tmp_path, 2500)
    settings = load_settings()
    store = open_store(settings)
    edition = compose_edition(workspace / "articles" / "welcome.md", settings)
    campaign_id = create_campaign(store, settings, edition, "readers", "memory")
    sent: list[str] = []

    class Context(WorkerContext):
        die_at = None
        login_refused = False

        def transport(self, name):
            return Recording(sent, self.die_at, self.login_refused)

    broker = StubBroker()
    yield dict(store=store, settings=settings, campaign_id=campaign_id, emails=emails, sent=sent,
               context=lambda identity=None: Context(store, settings, identity=identity), broker=broker)
    broker.close()
    store.close()


def chunks_of(store, campaign_id):
    from newsletter.store.distributed import campaign_chunks

    with store.session() as session:
        return [(c.first_id, c.last_id, c.rows, c.status) for c in campaign_chunks(session, campaign_id)]


def counts_of(store, campaign_id):
    from newsletter.store import ledger

    with store.session() as session:
        return ledger.counts(session, campaign_id)


def status_of(store, campaign_id):
    from newsletter.store.models import Campaign

    with store.session() as session:
        return session.get(Campaign, campaign_id).status


def test_enqueue_cuts_chunks_of_1000_and_sends_one_message_each(setup):
    from newsletter.distributed.dispatch import enqueue_campaign

    store, c = setup["store"], setup["campaign_id"]
    assert enqueue_campaign(store, setup["settings"], c, broker=setup["broker"]) == 3
    chunks = chunks_of(store, c)
    assert [rows for _, _, rows, _ in chunks] == [1000, 1000, 500]
    assert all(status == "queued" for *_, status in chunks)
    assert chunks[0][1] < chunks[1][0]  # ranges do not overlap
    messages = list(setup["broker"].queues["newsletter"].queue)
    assert len(messages) == 3
    assert status_of(store, c) == "sending"
    from newsletter.errors import Conflict

    with pytest.raises(Conflict):  # started once only
        enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])


def test_every_chunk_then_the_campaign_is_sent_once(setup):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    context = setup["context"]()
    reports = [run_chunk(context, c, a, b) for a, b, _, _ in chunks_of(store, c)]
    assert [r.sent for r in reports] == [1000, 1000, 500]
    assert [r.campaign_status for r in reports] == [None, None, "sent"]
    assert sorted(setup["sent"]) == sorted(setup["emails"])
    assert status_of(store, c) == "sent"
    again = run_chunk(context, c, *chunks_of(store, c)[0][:2])  # a redelivered message
    assert again.outcome == "not-sending" and len(setup["sent"]) == 2500


def test_redelivered_chunk_after_a_dead_worker_sends_only_the_rest(setup):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.store import distributed as chunks_db
    from newsletter.store import ledger
    from newsletter.store.models import Campaign, utcnow

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    first, last, _, _ = chunks_of(store, c)[0]
    # A worker on another machine took the chunk, sent 300 rows, had 200 in flight, and died.
    with store.session() as session:
        list_id = session.get(Campaign, c).list_id
        chunk = chunks_db.lock_chunk(session, c, first)
        chunks_db.take_chunk(session, chunk, "elsewhere:4242")
        chunk.heartbeat_at = utcnow() - timedelta(minutes=10)
        done = ledger.claim_range(session, c, list_id, first, last, 300)
        ledger.mark(session, [d.delivery_id for d in done], "sent", "sending")
        in_flight = ledger.claim_range(session, c, list_id, first, last, 200)
    report = run_chunk(setup["context"](), c, first, last)
    assert report.orphaned == 200 and report.sent == 500
    counts = counts_of(store, c)
    assert counts["sent"] == 800 and counts["unknown"] == 200 and counts["sending"] == 0
    already = {d.email for d in done + in_flight}
    assert not already & set(setup["sent"])  # neither the sent nor the in-flight rows went again
    assert chunks_of(store, c)[0][3] == "done"


def test_a_live_owner_makes_the_message_wait(setup):
    from newsletter.distributed.chunks import ChunkBusy, run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.store import distributed as chunks_db

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    first, last, _, _ = chunks_of(store, c)[0]
    with store.session() as session:  # another host, heartbeat fresh: alive
        chunks_db.take_chunk(session, chunks_db.lock_chunk(session, c, first), "elsewhere:4242")
    with pytest.raises(ChunkBusy):
        run_chunk(setup["context"](), c, first, last)
    assert setup["sent"] == [] and counts_of(store, c)["pending"] == 2500


def test_unsubscribed_after_the_snapshot_is_skipped(setup, cli):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    assert cli("subscribers", "unsubscribe", "reader5@example.org").exit_code == 0
    report = run_chunk(setup["context"](), c, *chunks_of(store, c)[0][:2])
    assert report.skipped == 1 and report.sent == 999
    assert "reader5@example.org" not in setup["sent"]


def test_a_refused_login_pauses_the_campaign_for_every_worker_with_the_reason_and_rows_pending(setup):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign, resume_distributed
    from newsletter.store.models import Campaign

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    chunks = chunks_of(store, c)
    dying = setup["context"]()
    dying.die_at, dying.login_refused = 1, True
    assert run_chunk(dying, c, *chunks[0][:2]).outcome == "paused"
    assert status_of(store, c) == "paused"
    with store.session() as session:
        reason = session.get(Campaign, c).pause_reason
    assert reason.startswith("the relay refused the login") and "SENDGRID_API_KEY" in reason
    assert run_chunk(setup["context"](), c, *chunks[1][:2]).outcome == "not-sending"
    assert counts_of(store, c)["pending"] == 2500 and setup["sent"] == []
    assert resume_distributed(store, setup["settings"], c, broker=setup["broker"]) == 3
    for first, last, _, _ in chunks_of(store, c):
        run_chunk(setup["context"](), c, first, last)
    assert status_of(store, c) == "sent" and sorted(setup["sent"]) == sorted(setup["emails"])


def test_another_permanent_error_stops_the_campaign_for_every_worker_and_keeps_rows_pending(setup):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign, resume_distributed

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    chunks = chunks_of(store, c)
    dying = setup["context"]()
    dying.die_at = 1
    assert run_chunk(dying, c, *chunks[0][:2]).outcome == "stopped"
    assert status_of(store, c) == "stopped"
    assert run_chunk(setup["context"](), c, *chunks[1][:2]).outcome == "not-sending"
    assert counts_of(store, c)["pending"] == 2500 and setup["sent"] == []
    assert resume_distributed(store, setup["settings"], c, broker=setup["broker"]) == 3
    for first, last, _, _ in chunks_of(store, c):
        run_chunk(setup["context"](), c, first, last)
    assert status_of(store, c) == "sent" and sorted(setup["sent"]) == sorted(setup["emails"])


def test_limit_sends_the_first_n_then_pauses(setup):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign

    store, c = setup["store"], setup["campaign_id"]
    assert enqueue_campaign(store, setup["settings"], c, broker=setup["broker"], limit=1200) == 2
    for first, last, _, _ in chunks_of(store, c):
        run_chunk(setup["context"](), c, first, last)
    assert len(setup["sent"]) == 1200 and status_of(store, c) == "paused"
    assert counts_of(store, c)["pending"] == 1300


def test_lost_messages_are_queued_again_by_an_idle_worker(setup):
    from newsletter.distributed.dispatch import enqueue_campaign, requeue_stalled

    store, c, broker = setup["store"], setup["campaign_id"], setup["broker"]
    enqueue_campaign(store, setup["settings"], c, broker=broker)
    broker.flush_all()  # a broker restarted without persistence
    context = setup["context"]()
    assert requeue_stalled(store, setup["settings"], broker, idle_seconds=0, is_alive=context.owner_alive) == 3
    assert len(broker.queues["newsletter"].queue) == 3
    # A second sweeper right after finds them freshly queued.
    assert requeue_stalled(store, setup["settings"], broker, idle_seconds=60, is_alive=context.owner_alive) == 0


def test_two_workers_finishing_the_last_chunks_together_settle_the_campaign_exactly_once(setup, monkeypatch):
    """The last two chunks finish at the same moment in two workers (threads held at a barrier, on
    PostgreSQL inside their finishing transactions, each chunk marked done and not yet committed; on
    SQLite just before them, as its writers are serialised anyway): each would see the other's chunk
    still running, and without the turn they take on the campaign row neither would settle it. Exactly
    one settles it, and every reader got the newsletter once."""
    import threading

    from newsletter.distributed import chunks as chunks_module
    from newsletter.distributed.chunks import run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.store import distributed as chunks_db

    store, c = setup["store"], setup["campaign_id"]
    enqueue_campaign(store, setup["settings"], c, broker=setup["broker"])
    ranges = [(a, b) for a, b, _, _ in chunks_of(store, c)]
    assert run_chunk(setup["context"]("host:1:first"), c, *ranges[0]).campaign_status is None
    together = threading.Barrier(2, timeout=30)
    finished: list[bool] = []
    settled: list[bool] = []
    if store.dialect == "postgresql":
        original = chunks_db.finish_chunk

        def finish_then_meet(*args, **kwargs):
            done = original(*args, **kwargs)  # this chunk is done in the open transaction
            finished.append(done)
            together.wait()  # the other worker's chunk is done too, neither committed
            return done

        monkeypatch.setattr(chunks_db, "finish_chunk", finish_then_meet)
    else:
        original_finish = chunks_module._finish

        def meet_then_finish(*args, **kwargs):
            together.wait()
            finished.append(True)
            return original_finish(*args, **kwargs)

        monkeypatch.setattr(chunks_module, "_finish", meet_then_finish)
    from newsletter.store import ledger

    original_settle = ledger.settle_if_done

    def counted_settle(*args, **kwargs):
        won = original_settle(*args, **kwargs)
        settled.append(won)
        return won

    monkeypatch.setattr(ledger, "settle_if_done", counted_settle)
    reports: dict[str, object] = {}

    def worker(name: str, first_id: int, last_id: int) -> None:
        reports[name] = run_chunk(setup["context"](name), c, first_id, last_id)

    threads = [threading.Thread(target=worker, args=(f"host:{n}:w", *ranges[n])) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert finished == [True, True]  # both really finished together
    assert settled == [True]  # one settle, by the last to take its turn
    assert sorted(r.campaign_status or "" for r in reports.values()) == ["", "sent"]
    assert status_of(store, c) == "sent"
    assert sorted(setup["sent"]) == sorted(setup["emails"])  # every reader once
    assert counts_of(store, c)["sent"] == 2500
