"""Scale-out fencing on both backends (Dramatiq's StubBroker, no broker process).

A worker taken for dead (frozen through a long shared 429 pause, say) and
overtaken by another must never mark the chunk's rows sent, nor claim or
send anything more: the owner is checked in the transaction of every claim
and every write of results.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from newsletter.config import load_settings
from newsletter.store.db import open_store

from support.cli import populate
from support.senders import Scripted, ledger_counts

pytest.importorskip("dramatiq")


@pytest.fixture
def queued(workspace, cli, tmp_path):
    """300 readers, a campaign queued as one chunk on a StubBroker; batches of 100."""
    from dramatiq.brokers.stub import StubBroker
    from newsletter.compose.edition import compose_edition
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.engine.campaigns import create_campaign
    from newsletter.store.distributed import campaign_chunks

    emails = populate(cli, tmp_path, 300)
    settings = dataclasses.replace(load_settings(), batch_size=100)
    store = open_store(settings)
    campaign_id = create_campaign(store, settings, compose_edition(workspace / "articles" / "welcome.md", settings),
                                  "readers", "memory")
    broker = StubBroker()
    enqueue_campaign(store, settings, campaign_id, broker=broker)
    with store.session() as session:
        (chunk,) = campaign_chunks(session, campaign_id)
        bounds = (chunk.first_id, chunk.last_id)
    yield store, settings, campaign_id, bounds, emails
    broker.close()
    store.close()


def _context(store, settings, transport):
    from newsletter.distributed.chunks import WorkerContext

    class Context(WorkerContext):
        def transport(self, name):
            return transport

    return Context(store, settings)


def test_a_chunk_taken_over_mid_batch_is_never_marked_sent_by_its_old_owner(queued):
    from newsletter.distributed.chunks import run_chunk
    from newsletter.store import distributed as chunks_db
    from newsletter.store import ledger
    from newsletter.store.models import utcnow

    store, settings, campaign_id, (first, last), emails = queued

    def taken_over_while_in_flight(number, _recipients):
        if number == 1:  # another machine takes the chunk, as run_chunk's take does
            with store.session() as session:
                chunk = chunks_db.lock_chunk(session, campaign_id, first)
                ledger.orphans_in_range_to_unknown(session, campaign_id, first, last)
                chunks_db.take_chunk(session, chunk, "worker-2.clinic.example:4242:0a1b2c")

    old = Scripted(taken_over_while_in_flight)
    report = run_chunk(_context(store, settings, old), campaign_id, first, last)
    assert report.outcome == "taken-over" and report.sent == 0
    assert old.batches == 1  # it claimed and sent nothing after it lost the chunk
    counts = ledger_counts(store, campaign_id)
    assert counts["unknown"] == 100 and counts["sent"] == 0 and counts["pending"] == 200
    # the new owner dies too; a third worker finishes the chunk: everybody exactly once
    with store.session() as session:
        chunk = chunks_db.lock_chunk(session, campaign_id, first)
        chunk.heartbeat_at = utcnow() - timedelta(hours=1)
    third = Scripted()
    assert run_chunk(_context(store, settings, third), campaign_id, first, last).sent == 200
    assert sorted(old.sent + third.sent) == sorted(emails)
    counts = ledger_counts(store, campaign_id)
    assert counts["sent"] == 200 and counts["unknown"] == 100 and counts["sending"] == 0


def test_an_old_owner_waiting_for_the_shared_pause_claims_nothing_after_a_takeover(queued):
    """Taken over between two batches (it was waiting for the global 429 pause): its next claim is fenced."""
    from newsletter.distributed.chunks import run_chunk
    from newsletter.store import distributed as chunks_db

    store, settings, campaign_id, (first, last), _ = queued

    class PausedGate:
        """The shared gate: during the wait before batch 2 another worker takes the chunk over."""

        waits = 0

        def wait(self, count):
            self.waits += 1
            if self.waits == 2:
                with store.session() as session:
                    chunk = chunks_db.lock_chunk(session, campaign_id, first)
                    chunks_db.take_chunk(session, chunk, "worker-2.clinic.example:4242:0a1b2c")
            return 0.0

        def take_quota(self, want):  # no caps configured: everything asked for is granted
            return want, []

        def give_back(self, windows, count):
            pass

    old = Scripted()
    context = _context(store, settings, old)
    gate = PausedGate()
    context.gate = lambda name: gate
    report = run_chunk(context, campaign_id, first, last)
    assert report.outcome == "taken-over" and old.batches == 1 and report.sent == 100
    counts = ledger_counts(store, campaign_id)
    assert counts["sent"] == 100 and counts["pending"] == 200 and counts["sending"] == 0
    with store.session() as session:
        assert chunks_db.lock_chunk(session, campaign_id, first).owner.startswith("worker-2.")
