"""Scheduling state: the daemon's lease, recurring schedules, local-time waves.

The campaigns table stays the truth about what is scheduled; these tables
hold what scheduling adds to it:

- ``scheduler_lease``: one row per daemon role; the daemon holding it (and
  renewing ``expires_at``) is the only one running APScheduler.
- ``scheduler_sends``: campaigns a daemon has started and not finished, so
  the next daemon knows which ``sending`` campaigns are orphans to resume.
- ``schedules`` / ``schedule_runs``: recurring (cron) sends from a folder of
  articles, and what each run did (sent, skipped, error).
- ``campaign_waves``: per-subscriber local-time sends, one row per distinct
  UTC send time.

The daemon keeps its APScheduler jobs in memory and rebuilds them from the
campaigns and schedules tables (``newsletter.scheduler.sync``); migration
0007 dropped the job store table it once shared.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store import webhooks
from newsletter.store.ledger import audience_conditions, memberships_t, subscribers_t
from newsletter.store.models import Base, Campaign, UTCDateTime, utcnow
from newsletter.store.sql import rowcount
from newsletter.vocabulary import CampaignStatus

# Wave and schedule-run states
WAVE_PENDING, WAVE_SENDING, WAVE_SENT, WAVE_MISSED, WAVE_CANCELLED = (
    "pending", "sending", "sent", "missed", "cancelled")
RUN_SENT, RUN_SKIPPED, RUN_ERROR = "sent", "skipped", "error"


class SchedulerLease(Base):
    """Who runs the scheduler: ``holder`` until ``expires_at`` unless renewed."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SchedulerSend(Base):
    """A campaign a daemon (``holder``) is sending; deleted when the run ends."""

    __tablename__ = "scheduler_sends"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Schedule(Base):
    """A recurring send: the newest unsent article of ``folder`` to a list, on a cron expression."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folder: Mapped[str] = mapped_column(Text)
    list_name: Mapped[str] = mapped_column(String(100))
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScheduleRun(Base):
    """One firing of a recurring schedule and its outcome."""

    __tablename__ = "schedule_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    article: Mapped[str] = mapped_column(Text, default="")
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class CampaignWave(Base):
    """One wave of a local-time campaign: the zones whose wall-clock ``local_time`` falls at ``send_at``."""

    __tablename__ = "campaign_waves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    send_at: Mapped[datetime] = mapped_column(UTCDateTime)
    local_time: Mapped[str] = mapped_column(String(32))
    zones: Mapped[list[str | None]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=WAVE_PENDING)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# --- the lease ---------------------------------------------------------------

def acquire_lease(session: Session, name: str, holder: str, seconds: float, *,
                  take_from: str | None = None, now: datetime | None = None) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True when it is ours for ``seconds``.

    It is ours when free, expired, already ours, or held by ``take_from`` (a
    holder the caller knows is dead). The update is conditional, so of two
    processes trying at once exactly one wins.
    """
    now = now or utcnow()
    expires = now + timedelta(seconds=seconds)
    table = SchedulerLease.__table__
    claimable = or_(table.c.holder == holder, table.c.expires_at < now)
    if take_from:
        claimable = or_(claimable, table.c.holder == take_from)
    taken = rowcount(session.execute(update(table).where(table.c.name == name, claimable)
                                     .values(holder=holder, expires_at=expires)))
    if taken:
        return True
    try:
        with session.begin_nested():
            session.execute(insert(table).values(name=name, holder=holder, acquired_at=now, expires_at=expires))
    except IntegrityError:
        return False
    return True


def renew_lease(session: Session, name: str, holder: str, seconds: float) -> bool:
    """Extend our lease; False when someone else holds it now (we lost it)."""
    table = SchedulerLease.__table__
    return rowcount(session.execute(update(table).where(table.c.name == name, table.c.holder == holder)
                                    .values(expires_at=utcnow() + timedelta(seconds=seconds)))) == 1


def release_lease(session: Session, name: str, holder: str) -> None:
    table = SchedulerLease.__table__
    session.execute(delete(table).where(table.c.name == name, table.c.holder == holder))


def lease_of(session: Session, name: str) -> SchedulerLease | None:
    return session.get(SchedulerLease, name)


# --- campaigns as the scheduler sees them -------------------------------------

def campaigns_in(session: Session, statuses: tuple[str, ...]) -> list[Campaign]:
    return list(session.scalars(select(Campaign).where(Campaign.status.in_(statuses)).order_by(Campaign.id)))


