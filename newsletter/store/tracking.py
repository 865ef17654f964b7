"""First-party tracking: what a campaign tracks, its links, and click and open counts per hour.

- ``campaign_tracking``: one row per campaign created since tracking
  existed: the mode it was sent under (``off``, ``aggregate``,
  ``personal``) and whether clicks and opens are tracked. A campaign without
  a row (older ones) is not tracked.
- ``tracked_links``: the article links of a campaign, by position. A click
  token names a position; the redirect goes to the URL stored here, never
  to anything the request carries (no open redirect).
- ``engagement_counts``: per campaign, link (0 for opens), kind
  (``click``/``open``) and UTC hour, how many requests were classified human
  and how many machine. These are the aggregate counts every mode keeps;
  per-delivery records go through the event pipeline instead
  (``newsletter.events.pipeline``), and only for personal tracking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, bindparam, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store.models import Base, Delivery, UTCDateTime
from newsletter.store.sql import dialect_insert

OPEN_POSITION = 0  # the position opens are counted under (links start at 1)


class CampaignTracking(Base):
    """What one campaign tracks (fixed when it is created, so a resume tracks as the first batch did)."""

    __tablename__ = "campaign_tracking"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # a TrackingMode
    clicks: Mapped[bool] = mapped_column(Boolean)
    opens: Mapped[bool] = mapped_column(Boolean)


class TrackedLink(Base):
    """One article link of a campaign: its position (from 1) and where it goes."""

    __tablename__ = "tracked_links"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)


class EngagementCount(Base):
    """Requests of one kind on one link of a campaign within one UTC hour, human and machine apart."""

    __tablename__ = "engagement_counts"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "click" or "open"
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    human: Mapped[int] = mapped_column(Integer, default=0)
    machine: Mapped[int] = mapped_column(Integer, default=0)


tracking_t = CampaignTracking.__table__
links_t = TrackedLink.__table__
counts_t = EngagementCount.__table__


@dataclass(frozen=True)
class TrackingPlan:
    """A campaign's tracking: mode, clicks, opens, and its links by position."""

    campaign_id: int
    mode: str
    clicks: bool
    opens: bool
    links: dict[int, str]


def save_plan(session: Session, campaign_id: int, mode: str, clicks: bool, opens: bool, links: list[str]) -> None:
    """Record a new campaign's tracking and its links (positions from 1, in the order given)."""
    session.execute(tracking_t.insert().values(campaign_id=campaign_id, mode=mode, clicks=clicks, opens=opens))
    if links:
        session.execute(links_t.insert(), [{"campaign_id": campaign_id, "position": i, "url": url}
                                           for i, url in enumerate(links, start=1)])


def load_plan(session: Session, campaign_id: int) -> TrackingPlan | None:
    """The campaign's tracking, or None when it has none (created before tracking, or unknown)."""
    row = session.execute(select(tracking_t.c.mode, tracking_t.c.clicks, tracking_t.c.opens)
                          .where(tracking_t.c.campaign_id == campaign_id)).first()
    if row is None:
        return None
    links = {int(position): str(url) for position, url in session.execute(
        select(links_t.c.position, links_t.c.url).where(links_t.c.campaign_id == campaign_id))}
    return TrackingPlan(campaign_id, row[0], bool(row[1]), bool(row[2]), links)


_LINK_URL = select(links_t.c.url).where(links_t.c.campaign_id == bindparam("c"), links_t.c.position == bindparam("p"))


def link_url(session: Session, campaign_id: int, position: int) -> str | None:
    """Where link ``position`` of the campaign goes, or None when it has no such link."""
    return session.scalar(_LINK_URL, {"c": campaign_id, "p": position})


_COUNT_STATEMENTS: dict[tuple[str, bool], Any] = {}


def count(session: Session, campaign_id: int, kind: str, position: int, hour: datetime, machine: bool) -> None:
    """Add one request to its hour's human or machine count (an upsert: safe from several processes).

    The statement is built once per database kind and reused with bound values: a click is a hot path.
    """
    dialect = session.get_bind().dialect.name
    statement = _COUNT_STATEMENTS.get((dialect, machine))
    if statement is None:
        column = "machine" if machine else "human"
        insert = dialect_insert(session, counts_t).values(
            campaign_id=bindparam("c"), kind=bindparam("k"), position=bindparam("p"), hour=bindparam("h"),
            human=0 if machine else 1, machine=1 if machine else 0)
        statement = _COUNT_STATEMENTS[(dialect, machine)] = insert.on_conflict_do_update(
            index_elements=["campaign_id", "kind", "position", "hour"], set_={column: counts_t.c[column] + 1})
    session.execute(statement, {"c": campaign_id, "k": kind, "p": position, "h": hour})


def counts_by_link(session: Session, campaign_id: int, kind: str) -> dict[int, tuple[int, int]]:
    """position -> (human, machine) requests of ``kind`` over the whole campaign."""
    rows = session.execute(select(counts_t.c.position, func.sum(counts_t.c.human), func.sum(counts_t.c.machine))
                           .where(counts_t.c.campaign_id == campaign_id, counts_t.c.kind == kind)
                           .group_by(counts_t.c.position))
    return {int(p): (int(h or 0), int(m or 0)) for p, h, m in rows}


def counts_by_hour(session: Session, campaign_id: int, kind: str) -> dict[datetime, tuple[int, int]]:
    """UTC hour -> (human, machine) requests of ``kind``, all links together."""
    rows = session.execute(select(counts_t.c.hour, func.sum(counts_t.c.human), func.sum(counts_t.c.machine))
                           .where(counts_t.c.campaign_id == campaign_id, counts_t.c.kind == kind)
                           .group_by(counts_t.c.hour))
    result: dict[datetime, tuple[int, int]] = {}
    for hour, human, machine in rows:
        # SQLite hands back the stored text for an aggregate's group key only through the column type.
        when = hour if isinstance(hour, datetime) and hour.tzinfo is not None \
            else UTCDateTime().process_result_value(hour, session.get_bind().dialect)
        if when is not None:
            result[when] = (int(human or 0), int(machine or 0))
    return result


@dataclass(frozen=True)
class SentRow:
    """A ledger row as a first-party click needs it: its campaign, status and when it was last written."""

    campaign_id: int
    status: str
    updated_at: datetime | None


_SENT_ROW = select(Delivery.__table__.c.campaign_id, Delivery.__table__.c.status, Delivery.__table__.c.updated_at) \
    .where(Delivery.__table__.c.id == bindparam("d"))


def sent_row(session: Session, delivery_id: int) -> SentRow | None:
    """The ledger row ``delivery_id``, or None when it is gone."""
    row = session.execute(_SENT_ROW, {"d": delivery_id}).first()
    return None if row is None else SentRow(int(row[0]), str(row[1]), row[2])
