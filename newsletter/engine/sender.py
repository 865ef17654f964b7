"""The send loop: stream a campaign's pending ledger rows through a transport.

For each batch (never the whole list in memory):

1. read the next pending rows, checking each against the list and the
   suppression list *now*, so an unsubscribe during a long send is honoured
   (those rows become ``skipped``);
2. mark the rest ``sending`` and commit — before the transport is called;
3. send, then commit each row's outcome: ``sent``, ``failed`` or ``unknown``.

Hourly and daily caps (:mod:`newsletter.engine.quotas`) are counted in
step 2's transaction; when one is reached the campaign pauses with the
reason and the time its window opens (``pause_reason``, ``resume_at``),
and the scheduler daemon resumes it then.

The circuit breaker (:mod:`newsletter.engine.breaker`) reads the
campaign's complaint and hard-bounce rates between batches and counts
transport failures in a row; when it trips, the campaign pauses with the
reason and no ``resume_at`` (a person resumes it), and the failing streak's
rows go back to ``pending``.

A crash between 2 and 3 leaves ``sending`` rows; :func:`resume_campaign`
turns them into ``unknown`` (the provider may have them) and never sends
them blindly; ``retry_campaign(..., "unknown")`` does, on purpose. A
campaign becomes ``sent`` only when nothing is pending (``failed`` when it
reached nobody).

One sender at a time (:mod:`newsletter.engine.fencing`): each run has its own
identity recorded on the campaign, a heartbeat thread beats while it runs,
and every claim and every write of results checks, in its transaction, that
the run still owns the campaign. A run that was taken over stops at once.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.audience.tokens import unsubscribe_tokens
from newsletter.compose import clicks
from newsletter.compose.edition import merge_values_of, web_url
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.merge import fill_in
from newsletter.delivery.message import Message, Outcome, Recipient
from newsletter.delivery.message_id import id_template
from newsletter.delivery.mime import list_headers, unsubscribe_headers
from newsletter.engine import abtests, fencing
from newsletter.engine.breaker import Breaker, BreakerTripped
from newsletter.engine.campaigns import RESUMABLE, audience_list_id, ensure_resumable, get_campaign
from newsletter.engine.fencing import (
    DEFAULT_STALE_SECONDS,
    AnyStop,
    Fenced,
    Heartbeat,
    StopSignal,
    beat_interval,
    new_sender_id,
    stale_seconds,
)
from newsletter.engine.quotas import Quota, QuotaReached, shared_pace
from newsletter.errors import Conflict
from newsletter.store import abtests as abtest_store
from newsletter.store import ledger
from newsletter.store.models import Edition, utcnow
from newsletter.store.tracking import TrackingPlan, load_plan
from newsletter.vocabulary import CampaignStatus, LedgerStatus, TrackingMode

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.config import Settings
    from newsletter.delivery.base import Transport
    from newsletter.delivery.message import SendResult
    from newsletter.store.db import Store
    from newsletter.store.ledger import Candidate, Claim
    from newsletter.store.models import Campaign, MailingList

# ``fence(session)``: True while this run still owns the campaign (checked in the session's transaction).
Fence = Callable[["Session"], bool]

_LEDGER_OF = {Outcome.SENT: LedgerStatus.SENT, Outcome.QUEUED: LedgerStatus.SENT, Outcome.REJECTED: LedgerStatus.FAILED,
              Outcome.FAILED: LedgerStatus.FAILED, Outcome.UNKNOWN: LedgerStatus.UNKNOWN}
_MIXED = "rows of several variants"  # RecipientBuilder.message_for: no variant's fields are filled in
_LAST_ID = 2**31 - 1  # "no upper bound" for a range of row ids (the largest INTEGER)
# From this many pending rows the loop runs with the heap frozen (see _heap_frozen): the collection
# before it (tens of milliseconds) is then repaid by the cheaper collections during it.
FREEZE_FROM = 5_000
# The default staleness limit (see newsletter.engine.fencing.stale_seconds for the setting).
HEARTBEAT_STALE_SECONDS = DEFAULT_STALE_SECONDS


@dataclass
class SendReport:
    """What one run of the loop did, and where the campaign stands."""

    campaign_id: int
    status: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    pause_reason: str = ""  # paused by a quota or the circuit breaker: why (campaigns show prints it)
    resume_at: datetime | None = None  # ... and when its window opens (None: a person resumes it)
    warnings: list[str] = field(default_factory=list)  # the breaker's warnings (a complaint rate at 0.1%)

    def as_dict(self) -> dict[str, Any]:
        data = {"campaign_id": self.campaign_id, "status": self.status, "sent": self.sent, "failed": self.failed,
                "unknown": self.unknown, "skipped": self.skipped, "counts": self.counts,
                "seconds": round(self.seconds, 3)}
        if self.resume_at is not None:
            data.update(pause_reason=self.pause_reason, resume_at=self.resume_at.isoformat())
        elif self.pause_reason:
            data.update(pause_reason=self.pause_reason, resume_at=None)
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


class _Pacer:
    """Keeps the send rate at or under ``rate`` messages a second (0: no limit).

    Before each batch, :meth:`turn` books this batch's messages from the end
    of the previous bookings, or from *now* when they are over, and waits
    until its booking starts: time spent idle (a 25 s 429 wait, a slow
    provider, a quota pause) is never saved up for a burst after.
    ``book(now, seconds)`` keeps the bookings elsewhere and returns when
    this one starts (the engine's: in the database, shared by every process
    sending through the transport, :func:`newsletter.engine.quotas.shared_pace`);
    without it they are this object's own.
    """

    def __init__(self, rate: float, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 book: Callable[[float, float], float] | None = None):
        self.rate, self.sleep, self.clock, self.book = rate, sleep, clock, book
        self.free_at: float | None = None

    def turn(self, count: int) -> None:
        if self.rate <= 0 or count <= 0:
            return
        now = self.clock()
        if self.book is not None:
            start = self.book(now, count / self.rate)
        else:
            start = now if self.free_at is None else max(self.free_at, now)
            self.free_at = start + count / self.rate
        if start > now:
            self.sleep(start - now)


def this_sender() -> str:
    """A new identity for a sender (``host:pid:random``), as recorded on the campaign it sends."""
    return new_sender_id()


def sender_alive(sender: str | None, heartbeat: datetime | None, stale: float | None = None) -> bool:
    """Whether the sender recorded on a campaign may still be at it (see :mod:`newsletter.engine.fencing`)."""
    return fencing.sender_alive(sender, heartbeat, stale_seconds() if stale is None else stale)


def start_campaign(store: Store, settings: Settings, campaign_id: int, transport: Transport,
                   **options: Any) -> SendReport:
    """Snapshot the audience of a draft or scheduled campaign and send it.

    The move to ``sending`` is a conditional update: of two processes trying,
    one wins and the other gets Conflict.
    """
    sender = new_sender_id()
    stale_seconds(settings)  # a bad setting is an error now, before the campaign is claimed
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        if not ledger.claim_campaign(session, campaign_id, (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED),
                                     CampaignStatus.SENDING,
                                     started_at=utcnow(), heartbeat_at=utcnow(), sender=sender,
                                     pause_reason="", resume_at=None):
            raise Conflict(f"campaign {campaign_id} has already started ({campaign.status})",
                           hint=f"see it with: newsletter campaigns show {campaign_id}")
        ledger.snapshot_audience(session, campaign_id, audience_list_id(campaign))
        abtests.split(session, campaign_id, _now(options.get("clock")))  # an A/B campaign: its test phase
    return _run(store, settings, campaign_id, transport, sender, **options)


def _now(clock: Callable[[], datetime] | None) -> datetime:
    return clock() if clock is not None else utcnow()


def resume_campaign(store: Store, settings: Settings, campaign_id: int, transport: Transport, *,
                    requeue: str | None = None, **options: Any) -> SendReport:
    """Send what is still pending. Rows a dead sender left in flight become ``unknown``.

    ``requeue`` (``failed`` or ``unknown``): put those rows back to pending
    first, once the campaign is ours (see :func:`take_over`).
    """
    sender = take_over(store, settings, campaign_id, requeue=requeue, now=_now(options.get("clock")))
    return _run(store, settings, campaign_id, transport, sender, **options)


def take_over(store: Store, settings: Settings, campaign_id: int, *, requeue: str | None = None,
              now: datetime | None = None) -> str:
    """Make a new run the campaign's sender; returns its identity.

    Refuses (Conflict) while another sender is alive. Otherwise, in one
    transaction and in this order: take the campaign (a conditional update on
    the sender seen, which fences the previous one out and serialises with
    its writes), turn its rows in flight to ``unknown``, and only then put
    the ``requeue`` rows back to pending. An A/B campaign whose test is due
    gets its winner in the same transaction (:func:`newsletter.engine.abtests.decide_if_due`,
    ``now``: the time it is judged by), which releases the rest to pending.
    """
    sender, stale = new_sender_id(), stale_seconds(settings)
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        ensure_resumable(campaign)
        sending = campaign.status == CampaignStatus.SENDING
        if sending and fencing.sender_alive(campaign.sender, campaign.heartbeat_at, stale):
            raise Conflict(f"campaign {campaign_id} is being sent by another process ({campaign.sender})",
                           hint=f"wait for it, or stop that process first; a sender on another machine is "
                                f"taken for dead {stale:g} s after its last heartbeat")
        if not ledger.claim_campaign(session, campaign_id, RESUMABLE, CampaignStatus.SENDING,
                                     expected_sender=campaign.sender,
                                     heartbeat_at=utcnow(), sender=sender, pause_reason="", resume_at=None):
            raise Conflict(f"campaign {campaign_id} changed state; try again",
                           hint=f"see it with: newsletter campaigns show {campaign_id}")
        ledger.orphaned_to_unknown(session, campaign_id)
        if requeue:
            ledger.requeue(session, campaign_id, requeue)
        abtests.decide_if_due(session, campaign_id, now)
    return sender


def retry_campaign(store: Store, settings: Settings, campaign_id: int, transport: Transport, which: str,
                   **options: Any) -> SendReport:
    """Send again the ``failed`` or ``unknown`` rows, on purpose (never while another sender is at it)."""
    return resume_campaign(store, settings, campaign_id, transport,
                           requeue=LedgerStatus.FAILED if which == "failed" else LedgerStatus.UNKNOWN, **options)


def _run(store: Store, settings: Settings, campaign_id: int, transport: Transport, sender: str, *,
         processes: int | None = None, stop: StopSignal | None = None, **options: Any) -> SendReport:
    """Send the campaign's pending rows, in one process or several, then settle its status.

    A heartbeat thread beats for the whole run (through 429 waits and
    backoffs too). Raises Fenced, leaving the campaign to its new sender,
    when another process took it over.
    """
    started = time.monotonic()
    report = SendReport(campaign_id, CampaignStatus.SENDING)
    heartbeat = Heartbeat(lambda: _beat(store, campaign_id, sender), beat_interval(stale_seconds(settings)))
    try:
        with heartbeat:
            halt = AnyStop(stop, heartbeat.lost)
            from newsletter.engine.parallel import processes_for, send_in_processes

            count = processes_for(store, settings, campaign_id, transport, processes, options)
            if count > 1:
                interrupted = send_in_processes(store, settings, campaign_id, transport.name, count, report,
                                                sender=sender, stop=halt, **options)
            else:
                interrupted = send_range(store, settings, campaign_id, transport, report, sender=sender, stop=halt,
                                         **options)
        if heartbeat.lost.is_set():
            raise Fenced(campaign_id)
    except PermanentTransportError as exc:
        finish_campaign(store, campaign_id, CampaignStatus.STOPPED, report,
                        error=f"{exc.message} ({exc.hint})" if exc.hint else exc.message, sender=sender)
        raise
    except QuotaReached as exc:
        report.pause_reason, report.resume_at, interrupted = exc.reason, exc.resume_at, True
    except BreakerTripped as exc:
        report.pause_reason, report.resume_at, interrupted = exc.reason, None, True
    finish_campaign(store, campaign_id, CampaignStatus.PAUSED if interrupted else None, report, sender=sender)
    report.seconds = time.monotonic() - started
    return report


def _beat(store: Store, campaign_id: int, sender: str) -> bool:
    with store.session() as session:
        return ledger.fence(session, campaign_id, sender)


class CampaignFence:
    """The fence of the single-machine path: ``fence(session)`` is True while ``sender`` owns the campaign.

    It locks the campaign row for the rest of the transaction (see
    :func:`newsletter.store.ledger.fence`); :meth:`peek` only reads it, for
    the look just before a provider call, whose transaction ends before the
    call. The Heartbeat thread beats; neither does.
    """

    def __init__(self, campaign_id: int, sender: str):
        self.campaign_id, self.sender = campaign_id, sender

    def __call__(self, session: Session) -> bool:
        return ledger.fence(session, self.campaign_id, self.sender, beat=False)

    def peek(self, session: Session) -> bool:
        return ledger.fence(session, self.campaign_id, self.sender, beat=False, lock=False)


def campaign_fence(campaign_id: int, sender: str | None) -> Fence | None:
    """The fence of the single-machine path (a :class:`CampaignFence`), None without a sender."""
    return None if sender is None else CampaignFence(campaign_id, sender)


def send_range(store: Store, settings: Settings, campaign_id: int, transport: Transport, report: SendReport, *,
               sender: str | None,
               after_id: int = 0, up_to: int | None = None, limit: int | None = None,
               on_progress: Callable[[int, int], None] | None = None, stop: StopSignal | None = None,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] | None = None) -> bool:
    """The loop over pending rows with ids in (after_id, up_to]; True when stopped early.

    Raises :class:`~newsletter.engine.quotas.QuotaReached` when a cap of the
    transport leaves no room (``clock``: the quotas' UTC clock, for tests),
    and :class:`~newsletter.engine.breaker.BreakerTripped` when the circuit
    breaker trips (its warnings go to ``report.warnings``).

    ``sender`` is this run's identity: every claim and every write of results
    is fenced on it (Fenced is raised once another process owns the
    campaign). Does not settle the campaign's status (the caller does, once
    every range is done).
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        list_id, slug, id_nonce = campaign.list_id, campaign.edition.slug, campaign.id_nonce
        tracking = load_plan(session, campaign_id)
        mailing_list = ledger.list_of(session, campaign.list_id)
        message = campaign_message(settings, campaign, tracking, mailing_list)
        variants = variant_messages(session, settings, campaign, tracking, message)
        total = ledger.counts(session, campaign_id)[LedgerStatus.PENDING]
    batch_size = max(1, min(settings.batch_size, transport.max_batch))
    builder = RecipientBuilder(settings, slug, campaign_id, list_id, id_nonce, tracking,
                               list_name=reader_list_name(settings, mailing_list))
    fence = campaign_fence(campaign_id, sender)
    quota = Quota.of(settings, transport.name, clock)
    # the transport's rate, booked in the database: it holds across every process sending through it
    pacer, done = _Pacer(quota.limits.rate, sleep, clock=lambda: quota.clock().timestamp(),
                         book=shared_pace(store, quota.scope)), 0
    breaker = Breaker(settings.breaker)
    breaker.warnings = report.warnings
    if on_progress:
        on_progress(0, total)  # the total is known from the snapshot: show it before the first batch
    with _heap_frozen(total >= FREEZE_FROM):
        while True:
            if stop is not None and stop.is_set() or (limit is not None and done >= limit):
                return _stopped(store, breaker, fence, report, campaign_id)
            with store.read_session() as session:  # complaints and bounces the events recorded since the last batch
                breaker.check(session, campaign_id)
            want = batch_size if limit is None else min(batch_size, limit - done)
            pacer.turn(want)  # waits with nothing in flight: a kill now leaves nothing unknown
            if stop is not None and stop.is_set():
                return _stopped(store, breaker, fence, report, campaign_id)
            claim = claim_batch(store, campaign_id, list_id, after_id, want, report, up_to, fence=fence,
                                quota=quota if quota.capped else None)
            if claim is None:
                return False
            after_id = claim.last_id
            if claim.rows:
                send_variants(store, transport, message, variants, builder, claim.rows, report, campaign_id,
                              fence=fence, breaker=breaker)
            done += claim.seen
            if on_progress:
                on_progress(done, total)


