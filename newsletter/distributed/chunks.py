"""Sending one chunk: the worker side of a broker message ``(campaign, first_id, last_id)``.

Contract (at-least-once messages, exactly-once rows):

1. Take the chunk: lock its row; if it is done, do nothing (a redelivery).
   If another worker owns it and is alive, raise :class:`ChunkBusy` (the
   message is retried later). If its owner is dead, the rows it left
   ``sending`` become ``unknown`` (the provider may have them; never sent
   again blindly) and this worker becomes the owner.
2. Then, batch by batch: wait for the global rate, claim pending rows of the
   range (``FOR UPDATE SKIP LOCKED``, ineligible rows ``skipped``), commit,
   send through :func:`newsletter.engine.sender.send_claimed` — the same
   recipients, transports and recording as the single-machine path.
   Fencing: every claim and every write of results first checks, in its
   transaction, that this worker still owns the chunk
   (:func:`~newsletter.store.distributed.hold_chunk`). A worker taken for
   dead (say, frozen through a long shared 429 pause) and overtaken stops at
   its next write: it never marks the new owner's rows, nor sends more.
3. Mark the chunk done; the worker that finishes the last chunk (the
   finishers take turns on the campaign row: exactly one sees no chunk left,
   :func:`~newsletter.store.distributed.last_to_finish`) settles the
   campaign: ``sent`` when no row is pending or in flight; ``paused`` when
   rows are pending but no chunk is left (``send --limit``).

What the chunks of one campaign share is read once per worker process, not
per chunk (:class:`CampaignMemory`): the composed message, the recipients'
builder, and the circuit breaker's last reading of the campaign's rates (an
aggregate over all its rows, read at most every ``check_seconds`` by each
process, as the single-machine loop does).

A campaign that is no longer ``sending`` (paused, stopped) makes workers
give their chunks back after the batch in flight. A cap reached (the gate's
:meth:`~newsletter.distributed.limits.SendGate.take_quota`) pauses the
campaign with its reason and the time its window opens; the scheduler
daemon queues it again then. A 401 from the provider
stops the campaign, as it does on one machine.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Message
from newsletter.engine.breaker import Breaker, BreakerTripped
from newsletter.engine.fencing import Fenced, new_sender_id, sender_alive, stale_seconds
from newsletter.engine.quotas import QuotaReached
from newsletter.engine.sender import (
    CampaignFence,
    RecipientBuilder,
    SendReport,
    campaign_message,
    finish_campaign,
    login_refused_reason,
    reader_list_name,
    send_claimed,
)
from newsletter.store import distributed as chunks_db
from newsletter.store import ledger
from newsletter.store.models import Campaign, utcnow
from newsletter.store.tracking import load_plan
from newsletter.vocabulary import CampaignStatus

log = logging.getLogger("newsletter.worker")


class ChunkBusy(Exception):
    """Another live worker owns the chunk: try the message again later."""


@dataclass
class ChunkReport:
    """What one run of a chunk did. ``outcome``: done, already-done, released, stopped, not-sending,
    taken-over."""

    campaign_id: int
    first_id: int
    last_id: int
    outcome: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    orphaned: int = 0
    seconds: float = 0.0
    campaign_status: str | None = None

    def line(self) -> str:
        text = (f"campaign {self.campaign_id} rows {self.first_id}-{self.last_id}: {self.outcome}; sent {self.sent}, "
                f"failed {self.failed}, unknown {self.unknown}, skipped {self.skipped}")
        if self.orphaned:
            text += f"; {self.orphaned} left in flight by a dead worker marked unknown"
        return text + f" in {self.seconds:.2f} s"


# A campaign this process has not worked on for this long is read again at its next chunk (and its
# breaker reading taken afresh: a campaign paused and resumed in between starts a new run).
MEMORY_SECONDS = 30.0


@dataclass
class CampaignMemory:
    """What this process's chunks of one campaign share: read at the first chunk, not at every one.

    ``checked_at``, ``seen_at_start`` and ``warned`` carry the circuit
    breaker's state from chunk to chunk (see :class:`~newsletter.engine.breaker.Breaker`):
    a breaker per chunk would read the campaign's whole ledger at every
    chunk, and would take every chunk's counts as already seen.
    """

    list_id: int | None
    transport: str
    message: Message
    builder: RecipientBuilder
    used_at: float
    checked_at: float | None = None
    seen_at_start: ledger.Reception | None = None
    warned: bool = False

    def breaker(self, settings) -> Breaker:
        breaker = Breaker(settings.breaker)
        breaker.checked_at, breaker.seen_at_start, breaker.warned = self.checked_at, self.seen_at_start, self.warned
        return breaker

    def keep(self, breaker: Breaker) -> None:
        self.checked_at, self.seen_at_start, self.warned = breaker.checked_at, breaker.seen_at_start, breaker.warned
        self.used_at = time.monotonic()


class ChunkFence(CampaignFence):
    """The fence of a chunk: ``fence(session)`` is True while this worker still owns the chunk (an update
    that beats its heartbeat and locks its row for the transaction); :meth:`peek` only reads, for the look
    just before a provider call (as :class:`~newsletter.engine.sender.CampaignFence` does on one machine)."""

    def __init__(self, campaign_id: int, chunk_id: int, owner: str):
        super().__init__(campaign_id, owner)
        self.chunk_id = chunk_id

    def __call__(self, session) -> bool:
        return chunks_db.hold_chunk(session, self.chunk_id, self.sender)

    def peek(self, session) -> bool:
        return chunks_db.owns_chunk(session, self.chunk_id, self.sender)


class WorkerContext:
    """What the chunks of one worker process share: store, settings, gates, its identity.

    ``gate_for(name)`` returns the :class:`~newsletter.distributed.limits.SendGate`
    of a transport (None: no global limit); ``transport_for(name, gate)``
    builds a transport (the SendGrid one with the shared 429 pause).
    """

    def __init__(self, store, settings, *, gate_for=None, identity: str | None = None):
        self.store, self.settings = store, settings
        self.identity = identity or new_sender_id()
        self.stale = stale_seconds(settings)
        self._gate_for = gate_for or (lambda name: None)
        self._gates: dict[str, object] = {}
        self._lock = threading.Lock()
        self.active: set[int] = set()       # chunk ids being sent by this process now
        self._taking = threading.local()
        self.last_activity = time.monotonic()
        self._campaigns: dict[int, CampaignMemory] = {}

    def memory(self, campaign_id: int) -> CampaignMemory | None:
        """What this process keeps of a campaign it is sending (None: read it again)."""
        with self._lock:
            kept = self._campaigns.get(campaign_id)
            if kept is not None and time.monotonic() - kept.used_at > MEMORY_SECONDS:
                del self._campaigns[campaign_id]
                return None
            return kept

    def remember(self, campaign_id: int, memory: CampaignMemory) -> None:
        with self._lock:
            self._campaigns[campaign_id] = memory
            for other in [c for c, m in self._campaigns.items() if time.monotonic() - m.used_at > MEMORY_SECONDS]:
                del self._campaigns[other]

    def forget(self, campaign_id: int) -> None:
        """The campaign stopped being sent (paused, stopped, finished): a later run reads it afresh."""
        with self._lock:
            self._campaigns.pop(campaign_id, None)

    def gate(self, name: str):
        with self._lock:
            if name not in self._gates:
                self._gates[name] = self._gate_for(name)
            return self._gates[name]

    def transport(self, name: str):
        """A fresh transport per chunk: transports are not shared between threads."""
        from newsletter.delivery import get_transport
        from newsletter.transports import PROVIDERS

        if PROVIDERS[name].shared_throttle:
            from newsletter.distributed.limits import SharedPausePolicy

            return get_transport(self.settings, name, retry=SharedPausePolicy(gate=self.gate(name)))
        return get_transport(self.settings, name)

    def owner_alive(self, owner: str, heartbeat, chunk_id: int) -> bool:
        """Whether the recorded owner of a chunk may still be sending it."""
        if owner == self.identity:
            return chunk_id in self.active  # another thread of this process, or a past run of it
        fresh = heartbeat is not None and (utcnow() - heartbeat).total_seconds() < self.stale
        return fresh and sender_alive(owner, heartbeat, self.stale)

    def forget_taking(self) -> None:
        """A take that failed before its commit: this thread owns nothing."""
        chunk_id = getattr(self._taking, "chunk_id", None)
        if chunk_id is not None:
            self.busy(chunk_id, False)
            self._taking.chunk_id = None

    def busy(self, chunk_id: int, on: bool) -> None:
        with self._lock:
            (self.active.add if on else self.active.discard)(chunk_id)
            self.last_activity = time.monotonic()


def run_chunk(ctx: WorkerContext, campaign_id: int, first_id: int, last_id: int) -> ChunkReport:
    """Send what is still pending in one chunk (see the module docstring). Raises ChunkBusy."""
    started = time.monotonic()
    report = ChunkReport(campaign_id, first_id, last_id, "done")
    try:
        taken = _take(ctx, report)
    except BaseException:
        ctx.forget_taking()
        raise
    if taken is None:
        report.seconds = time.monotonic() - started
        return report
    chunk_id, memory, pending = taken
    ctx._taking.chunk_id = None
    try:
        _send_range(ctx, chunk_id, memory, pending, report)
    finally:
        ctx.busy(chunk_id, False)
    report.seconds = time.monotonic() - started
    return report


def _take(ctx: WorkerContext, report: ChunkReport):
    """Become the owner of the chunk: ``(chunk id, campaign memory, rows pending in it)``, or None (with
    ``report.outcome`` set) when there is nothing to do. One transaction."""
    with ctx.store.session() as session:
        campaign = session.get(Campaign, report.campaign_id)
        if campaign is None or campaign.status != CampaignStatus.SENDING:
            report.outcome, report.campaign_status = "not-sending", campaign.status if campaign else None
            ctx.forget(report.campaign_id)
            return None
        chunk = chunks_db.lock_chunk(session, report.campaign_id, report.first_id)
        if chunk is None:  # a message for a range nobody recorded: record it now
            rows = ledger.pending_in_range(session, report.campaign_id, report.first_id, report.last_id)
            chunks_db.create_chunks(session, report.campaign_id, [(report.first_id, report.last_id, rows)])
            chunk = chunks_db.lock_chunk(session, report.campaign_id, report.first_id)
            if chunk is None:  # just created in this transaction
                raise RuntimeError(f"the chunk at row {report.first_id} was not recorded")
        report.last_id = chunk.last_id
        if chunk.status == chunks_db.CHUNK_DONE:
            report.outcome = "already-done"
            return None
        if chunk.owner and chunk.status == chunks_db.CHUNK_RUNNING:
            if ctx.owner_alive(chunk.owner, chunk.heartbeat_at, chunk.id):
                raise ChunkBusy(f"rows {chunk.first_id}-{chunk.last_id} are being sent by {chunk.owner}")
        pending, in_flight = ledger.range_state(session, report.campaign_id, chunk.first_id, chunk.last_id)
        if in_flight:
            # No live worker is on this range (we hold its lock): rows still ``sending``
            # were left by a dead one and may have reached the provider.
            report.orphaned = ledger.orphans_in_range_to_unknown(session, report.campaign_id, chunk.first_id,
                                                                  chunk.last_id)
        chunks_db.take_chunk(session, chunk, ctx.identity)
        ctx.busy(chunk.id, True)
        ctx._taking.chunk_id = chunk.id
        memory = ctx.memory(report.campaign_id) or _read_campaign(ctx, session, campaign)
        return chunk.id, memory, pending


def _read_campaign(ctx: WorkerContext, session, campaign: Campaign) -> CampaignMemory:
    """Compose the campaign's message and builder (in the take's transaction) and keep them."""
    settings = ctx.settings
    tracking = load_plan(session, campaign.id)
    mailing_list = ledger.list_of(session, campaign.list_id)
    message = campaign_message(settings, campaign, tracking, mailing_list)
    builder = RecipientBuilder(settings, campaign.edition.slug, campaign.id, campaign.list_id, campaign.id_nonce,
                               tracking, list_name=reader_list_name(settings, mailing_list))
    memory = CampaignMemory(campaign.list_id, campaign.transport, message, builder, time.monotonic())
    ctx.remember(campaign.id, memory)
    return memory


def _send_range(ctx: WorkerContext, chunk_id: int, memory: CampaignMemory, pending: int,
                report: ChunkReport) -> None:
    settings, store, c = ctx.settings, ctx.store, report.campaign_id
    gate = ctx.gate(memory.transport)
    totals = SendReport(c, CampaignStatus.SENDING)
    transport = ctx.transport(memory.transport)
    batch_size = max(1, min(settings.batch_size, transport.max_batch))
    remaining, after_id = pending, None
    # this process's streak and its reading of the campaign's rates (from the ledger)
    breaker = memory.breaker(settings)
    fence = ChunkFence(c, chunk_id, ctx.identity)  # this worker still owns the chunk (checked with every write)

    try:
        with transport:
            while remaining > 0:
                with store.session() as session:
                    breaker.check(session, c)  # complaints and bounces recorded (at most every check_seconds)
                want, windows = min(batch_size, remaining), []
                if gate is not None:
                    want, windows = gate.take_quota(want)  # counted before the claim (QuotaReached: none left)
                    gate.wait(want)
                claim = _claim(ctx, fence, memory.list_id, report, want, after_id)
                if gate is not None:  # only rows sent count: give back what the claim did not use
                    gate.give_back(windows, want - (len(claim.rows) if claim else 0))
                if claim is False:
                    return
                if claim is None:  # nothing pending is left in the range
                    break
                # a short read: the range holds no more pending rows (this worker alone claims in it)
                remaining = remaining - claim.seen if claim.seen >= want else 0
                after_id = claim.last_id
                totals.skipped += claim.skipped
                if claim.rows:
                    send_claimed(store, transport, memory.message, memory.builder, claim.rows, totals, c,
                                 fence=fence, breaker=breaker)
    except Fenced:
        # Another worker took the chunk over (we were taken for dead, e.g. during a long shared
        # pause): it owns the rows now; ours in flight are ``unknown`` in its ledger. Stop here.
        _copy(totals, report)
        report.outcome = "taken-over"
        log.warning("campaign %s rows %s-%s: taken over by another worker; stopped without sending more",
                    c, report.first_id, report.last_id)
        return
    except PermanentTransportError as exc:
        _copy(totals, report)
        if exc.login_refused:  # refused as the transport opened, before any batch: a person fixes and resumes
            _pause(ctx, chunk_id, report, login_refused_reason(exc), None)
        else:
            _stop(ctx, chunk_id, report, exc)
        return
    except QuotaReached as exc:
        _copy(totals, report)
        _pause(ctx, chunk_id, report, exc.reason, exc.resume_at)
        return
    except BreakerTripped as exc:
        _copy(totals, report)
        _pause(ctx, chunk_id, report, exc.reason, None)
        return
    finally:
        memory.keep(breaker)
    _copy(totals, report)
    _finish(ctx, chunk_id, report)


def _claim(ctx: WorkerContext, fence: ChunkFence, list_id, report: ChunkReport, want: int, after_id: int | None):
    """The next batch of the range (a :class:`~newsletter.store.ledger.Claim`; None when nothing pending
    is left in it), or False when the campaign stopped sending (the chunk is then given back). Fenced when
    another worker owns the chunk now."""
    with ctx.store.session() as session:
        if not fence(session):
            raise Fenced(report.campaign_id)
        status = chunks_db.campaign_status(session, report.campaign_id)
        if status != CampaignStatus.SENDING:
            chunks_db.release_chunk(session, fence.chunk_id, ctx.identity)
            report.outcome, report.campaign_status = "released", status
            ctx.forget(report.campaign_id)
            return False
        return ledger.claim_in_range(session, report.campaign_id, list_id, report.first_id, report.last_id, want,
                                     after_id=after_id)


def _copy(totals: SendReport, report: ChunkReport) -> None:
    report.sent, report.failed, report.unknown, report.skipped = (totals.sent, totals.failed, totals.unknown,
                                                                  totals.skipped)


def _finish(ctx: WorkerContext, chunk_id: int, report: ChunkReport) -> None:
    """Chunk done; settle the campaign when it is the last (sent, or paused after ``--limit``)."""
    counts = {"sent": report.sent, "failed": report.failed, "unknown": report.unknown + report.orphaned,
              "skipped": report.skipped}
    with ctx.store.session() as session:
        if not chunks_db.finish_chunk(session, chunk_id, ctx.identity, counts):
            report.outcome = "taken-over"  # the new owner finishes it, and settles when it is the last
        elif chunks_db.last_to_finish(session, report.campaign_id):
            # The one finisher that saw no chunk left (under the campaign row's lock): one read of the
            # ledger per campaign, not per chunk.
            if ledger.settle_if_done(session, report.campaign_id, CampaignStatus.SENDING, CampaignStatus.SENT):
                report.campaign_status = session.get(Campaign, report.campaign_id).status
            elif chunks_db.pause_if_drained(session, report.campaign_id):
                report.campaign_status = CampaignStatus.PAUSED
    if report.campaign_status:
        ctx.forget(report.campaign_id)
        log.info("campaign %s is %s", report.campaign_id, report.campaign_status)


def _pause(ctx: WorkerContext, chunk_id: int, report: ChunkReport, reason: str, resume_at: datetime | None) -> None:
    """A cap is reached, or the circuit breaker tripped: pause the campaign for every worker (with the
    reason and, for a cap, the time its window opens, for campaigns show and the scheduler daemon; the
    breaker's pause has none: a person resumes it) and give the chunk back."""
    with ctx.store.session() as session:
        paused = chunks_db.pause_for_quota(session, report.campaign_id, reason, resume_at)
        chunks_db.release_chunk(session, chunk_id, ctx.identity)
    report.outcome, report.campaign_status = "paused", CampaignStatus.PAUSED
    ctx.forget(report.campaign_id)
    if paused:
        log.info("campaign %s paused: %s", report.campaign_id, reason)


def _stop(ctx: WorkerContext, chunk_id: int, report: ChunkReport, exc: PermanentTransportError) -> None:
    """The provider refuses every send (a bad key): stop the campaign for all workers, give the chunk back."""
    error = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    stopped = SendReport(report.campaign_id, CampaignStatus.STOPPED)
    finish_campaign(ctx.store, report.campaign_id, CampaignStatus.STOPPED, stopped, error=error)
    with ctx.store.session() as session:
        chunks_db.release_chunk(session, chunk_id, ctx.identity)
    report.outcome, report.campaign_status = "stopped", CampaignStatus.STOPPED
    ctx.forget(report.campaign_id)
    log.error("campaign %s stopped: %s", report.campaign_id, error)
