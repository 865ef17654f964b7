"""Scale-out state: the chunks a distributed campaign is cut into, and their queries.

A chunk is a range of ledger ids (at most 1,000 rows) sent by one Dramatiq
message. The ledger stays the truth about each recipient; a chunk row only
records who is working on the range (``owner`` = ``host:pid:random`` of a
worker process, with a heartbeat), so that a redelivered message can tell a dead owner (its
in-flight rows become ``unknown``) from a live one (wait), and so that lost
messages (a broker restarted without persistence) can be sent again.

Chunk status: ``queued`` (waiting for a worker) -> ``running`` -> ``done``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store import webhooks
from newsletter.store.models import Base, Campaign, Delivery, UTCDateTime, utcnow
from newsletter.store.sql import rowcount
from newsletter.vocabulary import CampaignStatus, LedgerStatus

CHUNK_QUEUED, CHUNK_RUNNING, CHUNK_DONE = "queued", "running", "done"


class SendChunk(Base):
    """One range of a campaign's ledger ids, sent by one broker message."""

    __tablename__ = "send_chunks"
    __table_args__ = (
        UniqueConstraint("campaign_id", "first_id", name="uq_send_chunks_campaign_first"),
        Index("ix_send_chunks_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    first_id: Mapped[int] = mapped_column(Integer)
    last_id: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    # "host:pid" of the worker on it, and that worker's last sign of life.
    owner: Mapped[str | None] = mapped_column(String(300), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # How many times a worker took it (more than one: a redelivery or a takeover).
    claims: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    unknown: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)


chunks_t = SendChunk.__table__
campaigns_t = Campaign.__table__


def create_chunks(session: Session, campaign_id: int, bounds: list[tuple[int, int, int]]) -> int:
    """Record ``(first_id, last_id, rows)`` ranges as queued chunks; returns how many."""
    if bounds:
        session.execute(chunks_t.insert(), [
            {"campaign_id": campaign_id, "first_id": a, "last_id": b, "rows": n, "status": CHUNK_QUEUED,
             "claims": 0, "sent": 0, "failed": 0, "unknown": 0, "skipped": 0} for a, b, n in bounds])
    return len(bounds)


def lock_chunk(session: Session, campaign_id: int, first_id: int) -> SendChunk | None:
    """The chunk starting at ``first_id``, locked for this transaction (FOR UPDATE on PostgreSQL;
    SQLite's BEGIN IMMEDIATE already holds the write lock)."""
    query = (select(SendChunk).where(SendChunk.campaign_id == campaign_id, SendChunk.first_id == first_id)
             .with_for_update())
    return session.scalar(query)


def take_chunk(session: Session, chunk: SendChunk, owner: str) -> None:
    """Make ``owner`` the worker on ``chunk`` (already locked)."""
    now = utcnow()
    chunk.status, chunk.owner, chunk.heartbeat_at, chunk.claims = CHUNK_RUNNING, owner, now, chunk.claims + 1
    session.flush()


def hold_chunk(session: Session, chunk_id: int, owner: str) -> bool:
    """True while ``owner`` still runs the chunk; beats its heartbeat. The fence of the distributed path.

    Run first in every transaction that claims rows of the chunk or records
    their results: the update locks the chunk's row on PostgreSQL, so a
    takeover (``lock_chunk`` ... ``take_chunk``) either committed before
    (this returns False: write nothing) or waits until this transaction
    commits.
    """
    return rowcount(session.execute(update(chunks_t).where(chunks_t.c.id == chunk_id, chunks_t.c.owner == owner,
                                                           chunks_t.c.status == CHUNK_RUNNING)
                                    .values(heartbeat_at=utcnow()))) == 1


def owns_chunk(session: Session, chunk_id: int, owner: str) -> bool:
    """True while ``owner`` runs the chunk: a plain read, for the look just before a provider call
    (its transaction ends before the call, so a lock would hold nothing back; a read writes nothing)."""
    return session.execute(select(chunks_t.c.id).where(chunks_t.c.id == chunk_id, chunks_t.c.owner == owner,
                                                       chunks_t.c.status == CHUNK_RUNNING)).first() is not None


def finish_chunk(session: Session, chunk_id: int, owner: str, counts: dict[str, int]) -> bool:
    """Mark the chunk done and add this run's counts (a chunk taken twice sums both runs).
    False when ``owner`` no longer runs it (taken over): nothing is written."""
    values = {key: getattr(chunks_t.c, key) + counts.get(key, 0) for key in ("sent", "failed", "unknown", "skipped")}
    return rowcount(session.execute(update(chunks_t).where(chunks_t.c.id == chunk_id, chunks_t.c.owner == owner,
                                                           chunks_t.c.status == CHUNK_RUNNING)
                                    .values(status=CHUNK_DONE, finished_at=utcnow(), heartbeat_at=None, **values))) == 1


def campaign_status(session: Session, campaign_id: int) -> str | None:
    """The campaign's status (None: no such campaign): one column read, for the check before each claim."""
    return session.execute(select(campaigns_t.c.status).where(campaigns_t.c.id == campaign_id)).scalar()


def last_to_finish(session: Session, campaign_id: int) -> bool:
    """True when the campaign is ``sending`` and none of its chunks is left to run: the caller, which
    just finished one (:func:`finish_chunk`, same transaction), is the one to settle the campaign.

    The test reads the chunks, never the ledger (a chunk a second worker
    finished at the same moment would otherwise be missed: each sees the
    other's chunk still running). Finishers are serialised on the campaign
    row (``FOR UPDATE`` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
    writers): the second one's read starts after the first one's commit and
    sees its chunk done. Of workers finishing the last chunks together,
    exactly one gets True.
    """
    status = session.execute(select(campaigns_t.c.status).where(campaigns_t.c.id == campaign_id)
                             .with_for_update()).scalar()
    if status != CampaignStatus.SENDING:
        return False
    unfinished = session.execute(select(chunks_t.c.id).where(chunks_t.c.campaign_id == campaign_id,
                                                            chunks_t.c.status.in_((CHUNK_QUEUED, CHUNK_RUNNING)))
                                 .limit(1)).first()
    return unfinished is None


def release_chunk(session: Session, chunk_id: int, owner: str) -> None:
    """Give the chunk back (the campaign was paused or stopped): queued, no owner."""
    session.execute(update(chunks_t).where(chunks_t.c.id == chunk_id, chunks_t.c.owner == owner)
                    .values(status=CHUNK_QUEUED, owner=None, heartbeat_at=None))


def heartbeat(session: Session, owner: str, chunk_ids: list[int]) -> list[int]:
    """Refresh the heartbeat of ``owner``'s running chunks and of their campaigns; returns the campaign ids."""
    if not chunk_ids:
        return []
    now = utcnow()
    session.execute(update(chunks_t).where(chunks_t.c.id.in_(chunk_ids), chunks_t.c.owner == owner)
                    .values(heartbeat_at=now))
    campaign_ids = list(session.scalars(select(chunks_t.c.campaign_id).where(chunks_t.c.id.in_(chunk_ids))
                                        .distinct()))
    session.execute(update(campaigns_t).where(campaigns_t.c.id.in_(campaign_ids),
                                              campaigns_t.c.status == CampaignStatus.SENDING)
                    .values(heartbeat_at=now))
    return campaign_ids


def mark_enqueued(session: Session, campaign_id: int, chunk_ids: list[int] | None = None) -> None:
    """Stamp chunks as just handed to the broker (all of a campaign's when ``chunk_ids`` is None)."""
    query = update(chunks_t).where(chunks_t.c.campaign_id == campaign_id)
    if chunk_ids is not None:
        query = query.where(chunks_t.c.id.in_(chunk_ids))
    session.execute(query.values(enqueued_at=utcnow()))


def unfinished_chunks(session: Session, enqueued_before: datetime, limit: int = 1000) -> list[SendChunk]:
    """Chunks of ``sending`` campaigns not done and not handed to the broker since ``enqueued_before``."""
    query = (select(SendChunk).join(Campaign, Campaign.id == SendChunk.campaign_id)
             .where(Campaign.status == CampaignStatus.SENDING, SendChunk.status != CHUNK_DONE,
                    or_(SendChunk.enqueued_at.is_(None), SendChunk.enqueued_at < enqueued_before))
             .order_by(SendChunk.id).limit(limit))
    return list(session.scalars(query))


def restamp(session: Session, chunk_id: int, seen: datetime | None) -> bool:
    """Conditionally stamp a chunk re-enqueued: only one of several sweepers wins."""
    condition = chunks_t.c.enqueued_at.is_(None) if seen is None else chunks_t.c.enqueued_at == seen
    result = session.execute(update(chunks_t).where(chunks_t.c.id == chunk_id, condition)
                             .values(enqueued_at=utcnow()))
    return rowcount(result) == 1


def reopen_chunks(session: Session, campaign_id: int, first_ids: list[int]) -> None:
    """Put done chunks back to queued (their ranges hold pending rows again: a retry).
    Running chunks keep their owner, so a take can still tell whether it is alive."""
    if first_ids:
        session.execute(update(chunks_t).where(chunks_t.c.campaign_id == campaign_id,
                                               chunks_t.c.first_id.in_(first_ids),
                                               chunks_t.c.status == CHUNK_DONE)
                        .values(status=CHUNK_QUEUED, owner=None, heartbeat_at=None, finished_at=None))


def chunks_with_pending(session: Session, campaign_id: int) -> list[SendChunk]:
    """The campaign's chunks whose range holds pending ledger rows (to send after a resume or retry)."""
    deliveries = Delivery.__table__
    pending = select(deliveries.c.id).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.status == LedgerStatus.PENDING,
        deliveries.c.id.between(chunks_t.c.first_id, chunks_t.c.last_id)).exists()
    return list(session.scalars(select(SendChunk).where(SendChunk.campaign_id == campaign_id, pending)
                                .order_by(SendChunk.first_id)))


def campaign_chunks(session: Session, campaign_id: int) -> list[SendChunk]:
    return list(session.scalars(select(SendChunk).where(SendChunk.campaign_id == campaign_id)
                                .order_by(SendChunk.first_id)))


def chunk_progress(session: Session, campaign_id: int) -> dict[str, Any]:
    """Chunks of a campaign by status, the workers on it, and how many chunks were taken over."""
    rows = session.execute(select(chunks_t.c.status, func.count(), func.sum(chunks_t.c.claims))
                           .where(chunks_t.c.campaign_id == campaign_id).group_by(chunks_t.c.status))
    result: dict[str, Any] = {"chunks": 0, CHUNK_QUEUED: 0, CHUNK_RUNNING: 0, CHUNK_DONE: 0, "retaken": 0}
    for status, count, claims in rows:
        result[status] = int(count)
        result["chunks"] += int(count)
        result["retaken"] += max(0, int(claims or 0) - int(count)) if status == CHUNK_DONE else 0
    owners = session.scalars(select(chunks_t.c.owner).where(chunks_t.c.campaign_id == campaign_id,
                                                           chunks_t.c.status == CHUNK_RUNNING).distinct())
    result["workers"] = sorted(o for o in owners if o)
    return result


def pause_for_quota(session: Session, campaign_id: int, reason: str, resume_at: datetime | None) -> bool:
    """``sending`` -> ``paused`` because a cap is reached, with why and when it may go on; one winner.
    The circuit breaker pauses here too, with no ``resume_at``: a person resumes it."""
    result = session.execute(update(campaigns_t).where(campaigns_t.c.id == campaign_id,
                                                       campaigns_t.c.status == CampaignStatus.SENDING)
                             .values(status=CampaignStatus.PAUSED, heartbeat_at=None, sender=None,
                                     pause_reason=reason, resume_at=resume_at))
    if rowcount(result) != 1:
        return False
    webhooks.campaign_event(session, campaign_id, CampaignStatus.PAUSED)
    return True


def pause_if_drained(session: Session, campaign_id: int) -> bool:
    """``sending`` -> ``paused`` when no chunk of the campaign is left to run but rows are
    pending (a send with ``--limit``); conditional, one winner."""
    unfinished = select(chunks_t.c.id).where(chunks_t.c.campaign_id == campaign_id,
                                             chunks_t.c.status != CHUNK_DONE).exists()
    result = session.execute(update(campaigns_t).where(campaigns_t.c.id == campaign_id,
                                                       campaigns_t.c.status == CampaignStatus.SENDING, ~unfinished)
                             .values(status=CampaignStatus.PAUSED, heartbeat_at=None, sender=None))
    if rowcount(result) != 1:
        return False
    webhooks.campaign_event(session, campaign_id, CampaignStatus.PAUSED)
    return True