@contextmanager
def _heap_frozen(wanted: bool = True) -> Iterator[None]:
    """Leave what exists before the loop (the modules, the ORM's registries: most of the heap) out of the
    cycle collector's full passes while the loop runs (:func:`gc.freeze`), and put it back after.

    A batch makes thousands of short-lived objects, and every so often the
    collector walked the whole heap for them: about a sixth of a send's CPU.
    Garbage is collected first, so nothing unreachable (a store another part
    of a long-lived process dropped, with its connections) waits frozen for
    the loop to end. Only the outermost loop of a process freezes (another
    already frozen: as it is), and only when ``wanted`` (a small send: that
    first collection would cost more than it saves).
    """
    if not wanted or gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _stopped(store: Store, breaker: Breaker, fence: Fence | None, report: SendReport, campaign_id: int) -> bool:
    """Stopped mid-run (another process's breaker tripped, Ctrl-C): rows of a streak of transport failures
    not yet long enough to trip go back to ``pending`` with the rest. Returns True (stopped early)."""
    if breaker.streak:
        with store.session() as session:
            _check(fence, session, campaign_id)
            report.failed -= breaker.release(session)
    return True


def variant_messages(session: Session, settings: Settings, campaign: Campaign, tracking: TrackingPlan | None,
                     message: Message) -> dict[str | None, Message] | None:
    """An A/B campaign's Message per variant (None: a plain campaign; see
    :func:`newsletter.engine.abtests.subjects_for`): its subject, and a content variant's own edition
    (with ``message``'s bulk identity headers: the campaign's list is the same)."""
    plan = abtests.subjects_for(session, campaign.id)
    if plan is None:
        return None
    messages: dict[str | None, Message] = {}
    for variant, (subject, edition_id) in plan.items():
        edition = session.get(Edition, edition_id) if edition_id is not None else None
        base = message if edition is None else replace(
            campaign_message(settings, campaign, tracking, edition=edition), headers=message.headers)
        messages[variant] = replace(base, subject=subject)
    return messages


