"""Sequences (welcome mail, drip series): their tables and every SQL statement they run.

- ``sequences``: one per name, attached to a list, active or paused.
- ``sequence_steps``: the steps in order, each with its timing and the
  edition composed from its article when the sequence was created.
- ``sequence_campaigns``: the campaign (status ``automated``) whose ledger
  holds a step's messages, one per (step, round). Round 0 is everyone's
  first way through; a reader restarted on rejoining (``--restart``) goes
  through round 1, 2, ... so the ledger's unique (campaign, subscriber) is
  exactly "one message per (step, round, reader)".
- ``sequence_enrolments``: one per (sequence, subscriber): which round, the
  next step and when it is due, or finished/stopped.

Exactly once: a step is handed to the ledger in one transaction that moves
the enrolment on (a conditional update on the step it was at) and inserts
the ledger row; the ledger's unique constraint backs it. The row is then
sent like any campaign's (claimed ``pending -> sending``, only rows the
claim moved).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store.models import (
    NEVER_REUSE_IDS,
    Base,
    Campaign,
    Delivery,
    MailingList,
    Membership,
    Subscriber,
    Suppression,
    UTCDateTime,
    utcnow,
)
from newsletter.store.sql import rowcount
from newsletter.vocabulary import (
    CampaignStatus,
    EnrolmentStatus,
    LedgerStatus,
    MembershipStatus,
    SubscriberStatus,
)


class Sequence(Base):
    """A series of articles sent to each new member of a list, step by step."""

    __tablename__ = "sequences"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))  # for readers whose own zone is unknown
    status: Mapped[str] = mapped_column(String(16))  # a SequenceStatus
    enrol_existing: Mapped[bool] = mapped_column(Boolean)
    restart_on_rejoin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SequenceStep(Base):
    """Step ``position`` (0 first) of a sequence: its timing and its composed edition."""

    __tablename__ = "sequence_steps"
    __table_args__ = (UniqueConstraint("sequence_id", "position", name="uq_sequence_steps_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    after_seconds: Mapped[int] = mapped_column(Integer)
    at_time: Mapped[str | None] = mapped_column(String(5), nullable=True)  # "HH:MM"
    article_path: Mapped[str] = mapped_column(Text)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id"))


class SequenceCampaign(Base):
    """The campaign whose ledger holds one step's messages for one round."""

    __tablename__ = "sequence_campaigns"
    __table_args__ = (UniqueConstraint("sequence_id", "position", "round", name="uq_sequence_campaigns_step_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), unique=True)


class SequenceEnrolment(Base):
    """One subscriber in one sequence: the round, the next step and when it is due."""

    __tablename__ = "sequence_enrolments"
    __table_args__ = (
        UniqueConstraint("sequence_id", "subscriber_id", name="uq_sequence_enrolments_subscriber"),
        # The daemon's look for due steps: active ones of a sequence by due time.
        Index("ix_sequence_enrolments_due", "sequence_id", "status", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer, default=0)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the join (or confirmation) this round started from
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # an EnrolmentStatus
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


sequences_t = Sequence.__table__
steps_t = SequenceStep.__table__
seq_campaigns_t = SequenceCampaign.__table__
enrolments_t = SequenceEnrolment.__table__
deliveries_t = Delivery.__table__
memberships_t = Membership.__table__
subscribers_t = Subscriber.__table__
suppressions_t = Suppression.__table__


# --- sequences and steps ----------------------------------------------------------------------

def get_sequence(session: Session, name: str) -> Sequence | None:
    return session.scalar(select(Sequence).where(Sequence.name == name))


def all_sequences(session: Session, status: str | None = None) -> list[Sequence]:
    query = select(Sequence).order_by(Sequence.id)
    if status is not None:
        query = query.where(Sequence.status == status)
    return list(session.scalars(query))


def steps_of(session: Session, sequence_id: int) -> list[SequenceStep]:
    return list(session.scalars(select(SequenceStep).where(SequenceStep.sequence_id == sequence_id)
                                .order_by(SequenceStep.position)))


def list_name_of(session: Session, sequence: Sequence) -> str:
    return session.scalar(select(MailingList.name).where(MailingList.id == sequence.list_id)) or ""


def set_status(session: Session, sequence_id: int, status: str, from_status: str) -> bool:
    """Move a sequence between statuses (conditional); True when it moved."""
    return rowcount(session.execute(update(sequences_t).where(sequences_t.c.id == sequence_id,
                                                              sequences_t.c.status == from_status)
                                    .values(status=status))) == 1


def step_campaign(session: Session, sequence: Sequence, position: int, round_: int, edition_id: int) -> int:
    """The campaign of (step, round), created on first use; returns its id."""
    found = session.scalar(select(seq_campaigns_t.c.campaign_id).where(
        seq_campaigns_t.c.sequence_id == sequence.id, seq_campaigns_t.c.position == position,
        seq_campaigns_t.c.round == round_))
    if found is not None:
        return int(found)
    campaign = Campaign(edition_id=edition_id, list_id=sequence.list_id,
                        list_name=session.scalar(select(MailingList.name).where(MailingList.id == sequence.list_id))
                        or "", status=CampaignStatus.AUTOMATED, transport=sequence.transport,
                        timezone=sequence.timezone, error="", started_at=utcnow())
    session.add(campaign)
    session.flush()
    session.add(SequenceCampaign(sequence_id=sequence.id, position=position, round=round_, campaign_id=campaign.id))
    session.flush()
    return campaign.id


def campaigns_of(session: Session, sequence_id: int) -> list[tuple[int, int, int]]:
    """``[(position, round, campaign_id)]`` of a sequence."""
    rows = session.execute(select(seq_campaigns_t.c.position, seq_campaigns_t.c.round, seq_campaigns_t.c.campaign_id)
                           .where(seq_campaigns_t.c.sequence_id == sequence_id)
                           .order_by(seq_campaigns_t.c.position, seq_campaigns_t.c.round))
    return [(int(p), int(r), int(c)) for p, r, c in rows]


def step_counts(session: Session, sequence_id: int) -> dict[int, dict[str, int]]:
    """Per step: ledger rows by status (every round together), and ``waiting``: readers whose
    enrolment has not reached the step yet (they will get it unless they leave)."""
    counts: dict[int, dict[str, int]] = {}
    for position, status, count in session.execute(
            select(seq_campaigns_t.c.position, deliveries_t.c.status, func.count())
            .join(deliveries_t, deliveries_t.c.campaign_id == seq_campaigns_t.c.campaign_id)
            .where(seq_campaigns_t.c.sequence_id == sequence_id)
            .group_by(seq_campaigns_t.c.position, deliveries_t.c.status)):
        counts.setdefault(int(position), {})[str(status)] = int(count)
    waiting = session.execute(select(enrolments_t.c.next_position, func.count())
                              .where(enrolments_t.c.sequence_id == sequence_id,
                                     enrolments_t.c.status == EnrolmentStatus.ACTIVE)
                              .group_by(enrolments_t.c.next_position)).all()
    for position in range(len(steps_of(session, sequence_id))):
        row = counts.setdefault(position, {})
        row["waiting"] = sum(int(n) for p, n in waiting if int(p) <= position)
    return counts


def enrolment_counts(session: Session, sequence_id: int) -> dict[str, int]:
    result = {str(status): 0 for status in EnrolmentStatus}
    for status, count in session.execute(select(enrolments_t.c.status, func.count())
                                         .where(enrolments_t.c.sequence_id == sequence_id)
                                         .group_by(enrolments_t.c.status)):
        result[str(status)] = int(count)
    return result


# --- enrolling and stopping -------------------------------------------------------------------

def _in_audience(list_id: int) -> Any:
    """The subscriber (``subscribers_t``) is a confirmed member of the list, active and not suppressed."""
    suppressed = select(suppressions_t.c.email_hash).where(
        suppressions_t.c.email_hash == subscribers_t.c.email_hash).exists()
    return and_(memberships_t.c.list_id == list_id, memberships_t.c.status == MembershipStatus.CONFIRMED,
                subscribers_t.c.status == SubscriberStatus.ACTIVE, ~suppressed)


@dataclass
class Joiner:
    """A confirmed member not enrolled yet (or, with restart, one who joined again)."""

    subscriber_id: int
    joined_at: datetime
    timezone: str | None
    enrolment_id: int | None  # set for a rejoin to restart
    round: int


def joiners(session: Session, sequence: Sequence, limit: int, after_id: int = 0) -> list[Joiner]:
    """Members to enrol now: confirmed since the sequence was created (any time with
    ``enrol_existing``), in the audience, not enrolled; with ``restart_on_rejoin`` also those
    enrolled whose confirmation is newer than the join their round started from.

    By subscriber id, from ``after_id`` on: a caller going through a large list pages on the
    last id it got, so the whole look reads the list once."""
    joined = func.coalesce(memberships_t.c.confirmed_at, memberships_t.c.subscribed_at)
    base = (select(subscribers_t.c.id, joined, subscribers_t.c.timezone)
            .select_from(memberships_t)
            .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
            .where(_in_audience(sequence.list_id), memberships_t.c.subscriber_id > after_id))
    if not sequence.enrol_existing:
        base = base.where(joined >= sequence.created_at)
    enrolled = select(enrolments_t.c.id).where(enrolments_t.c.sequence_id == sequence.id,
                                               enrolments_t.c.subscriber_id == subscribers_t.c.id).exists()
    # Ordered by the memberships' own key: each page is a range of it, read once.
    first_time = base.where(~enrolled).order_by(memberships_t.c.subscriber_id).limit(limit)
    out = [Joiner(int(sid), when, zone, None, 0) for sid, when, zone in session.execute(first_time)]
    if sequence.restart_on_rejoin and len(out) < limit:
        again = (select(subscribers_t.c.id, joined, subscribers_t.c.timezone, enrolments_t.c.id, enrolments_t.c.round)
                 .select_from(memberships_t)
                 .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
                 .join(enrolments_t, and_(enrolments_t.c.subscriber_id == subscribers_t.c.id,
                                          enrolments_t.c.sequence_id == sequence.id))
                 .where(_in_audience(sequence.list_id), joined > enrolments_t.c.joined_at,
                        subscribers_t.c.id > after_id)
                 .order_by(subscribers_t.c.id).limit(limit - len(out)))
        out += [Joiner(int(sid), when, zone, int(eid), int(rnd) + 1) for sid, when, zone, eid, rnd in
                session.execute(again)]
    return out


def enrol(session: Session, sequence_id: int, joiner: Joiner, joined_at: datetime, first_due: datetime | None) -> bool:
    """Insert the enrolment (or restart it on a new round); True when this call did it."""
    now = utcnow()
    status = EnrolmentStatus.ACTIVE if first_due is not None else EnrolmentStatus.FINISHED
    if joiner.enrolment_id is None:
        session.add(SequenceEnrolment(sequence_id=sequence_id, subscriber_id=joiner.subscriber_id, round=0,
                                      joined_at=joined_at, next_position=0, next_due_at=first_due, status=status,
                                      detail="", updated_at=now))
        session.flush()
        return True
    return rowcount(session.execute(
        update(enrolments_t).where(enrolments_t.c.id == joiner.enrolment_id,
                                   enrolments_t.c.round == joiner.round - 1)
        .values(round=joiner.round, joined_at=joined_at, next_position=0, next_due_at=first_due, status=status,
                detail="joined again: restarted", updated_at=now))) == 1


def enrol_new(session: Session, sequence_id: int, rows: list[tuple[int, datetime, datetime]]) -> int:
    """Enrol first-time readers ``(subscriber_id, joined_at, first_due)`` in one executemany.

    The unique (sequence, subscriber) makes a reader enrolled twice an
    IntegrityError that rolls the whole batch back (only the lease holder enrols).
    """
    if not rows:
        return 0
    now = utcnow()
    session.execute(insert(enrolments_t), [
        {"sequence_id": sequence_id, "subscriber_id": subscriber_id, "round": 0, "joined_at": joined_at,
         "next_position": 0, "next_due_at": first_due, "status": EnrolmentStatus.ACTIVE, "detail": "",
         "updated_at": now}
        for subscriber_id, joined_at, first_due in rows])
    return len(rows)


def stop_leavers(session: Session, sequence: Sequence) -> int:
    """Active enrolments of people no longer in the list's audience become ``stopped``."""
    still_in = (select(subscribers_t.c.id).select_from(memberships_t)
                .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
                .where(_in_audience(sequence.list_id), subscribers_t.c.id == enrolments_t.c.subscriber_id)
                .exists())
    return rowcount(session.execute(
        update(enrolments_t).where(enrolments_t.c.sequence_id == sequence.id,
                                   enrolments_t.c.status == EnrolmentStatus.ACTIVE, ~still_in)
        .values(status=EnrolmentStatus.STOPPED, next_due_at=None, updated_at=utcnow(),
                detail="left the list, unsubscribed or suppressed")))


# --- due steps into the ledger ----------------------------------------------------------------

@dataclass
class Due:
    """An active enrolment whose next step is due."""

    enrolment_id: int
    subscriber_id: int
    email: str
    timezone: str | None
    round: int
    position: int
    due_at: datetime


def due_now(session: Session, sequence_id: int, now: datetime, limit: int) -> list[Due]:
    rows = session.execute(
        select(enrolments_t.c.id, enrolments_t.c.subscriber_id, subscribers_t.c.email, subscribers_t.c.timezone,
               enrolments_t.c.round, enrolments_t.c.next_position, enrolments_t.c.next_due_at)
        .join(subscribers_t, subscribers_t.c.id == enrolments_t.c.subscriber_id)
        .where(enrolments_t.c.sequence_id == sequence_id, enrolments_t.c.status == EnrolmentStatus.ACTIVE,
               enrolments_t.c.next_due_at <= now)
        .order_by(enrolments_t.c.next_due_at, enrolments_t.c.id).limit(limit))
    return [Due(int(e), int(s), str(m), z, int(r), int(p), d) for e, s, m, z, r, p, d in rows]


@dataclass
class Handover:
    """One due step to hand over: the enrolment, the step's campaign, the reader's next due time
    (None: it was the last step), and ``missed`` (the reason, when it came too late)."""

    due: Due
    campaign_id: int
    next_due: datetime | None
    missed: str = ""


def hand_over_many(session: Session, items: list[Handover], now: datetime) -> list[Handover]:
    """Move each enrolment past its due step and put the step in the ledger, in this transaction;
    returns the items this call moved.

    The claim is one conditional ``UPDATE ... RETURNING`` per (round, step)
    group (the enrolment still at that step in that round); only the
    enrolments it returned get their next due time and their ledger row:
    ``pending``, or ``skipped`` with the reason when the step came too late.
    ``now`` (the round's clock) stamps the rows: :func:`skip_stale` measures
    how long a row waited against it.
    """
    groups: dict[tuple[int, int], list[Handover]] = {}
    for item in items:
        groups.setdefault((item.due.round, item.due.position), []).append(item)
    moved: list[Handover] = []
    for (round_, position), group in groups.items():
        ids = set(session.scalars(
            update(enrolments_t).where(enrolments_t.c.id.in_([i.due.enrolment_id for i in group]),
                                       enrolments_t.c.round == round_, enrolments_t.c.next_position == position,
                                       enrolments_t.c.status == EnrolmentStatus.ACTIVE)
            .values(next_position=position + 1, updated_at=now)
            .returning(enrolments_t.c.id)).all())
        moved += [item for item in group if item.due.enrolment_id in ids]
    if not moved:
        return moved
    session.execute(update(enrolments_t).where(enrolments_t.c.id == bindparam("e_id"))
                    .values(next_due_at=bindparam("e_due"), status=bindparam("e_status")), [
        {"e_id": item.due.enrolment_id, "e_due": item.next_due,
         "e_status": EnrolmentStatus.ACTIVE if item.next_due is not None else EnrolmentStatus.FINISHED}
        for item in moved])
    session.execute(insert(deliveries_t), [
        {"campaign_id": item.campaign_id, "subscriber_id": item.due.subscriber_id, "email": item.due.email,
         "status": LedgerStatus.SKIPPED if item.missed else LedgerStatus.PENDING, "attempts": 0, "updated_at": now,
         "error": item.missed[:1000] or None}
        for item in moved])
    return moved


def pending_campaigns(session: Session, sequence_id: int) -> list[int]:
    """The sequence's step campaigns with rows still ``pending``."""
    pending = select(deliveries_t.c.id).where(deliveries_t.c.campaign_id == seq_campaigns_t.c.campaign_id,
                                              deliveries_t.c.status == LedgerStatus.PENDING).exists()
    return [int(c) for c in session.scalars(select(seq_campaigns_t.c.campaign_id)
                                            .where(seq_campaigns_t.c.sequence_id == sequence_id, pending)
                                            .order_by(seq_campaigns_t.c.position, seq_campaigns_t.c.round))]


def skip_stale(session: Session, now: datetime, grace_seconds: int) -> int:
    """Pending sequence rows queued longer ago than the grace become ``skipped`` (never sent days late)."""
    cutoff = now - timedelta(seconds=grace_seconds)
    return rowcount(session.execute(
        update(deliveries_t).where(deliveries_t.c.campaign_id.in_(select(seq_campaigns_t.c.campaign_id)),
                                   deliveries_t.c.status == LedgerStatus.PENDING,
                                   or_(deliveries_t.c.updated_at.is_(None), deliveries_t.c.updated_at < cutoff))
        .values(status=LedgerStatus.SKIPPED, updated_at=now,
                error=f"missed: queued more than the misfire grace ({grace_seconds} s) before it could be sent")))


def orphans_to_unknown(session: Session) -> int:
    """Sequence rows left ``sending`` by a dead daemon become ``unknown`` (the provider may have them)."""
    return rowcount(session.execute(
        update(deliveries_t).where(deliveries_t.c.campaign_id.in_(select(seq_campaigns_t.c.campaign_id)),
                                   deliveries_t.c.status == LedgerStatus.SENDING)
        .values(status=LedgerStatus.UNKNOWN, updated_at=utcnow(),
                error="the scheduler stopped while this message was in flight")))


def restore_automated(session: Session, campaign_id: int) -> None:
    """Put a step campaign back to ``automated`` (the send loop settles a failed batch as paused)."""
    session.execute(update(Campaign.__table__).where(Campaign.__table__.c.id == campaign_id)
                    .values(status=CampaignStatus.AUTOMATED, heartbeat_at=None, sender=None))


# --- the dry run ------------------------------------------------------------------------------

@dataclass
class Upcoming:
    """An enrolled reader and where they stand, for the dry run."""

    email: str
    timezone: str | None
    next_position: int
    next_due_at: datetime


def upcoming(session: Session, sequence_id: int, until: datetime, limit: int) -> list[Upcoming]:
    rows = session.execute(
        select(subscribers_t.c.email, subscribers_t.c.timezone, enrolments_t.c.next_position,
               enrolments_t.c.next_due_at)
        .join(subscribers_t, subscribers_t.c.id == enrolments_t.c.subscriber_id)
        .where(enrolments_t.c.sequence_id == sequence_id, enrolments_t.c.status == EnrolmentStatus.ACTIVE,
               enrolments_t.c.next_due_at <= until)
        .order_by(enrolments_t.c.next_due_at, enrolments_t.c.id).limit(limit))
    return [Upcoming(str(e), z, int(p), d) for e, z, p, d in rows]


def not_enrolled_yet(session: Session, sequence: Sequence, limit: int) -> list[tuple[str, str | None, datetime]]:
    """``[(email, zone, joined_at)]`` of members the daemon will enrol at its next round."""
    return [(str(m), z, when) for m, z, when in (
        (row.email, row.timezone, row.joined) for row in session.execute(
            select(subscribers_t.c.email, subscribers_t.c.timezone,
                   func.coalesce(memberships_t.c.confirmed_at, memberships_t.c.subscribed_at).label("joined"))
            .select_from(memberships_t)
            .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
            .where(_in_audience(sequence.list_id),
                   subscribers_t.c.id.in_([j.subscriber_id for j in joiners(session, sequence, limit)]))
            .order_by(subscribers_t.c.id)))]
