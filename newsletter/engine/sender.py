"""The send loop: stream a campaign's pending ledger rows through a transport.

For each batch (never the whole list in memory):

1. read the next pending rows, checking each against the list and the
   suppression list *now*, so an unsubscribe during a long send is honoured
   (those rows become ``skipped``);
2. mark the rest ``sending`` and commit — before the transport is called;
3. send, then commit each row's outcome: ``sent``, ``failed`` or ``unknown``.

A crash between 2 and 3 leaves ``sending`` rows; :func:`resume_campaign`
turns them into ``unknown`` (the provider may have them) and never sends
them blindly; ``retry_campaign(..., "unknown")`` does, on purpose. A
campaign becomes ``sent`` only when nothing is pending.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from newsletter.audience.tokens import UNSUBSCRIBE, make_token
from newsletter.compose.edition import merge_values
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Message, Outcome, Recipient
from newsletter.delivery.mime import message_id_tag, unsubscribe_headers
from newsletter.errors import Conflict
from newsletter.engine.campaigns import RESUMABLE, ensure_resumable, get_campaign
from newsletter.store import ledger
from newsletter.store.models import (
    DRAFT,
    LEDGER_FAILED,
    LEDGER_PENDING,
    LEDGER_SENDING,
    LEDGER_SENT,
    LEDGER_UNKNOWN,
    PAUSED,
    SCHEDULED,
    SENDING,
    SENT,
    STOPPED,
    utcnow,
)

# A sender that has not written a heartbeat for this long is taken for dead.
HEARTBEAT_STALE_SECONDS = 120
_LEDGER_OF = {Outcome.SENT: LEDGER_SENT, Outcome.QUEUED: LEDGER_SENT, Outcome.REJECTED: LEDGER_FAILED,
              Outcome.FAILED: LEDGER_FAILED, Outcome.UNKNOWN: LEDGER_UNKNOWN}


@dataclass
class SendReport:
    """What one run of the loop did, and where the campaign stands."""

    campaign_id: int
    status: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"campaign_id": self.campaign_id, "status": self.status, "sent": self.sent, "failed": self.failed,
                "unknown": self.unknown, "skipped": self.skipped, "counts": self.counts,
                "seconds": round(self.seconds, 3)}


class _Pacer:
    """Keeps the send rate at or under ``rate`` messages a second (0: no limit)."""

    def __init__(self, rate: float, sleep: Callable[[float], None] = time.sleep):
        self.rate, self.sleep, self.start, self.sent = rate, sleep, time.monotonic(), 0

    def after(self, count: int) -> None:
        self.sent += count
        if self.rate > 0:
            ahead = self.sent / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                self.sleep(ahead)


def this_sender() -> str:
    """This process, as recorded on the campaign it sends."""
    return f"{socket.gethostname()}:{os.getpid()}"


def sender_alive(sender: str | None, heartbeat) -> bool:
    """Whether the process recorded as sending may still be at it.

    On this host the process table answers at once (a SIGKILLed sender is
    dead now); elsewhere, a heartbeat older than HEARTBEAT_STALE_SECONDS is.
    """
    host, _, pid = (sender or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and (utcnow() - heartbeat).total_seconds() < HEARTBEAT_STALE_SECONDS


def start_campaign(store, settings, campaign_id: int, transport, **options) -> SendReport:
    """Snapshot the audience of a draft or scheduled campaign and send it.

    The move to ``sending`` is a conditional update: of two processes trying,
    one wins and the other gets Conflict.
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        if not ledger.claim_campaign(session, campaign_id, (DRAFT, SCHEDULED), SENDING,
                                     started_at=utcnow(), heartbeat_at=utcnow(), sender=this_sender()):
            raise Conflict(f"campaign {campaign_id} has already started ({campaign.status})",
                           hint=f"see it with: newsletter campaigns show {campaign_id}")
        ledger.snapshot_audience(session, campaign_id, campaign.list_id)
    return _run(store, settings, campaign_id, transport, **options)


def resume_campaign(store, settings, campaign_id: int, transport, **options) -> SendReport:
    """Send what is still pending. Rows a dead sender left in flight become ``unknown``."""
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        ensure_resumable(campaign)
        if campaign.status == SENDING and sender_alive(campaign.sender, campaign.heartbeat_at):
            raise Conflict(f"campaign {campaign_id} is being sent by another process ({campaign.sender})",
                           hint="wait for it, or stop that process first; a sender on another machine is "
                                f"taken for dead {HEARTBEAT_STALE_SECONDS} s after its last batch")
        ledger.orphaned_to_unknown(session, campaign_id)
        if not ledger.claim_campaign(session, campaign_id, RESUMABLE, SENDING, heartbeat_at=utcnow(),
                                     sender=this_sender()):
            raise Conflict(f"campaign {campaign_id} changed state; try again")
    return _run(store, settings, campaign_id, transport, **options)


