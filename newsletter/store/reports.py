"""The queries of the campaign report and comparison (``newsletter.events.engagement`` shapes them).

Counts are of ledger rows (recipients) unless a name says clicks: a reader
clicking five times is one unique click, five clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from newsletter.store.events import ProviderEvent
from newsletter.store.models import Campaign, Consent, Delivery, Edition, UTCDateTime
from newsletter.vocabulary import CampaignStatus, ConsentAction, LedgerStatus

deliveries_t = Delivery.__table__
events_t = ProviderEvent.__table__
LEDGER_COUNTS = ("recipients", "sent", "delivered", "hard_bounced", "soft_bounced", "complained", "opened",
                 "clicked", "events")


@dataclass(frozen=True)
class CampaignInfo:
    """What a report says about a campaign itself."""

    id: int
    subject: str
    list_id: int | None
    list_name: str
    status: str
    transport: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def sent_at(self) -> datetime:
        return self.started_at or self.created_at


def campaign_info(session: Session, campaign_id: int) -> CampaignInfo | None:
    row = session.execute(select(Campaign.id, Edition.subject, Campaign.list_id, Campaign.list_name, Campaign.status,
                                 Campaign.transport, Campaign.created_at, Campaign.started_at, Campaign.finished_at)
                          .join(Edition, Edition.id == Campaign.edition_id)
                          .where(Campaign.id == campaign_id)).first()
    return None if row is None else CampaignInfo(*row)


def sent_campaign_ids(session: Session, before: int | None = None, limit: int = 5) -> list[int]:
    """The newest campaigns that went out (sent, or sending/paused with sent rows), newest first."""
    query = select(Campaign.id).where(Campaign.status.in_(
        (CampaignStatus.SENT, CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.STOPPED)))
    if before is not None:
        query = query.where(Campaign.id < before)
    return list(session.scalars(query.order_by(Campaign.id.desc()).limit(limit)))


def _rows_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


def _ledger_columns() -> list[ColumnElement[int]]:
    t = deliveries_t
    return [func.count(),
            _rows_where((t.c.status == LedgerStatus.SENT) | t.c.event_provider.is_not(None)),
            _rows_where(t.c.delivered_at.is_not(None)),
            _rows_where(t.c.refused == "hard"),
            _rows_where((t.c.refused == "soft") & t.c.delivered_at.is_(None)),
            _rows_where(t.c.complained_at.is_not(None)),
            _rows_where(t.c.opened_at.is_not(None)),
            _rows_where(t.c.clicked_at.is_not(None)),
            _rows_where(t.c.event_provider.is_not(None))]


def ledger_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Recipients, sent, delivered, bounced hard and soft, complained, opened, clicked, and rows with
    provider events (``events``: 0 means no provider reported delivery at all)."""
    row = session.execute(select(*_ledger_columns()).where(deliveries_t.c.campaign_id == campaign_id)).one()
    return dict(zip(LEDGER_COUNTS, (int(n or 0) for n in row), strict=True))


def _domain(session: Session) -> ColumnElement[str]:
    """The part of the recipient's address after the ``@``, lower case."""
    email = deliveries_t.c.email
    if session.get_bind().dialect.name == "postgresql":
        return func.lower(func.split_part(email, "@", 2))
    return func.lower(func.substr(email, func.instr(email, "@") + 1))


def domain_counts(session: Session, campaign_id: int, limit: int = 5) -> list[dict[str, Any]]:
    """The recipient domains with the most recipients: the ledger counts per domain."""
    domain = _domain(session).label("domain")
    rows = session.execute(select(domain, *_ledger_columns()).where(deliveries_t.c.campaign_id == campaign_id)
                           .group_by(domain).order_by(func.count().desc(), domain).limit(limit))
    return [{"domain": str(row[0]), **dict(zip(LEDGER_COUNTS, (int(n or 0) for n in row[1:]), strict=True))}
            for row in rows]


def unsubscribed(session: Session, campaign_id: int, list_id: int | None, since: datetime,
                 until: datetime | None) -> int:
    """Recipients who unsubscribed after this campaign: through the provider for its messages, or from
    its list between ``since`` (its start) and ``until`` (the list's next campaign, or now). Those who
    complained are counted as complaints only (a complaint ends their memberships too)."""
    by_event = (select(events_t.c.subscriber_id)
                .where(events_t.c.campaign_id == campaign_id, events_t.c.kind == "unsubscribed",
                       events_t.c.subscriber_id.is_not(None)))
    consents = Consent.__table__
    by_consent = (select(consents.c.subscriber_id)
                  .join(deliveries_t, (deliveries_t.c.subscriber_id == consents.c.subscriber_id)
                        & (deliveries_t.c.campaign_id == campaign_id))
                  # a complaint ends memberships too; it is counted as a complaint, not twice
                  .where(consents.c.action == ConsentAction.UNSUBSCRIBE, consents.c.created_at >= since,
                         deliveries_t.c.complained_at.is_(None)))
    if list_id is not None:
        by_consent = by_consent.where((consents.c.list_id == list_id) | consents.c.list_id.is_(None))
    if until is not None:
        by_consent = by_consent.where(consents.c.created_at < until)
    union = by_event.union(by_consent).subquery()
    return int(session.scalar(select(func.count()).select_from(union)) or 0)


def next_campaign_start(session: Session, campaign_id: int, list_id: int | None) -> datetime | None:
    """When the list's next campaign started (unsubscribes after it are that one's), or None."""
    if list_id is None:
        return None
    return session.scalar(select(func.min(func.coalesce(Campaign.started_at, Campaign.created_at)))
                          .where(Campaign.list_id == list_id, Campaign.id > campaign_id,
                                 Campaign.started_at.is_not(None)))


def unique_clickers_by_link(session: Session, campaign_id: int, provider: str) -> dict[int, int]:
    """position -> distinct deliveries whose first-party click on that link was recorded (personal mode)."""
    detail = events_t.c.detail
    rows = session.execute(select(detail, func.count(func.distinct(events_t.c.delivery_id)))
                           .where(events_t.c.campaign_id == campaign_id, events_t.c.provider == provider,
                                  events_t.c.kind == "clicked", detail.like("link %"))
                           .group_by(detail))
    result: dict[int, int] = {}
    for text, n in rows:
        try:
            result[int(str(text).split(" ", 1)[1])] = int(n)
        except (IndexError, ValueError):
            continue
    return result


def provider_event_times(session: Session, campaign_id: int, kind: str, exclude_provider: str) -> list[datetime]:
    """When each of the campaign's ``kind`` events from providers (not first-party) happened."""
    column = events_t.c.occurred_at
    rows = session.execute(select(column).where(events_t.c.campaign_id == campaign_id, events_t.c.kind == kind,
                                                events_t.c.provider != exclude_provider))
    processor = UTCDateTime().process_result_value
    dialect = session.get_bind().dialect
    result = []
    for (when,) in rows:
        value = when if isinstance(when, datetime) and when.tzinfo is not None else processor(when, dialect)
        if value is not None:
            result.append(value)
    return result

