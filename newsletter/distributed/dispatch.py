"""Handing a campaign to the workers, and following it.

:func:`enqueue_campaign` claims a draft or scheduled campaign
(``-> sending``, one winner, exactly as the single-machine start does),
snapshots its audience into the ledger, cuts the pending rows into chunks of
at most :data:`CHUNK_SIZE` ids, records them (``send_chunks``) and sends one
Dramatiq message per chunk carrying only ``(campaign_id, first_id, last_id)``.

The database stays the truth: a message lost with a broker that restarted
without persistence, or never sent because the broker was down, is found by
:func:`requeue_stalled` (run by idle workers) and sent again. Duplicate
messages are harmless: a worker sends only rows still pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from newsletter.engine.campaigns import audience_list_id, ensure_resumable, get_campaign
from newsletter.engine.sender import SendReport
from newsletter.errors import Conflict, DeliveryError
from newsletter.store import distributed as chunks_db
from newsletter.store import ledger
from newsletter.store.models import utcnow
from newsletter.vocabulary import CampaignStatus, LedgerStatus

log = logging.getLogger("newsletter.dispatch")

CHUNK_SIZE = 1000
# A chunk's time limit (Dramatiq kills the message after it): generous, since
# each request is already bounded by the transport's own timeout; longer when
# a low send rate makes a chunk slow.
MIN_TIME_LIMIT_MS = 3_600_000


def time_limit_ms(settings) -> int:
    # the slowest rate any transport may send at ([delivery] rate, or a transport's own section's)
    rates = [r for r in (settings.send_rate, *(limits.rate for limits in settings.transport_limits.values())) if r > 0]
    rate = min(rates, default=0.0)
    return max(MIN_TIME_LIMIT_MS, int(3 * CHUNK_SIZE / rate * 1000)) if rate > 0 else MIN_TIME_LIMIT_MS


def enqueue_campaign(store, settings, campaign_id: int, *, broker=None, limit: int | None = None) -> int:
    """Start a draft or scheduled campaign on the workers; returns how many chunks were queued.

    Raises Conflict when the campaign has already started (another process
    won), DeliveryError when the broker cannot be reached (the campaign and
    its chunks are recorded: idle workers send them once it is back).
    ``limit`` sends only the first N recipients; the campaign then pauses.
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        if not ledger.claim_campaign(session, campaign_id, (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED),
                                     CampaignStatus.SENDING,
                                     started_at=utcnow(), heartbeat_at=utcnow(), sender=None):
            raise Conflict(f"campaign {campaign_id} has already started ({campaign.status})",
                           hint=f"see it with: newsletter campaigns show {campaign_id}")
        ledger.snapshot_audience(session, campaign_id, audience_list_id(campaign))
        bounds = ledger.pending_ranges(session, campaign_id, CHUNK_SIZE, limit=limit)
        chunks_db.create_chunks(session, campaign_id, bounds)
        if not bounds:
            ledger.settle_if_done(session, campaign_id, CampaignStatus.SENDING, CampaignStatus.SENT)
    _send_messages(store, settings, campaign_id, [(a, b) for a, b, _ in bounds], broker)
    return len(bounds)


