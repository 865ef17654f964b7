"""Blogs' feeds turned into newsletters: the feeds, the items seen in them, and each poll's outcome.

- ``feeds``: one row per feed (its URL, list, period, mode, draft flag, the
  limit of new items one poll may send, the HTTP validators of the last
  fetch whose items were recorded, and whether it is paused and why).
- ``feed_items``: every item (post) ever recorded for a feed, unique by
  (feed, SHA-256 of its guid). An item is recorded once, in the same
  transaction as the campaign it became (or as a baseline item that is never
  sent), so a poll killed at any point neither sends an item twice nor skips
  one: either the items and their campaigns exist, or neither does.
- ``feed_polls``: what each poll did (the last :data:`POLLS_KEPT` per feed).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.errors import NotFound
from newsletter.store.models import NEVER_REUSE_IDS, Base, Campaign, UTCDateTime, utcnow
from newsletter.vocabulary import FeedItemState, FeedStatus

POLLS_KEPT = 100  # per feed; older poll records are deleted as new ones come


class Feed(Base):
    """A blog's feed polled on a period; its new items become editions for ``list_name``."""

    __tablename__ = "feeds"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    url: Mapped[str] = mapped_column(Text)
    list_name: Mapped[str] = mapped_column(String(100))
    every: Mapped[str] = mapped_column(String(100))  # as given: "mon 09:00", "daily 07:30", or a cron expression
    timezone: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))  # "each" or "digest"
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    transport: Mapped[str] = mapped_column(String(32))
    max_new: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=FeedStatus.ACTIVE)  # a FeedStatus
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    held: Mapped[int] = mapped_column(Integer, default=0)  # new items seen by the poll that paused it (a jump)
    accept_jump: Mapped[bool] = mapped_column(Boolean, default=False)  # the next poll may exceed max_new, once
    primed: Mapped[bool] = mapped_column(Boolean, default=False)  # a first poll recorded what the feed held
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    title: Mapped[str] = mapped_column(Text, default="")  # the feed's own title, from the last good fetch
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    errors_in_row: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedItem(Base):
    """One item (post) of a feed, recorded once; ``campaign_id`` is the edition that carried it."""

    __tablename__ = "feed_items"
    __table_args__ = (UniqueConstraint("feed_id", "guid_hash", name="uq_feed_items_feed_guid"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    guid_hash: Mapped[str] = mapped_column(String(64))
    guid: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # a FeedItemState
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedPoll(Base):
    """One poll of a feed and what it did (a FeedPollOutcome), with the HTTP status when there was one."""

    __tablename__ = "feed_polls"
    __table_args__ = (Index("ix_feed_polls_feed_id", "feed_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_items: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")


def guid_hash(guid: str) -> str:
    """The SHA-256 of a guid: guids are URLs of any length, the unique index takes a fixed width."""
    return hashlib.sha256(guid.encode("utf-8", "surrogatepass")).hexdigest()


def get_feed(session: Session, name: str, *, lock: bool = False) -> Feed:
    """The feed called ``name`` (``lock``: its row locked until the transaction ends); NotFound otherwise."""
    query = select(Feed).where(Feed.name == name)
    feed = session.scalars(query.with_for_update() if lock else query).first()
    if feed is None:
        raise NotFound(f"no feed {name!r}", hint="see them with: newsletter feeds list")
    return feed


def feed_named(session: Session, name: str) -> Feed | None:
    return session.scalars(select(Feed).where(Feed.name == name)).first()


def feed_by_id(session: Session, feed_id: int, *, lock: bool = False) -> Feed | None:
    query = select(Feed).where(Feed.id == feed_id)
    return session.scalars(query.with_for_update() if lock else query).first()


def all_feeds(session: Session) -> list[Feed]:
    return list(session.scalars(select(Feed).order_by(Feed.name)))


def active_feeds(session: Session) -> list[Feed]:
    return list(session.scalars(select(Feed).where(Feed.status == FeedStatus.ACTIVE).order_by(Feed.id)))


def known_hashes(session: Session, feed_id: int, hashes: list[str]) -> set[str]:
    """Which of ``hashes`` are already recorded for the feed."""
    found: set[str] = set()
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        found.update(session.scalars(select(FeedItem.guid_hash)
                                     .where(FeedItem.feed_id == feed_id, FeedItem.guid_hash.in_(chunk))))
    return found


def last_item(session: Session, feed_id: int) -> FeedItem | None:
    """The item recorded last (items are recorded oldest first, so: the feed's newest known post)."""
    return session.scalars(select(FeedItem).where(FeedItem.feed_id == feed_id)
                           .order_by(FeedItem.id.desc()).limit(1)).first()


def item_count(session: Session, feed_id: int) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(FeedItem).where(FeedItem.feed_id == feed_id)) or 0)


def add_item(session: Session, feed_id: int, *, guid: str, title: str, link: str, published_at: datetime | None,
             state: FeedItemState, campaign_id: int | None = None) -> None:
    session.add(FeedItem(feed_id=feed_id, guid_hash=guid_hash(guid), guid=guid, title=title, link=link,
                         published_at=published_at, state=state, campaign_id=campaign_id, seen_at=utcnow()))


def record_poll(session: Session, feed_id: int, outcome: str, *, http_status: int | None = None,
                new_items: int = 0, detail: str = "") -> None:
    """Add a poll record and keep only the feed's last :data:`POLLS_KEPT`."""
    session.add(FeedPoll(feed_id=feed_id, outcome=outcome, http_status=http_status, new_items=new_items,
                         detail=detail, polled_at=utcnow()))
    session.flush()
    cutoff = session.scalar(select(FeedPoll.id).where(FeedPoll.feed_id == feed_id)
                            .order_by(FeedPoll.id.desc()).offset(POLLS_KEPT).limit(1))
    if cutoff is not None:
        table = FeedPoll.__table__
        session.execute(delete(table).where(table.c.feed_id == feed_id, table.c.id <= cutoff))


def recent_polls(session: Session, feed_id: int, limit: int = 10) -> list[FeedPoll]:
    return list(session.scalars(select(FeedPoll).where(FeedPoll.feed_id == feed_id)
                                .order_by(FeedPoll.id.desc()).limit(limit)))


def feed_campaigns(session: Session, feed_id: int, limit: int = 20) -> list[tuple[Campaign, int]]:
    """The feed's editions (campaigns), newest first, each with how many items it carried."""
    from sqlalchemy import func

    counts = (select(FeedItem.campaign_id, func.count().label("carried")).where(FeedItem.feed_id == feed_id,
                                                                               FeedItem.campaign_id.is_not(None))
              .group_by(FeedItem.campaign_id).subquery())
    rows = session.execute(select(Campaign, counts.c["carried"]).join(counts, counts.c.campaign_id == Campaign.id)
                           .order_by(Campaign.id.desc()).limit(limit)).all()
    return [(campaign, int(items)) for campaign, items in rows]


def campaigns_in_state(session: Session, feed_id: int, status: str) -> list[int]:
    """Ids of the feed's campaigns in ``status``, oldest first."""
    query = (select(Campaign.id).join(FeedItem, FeedItem.campaign_id == Campaign.id)
             .where(FeedItem.feed_id == feed_id, Campaign.status == status).distinct().order_by(Campaign.id))
    return list(session.scalars(query))


def feed_of_campaign(session: Session, campaign_id: int) -> int | None:
    return session.scalar(select(FeedItem.feed_id).where(FeedItem.campaign_id == campaign_id).limit(1))


def delete_feed(session: Session, feed_id: int) -> None:
    """Remove the feed, its items and polls (its campaigns stay, with their ledgers)."""
    for model in (FeedPoll, FeedItem):
        table = model.__table__
        session.execute(delete(table).where(table.c.feed_id == feed_id))
    session.execute(delete(Feed.__table__).where(Feed.__table__.c.id == feed_id))
