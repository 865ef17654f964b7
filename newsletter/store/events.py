"""Provider events and public-endpoint state: models and every query the web app runs.

- ``provider_events``: one row per provider event, unique by the provider's
  event id (providers deliver at least once and repeat events), with the
  normalised kind (``newsletter.tracking.EventKind``), the ledger row it
  belongs to when our Message-ID names one, and the raw event as received.
- ``soft_bounces``: one row per soft bounce, the address as a hash (three
  within thirty days suppress it: ``newsletter.audience.rules.soft_bounce``).
- ``signup_attempts``: when each address asked for a confirmation email (the
  per-address rate limit of ``POST /subscribe``; a table, so it survives
  restarts and holds across several server processes).

The archive's queries (sent editions) live here too: all SQL sits in
``store/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store.models import Base, Campaign, Delivery, Edition, MailingList, UTCDateTime, utcnow
from newsletter.store.sql import dialect_insert
from newsletter.tracking import REPORTED_KINDS
from newsletter.vocabulary import CampaignStatus, LedgerStatus


class ProviderEvent(Base):
    """One event from the email provider, stored once, with the raw event kept."""

    __tablename__ = "provider_events"
    __table_args__ = (Index("ix_provider_events_campaign_kind", "campaign_id", "kind"),
                      # one subscriber's opens and clicks: segment engagement predicates (migration 0012)
                      Index("ix_provider_events_subscriber", "subscriber_id", "kind", "occurred_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Not foreign keys: an event may name a campaign of another workspace
    # sharing the provider account, or one deleted since; it is kept anyway.
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    subscriber_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    detail: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)


class SoftBounce(Base):
    """One soft bounce of an address (kept as a hash), for the soft-bounce limit."""

    __tablename__ = "soft_bounces"
    __table_args__ = (Index("ix_soft_bounces_hash_time", "email_hash", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignupAttempt(Base):
    """A signup asked for by an address from a client IP (only hashes of both are kept)."""

    __tablename__ = "signup_attempts"
    __table_args__ = (Index("ix_signup_attempts_hash_time", "email_hash", "created_at"),
                      Index("ix_signup_attempts_ip_time", "ip_hash", "created_at"),
                      Index("ix_signup_attempts_network_time", "network_hash", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    ip_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The client's /24 (IPv4) or /48 (IPv6), hashed: the network limits (store.signups, migration 0020).
    network_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LegacyLinks(Base):
    """Up to which subscriber id links signed before tokens covered the address may still unsubscribe.

    One row, written by migration 0006 with the highest id at upgrade time:
    such links name only an id, and ids at or below it are never handed
    out again, so they still name their own person. Newer subscribers never
    had such a link.
    """

    __tablename__ = "legacy_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_subscriber_id: Mapped[int] = mapped_column(Integer)


events_t = ProviderEvent.__table__
deliveries_t = Delivery.__table__

EVENTS_LOCK = 0x6E6C4576  # "nlEv": the PostgreSQL advisory lock held while a batch of events is applied


# -- events -----------------------------------------------------------------------------------

def lock_events(session: Session) -> None:
    """Apply event batches one at a time until the transaction ends.

    Copies of one batch (or overlapping batches) handled in parallel would
    otherwise wait on each other's event ids, ledger rows and subscribers in
    different orders (deadlocks), and two soft bounces of one address in two
    batches would each count without the other. SQLite transactions here
    begin IMMEDIATE and are serial already; PostgreSQL takes a transaction
    advisory lock (held for the few milliseconds a batch takes).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(EVENTS_LOCK)))

def known_event_ids(session: Session, event_ids: list[str]) -> set[str]:
    """Those of ``event_ids`` already stored (one query per 500 ids)."""
    found: set[str] = set()
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start:start + 500]
        found.update(session.scalars(select(events_t.c.event_id).where(events_t.c.event_id.in_(chunk))))
    return found


@dataclass
class Outcome:
    """What the events said so far about one ledger row (its event columns, see ``Delivery``)."""

    event_provider: str | None = None
    delivered_at: datetime | None = None
    deferred_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    complained_at: datetime | None = None
    refused: str | None = None


OUTCOME_FIELDS = tuple(Outcome.__dataclass_fields__)


@dataclass
class LedgerRow:
    """A ledger row as the event pipeline needs it."""

    campaign_id: int
    subscriber_id: int
    status: str
    outcome: Outcome