def resume_distributed(store, settings, campaign_id: int, *, broker=None, retry: str | None = None) -> int:
    """Send a paused or stopped campaign's pending rows on the workers (``retry``: first put the
    ``failed`` or ``unknown`` rows back to pending); returns how many chunks were queued.

    Refuses while workers are still on it: rows left ``sending`` by dead
    ones become ``unknown`` when their chunk is taken again.
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        ensure_resumable(campaign)
        if campaign.status == CampaignStatus.SENDING:
            raise Conflict(f"campaign {campaign_id} is being sent by the workers",
                           hint=f"follow it with: newsletter campaigns show {campaign_id}")
        # Take the campaign first (one winner), and only then touch the ledger.
        resumable = (CampaignStatus.PAUSED, CampaignStatus.STOPPED, CampaignStatus.SENT, CampaignStatus.FAILED)
        if not ledger.claim_campaign(session, campaign_id, resumable, CampaignStatus.SENDING,
                                     heartbeat_at=utcnow(), sender=None, error="", pause_reason="", resume_at=None):
            raise Conflict(f"campaign {campaign_id} changed state; try again")
        if retry:
            ledger.requeue(session, campaign_id, LedgerStatus.FAILED if retry == "failed" else LedgerStatus.UNKNOWN)
        existing = chunks_db.campaign_chunks(session, campaign_id)
        reopen = {c.first_id for c in chunks_db.chunks_with_pending(session, campaign_id)}
        chunks_db.reopen_chunks(session, campaign_id, sorted(reopen))
        after = max((c.last_id for c in existing), default=0)
        fresh = ledger.pending_ranges(session, campaign_id, CHUNK_SIZE, after_id=after)
        chunks_db.create_chunks(session, campaign_id, fresh)
        ranges = [(c.first_id, c.last_id) for c in existing
                  if c.first_id in reopen or c.status != chunks_db.CHUNK_DONE]
        ranges += [(a, b) for a, b, _ in fresh]
        if not ranges:
            ledger.settle_if_done(session, campaign_id, CampaignStatus.SENDING, CampaignStatus.SENT)
    _send_messages(store, settings, campaign_id, ranges, broker)
    return len(ranges)


def _send_messages(store, settings, campaign_id: int, ranges: list[tuple[int, int]], broker) -> None:
    from newsletter.distributed.actors import send_chunk_actor
    from newsletter.distributed.broker import get_broker

    if not ranges:
        return
    try:
        actor = send_chunk_actor(broker or get_broker(settings))
        limit = time_limit_ms(settings)
        for first_id, last_id in ranges:
            actor.send_with_options(args=(campaign_id, first_id, last_id), time_limit=limit)
    except Exception as exc:
        from newsletter.distributed.broker import broker_errors

        if not isinstance(exc, broker_errors()):
            raise
        raise DeliveryError(
            f"campaign {campaign_id} is recorded but the broker could not be reached ({type(exc).__name__})",
            hint="start the broker (NEWSLETTER_BROKER_URL) and 'newsletter worker': idle workers queue "
                 "its chunks again by themselves") from None
    with store.session() as session:
        chunks_db.mark_enqueued(session, campaign_id)


def requeue_stalled(store, settings, broker, *, idle_seconds: float, is_alive: Callable) -> int:
    """Queue again the chunks of ``sending`` campaigns that no live worker owns and that
    were not handed to the broker for ``idle_seconds``; returns how many.

    Run by a worker that has been idle that long: the queue is then empty
    (for it), so those chunks' messages were lost or never sent. Of several
    workers sweeping at once, one re-queues each chunk (a conditional stamp).
    ``is_alive(owner, heartbeat, chunk_id)`` judges an owner.
    """
    from newsletter.distributed.actors import send_chunk_actor

    before = utcnow() - timedelta(seconds=idle_seconds)
    with store.session() as session:
        stalled = [c for c in chunks_db.unfinished_chunks(session, before)
                   if not (c.owner and c.status == chunks_db.CHUNK_RUNNING
                           and is_alive(c.owner, c.heartbeat_at, c.id))]
        won = [c for c in stalled if chunks_db.restamp(session, c.id, c.enqueued_at)]
    actor = send_chunk_actor(broker)
    for chunk in won:
        actor.send_with_options(args=(chunk.campaign_id, chunk.first_id, chunk.last_id),
                                time_limit=time_limit_ms(settings))
        log.warning("queued again: campaign %s rows %s-%s (its message was lost or its worker died)",
                    chunk.campaign_id, chunk.first_id, chunk.last_id)
    return len(won)


def progress(store, campaign_id: int) -> dict:
    """Where a campaign stands across workers: status, ledger counts, chunks."""
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        return {"id": campaign_id, "status": campaign.status, "error": campaign.error or None,
                "counts": ledger.counts(session, campaign_id),
                "chunks": chunks_db.chunk_progress(session, campaign_id)}


def follow_campaign(store, campaign_id: int, *, stop=None, on_progress: Callable[[dict], None] | None = None,
                    poll: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> SendReport:
    """Watch the ledger until the campaign leaves ``sending`` or ``stop`` is set; the report
    counts the whole campaign (every worker's rows). Stopping only stops watching."""
    started = time.monotonic()
    while True:
        state = progress(store, campaign_id)
        if on_progress:
            on_progress(state)
        if state["status"] != CampaignStatus.SENDING or (stop is not None and stop.is_set()):
            break
        sleep(poll)
    counts = state["counts"]
    return SendReport(campaign_id, state["status"], sent=counts["sent"], failed=counts["failed"],
                      unknown=counts["unknown"], skipped=counts["skipped"], counts=counts,
                      seconds=time.monotonic() - started)