def paused_until(session: Session, now: datetime) -> list[int]:
    """Campaigns paused by a quota whose window has opened (``resume_at`` at or before ``now``)."""
    return list(session.scalars(select(Campaign.id).where(
        Campaign.status == CampaignStatus.PAUSED, Campaign.resume_at.is_not(None), Campaign.resume_at <= now)
        .order_by(Campaign.id)))


def claim_scheduled(session: Session, campaign_id: int, to_status: str, from_statuses: tuple[str, ...],
                    **values: Any) -> bool:
    """A conditional status change of a campaign (cancel, miss, reschedule): one winner."""
    table = Campaign.__table__
    moved = rowcount(session.execute(update(table).where(table.c.id == campaign_id,
                                                         table.c.status.in_(from_statuses))
                                     .values(status=to_status, **values))) == 1
    if moved:
        webhooks.campaign_event(session, campaign_id, to_status)
    return moved


def clear_heartbeat(session: Session, campaign_id: int) -> None:
    """Forget the heartbeat of a campaign whose sender is known to be dead."""
    table = Campaign.__table__
    session.execute(update(table).where(table.c.id == campaign_id).values(heartbeat_at=None))


def record_send(session: Session, campaign_id: int, holder: str) -> None:
    """Note that ``holder`` is sending the campaign (an upsert that tolerates a concurrent writer)."""
    table = SchedulerSend.__table__
    values = {"holder": holder, "started_at": utcnow()}
    if rowcount(session.execute(update(table).where(table.c.campaign_id == campaign_id).values(**values))):
        return
    try:
        with session.begin_nested():
            session.execute(insert(table).values(campaign_id=campaign_id, **values))
    except IntegrityError:
        pass


def forget_send(session: Session, campaign_id: int) -> None:
    session.execute(delete(SchedulerSend.__table__).where(SchedulerSend.__table__.c.campaign_id == campaign_id))


def sends_of_others(session: Session, holder: str) -> dict[int, str]:
    """Campaigns another (gone) daemon started and never finished, with that daemon's holder name."""
    table = SchedulerSend.__table__
    return dict(session.execute(select(table.c.campaign_id, table.c.holder).where(table.c.holder != holder)).all())


# --- waves -------------------------------------------------------------------

def waves_of(session: Session, campaign_id: int) -> list[CampaignWave]:
    return list(session.scalars(select(CampaignWave).where(CampaignWave.campaign_id == campaign_id)
                                .order_by(CampaignWave.send_at, CampaignWave.id)))


def campaigns_with_waves(session: Session, campaign_ids: Iterable[int]) -> set[int]:
    ids = list(campaign_ids)
    if not ids:
        return set()
    return set(session.scalars(select(CampaignWave.campaign_id).where(CampaignWave.campaign_id.in_(ids))))


def set_waves(session: Session, campaign_id: int, from_status: str, to_status: str, **values: Any) -> int:
    table = CampaignWave.__table__
    return rowcount(session.execute(update(table)
                                    .where(table.c.campaign_id == campaign_id, table.c.status == from_status)
                                    .values(status=to_status, **values)))


def claim_wave(session: Session, wave_id: int, from_status: str, to_status: str, **values: Any) -> bool:
    table = CampaignWave.__table__
    return rowcount(session.execute(update(table).where(table.c.id == wave_id, table.c.status == from_status)
                                    .values(status=to_status, **values))) == 1


def audience_zones(session: Session, list_id: int) -> dict[str | None, int]:
    """Distinct subscriber time zones of a list's audience (None: not set) and how many have each."""
    from sqlalchemy import func

    query = (select(subscribers_t.c.timezone, func.count()).select_from(memberships_t)
             .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
             .where(audience_conditions(list_id)).group_by(subscribers_t.c.timezone))
    return {(zone or None): int(count) for zone, count in session.execute(query)}


# --- recurring schedules -----------------------------------------------------

def active_schedules(session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).where(Schedule.active.is_(True)).order_by(Schedule.id)))


def all_schedules(session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).order_by(Schedule.id.desc())))


def last_runs(session: Session, schedule_id: int, limit: int = 5) -> list[ScheduleRun]:
    return list(session.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
                                .order_by(ScheduleRun.id.desc()).limit(limit)))


def sent_article_paths(session: Session, list_name: str, statuses: tuple[str, ...]) -> list[str]:
    """Article paths of the list's campaigns in ``statuses`` (those count as sent or on their way)."""
    from newsletter.store.models import Edition

    query = (select(Edition.article_path).join(Campaign, Campaign.edition_id == Edition.id)
             .where(Campaign.list_name == list_name, Campaign.status.in_(statuses)))
    return list(session.scalars(query))