def ledger_rows(session: Session, delivery_ids: list[int]) -> dict[int, LedgerRow]:
    """delivery id -> its campaign, subscriber, status and event columns, for the ids that exist."""
    result: dict[int, LedgerRow] = {}
    table = deliveries_t
    columns = [table.c[name] for name in OUTCOME_FIELDS]
    for start in range(0, len(delivery_ids), 500):
        chunk = delivery_ids[start:start + 500]
        rows = session.execute(select(table.c.id, table.c.campaign_id, table.c.subscriber_id, table.c.status,
                                      *columns).where(table.c.id.in_(chunk)))
        result.update({row[0]: LedgerRow(row[1], row[2], row[3], Outcome(*row[4:])) for row in rows})
    return result


def campaign_nonces(session: Session, campaign_ids: list[int]) -> dict[int, str | None]:
    """campaign id -> its Message-ID nonce (None for campaigns made before migration 0011)."""
    result: dict[int, str | None] = {}
    for start in range(0, len(campaign_ids), 500):
        chunk = campaign_ids[start:start + 500]
        rows = session.execute(select(Campaign.id, Campaign.id_nonce).where(Campaign.id.in_(chunk)))
        result.update({row[0]: row[1] for row in rows})
    return result


def save_outcomes(session: Session, outcomes: dict[int, Outcome]) -> None:
    """Write the event columns of these ledger rows (one statement, executed for many rows).

    Only the event columns: the sender may be writing the same rows' status
    meanwhile, and neither overwrites the other.
    """
    if not outcomes:
        return
    values: dict[str, Any] = {name: bindparam(f"o_{name}") for name in OUTCOME_FIELDS}
    table = Delivery.__table__
    # The Core table, not the ORM class: an ORM update given many parameter sets wants primary-key names.
    statement = update(table).where(table.c.id == bindparam("o_id")).values(**values)
    session.execute(statement, [{"o_id": delivery_id, **{f"o_{k}": getattr(o, k) for k in OUTCOME_FIELDS}}
                                for delivery_id, o in sorted(outcomes.items())])


def add_soft_bounce(session: Session, email_hash: str, provider: str, occurred_at: datetime) -> None:
    session.add(SoftBounce(email_hash=email_hash, provider=provider, occurred_at=occurred_at))
    session.flush()


def soft_bounces_since(session: Session, email_hash: str, since: datetime) -> int:
    """How many soft bounces of this address happened at or after ``since``."""
    table = SoftBounce.__table__
    return session.scalar(select(func.count()).where(table.c.email_hash == email_hash,
                                                     table.c.occurred_at >= since)) or 0


def provider_report(session: Session, campaign_id: int, transport: str) -> list[dict[str, Any]]:
    """Per provider, what the events say about a campaign's ledger rows (one row per recipient).

    ``sent``: rows the provider took (``sent`` in the ledger, or described
    by its events); a row without events is counted for the campaign's own
    transport. Then the
    rows the provider's events call delivered, bounced hard, bounced soft
    (and not delivered since), rejected, complained, opened and clicked.
    """
    table = deliveries_t
    provider = func.coalesce(table.c.event_provider, literal(transport))

    def rows_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count(case((condition, 1)))

    query = (select(provider,
                    rows_where((table.c.status == LedgerStatus.SENT) | table.c.event_provider.is_not(None)),
                    rows_where(table.c.delivered_at.is_not(None)),
                    rows_where(table.c.refused == "hard"),
                    rows_where((table.c.refused == "soft") & table.c.delivered_at.is_(None)),
                    rows_where(table.c.refused == "rejected"),
                    rows_where(table.c.complained_at.is_not(None)),
                    rows_where(table.c.opened_at.is_not(None)),
                    rows_where(table.c.clicked_at.is_not(None)))
             .where(table.c.campaign_id == campaign_id)
             .group_by(provider).order_by(provider))
    names = ("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained", "opened", "clicked")
    report = []
    for row in session.execute(query):
        counts = dict(zip(names, (int(n) for n in row[1:]), strict=True))
        if row[0] == transport or counts["delivered"] or any(counts[n] for n in names[2:]):
            report.append({"provider": row[0], **counts})
    return report