def campaign_message(settings: Settings, campaign: Campaign, tracking: TrackingPlan | None = None,
                     mailing_list: MailingList | None = None, edition: Edition | None = None) -> Message:
    """The provider-neutral Message of a stored campaign (its edition as composed, or ``edition``: an A/B
    content variant's; links tracked as ``tracking`` says: see ``newsletter.compose.clicks``), with the bulk
    identity headers of ``mailing_list`` (``List-Id``, ``Feedback-ID``, ``CFBL-Address``: :func:`bulk_headers`)."""
    edition = edition or campaign.edition
    html, text = edition.html, edition.text
    if tracking is not None and (tracking.clicks or tracking.opens):
        base_url, key = settings.base_url, settings.secret_key
        html = clicks.tracked_html(html, tracking.links, base_url=base_url, secret_key=key, campaign_id=campaign.id,
                                   clicks=tracking.clicks, opens=tracking.opens)
        if tracking.clicks:
            text = clicks.tracked_text(text, tracking.links, base_url=base_url, secret_key=key,
                                       campaign_id=campaign.id)
        if tracking.mode == TrackingMode.PERSONAL:  # a reader tracked personally sees how to withdraw
            html, text = clicks.with_withdrawal_line(html, text)
    return Message(subject=edition.subject, from_email=settings.sender, html=html, text=text,
                   headers=bulk_headers(settings, campaign.id, mailing_list),
                   tags=[t[:100] for t in (edition.tags or [])[:8]], metadata={"campaign_id": str(campaign.id)})


