"""SQLAlchemy models: the tables of the store.

The schema itself is created by the Alembic migrations in
``store/migrations``; these classes must match them
(tests/test_store.py compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from newsletter.vocabulary import SubscriberStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so naive values read from it are UTC by contract.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # Every model maps one Table (never a join or a select), and Core's
        # insert/update/delete take a Table: say so once, here.
        __table__: ClassVar[Table]


# Ids that appear in links, tokens and Message-IDs are never reused: on SQLite
# that takes AUTOINCREMENT (without it a deleted row's id goes to the next
# insert, and an erased reader's old link would act on a stranger).
# PostgreSQL sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Subscriber(Base):
    """One person, identified by their address (unique case-insensitively)."""

    __tablename__ = "subscribers"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    # SHA-256 of email_key: joins against the suppression list in SQL. Not
    # indexed: lookups go from the small suppression table, and an index on
    # random hashes would halve import speed.
    email_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.ACTIVE)  # a SubscriberStatus
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by the sunset policy (no open or click for a while): skipped by sends unless --to-dormant.
    dormant_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Mail paused until then (the preference centre's snooze); the audience snapshot skips them (migration 0013).
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )


class MailingList(Base):
    """A list people subscribe to; double opt-in lists hold new members as pending.

    ``public`` lists are offered on the signup form and joinable from the
    web; private ones (the default) never are. Readers see ``display_name``
    (or, when it is empty, the internal ``name``) on pages and in mail.
    """

    __tablename__ = "lists"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    public: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")

    def reader_name(self, newsletter_name: str) -> str:
        """The name readers see: the display name; else a public list's own name; else the newsletter's."""
        return self.display_name or (self.name if self.public else newsletter_name)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    """A subscriber on a list: pending, confirmed or unsubscribed, with when.

    It also records how consent was given when they joined (``consent_source``,
    ``consent_ip``, at ``subscribed_at``); later changes of consent are
    :class:`Consent` rows. Keeping the first record here spares a million-row
    import a million extra rows.
    """

    __tablename__ = "memberships"
    # WITHOUT ROWID on SQLite: the primary key is the table, one B-tree less to fill.
    __table_args__ = (Index("ix_memberships_list_status", "list_id", "status"),
                      # segment filters on the join date (``joined > 2026-01-01``) within a list (migration 0012)
                      Index("ix_memberships_list_status_subscribed", "list_id", "status", "subscribed_at"),
                      {"sqlite_with_rowid": False})

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # a MembershipStatus
    subscribed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    consent_source: Mapped[str] = mapped_column(String(200), default="")
    consent_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)

    subscriber: Mapped[Subscriber] = relationship(back_populates="memberships")
    mailing_list: Mapped[MailingList] = relationship()


class Consent(Base):
    """A change of consent after joining (confirm, unsubscribe, resubscribe): what, where from, when, which IP."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(String(32))  # a ConsentAction
    source: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The proof of consent (migration 0013), where we have it: the form or command and its version, the
    # consent text shown, the page or file it came from, the browser, when it was asked for and confirmed,
    # and the confirmation email's Message-ID (double opt-in); ``detail`` says what the action changed.
    form: Mapped[str | None] = mapped_column(String(100), nullable=True)
    consent_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Suppression(Base):
    """An address that must never be mailed again, kept only as a SHA-256 hash."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))  # a SuppressionReason
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Edition(Base):
    """An article composed into an email, stored as sent (for resumes and the web archive)."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    preheader: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    theme: Mapped[str] = mapped_column(String(100), default="default")
    article_path: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(Base):
    """One edition sent (or scheduled) to one list; its ledger rows are its recipients."""

    __tablename__ = "campaigns"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id"))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"), nullable=True)
    list_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), index=True)  # a CampaignStatus
    transport: Mapped[str] = mapped_column(String(32))
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Updated by the process sending it after every batch: a recent heartbeat
    # means a sender is alive, so resume must not take over.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # "host:pid" of the process sending it, so a resume on the same host can
    # tell a dead sender (killed) from a live one without waiting for the heartbeat.
    sender: Mapped[str | None] = mapped_column(String(300), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    # A campaign paused by a quota (newsletter.engine.quotas): why, and when the window opens again
    # (the scheduler daemon resumes it then). Cleared when it resumes.
    pause_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    resume_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The random part of the campaign's Message-IDs (newsletter.delivery.message_id), drawn when it is
    # created: a rebuilt database numbers campaigns from 1 again, and must not repeat old ids.
    # NULL for campaigns created before migration 0011: their ids keep the old form.
    id_nonce: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A segment send: the filter text its audience snapshot applies (and the segment it came from, if any);
    # ``to_dormant`` includes the dormant subscribers the sunset policy set aside (migration 0012).
    audience_filter: Mapped[str | None] = mapped_column(Text, nullable=True)
    segment_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    to_dormant: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    edition: Mapped[Edition] = relationship()


#: The rows of ``ix_deliveries_troubles``: SQL that queries repeat word for word (a planner uses a
#: partial index only when it can see the query's condition implies the index's).
TROUBLE_PREDICATE = "complained_at IS NOT NULL OR refused = 'hard'"


class Delivery(Base):
    """One ledger row: one recipient of one campaign, and what happened."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Subscriber first: the same uniqueness, and it also serves "deliveries of a
        # subscriber" and the cascade when one is erased (one index fewer to fill).
        UniqueConstraint("subscriber_id", "campaign_id", name="uq_deliveries_subscriber_campaign"),
        # A claim reads the next pending rows of a campaign in id order: one range of this index. No
        # status in it (migration 0025): a status change then touches no index, and on PostgreSQL
        # (fillfactor 60, set by the migration) it is a HOT update.
        Index("ix_deliveries_campaign_id", "campaign_id", "id"),
        # The few rows the circuit breaker weighs (complaints, hard bounces), found without reading
        # the campaign's other rows (migration 0026; store.ledger.troubles).
        Index("ix_deliveries_troubles", "campaign_id", sqlite_where=text(TROUBLE_PREDICATE),
              postgresql_where=text(TROUBLE_PREDICATE)),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign keys (migration 0017): they cost a send's snapshot two checks and a lock a row. The store
    # deletes a campaign's or a subscriber's rows with them (ledger.delete_campaign, audience.delete_subscriber).
    campaign_id: Mapped[int] = mapped_column(Integer)
    subscriber_id: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))  # a LedgerStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the provider's events said (newsletter.events.pipeline): who reported, when the message was
    # delivered, last deferred, first opened, first clicked, reported as spam; ``refused`` is ``hard`` or
    # ``soft`` (a bounce) or ``rejected`` (the provider would not send it). The campaign report counts these.
    event_provider: Mapped[str | None] = mapped_column(String(20), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    complained_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refused: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # An A/B campaign's test-phase rows: the variant sent (``A``, ``B``, ``C``); NULL on every other row,
    # including an A/B campaign's rest, which gets the winner (newsletter.store.abtests, migration 0019).
    variant: Mapped[str | None] = mapped_column(String(1), nullable=True)


class SendCounter(Base):
    """Messages counted against one quota window: ``scope`` (a transport and its account), ``window``
    (``hour`` or ``day``) starting at ``starts_at`` (UTC). Counted before the provider is called."""

    __tablename__ = "send_counters"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)


class SendPace(Base):
    """A transport's (and account's) send rate shared by every process: the time its next message may go."""

    __tablename__ = "send_pace"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    free_at: Mapped[datetime] = mapped_column(UTCDateTime)
class Tag(Base):
    """A label on subscribers (``vip``, ``trial``), matched by ``tag:NAME`` in segment filters."""

    __tablename__ = "tags"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriberTag(Base):
    """A tag on a subscriber."""

    __tablename__ = "subscriber_tags"
    __table_args__ = (Index("ix_subscriber_tags_tag", "tag_id", "subscriber_id"), {"sqlite_with_rowid": False})

    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)


class Segment(Base):
    """A saved, named filter over lists (``lists``: their names): never a copy of the people it selects."""

    __tablename__ = "segments"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    lists: Mapped[list[str]] = mapped_column(JSON)
    filter_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
