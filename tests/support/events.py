"""Helpers for the event pipeline's tests: a sent campaign's ledger rows, hand-made events, the state they leave.

``seed_campaign`` writes a campaign and its ledger rows through the models
(the state a send leaves, without composing and sending: the property test
needs hundreds of them); ``state`` reads back everything events may change,
as plain data to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.audience import manage
from newsletter.delivery.message_id import id_template
from newsletter.store import audience as q
from newsletter.store.events import SoftBounce
from newsletter.store.models import Campaign, Delivery, Edition, Membership, Subscriber
from newsletter.tracking import EventKind, RejectReason, TrackingEvent
from newsletter.vocabulary import LedgerStatus, address_hash
from sqlalchemy import func, select

SECRET = "events-test-secret"
SENDER = "news@clinic.example"
WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class Seeded:
    """A campaign sent to ``emails``: its id, and each address's ledger row id and Message-ID."""

    campaign_id: int
    delivery_ids: dict[str, int]
    message_ids: dict[str, str]


def seed_campaign(store, emails: list[str], *, list_name: str = "readers", status: str = LedgerStatus.SENT,
                  transport: str = "sendgrid", other_list: str | None = None, secret: str = SECRET) -> Seeded:
    """Subscribers on ``list_name`` (and ``other_list``), a sent campaign, one ledger row each in ``status``."""
    for email in emails:
        manage.add_subscriber(store, email, list_name=list_name, confirmed=True)
        if other_list:
            manage.add_subscriber(store, email, list_name=other_list, confirmed=True)
    with store.session() as session:
        edition = Edition(slug="issue", subject="Issue", html="<p>x</p>", text="x")
        session.add(edition)
        session.flush()
        campaign = Campaign(edition_id=edition.id, list_name=list_name, status="sent", transport=transport)
        session.add(campaign)
        session.flush()
        ids = {}
        for email in emails:
            subscriber = q.find_subscriber(session, email.lower())
            row = Delivery(campaign_id=campaign.id, subscriber_id=subscriber.id, email=email, status=status,
                           attempts=1)
            session.add(row)
            session.flush()
            ids[email] = row.id
        template = id_template(secret, campaign.id, SENDER)
        return Seeded(campaign.id, ids, {email: template.format(i) for email, i in ids.items()})


def event(kind: EventKind, email: str, event_id: str, *, message_id: str | None = None, hard: bool = False,
          when: datetime = WHEN, reject_reason: RejectReason | None = None, provider: str = "sendgrid",
          detail: str = "") -> TrackingEvent:
    """A tracking event as a provider's parser makes it."""
    return TrackingEvent(provider=provider, kind=kind, event_id=event_id, recipient=email, occurred_at=when,
                         raw={"id": event_id, "kind": kind.value}, message_id=message_id, hard=hard,
                         reject_reason=reject_reason, detail=detail)


OUTCOME = ("status", "error", "event_provider", "delivered_at", "deferred_at", "opened_at", "clicked_at",
           "complained_at", "refused")


def state(store, emails: list[str], *, rename=lambda email: email) -> dict:
    """Everything events may change for ``emails``, keyed by ``rename(email)`` (to compare two namespaces)."""
    result = {}
    with store.session() as session:
        for email in emails:
            subscriber = q.find_subscriber(session, email.lower())
            memberships = sorted((m.mailing_list.name, m.status) for m in subscriber.memberships) if subscriber else []
            rows = session.scalars(select(Delivery).where(Delivery.email == email).order_by(Delivery.id)).all()
            result[rename(email)] = {
                "status": subscriber.status if subscriber else None,
                "suppressed": q.suppression_reason(session, address_hash(email)),
                "memberships": memberships,
                "soft_bounces": session.scalar(select(func.count()).select_from(SoftBounce)
                                               .where(SoftBounce.email_hash == address_hash(email))),
                "ledger": [{k: getattr(r, k) for k in OUTCOME} for r in rows],
            }
    return result


def subscriber_count(store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Subscriber))


def membership_statuses(store, email: str) -> dict[str, str]:
    with store.session() as session:
        subscriber = q.find_subscriber(session, email.lower())
        return {m.mailing_list.name: m.status
                for m in session.scalars(select(Membership).where(Membership.subscriber_id == subscriber.id))}