def bulk_headers(settings: Settings, campaign_id: int, mailing_list: MailingList | None) -> dict[str, str]:
    """``List-Id`` and ``Feedback-ID`` (and ``CFBL-Address`` with ``[delivery] complaints_address``) of a
    campaign to ``mailing_list``; none without a list or a sender address."""
    domain = settings.list_id_domain or settings.sender_domain
    if mailing_list is None or not domain:
        return {}
    return list_headers(list_name=mailing_list.name, display_name=mailing_list.reader_name(settings.name),
                        domain=domain, campaign_id=campaign_id, workspace=settings.name,
                        sender_id=settings.feedback_sender_id or domain,
                        complaints_address=settings.complaints_address or None)


def reader_list_name(settings: Settings, mailing_list: MailingList | None) -> str:
    """The name the footer gives the list a campaign goes to (a segment's base list): its display name, a public
    list's own name, else the newsletter's (also when the list was deleted since)."""
    return mailing_list.reader_name(settings.name) if mailing_list is not None else settings.name


def claim_batch(store: Store, campaign_id: int, list_id: int | None, after_id: int, want: int, report: SendReport,
                up_to: int | None = None, *, fence: Fence | None = None, quota: Quota | None = None) -> Claim | None:
    """Claim the next rows (the eligible ones ``sending``, the others ``skipped``) and commit.

    Returns the :class:`~newsletter.store.ledger.Claim` (only rows this claim
    itself moved), or None at the end. ``fence(session)`` runs first in the
    same transaction; Fenced when it fails. With a ``quota``, the rows
    claimed are counted against its caps in the same transaction (at most
    what fits); QuotaReached when nothing fits and rows are still pending.
    """
    with store.session() as session:
        _check(fence, session, campaign_id)
        windows: list[Any] = []
        if quota is not None:
            try:
                want, windows = quota.take(session, want)
            except QuotaReached:
                if ledger.pending_in_range(session, campaign_id, after_id + 1, up_to or _LAST_ID) == 0:
                    return None  # the cap was reached with the last row: the campaign is done
                raise
        claim = ledger.claim_pending(session, campaign_id, list_id, after_id, want, up_to)
        if quota is not None:  # only the rows sent count: give back what was not claimed, or was skipped
            quota.give_back(session, windows, want - (len(claim.rows) if claim is not None else 0))
        if claim is None:
            return None
        report.skipped += claim.skipped
    return claim