def retry_campaign(store, settings, campaign_id: int, transport, which: str, **options) -> SendReport:
    """Send again the ``failed`` or ``unknown`` rows, on purpose."""
    with store.session() as session:
        ensure_resumable(get_campaign(session, campaign_id))
        ledger.requeue(session, campaign_id, LEDGER_FAILED if which == "failed" else LEDGER_UNKNOWN)
    return resume_campaign(store, settings, campaign_id, transport, **options)


def _run(store, settings, campaign_id: int, transport, *, processes: int | None = None, **options) -> SendReport:
    """Send the campaign's pending rows, in one process or several, then settle its status."""
    started = time.monotonic()
    report = SendReport(campaign_id, SENDING)
    try:
        from newsletter.engine.parallel import processes_for, send_in_processes

        count = processes_for(store, settings, campaign_id, transport, processes, options)
        if count > 1:
            interrupted = send_in_processes(store, settings, campaign_id, transport.name, count, report, **options)
        else:
            interrupted = send_range(store, settings, campaign_id, transport, report, **options)
    except PermanentTransportError as exc:
        finish_campaign(store, campaign_id, STOPPED, report,
                        error=f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
        raise
    finish_campaign(store, campaign_id, PAUSED if interrupted else None, report)
    report.seconds = time.monotonic() - started
    return report


def send_range(store, settings, campaign_id: int, transport, report: SendReport, *, after_id: int = 0,
               up_to: int | None = None, limit: int | None = None,
               on_progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """The loop over pending rows with ids in (after_id, up_to]; True when stopped early.

    Does not settle the campaign's status (the caller does, once every range is done).
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        list_id, slug = campaign.list_id, campaign.edition.slug
        message = campaign_message(settings, campaign)
        total = ledger.counts(session, campaign_id)[LEDGER_PENDING]
    batch_size = max(1, min(settings.batch_size, transport.max_batch))
    builder = RecipientBuilder(settings, slug, campaign_id, list_id)
    pacer, done = _Pacer(settings.send_rate, sleep), 0
    while True:
        if stop is not None and stop.is_set() or (limit is not None and done >= limit):
            return True
        want = batch_size if limit is None else min(batch_size, limit - done)
        batch = claim_batch(store, campaign_id, list_id, after_id, want, report, up_to)
        if batch is None:
            return False
        after_id = batch[-1].delivery_id
        eligible = [c for c in batch if c.eligible]
        if eligible:
            send_claimed(store, transport, message, builder, eligible, report, campaign_id)
            pacer.after(len(eligible))
        done += len(batch)
        if on_progress:
            on_progress(done, total)


def campaign_message(settings, campaign) -> Message:
    """The provider-neutral Message of a stored campaign (its edition as composed)."""
    edition = campaign.edition
    return Message(subject=edition.subject, from_email=settings.sender, html=edition.html, text=edition.text,
                   tags=[t[:100] for t in (edition.tags or [])[:8]], metadata={"campaign_id": str(campaign.id)})


def claim_batch(store, campaign_id, list_id, after_id, want, report, up_to=None):
    """Read the next rows, skip the ineligible, mark the rest ``sending``; commit. None at the end."""
    with store.session() as session:
        batch = ledger.next_pending(session, campaign_id, list_id, after_id, want, up_to)
        if not batch:
            return None
        skipped = [c.delivery_id for c in batch if not c.eligible]
        report.skipped += ledger.skipped_now(session, skipped)
        ledger.mark_range(session, campaign_id, batch[0].delivery_id, batch[-1].delivery_id, LEDGER_SENDING,
                          LEDGER_PENDING, count_attempt=True)
        ledger.touch(session, campaign_id)
    return batch


def send_claimed(store, transport, message, builder, eligible, report, campaign_id) -> None:
    """Send rows already marked ``sending`` and commit each outcome.

    On PermanentTransportError the rows the transport answered for
    (``exc.results``) are recorded and the rest go back to ``pending``:
    nothing of them was accepted.
    """
    recipients = [builder.recipient(c) for c in eligible]
    ids = {r.message_id: c.delivery_id for r, c in zip(recipients, eligible)}
    try:
        results = transport.send_batch(message, recipients)
    except PermanentTransportError as exc:
        answered = exc.results or []
        record_results(store, answered, ids, report, campaign_id)
        untouched = set(ids) - {result.message_id for result in answered}
        with store.session() as session:
            ledger.mark(session, [ids[m] for m in untouched], LEDGER_PENDING, LEDGER_SENDING)
        raise
    except BaseException:
        # An unexpected failure mid-call: the provider may have the batch.
        with store.session() as session:
            ledger.mark(session, list(ids.values()), LEDGER_UNKNOWN, LEDGER_SENDING,
                        error="the send was interrupted while this message was in flight")
        finish_campaign(store, campaign_id, PAUSED, report)
        raise
    record_results(store, results, ids, report, campaign_id)


def record_results(store, results, ids: dict[str, int], report: SendReport, campaign_id: int) -> None:
    """Commit each recipient's outcome; the common all-accepted case is one statement."""
    accepted: dict[str | None, list[int]] = {}
    others = []
    for result in results:
        status = _LEDGER_OF[result.outcome]
        if status == LEDGER_SENT and not result.error:
            accepted.setdefault(result.provider_id, []).append(ids[result.message_id])
        else:
            others.append({"b_id": ids[result.message_id], "status": status,
                           "provider_id": result.provider_id, "error": (result.error or "")[:1000] or None})
        setattr(report, status if status != LEDGER_SENT else "sent", getattr(report, status) + 1)
    with store.session() as session:
        if len(accepted) == 1 and not others and len(results) == len(ids):
            # Everything in flight was accepted in one request: the rows still
            # ``sending`` in the batch's id range are exactly these.
            (provider_id, delivery_ids), = accepted.items()
            ledger.mark_range(session, campaign_id, min(delivery_ids), max(delivery_ids), LEDGER_SENT,
                              LEDGER_SENDING, provider_id=provider_id)
            return
        for provider_id, delivery_ids in accepted.items():
            ledger.mark(session, delivery_ids, LEDGER_SENT, LEDGER_SENDING, provider_id=provider_id)
        ledger.mark_each(session, others, LEDGER_SENDING)


def finish_campaign(store, campaign_id: int, status: str | None, report: SendReport, error: str = "") -> None:
    """Settle the campaign's status: ``sent`` only when nothing is pending or in flight."""
    with store.session() as session:
        counts = ledger.counts(session, campaign_id)
        nothing_left = counts[LEDGER_PENDING] == 0 and counts[LEDGER_SENDING] == 0
        if status in (None, PAUSED):  # a stop that came after the last batch still finished the send
            status = SENT if nothing_left else PAUSED
        values = {"status": status, "heartbeat_at": None, "sender": None}
        if status == SENT:
            values["finished_at"] = utcnow()
        if error:
            values["error"] = error
        ledger.set_campaign(session, campaign_id, **values)
    report.status, report.counts = status, counts


# merge_values' own parameters: attributes of these names cannot override them
_RESERVED = frozenset({"settings", "slug", "email", "name", "token", "unsubscribe_url", "web_url"})


class RecipientBuilder:
    """Turns ledger candidates into Recipients: merge values, one-click headers, our ids.

    Our Message-ID is ``nl.<tag>.<campaign>.<delivery>@<sender domain>``: the
    webhook finds the ledger row from it (also sent as custom_args).
    """

    def __init__(self, settings, slug: str, campaign_id: int, list_id: int | None):
        self.settings, self.slug, self.campaign_id, self.list_id = settings, slug, campaign_id, list_id
        self.keys = tuple(settings.secret_keys)
        domain = settings.sender_address.rpartition("@")[2] or "localhost"
        # Stable across resumes (a resent message keeps its Message-ID), unique
        # per workspace: a keyed tag keeps two workspaces on one domain apart.
        self.id_format = f"nl.{message_id_tag(self.keys[-1])}.{campaign_id}.{{}}@{domain}"

    def recipient(self, candidate) -> Recipient:
        token = make_token(self.keys, UNSUBSCRIBE, candidate.subscriber_id, self.list_id, candidate.email)
        attributes = {k: v for k, v in candidate.attributes.items() if k not in _RESERVED}
        values = merge_values(self.settings, self.slug, email=candidate.email, name=candidate.name,
                              token=token, **attributes)
        message_id = self.id_format.format(candidate.delivery_id)
        return Recipient(
            email=candidate.email, message_id=message_id, name=candidate.name, merge_data=values,
            headers=unsubscribe_headers(values["unsubscribe_url"]),
            metadata={"campaign_id": str(self.campaign_id), "subscriber_id": str(candidate.subscriber_id),
                      "message_id": message_id},
        )