def insert_events(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert event rows; returns the event ids this call stored.

    An event id stored meanwhile (another delivery of the same batch, handled
    at the same moment) is skipped, not an error, and not returned: on
    PostgreSQL the insert waits for the other transaction and then skips
    its rows, so each event is stored (and applied) by exactly one caller.
    Callers drop known ids first (:func:`known_event_ids`).
    """
    if not rows:
        return set()
    statement = (dialect_insert(session, events_t).on_conflict_do_nothing(index_elements=["event_id"])
                 .returning(events_t.c.event_id))
    return set(session.scalars(statement, rows))


def campaign_event_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Recipients with at least one event of each reported kind (an address opening twice counts once)."""
    who = func.coalesce(func.cast(events_t.c.delivery_id, String), events_t.c.email)
    rows = session.execute(select(events_t.c.kind, func.count(func.distinct(who)))
                           .where(events_t.c.campaign_id == campaign_id, events_t.c.kind.in_(REPORTED_KINDS))
                           .group_by(events_t.c.kind))
    result = {kind: 0 for kind in REPORTED_KINDS}
    result.update({kind: int(count) for kind, count in rows})
    return result


# -- signups ----------------------------------------------------------------------------------

SIGNUP_LOCK = 0x6E6C5375  # "nlSu": the PostgreSQL advisory lock of the signup limits


def lock_signups(session: Session) -> None:
    """Serialise signup-limit checks until the transaction ends.

    Counting attempts and recording one must not interleave, or parallel
    requests all see the count below the limit. SQLite transactions here
    begin IMMEDIATE and are serial already; PostgreSQL takes a transaction
    advisory lock (held a few milliseconds per signup).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(SIGNUP_LOCK)))


def ip_hash(ip: str) -> str:
    """What the signup table keeps of a client IP (SHA-256; it is only ever compared)."""
    return hashlib.sha256(f"ip:{ip}".encode("utf-8", "replace")).hexdigest()


def signup_attempts_since(session: Session, email_hash: str, since: datetime) -> int:
    table = SignupAttempt.__table__
    return session.scalar(select(func.count()).where(table.c.email_hash == email_hash,
                                                     table.c.created_at >= since)) or 0


def signup_attempts_from_since(session: Session, ip_hash_value: str, since: datetime) -> int:
    table = SignupAttempt.__table__
    return session.scalar(select(func.count()).where(table.c.ip_hash == ip_hash_value,
                                                     table.c.created_at >= since)) or 0


def signup_attempts_from_network_since(session: Session, network_hash: str, since: datetime) -> int:
    table = SignupAttempt.__table__
    return session.scalar(select(func.count()).where(table.c.network_hash == network_hash,
                                                     table.c.created_at >= since)) or 0


def record_signup_attempt(session: Session, email_hash: str, now: datetime, keep: timedelta,
                          ip_hash: str | None = None, network_hash: str | None = None) -> None:
    """Record an attempt and forget those older than ``keep`` (the table stays small)."""
    table = SignupAttempt.__table__
    session.execute(delete(table).where(table.c.created_at < now - keep))
    session.add(SignupAttempt(email_hash=email_hash, ip_hash=ip_hash, network_hash=network_hash, created_at=now))
    session.flush()


def legacy_link_limit(session: Session) -> int:
    """The highest subscriber id an id-only (pre-0006) unsubscribe link may name; 0 when none may."""
    return session.scalar(select(func.max(LegacyLinks.max_subscriber_id))) or 0


def find_list_by_id(session: Session, list_id: int) -> MailingList | None:
    return session.get(MailingList, list_id)


def list_names(session: Session) -> list[str]:
    return list(session.scalars(select(MailingList.name).order_by(MailingList.id)))


# -- archive ----------------------------------------------------------------------------------

def _delivered_campaigns() -> ColumnElement[bool]:
    """Campaigns that reached someone: status ``sent`` and at least one ``sent`` ledger row.

    A campaign nobody received (every row failed or unknown) is not
    published, whatever its status says.
    """
    deliveries = Delivery.__table__
    reached = (select(deliveries.c.id)
               .where(deliveries.c.campaign_id == Campaign.id, deliveries.c.status == LedgerStatus.SENT).exists())
    return (Campaign.status == CampaignStatus.SENT) & reached


def sent_editions(session: Session, limit: int = 200) -> list[dict[str, Any]]:
    """Editions of delivered campaigns, newest first, one entry per slug (its newest sending)."""
    sent_at = func.coalesce(Campaign.finished_at, Campaign.started_at, Campaign.created_at)
    rows = session.execute(select(Edition.id, Edition.slug, Edition.subject, Edition.preheader, sent_at)
                           .join(Campaign, Campaign.edition_id == Edition.id)
                           .where(_delivered_campaigns())
                           .order_by(sent_at.desc(), Edition.id.desc()))
    seen: set[str] = set()
    result = []
    for edition_id, slug, subject, preheader, when in rows:
        if slug in seen:
            continue
        seen.add(slug)
        result.append({"id": edition_id, "slug": slug, "subject": subject, "preheader": preheader or "",
                       "sent_at": when})
        if len(result) >= limit:
            break
    return result


def sent_edition(session: Session, slug: str) -> Edition | None:
    """The newest edition with ``slug`` that a delivered campaign carried; None for drafts, failures, unknowns."""
    return session.scalar(select(Edition).join(Campaign, Campaign.edition_id == Edition.id)
                          .where(Edition.slug == slug, _delivered_campaigns())
                          .order_by(Edition.id.desc()).limit(1))