def send_variants(store: Store, transport: Transport, message: Message, variants: dict[str | None, Message] | None,
                  builder: RecipientBuilder, eligible: list[Candidate], report: SendReport, campaign_id: int, *,
                  fence: Fence | None = None, breaker: Breaker | None = None) -> None:
    """:func:`send_claimed`, one call per variant of an A/B campaign (``variants``: each one's Message, from
    :func:`variant_messages`; None: a plain campaign, one call).

    When one variant's call fails, the rows of the variants not yet handed
    to the transport go back to ``pending`` (nothing of them left us).
    """
    if variants is None:
        send_claimed(store, transport, message, builder, eligible, report, campaign_id, fence=fence, breaker=breaker)
        return
    groups: dict[str | None, list[Candidate]] = {}
    for candidate in eligible:
        groups.setdefault(candidate.variant, []).append(candidate)
    order = list(groups.items())
    for index, (variant, rows) in enumerate(order):
        chosen = variants.get(variant)
        try:
            if chosen is None:  # a winner-phase row before the decision: never claimable, so a bug
                raise RuntimeError(f"campaign {campaign_id}: no message for variant {variant!r}")
            send_claimed(store, transport, chosen, builder, rows, report, campaign_id, fence=fence,
                         breaker=breaker, whole=len(order) == 1)
        except BaseException:
            untouched = [c.delivery_id for _, later in order[index + (0 if chosen is None else 1):] for c in later]
            if untouched:
                with store.session() as session:
                    if fence is None or fence(session):
                        ledger.mark(session, untouched, LedgerStatus.PENDING, LedgerStatus.SENDING)
            raise


