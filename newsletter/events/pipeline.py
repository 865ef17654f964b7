"""Store tracking events once and apply their effects: the same for every provider.

:func:`record_events` takes a batch of :class:`~newsletter.tracking.TrackingEvent`
(already verified and parsed by the provider's event source) and, in one
transaction:

- deduplicates by the provider's event id (providers deliver at least
  once, and repeat events within a batch);
- matches each event to its ledger row through our Message-ID
  (``newsletter.delivery.message_id``: the tag proves the message was ours);
  events for messages that are not ours, or whose row is gone, are stored
  and counted (``unmatched``) but change no ledger row;
- stores it (``provider_events``, with the raw event);
- records on the ledger row what the events say (delivered, deferred,
  opened, clicked, complained, bounced hard or soft, rejected: the
  campaign report counts these), and settles a row left ``unknown`` by a
  crash: ``sent`` when the provider had the message, ``failed`` with the
  reason when it was refused (``store.ledger.settle_from_events``), so
  ``campaigns retry --unknown`` does not send it again;
- applies the audience rules (``newsletter.audience.rules``): a hard
  bounce, or a rejection because the address bounced or complained before,
  suppresses the address; a complaint suppresses it and ends every
  membership; soft bounces are counted per address and suppress it after
  :attr:`SoftBounceLimit.limit` within :attr:`SoftBounceLimit.days`; an
  unsubscribe for one of our messages unsubscribes from everything
  (another sender on the same provider account must not unsubscribe our
  readers). An address's hard bounce or complaint suppresses it even when
  the message was not ours: the address is dead or unwilling either way.

Only the events this transaction itself inserted (``INSERT ... ON CONFLICT
DO NOTHING RETURNING``) have effects, and batches are applied one at a time
(``store.events.lock_events``), so copies of one batch handled in parallel
apply it exactly once between them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from newsletter.audience import rules
from newsletter.delivery import message_id
from newsletter.store import events as ev
from newsletter.store import ledger
from newsletter.store.audience import find_subscriber
from newsletter.store.db import Store
from newsletter.store.models import Delivery, Subscriber
from newsletter.tracking import EventKind, RejectReason, TrackingEvent
from newsletter.vocabulary import LedgerStatus, SubscriberStatus, address_key

log = logging.getLogger("newsletter.events")

# Rejections that mean the address itself must not be mailed again.
_SUPPRESSING_REJECTIONS = {RejectReason.BOUNCED: SubscriberStatus.BOUNCED,
                           RejectReason.COMPLAINED: SubscriberStatus.COMPLAINED}
# The ledger column each kind fills, and whether the first report (True) or the latest (False) is kept.
_TIMESTAMPS = {EventKind.DELIVERED: ("delivered_at", True), EventKind.DEFERRED: ("deferred_at", False),
               EventKind.OPENED: ("opened_at", True), EventKind.CLICKED: ("clicked_at", True),
               EventKind.COMPLAINED: ("complained_at", True)}
# A stronger refusal replaces a weaker one on the ledger row.
_REFUSAL_STRENGTH = {None: 0, "soft": 1, "rejected": 2, "hard": 3}


@dataclass(frozen=True)
class SoftBounceLimit:
    """Soft bounces of one address that suppress it: ``limit`` within ``days`` (``[events]`` settings)."""

    limit: int = 3
    days: float = 30.0


@dataclass
class _Row:
    """An event on its way to ``provider_events``, with the ledger row its Message-ID claims."""

    event: TrackingEvent
    claim: message_id.OurMessageId | None
    campaign_id: int | None = None
    delivery_id: int | None = None
    subscriber_id: int | None = None


def record_events(store: Store, events: list[TrackingEvent], secret_keys: Iterable[str],
                  now: datetime, soft_bounces: SoftBounceLimit | None = None) -> dict[str, int]:
    """Store the batch's new events and apply their effects, in one transaction.

    Returns counts: ``received`` (events in the batch), ``new`` (stored by
    this call), ``matched`` (of those, matched to a ledger row),
    ``unmatched`` (of those, for messages not ours or no longer in the
    ledger: ignored but for the address rules) and ``applied`` (of those,
    that changed the audience).
    """
    with store.session() as session:
        return record_events_in(session, events, secret_keys, now, soft_bounces)


def record_events_in(session: Session, events: list[TrackingEvent], secret_keys: Iterable[str],
                     now: datetime, soft_bounces: SoftBounceLimit | None = None) -> dict[str, int]:
    """:func:`record_events` within the caller's transaction (first-party clicks record their counts in the
    same one); the caller commits."""
    tags = message_id.tags(secret_keys)
    limit = soft_bounces or SoftBounceLimit()
    rows: dict[str, _Row] = {}
    for event in events:
        rows.setdefault(event.event_id, _Row(event, message_id.parse(event.message_id, tags)))
    ev.lock_events(session)
    for known in ev.known_event_ids(session, list(rows)):
        del rows[known]
    ledger_rows = _match(session, list(rows.values()))
    inserted = ev.insert_events(session, [_stored(row, now) for row in rows.values()])
    # Another copy of this batch may have stored some of these events meanwhile: apply only ours.
    fresh = [row for event_id, row in rows.items() if event_id in inserted]
    settled = _record_outcomes(session, fresh, ledger_rows, now)
    applied = sum(_apply(session, row, now, limit) for row in fresh)
    _wake_engaged(session, fresh)
    matched = sum(1 for row in fresh if row.delivery_id is not None)
    if settled:
        log.info("%d ledger rows of unknown outcome settled from %s events", settled, fresh[0].event.provider)
    return {"received": len(events), "new": len(fresh), "matched": matched, "unmatched": len(fresh) - matched,
            "applied": applied}


def _wake_engaged(session: Session, rows: list[_Row]) -> None:
    """An open or click makes a dormant subscriber (the sunset policy's) active again."""
    from newsletter.store.segments import wake_engaged

    engaged = [row.subscriber_id for row in rows
               if row.subscriber_id is not None and row.event.kind in (EventKind.OPENED, EventKind.CLICKED)]
    if engaged:
        wake_engaged(session, engaged)


def _match(session: Session, rows: list[_Row]) -> dict[int, ev.LedgerRow]:
    """Fill campaign, delivery and subscriber ids from the ledger rows the events claim; returns those rows."""
    claimed = sorted({row.claim.delivery_id for row in rows if row.claim is not None})
    ledger_rows = ev.ledger_rows(session, claimed)
    # An id whose nonce is not its campaign's was made by another database with the same secret (one
    # rebuilt since): its numbers name someone else here, so it matches nothing.
    nonces = ev.campaign_nonces(session, sorted({row.claim.campaign_id for row in rows
                                                 if row.claim is not None and row.claim.nonce is not None}))
    for row in rows:
        found = ledger_rows.get(row.claim.delivery_id) if row.claim else None
        if found and row.claim and found.campaign_id == row.claim.campaign_id and \
                row.claim.same_campaign(nonces.get(row.claim.campaign_id)):
            row.campaign_id, row.subscriber_id = found.campaign_id, found.subscriber_id
            row.delivery_id = row.claim.delivery_id
    return ledger_rows


def _stored(row: _Row, now: datetime) -> dict[str, object]:
    """The ``provider_events`` row of an event."""
    event = row.event
    return {
        "provider": event.provider, "event_id": event.event_id, "kind": event.kind.value,
        "campaign_id": row.campaign_id, "delivery_id": row.delivery_id, "subscriber_id": row.subscriber_id,
        "email": event.recipient, "detail": event.detail, "occurred_at": event.occurred_at or now,
        "received_at": now, "raw": event.raw,
    }


def outcome_after(outcome: ev.Outcome, event: TrackingEvent, when: datetime) -> ev.Outcome:
    """The ledger row's event columns once ``event`` (reported at ``when``) is added to them.

    The same whatever order the events come in: first delivery, open, click
    and complaint kept, the latest deferral, the strongest refusal (hard
    bounce > rejection > soft bounce), the first provider to report.
    """
    changes: dict[str, Any] = {}
    if outcome.event_provider is None:
        changes["event_provider"] = event.provider
    column = _TIMESTAMPS.get(event.kind)
    if column is not None:
        name, first = column
        current = getattr(outcome, name)
        if current is None or (when < current if first else when > current):
            changes[name] = when
    refusal = refusal_of(event)
    if _REFUSAL_STRENGTH[refusal] > _REFUSAL_STRENGTH[outcome.refused]:
        changes["refused"] = refusal
    return replace(outcome, **changes) if changes else outcome


def refusal_of(event: TrackingEvent) -> str | None:
    """``hard`` or ``soft`` for a bounce, ``rejected`` when the provider would not send it, else None."""
    if event.kind is EventKind.BOUNCED:
        return "hard" if event.hard else "soft"
    if event.kind is EventKind.REJECTED:
        return "rejected"
    return None


def _record_outcomes(session: Session, fresh: list[_Row], ledger_rows: dict[int, ev.LedgerRow],
                     now: datetime) -> int:
    """Write what the new events say on their ledger rows; settle the rows left ``unknown``. Returns how many."""
    changed: dict[int, ev.Outcome] = {}
    for row in fresh:
        if row.delivery_id is None or row.event.kind is EventKind.OTHER:
            continue
        before = changed.get(row.delivery_id) or ledger_rows[row.delivery_id].outcome
        after = outcome_after(before, row.event, row.event.occurred_at or now)
        if after != before:
            changed[row.delivery_id] = after
    ev.save_outcomes(session, changed)
    unknown = [i for i in changed if ledger_rows[i].status == LedgerStatus.UNKNOWN]
    if not unknown:
        return 0
    settled = ledger.settle_from_events(session, LedgerStatus.UNKNOWN, Delivery.__table__.c.id.in_(sorted(unknown)))
    ledger.received_after_all(session, sorted({ledger_rows[i].campaign_id for i in unknown}))
    return settled


def suppression_reason(event: TrackingEvent) -> str | None:
    """``bounced`` or ``complained`` when the event means the address must not be mailed again, else None."""
    if event.kind is EventKind.BOUNCED and event.hard:
        return SubscriberStatus.BOUNCED
    if event.kind is EventKind.COMPLAINED:
        return SubscriberStatus.COMPLAINED
    if event.kind is EventKind.REJECTED and event.reject_reason is not None:
        return _SUPPRESSING_REJECTIONS.get(event.reject_reason)
    return None


def _apply(session: Session, row: _Row, now: datetime, limit: SoftBounceLimit) -> int:
    """The event's effect on the audience; 1 when it changed something."""
    event = row.event
    source = event.provider
    reason = suppression_reason(event)
    if reason is not None:
        subscriber = _subscriber(session, row)
        target = subscriber if subscriber is not None else event.recipient
        if not target:
            return 0
        detail = f"{source} {event.detail}"
        if reason == SubscriberStatus.COMPLAINED:
            rules.complaint(session, target, source, detail=detail)
        else:
            rules.suppress_for_event(session, target, reason, source, detail=detail)
        return 1
    if event.kind is EventKind.BOUNCED and event.recipient:  # a soft bounce
        return int(rules.soft_bounce(session, event.recipient, source, event.occurred_at or now, now,
                                     limit=limit.limit, days=limit.days, detail=event.detail))
    if event.kind is EventKind.UNSUBSCRIBED and row.delivery_id is not None:
        subscriber = _subscriber(session, row)
        if subscriber is not None:
            rules.unsubscribe_for_event(session, subscriber, source)
            return 1
    return 0


def _subscriber(session: Session, row: _Row) -> Subscriber | None:
    if row.subscriber_id is not None:
        return session.get(Subscriber, row.subscriber_id)
    email = row.event.recipient
    return find_subscriber(session, address_key(email)) if email else None
