"""Store tracking events once and apply their effects: the same for every provider.

:func:`record_events` takes a batch of :class:`~newsletter.tracking.TrackingEvent`
(already verified and parsed by the provider's event source) and, in one
transaction:

- deduplicates by the provider's event id (providers deliver at least
  once, and repeat events within a batch);
- matches each event to its ledger row through our Message-ID
  (``newsletter.delivery.message_id``: the tag proves the message was ours;
  ids no row can have are ignored);
- stores it (``provider_events``, with the raw event);
- applies it: a hard bounce, a complaint, or a rejection because the
  address bounced or complained before puts the address on the suppression
  list; an unsubscribe for one of our messages unsubscribes from everything
  (another sender on the same provider account must not unsubscribe our
  readers).

Only the events this transaction itself inserted (``INSERT ... ON CONFLICT
DO NOTHING RETURNING``) have effects, so copies of one batch handled in
parallel apply it exactly once between them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.audience import rules
from newsletter.delivery import message_id
from newsletter.store import events as ev
from newsletter.store.audience import find_subscriber
from newsletter.store.db import Store
from newsletter.store.models import Subscriber
from newsletter.tracking import EventKind, RejectReason, TrackingEvent
from newsletter.vocabulary import SubscriberStatus, address_key

# Rejections that mean the address itself must not be mailed again.
_SUPPRESSING_REJECTIONS = {RejectReason.BOUNCED: SubscriberStatus.BOUNCED,
                           RejectReason.COMPLAINED: SubscriberStatus.COMPLAINED}


@dataclass
class _Row:
    """An event on its way to ``provider_events``, with the ledger row its Message-ID claims."""

    event: TrackingEvent
    claim: message_id.OurMessageId | None
    campaign_id: int | None = None
    delivery_id: int | None = None
    subscriber_id: int | None = None


def record_events(store: Store, events: list[TrackingEvent], secret_keys: Iterable[str],
                  now: datetime) -> dict[str, int]:
    """Store the batch's new events and apply their effects, in one transaction.

    Returns counts: ``received`` (events in the batch), ``new`` (stored by
    this call), ``matched`` (of those, matched to a ledger row) and
    ``applied`` (of those, that changed the audience).
    """
    tags = message_id.tags(secret_keys)
    rows: dict[str, _Row] = {}
    for event in events:
        rows.setdefault(event.event_id, _Row(event, message_id.parse(event.message_id, tags)))
    with store.session() as session:
        for known in ev.known_event_ids(session, list(rows)):
            del rows[known]
        _match(session, list(rows.values()))
        inserted = ev.insert_events(session, [_stored(row, now) for row in rows.values()])
        # Another copy of this batch may have stored some of these events meanwhile: apply only ours.
        fresh = [row for event_id, row in rows.items() if event_id in inserted]
        applied = sum(_apply(session, row) for row in fresh)
    matched = sum(1 for row in fresh if row.delivery_id is not None)
    return {"received": len(events), "new": len(fresh), "matched": matched, "applied": applied}


def _match(session: Session, rows: list[_Row]) -> None:
    """Fill campaign, delivery and subscriber ids from the ledger rows the events claim."""
    claimed = sorted({row.claim.delivery_id for row in rows if row.claim is not None})
    ledger = ev.ledger_rows(session, claimed)
    for row in rows:
        found = ledger.get(row.claim.delivery_id) if row.claim else None
        if found and row.claim and found[0] == row.claim.campaign_id:
            row.campaign_id, row.subscriber_id = found
            row.delivery_id = row.claim.delivery_id


def _stored(row: _Row, now: datetime) -> dict[str, object]:
    """The ``provider_events`` row of an event."""
    event = row.event
    return {
        "provider": event.provider, "event_id": event.event_id, "kind": event.kind.value,
        "campaign_id": row.campaign_id, "delivery_id": row.delivery_id, "subscriber_id": row.subscriber_id,
        "email": event.recipient, "detail": event.detail, "occurred_at": event.occurred_at or now,
        "received_at": now, "raw": event.raw,
    }


def suppression_reason(event: TrackingEvent) -> str | None:
    """``bounced`` or ``complained`` when the event means the address must not be mailed again, else None."""
    if event.kind is EventKind.BOUNCED and event.hard:
        return SubscriberStatus.BOUNCED
    if event.kind is EventKind.COMPLAINED:
        return SubscriberStatus.COMPLAINED
    if event.kind is EventKind.REJECTED and event.reject_reason is not None:
        return _SUPPRESSING_REJECTIONS.get(event.reject_reason)
    return None


def _apply(session: Session, row: _Row) -> int:
    """The event's effect on the audience; 1 when it changed something."""
    event = row.event
    reason = suppression_reason(event)
    if reason is None and not (event.kind is EventKind.UNSUBSCRIBED and row.delivery_id is not None):
        return 0
    subscriber = _subscriber(session, row)
    if reason is not None:
        target = subscriber if subscriber is not None else event.recipient
        if not target:
            return 0
        rules.suppress(session, target, reason, event.provider, detail=f"{event.provider} {event.detail}")
        return 1
    if subscriber is not None:
        rules.unsubscribe(session, subscriber, None, event.provider)
        return 1
    return 0


def _subscriber(session: Session, row: _Row) -> Subscriber | None:
    if row.subscriber_id is not None:
        return session.get(Subscriber, row.subscriber_id)
    email = row.event.recipient
    return find_subscriber(session, address_key(email)) if email else None