def _check(fence: Fence | None, session: Session, campaign_id: int) -> None:
    if fence is not None and not fence(session):
        raise Fenced(campaign_id)


def send_claimed(store: Store, transport: Transport, message: Message, builder: RecipientBuilder,
                 eligible: list[Candidate], report: SendReport, campaign_id: int, *,
                 fence: Fence | None = None, breaker: Breaker | None = None, whole: bool = True) -> None:
    """Send rows already marked ``sending`` and commit each outcome.

    ``whole``: these are all the rows of their claim (False for one variant's
    part of an A/B claim: other rows of its id range are in flight too).
    With a ``breaker``, the outcomes are counted for its streak of
    transport failures: when it trips, the streak's rows go back to
    ``pending`` (in one fenced transaction) and BreakerTripped is raised.

    On PermanentTransportError the rows the transport answered for
    (``exc.results``) are recorded and the rest go back to ``pending``:
    nothing of them was accepted. When the relay or API refused our login
    (``exc.login_refused``) the rows it did not send stay ``pending`` too and
    BreakerTripped pauses the campaign (:func:`login_refused_reason`): a
    person fixes the credentials and resumes it. The fence (``fence(session)``) is checked
    just before the provider is called and in the transaction of every
    write: a sender that lost the campaign sends and writes nothing more and
    raises Fenced; its rows stay as the new owner set them (``unknown``).
    """
    recipients = [builder.recipient(c) for c in eligible]
    message = builder.message_for(message, eligible)
    ids = {r.message_id: c.delivery_id for r, c in zip(recipients, eligible, strict=True)}
    if fence is not None:  # taken over since the claim (a pause, a freeze)? then these rows are not ours to send
        # A read: the transaction ends before the call either way, so a lock would hold nothing back.
        with (store.read_session() if isinstance(fence, CampaignFence) else store.session()) as session:
            _check(fence.peek if isinstance(fence, CampaignFence) else fence, session, campaign_id)
    try:
        results = transport.send_batch(message, recipients)
    except PermanentTransportError as exc:
        answered = exc.results or []
        if exc.login_refused:
            # Nobody's fault but our credentials': a recipient not sent stays pending for the resume.
            answered = [r for r in answered if not (r.outcome is Outcome.FAILED and r.retryable)]
        record_results(store, answered, ids, report, campaign_id, fence=fence, whole=whole)
        untouched = set(ids) - {result.message_id for result in answered}
        with store.session() as session:
            _check(fence, session, campaign_id)
            ledger.mark(session, [ids[m] for m in untouched], LedgerStatus.PENDING, LedgerStatus.SENDING)
        if exc.login_refused:
            raise BreakerTripped(login_refused_reason(exc)) from None
        raise
    except BaseException:
        # An unexpected failure mid-call: the provider may have the batch.
        with store.session() as session:
            if fence is not None and not fence(session):
                raise
            ledger.mark(session, list(ids.values()), LedgerStatus.UNKNOWN, LedgerStatus.SENDING,
                        error="the send was interrupted while this message was in flight")
        finish_campaign(store, campaign_id, CampaignStatus.PAUSED, report, fence=fence)
        raise
    record_results(store, results, ids, report, campaign_id, fence=fence, whole=whole)
    reason = breaker.observe(results, ids) if breaker is not None else None
    if reason is not None and breaker is not None:
        with store.session() as session:
            _check(fence, session, campaign_id)
            report.failed -= breaker.release(session)
        raise BreakerTripped(reason)


LOGIN_REFUSED = "the relay refused the login"  # how the pause reason of a refused login starts


def login_refused_reason(exc: PermanentTransportError) -> str:
    """Why a campaign paused on a refused login (``campaigns show`` adds the resume command)."""
    detail = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return f"{LOGIN_REFUSED} ({detail}): check the credentials, then resume"


def record_results(store: Store, results: Sequence[SendResult], ids: dict[str, int], report: SendReport,
                   campaign_id: int, *, fence: Fence | None = None, whole: bool = True) -> None:
    """Commit each recipient's outcome; the common all-accepted case is one statement.

    ``fence(session)`` runs first in the same transaction: when it fails
    nothing is written (nor counted) and Fenced is raised.
    """
    accepted: dict[str | None, list[int]] = {}
    others = []
    tally = {"sent": 0, LedgerStatus.FAILED: 0, LedgerStatus.UNKNOWN: 0}
    for result in results:
        status = _LEDGER_OF[result.outcome]
        if status == LedgerStatus.SENT and not result.error:
            accepted.setdefault(result.provider_id, []).append(ids[result.message_id])
        else:
            others.append({"b_id": ids[result.message_id], "status": status,
                           "provider_id": result.provider_id, "error": (result.error or "")[:1000] or None})
        tally["sent" if status == LedgerStatus.SENT else status] += 1
    with store.session() as session:
        _check(fence, session, campaign_id)
        if whole and len(accepted) == 1 and not others and len(results) == len(ids):
            # Everything in flight was accepted in one request: the rows still
            # ``sending`` in the batch's id range are exactly these (the fence
            # keeps any other sender of this campaign out of the range).
            (provider_id, delivery_ids), = accepted.items()
            ledger.mark_range(session, campaign_id, min(delivery_ids), max(delivery_ids), LedgerStatus.SENT,
                              LedgerStatus.SENDING, provider_id=provider_id)
        else:
            for provider_id, delivery_ids in accepted.items():
                ledger.mark(session, delivery_ids, LedgerStatus.SENT, LedgerStatus.SENDING, provider_id=provider_id)
            ledger.mark_each(session, others, LedgerStatus.SENDING)
    for name, value in tally.items():
        setattr(report, name, getattr(report, name) + value)


def finish_campaign(store: Store, campaign_id: int, status: str | None, report: SendReport, error: str = "", *,
                    sender: str | None = None, fence: Fence | None = None) -> None:
    """Settle the campaign's status: ``sent`` only when nothing is pending or in flight, and
    ``failed`` (``CampaignStatus.FAILED``) when it reached nobody.

    With ``sender`` (or ``fence``) only while this run still owns the
    campaign: Fenced otherwise, and nothing is written.
    """
    fence = fence or campaign_fence(campaign_id, sender)
    with store.session() as session:
        _check(fence, session, campaign_id)
        counts = ledger.counts(session, campaign_id)
        nothing_left = counts[LedgerStatus.PENDING] == 0 and counts[LedgerStatus.SENDING] == 0
        if status in (None, CampaignStatus.PAUSED):  # a stop that came after the last batch still finished the send
            status = CampaignStatus.SENT if nothing_left else CampaignStatus.PAUSED
        test = abtest_store.load_test(session, campaign_id) if counts.get(LedgerStatus.HELD) else None
        if test is not None and test.decide_at is not None and status == CampaignStatus.SENT:
            # An A/B campaign's test phase is done: it waits for its winner (the daemon resumes it then).
            status, report.resume_at = CampaignStatus.PAUSED, test.decide_at
            report.pause_reason = abtests.waiting_note(test.decide_at)
        if status == CampaignStatus.SENT and ledger.nobody_received(counts):
            status = CampaignStatus.FAILED
        values: dict[str, Any] = {"status": status, "heartbeat_at": None, "sender": None}
        if status == CampaignStatus.PAUSED and report.pause_reason:  # resume_at None: a person resumes it
            values.update(pause_reason=report.pause_reason, resume_at=report.resume_at)
        if status in (CampaignStatus.SENT, CampaignStatus.FAILED):
            values["finished_at"] = utcnow()
        if error:
            values["error"] = error
        elif status == CampaignStatus.FAILED:
            values["error"] = _nobody_error(counts)
        ledger.set_campaign(session, campaign_id, **values)
    report.status, report.counts = status, counts


def _nobody_error(counts: dict[str, int]) -> str:
    return (f"nobody received it: {counts[LedgerStatus.FAILED]} failed, {counts[LedgerStatus.UNKNOWN]} unknown "
            "(see the reasons with campaigns show; send them again with campaigns retry --failed or --unknown)")


class RecipientBuilder:
    """Turns ledger candidates into Recipients: merge values, one-click headers, our ids.

    Our Message-ID (``newsletter.delivery.message_id``): provider events
    find the ledger row from it (also sent as custom_args).
    """

    def __init__(self, settings: Settings, slug: str, campaign_id: int, list_id: int | None,
                 id_nonce: str | None = None, tracking: TrackingPlan | None = None, *, list_name: str = ""):
        self.settings, self.slug, self.campaign_id, self.list_id = settings, slug, campaign_id, list_id
        self.list_name = list_name  # the footer's "subscriber of ...": see reader_list_name
        # Personal tracking only for readers whose consent is recorded; everyone else gets aggregate links.
        self.personal = tracking is not None and tracking.mode == TrackingMode.PERSONAL and (
            tracking.clicks or tracking.opens)
        self.keys = tuple(settings.secret_keys)
        # Stable across resumes (a resent message keeps its Message-ID), unique per workspace, and,
        # through the campaign's stored random nonce, never repeated by a rebuilt database. A campaign
        # stored without one (created before migration 0011) keeps the old form: its ids stay stable.
        self.id_format = id_template(self.keys[-1], campaign_id, settings.sender_address, nonce=id_nonce or "")
        self.token = unsubscribe_tokens(self.keys, list_id)
        self.values = merge_values_of(settings, slug, list_name)
        self.campaign_key = str(campaign_id)
        self.shared: dict[str | None, dict[str, str]] = {}  # a variant's aggregate tracking fields
        self.web_url = web_url(settings, slug)
        self.messages: dict[tuple[int, str | None], tuple[Message, Message]] = {}  # see message_for

    def message_for(self, message: Message, rows: Sequence[Candidate]) -> Message:
        """``message`` with the merge fields every one of ``rows`` gets alike filled in once: the web
        version, and (aggregate tracking, one variant) the tracking fields. A provider then carries
        them once a request instead of once a recipient (SendGrid: two substitutions each)."""
        variants = {candidate.variant for candidate in rows}
        variant = next(iter(variants)) if len(variants) == 1 else _MIXED
        cached = self.messages.get((id(message), variant))
        if cached is not None and cached[0] is message:
            return cached[1]
        shared = {"web_url": self.web_url, "list_name": self.list_name or self.settings.name}
        if not self.personal and variant is not _MIXED:
            shared.update(self._shared_fields(variant))
        filled = replace(message, subject=fill_in(message.subject, shared), html=fill_in(message.html, shared),
                         text=fill_in(message.text, shared))
        if len(self.messages) > 8:  # a campaign has a message or one a variant: never more than a few
            self.messages.clear()
        self.messages[(id(message), variant)] = (message, filled)
        return filled

    def _shared_fields(self, variant: str | None) -> dict[str, str]:
        """The aggregate tracking fields of ``variant`` (the campaign's when None): alike for all its readers."""
        shared = self.shared.get(variant)
        if shared is None:
            shared = self.shared[variant] = (
                clicks.recipient_fields(self.settings.secret_key, self.campaign_id, 0, False, variant)
                | clicks.withdrawal_fields(None))
        return shared

    def recipient(self, candidate: Candidate) -> Recipient:
        """One candidate's Recipient (called per recipient: the edition's parts are worked out once, in
        ``__init__`` or on first use)."""
        token = self.token(candidate.subscriber_id, candidate.email)
        attributes = candidate.attributes
        values = self.values(candidate.email, candidate.name, token, attributes)
        if self.personal and clicks.consents(attributes):
            values.update(clicks.recipient_fields(self.settings.secret_key, self.campaign_id, candidate.delivery_id,
                                                  True))
            values.update(clicks.withdrawal_fields(values["preferences_url"]))
        else:  # aggregate links, no withdrawal line: the same fields for everyone who gets this variant
            values.update(self._shared_fields(candidate.variant))
        message_id = self.id_format.format(candidate.delivery_id)
        return Recipient(
            email=candidate.email, message_id=message_id, name=candidate.name, merge_data=values,
            headers=unsubscribe_headers(values["unsubscribe_url"]),
            metadata={"campaign_id": self.campaign_key, "subscriber_id": str(candidate.subscriber_id),
                      "message_id": message_id},
        )
