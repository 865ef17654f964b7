"""Campaigns and the delivery ledger: every SQL statement the engine runs.

The ledger has one row per (campaign, subscriber), unique in the database.
A row goes ``pending -> sending -> sent | failed | unknown``, or ``skipped``
when the person is suppressed or left the list after the snapshot. Each
change is committed by the caller before the transport is called and after
it answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from newsletter.store import webhooks
from newsletter.store.models import (
    TROUBLE_PREDICATE,
    Campaign,
    Delivery,
    Edition,
    MailingList,
    Membership,
    Subscriber,
    Suppression,
    utcnow,
)
from newsletter.store.sql import rowcount
from newsletter.vocabulary import CampaignStatus, LedgerStatus, MembershipStatus, SubscriberStatus

deliveries_t = Delivery.__table__
subscribers_t = Subscriber.__table__
memberships_t = Membership.__table__
suppressions_t = Suppression.__table__


def audience_conditions(list_id: int, *, include_dormant: bool = False,
                        now: datetime | None = None) -> ColumnElement[bool]:
    """Confirmed members of the list, active, not on the suppression list, not snoozed at ``now``
    (default: the current time) and (unless asked) not dormant."""
    suppressed = select(suppressions_t.c.email_hash).where(
        suppressions_t.c.email_hash == subscribers_t.c.email_hash).exists()
    awake = [] if include_dormant else [subscribers_t.c.dormant_at.is_(None)]  # the sunset policy's (segments)
    return and_(memberships_t.c.list_id == list_id, memberships_t.c.status == MembershipStatus.CONFIRMED,
                subscribers_t.c.status == SubscriberStatus.ACTIVE, ~suppressed, *awake,
                not_snoozed(now or utcnow()))


def not_snoozed(now: datetime) -> ColumnElement[bool]:
    """No snooze from the preference centre runs at ``now`` (one ends at its ``snoozed_until``)."""
    return or_(subscribers_t.c.snoozed_until.is_(None), subscribers_t.c.snoozed_until <= now)


def audience_size(session: Session, list_id: int) -> int:
    query = (select(func.count()).select_from(memberships_t)
             .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
             .where(audience_conditions(list_id)))
    return session.execute(query).scalar() or 0


def has_audience(session: Session, list_id: int) -> bool:
    query = (select(memberships_t.c.subscriber_id).select_from(memberships_t)
             .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
             .where(audience_conditions(list_id)).limit(1))
    return session.execute(query).first() is not None


def first_audience_member(session: Session, list_id: int) -> Subscriber | None:
    query = (select(Subscriber).join(Membership, Membership.subscriber_id == Subscriber.id)
             .where(audience_conditions(list_id)).order_by(Subscriber.id).limit(1))
    return session.scalar(query)


def snapshot_audience(session: Session, campaign_id: int, list_id: int,
                      zones: list[str | None] | None = None) -> int:
    """Create one pending ledger row per audience member, in one statement; returns how many.

    Subscribers are unique by normalised address, so this is one message per address.
    Rows that already exist (a snapshot taken twice) are left alone. ``zones``
    restricts it to subscribers in those time zones (None in it: no zone set),
    for local-time waves. A segment campaign's filter (and ``--to-dormant``)
    applies here, at snapshot time (``store.segments.campaign_audience``).
    """
    from newsletter.store.segments import campaign_audience

    include_dormant, segment = campaign_audience(session, campaign_id)
    conditions = [audience_conditions(list_id, include_dormant=include_dormant), *segment]
    if session.execute(select(deliveries_t.c.id).where(deliveries_t.c.campaign_id == campaign_id).limit(1)).first():
        # Only a second snapshot (the next wave) needs the per-row check.
        conditions.append(~select(deliveries_t.c.subscriber_id).where(
            deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.subscriber_id == subscribers_t.c.id).exists())
    if zones is not None:
        conditions.append(_in_zones(zones))
    source = (select(literal(campaign_id), subscribers_t.c.id, subscribers_t.c.email, literal(LedgerStatus.PENDING),
                     literal(0))
              .select_from(memberships_t)
              .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
              .where(*conditions)
              .order_by(subscribers_t.c.id))
    # preserve_rowcount: psycopg's driver gives SQLAlchemy no count for an INSERT ... SELECT otherwise (-1).
    statement = insert(deliveries_t).from_select(
        ["campaign_id", "subscriber_id", "email", "status", "attempts"], source).execution_options(
        preserve_rowcount=True)
    return rowcount(session.execute(statement))


def _in_zones(zones: list[str | None]) -> ColumnElement[bool]:
    names = [zone for zone in zones if zone]
    wanted: ColumnElement[bool] = subscribers_t.c.timezone.in_(names) if names else literal(False)
    if None in zones:
        wanted = or_(wanted, subscribers_t.c.timezone.is_(None), subscribers_t.c.timezone == "")
    return wanted


def save_edition(session: Session, **values: Any) -> Edition:
    edition = Edition(**values)
    session.add(edition)
    session.flush()
    return edition


def counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Ledger rows of a campaign by status (every status present, zeros included; ``held`` only when some are)."""
    rows = session.execute(select(deliveries_t.c.status, func.count())
                           .where(deliveries_t.c.campaign_id == campaign_id)
                           .group_by(deliveries_t.c.status))
    # ``held`` (an A/B campaign's rest) only where there are such rows: most campaigns never have any.
    result: dict[str, int] = {status: 0 for status in LedgerStatus if status != LedgerStatus.HELD}
    result.update({status: int(count) for status, count in rows})
    return result


_UNSET = object()


_FIRST_START = {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED}  # moves to sending that are campaign.started


def claim_campaign(session: Session, campaign_id: int, from_statuses: tuple[str, ...], to_status: str,
                   *, expected_sender: str | None | object = _UNSET, **values: Any) -> bool:
    """Move a campaign between statuses only if it is in one of ``from_statuses`` (one winner).

    ``expected_sender``: only if its recorded sender is still that one (None:
    none recorded), so that of two processes taking over the same dead
    sender, one wins.
    """
    table = Campaign.__table__
    conditions = [table.c.id == campaign_id, table.c.status.in_(from_statuses)]
    if expected_sender is not _UNSET:
        conditions.append(table.c.sender.is_(None) if expected_sender is None else table.c.sender == expected_sender)
    moved = rowcount(session.execute(update(table).where(*conditions).values(status=to_status, **values))) == 1
    if moved and (to_status != CampaignStatus.SENDING or set(from_statuses) <= _FIRST_START):
        webhooks.campaign_event(session, campaign_id, to_status)  # a resume or a takeover is no news
    return moved


def fence(session: Session, campaign_id: int, sender: str, now: datetime | None = None, *, beat: bool = True,
          lock: bool = True) -> bool:
    """True when ``sender`` is still the campaign's sender (and it is ``sending``); beats its heartbeat.

    Run first in every transaction that claims rows or records results: it
    locks the campaign row on PostgreSQL, so a takeover (which updates the
    same row) either committed before (this returns False) or waits until
    this transaction commits.

    ``beat=False`` (the send loop's batches, whose heartbeat a thread beats):
    on PostgreSQL the row is locked ``FOR SHARE`` instead of updated, so the
    processes of one send claim and record side by side instead of queueing
    on the row, while a takeover's update still waits for every one of them
    (and a fence arriving after the takeover queued waits behind it, then
    sees the new sender). On SQLite a read is enough: every transaction
    begins ``IMMEDIATE`` (``newsletter.store.db``), holding the write lock
    from its first statement, so no takeover can commit between this read
    and the transaction's end; and a transaction that only reads writes
    nothing to the log at its commit.

    ``lock=False`` (with ``beat=False``, PostgreSQL): a plain read, for a
    check whose transaction ends before the work it guards (the look just
    before a provider call): a lock released at that commit would hold
    nothing back, and a read takes no transaction id, so its commit writes
    and flushes nothing.
    """
    table = Campaign.__table__
    conditions = (table.c.id == campaign_id, table.c.sender == sender, table.c.status == CampaignStatus.SENDING)
    if not beat:
        query = select(table.c.id).where(*conditions)
        if lock and session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        return session.execute(query).first() is not None
    return rowcount(session.execute(update(table).where(*conditions).values(heartbeat_at=now or utcnow()))) == 1


def delete_campaign(session: Session, campaign_id: int) -> None:
    """Delete a campaign and its ledger rows.

    The ledger has no foreign key to campaigns (migration 0017): its rows go
    here, in the same transaction, as the database's cascade took them. The
    campaign's other rows (chunks, waves, scheduler records) still cascade.
    """
    session.execute(delete(deliveries_t).where(deliveries_t.c.campaign_id == campaign_id))
    session.execute(delete(Campaign.__table__).where(Campaign.__table__.c.id == campaign_id))


def set_campaign(session: Session, campaign_id: int, **values: Any) -> None:
    """Write a campaign's columns; a new ``status`` sends its webhook event (``campaign.sent``, ...)."""
    session.execute(update(Campaign.__table__).where(Campaign.__table__.c.id == campaign_id).values(**values))
    if "status" in values:
        webhooks.campaign_event(session, campaign_id, values["status"])


@dataclass
class Candidate:
    """A pending ledger row with what sending needs."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attributes: dict[str, Any]
    eligible: bool
    # The subscriber no longer exists (erased while the snapshot was being taken): the row is deleted, not sent.
    gone: bool = False
    # An A/B campaign's test-phase variant (``A``, ``B``, ``C``); None: the winner (or no A/B test).
    variant: str | None = None


def _candidates(campaign_id: int, list_id: int | None) -> Select[*tuple[Any, ...]]:
    """Pending rows of a campaign with what sending needs and whether they may still be sent:
    the subscriber active, still a confirmed member, not on the suppression list.

    The subscriber is an outer join: without a foreign key (migration 0017) a
    row can outlive its subscriber when an erase commits while the snapshot
    is being taken; such a row is read (subscriber status NULL) and deleted
    by the claim instead of being left pending for ever."""
    suppressed = select(suppressions_t.c.email_hash).where(
        suppressions_t.c.email_hash == subscribers_t.c.email_hash).exists()
    return (
        select(deliveries_t.c.id, deliveries_t.c.subscriber_id, deliveries_t.c.email, subscribers_t.c.name,
               # as stored: most subscribers have none, and decoding "{}" a row was a tenth of a claim
               type_coerce(subscribers_t.c.attributes, Text), subscribers_t.c.status, memberships_t.c.status,
               suppressed, deliveries_t.c.variant)
        .outerjoin(subscribers_t, subscribers_t.c.id == deliveries_t.c.subscriber_id)
        .outerjoin(memberships_t, and_(memberships_t.c.subscriber_id == deliveries_t.c.subscriber_id,
                                       memberships_t.c.list_id == list_id))
        .where(deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == LedgerStatus.PENDING)
        .order_by(deliveries_t.c.id)
    )


def _as_candidates(rows: Iterable[Row[*tuple[Any, ...]]]) -> list[Candidate]:
    return [Candidate(row[0], row[1], row[2], row[3] or "", _attributes(row[4]),
                      row[5] == SubscriberStatus.ACTIVE and row[6] == MembershipStatus.CONFIRMED and not row[7],
                      row[5] is None, row[8])
            for row in rows]


def _attributes(stored: Any) -> dict[str, Any]:
    """A subscriber's attributes from the claim's read: JSON text (SQLite), already decoded (the
    PostgreSQL driver decodes JSON columns itself), or NULL."""
    if stored.__class__ is str:
        if stored == "{}":
            return {}
        stored = json.loads(stored)
    return stored if isinstance(stored, dict) else {}


def _ineligible(session: Session, read: list[Candidate]) -> int:
    """Rows of a claim that may not be sent: ``skipped`` (left the list, suppressed), or deleted when
    their subscriber is gone (the cascade the foreign key made before migration 0017); returns how
    many were skipped."""
    gone = [c.delivery_id for c in read if c.gone]
    if gone:
        session.execute(delete(deliveries_t).where(_id_among(session, gone),
                                                   deliveries_t.c.status == LedgerStatus.PENDING))
    return skipped_now(session, [c.delivery_id for c in read if not c.eligible and not c.gone])


# How far past the previous claim a claim reads, in ids per row wanted (see claim_pending): a fresh
# snapshot's ids run on, so the next ``limit`` pending rows are within the first ``limit`` ids.
CLAIM_WINDOW = 4


@dataclass
class Claim:
    """What one :func:`claim_pending` call got: the rows it moved to ``sending``, how many it
    marked ``skipped``, how many rows it looked at, and where the next claim goes on (an id)."""

    rows: list[Candidate]
    skipped: int
    seen: int
    last_id: int


def claim_pending(session: Session, campaign_id: int, list_id: int | None, after_id: int, limit: int,
                  up_to: int | None = None) -> Claim | None:
    """Claim the next ``limit`` pending rows after ``after_id`` (at most ``up_to``) for this transaction.

    Eligible rows move ``pending -> sending`` (one attempt counted);
    ineligible ones (left the list, suppressed: checked *now*) ``skipped``.
    None when no pending row is left.

    Only rows this call's own update moved are returned (``UPDATE ...
    RETURNING``): of two claimers that read the same rows, each row goes to
    exactly one. On PostgreSQL the read also skips rows another claimer holds
    (``FOR UPDATE SKIP LOCKED``); SQLite's BEGIN IMMEDIATE serialises writers.

    The read looks at ids in ``(after_id, after_id + CLAIM_WINDOW * limit]``
    only. The claim index has no status (migration 0025, for HOT updates):
    a planner whose statistics make the campaign's pending rows look rare
    (taken before the snapshot, or from earlier campaigns all sent) would
    otherwise read, join and sort every row after ``after_id`` at each
    batch (measured: 272 ms a batch halfway through 100,000 rows, against
    3 ms). When the window holds no pending row (rows already done: a
    resumed campaign), the next pending id is looked up and the window
    moves there.
    """
    while True:
        high = after_id + CLAIM_WINDOW * limit if up_to is None else min(after_id + CLAIM_WINDOW * limit, up_to)
        query = (_candidates(campaign_id, list_id).where(deliveries_t.c.id > after_id, deliveries_t.c.id <= high)
                 .limit(limit).with_for_update(of=deliveries_t, skip_locked=True))
        read = _as_candidates(session.execute(query).all())  # all(): one fetch, not a driver call per row
        if read:
            break
        following = None if up_to is not None and high >= up_to else _next_pending(session, campaign_id, high, up_to)
        if following is None:
            return None
        after_id = following - 1
    skipped = _ineligible(session, read)
    # One range statement (no thousand-item IN list to bind); RETURNING names the rows it moved.
    moved = set(session.scalars(update(deliveries_t)
                                .where(deliveries_t.c.campaign_id == campaign_id,
                                       deliveries_t.c.id.between(read[0].delivery_id, read[-1].delivery_id),
                                       deliveries_t.c.status == LedgerStatus.PENDING)
                                .values(status=LedgerStatus.SENDING, updated_at=utcnow(),
                                        attempts=deliveries_t.c.attempts + 1)
                                .returning(deliveries_t.c.id)).all())
    rows = [c for c in read if c.eligible and c.delivery_id in moved]
    unvetted = moved.difference(c.delivery_id for c in rows)
    last_id = read[-1].delivery_id
    if unvetted:  # pending rows the read skipped (another claimer held them, then let go): not checked
        session.execute(update(deliveries_t)
                        .where(deliveries_t.c.id.in_(sorted(unvetted)), deliveries_t.c.status == LedgerStatus.SENDING)
                        .values(status=LedgerStatus.PENDING, attempts=deliveries_t.c.attempts - 1))
        last_id = min(unvetted) - 1  # the next claim reads them again
    return Claim(rows, skipped, len(read), last_id)


def _next_pending(session: Session, campaign_id: int, after_id: int, up_to: int | None) -> int | None:
    """The first pending id of the campaign after ``after_id`` (at most ``up_to``), or None."""
    query = select(func.min(deliveries_t.c.id)).where(deliveries_t.c.campaign_id == campaign_id,
                                                      deliveries_t.c.status == LedgerStatus.PENDING,
                                                      deliveries_t.c.id > after_id)
    if up_to is not None:
        query = query.where(deliveries_t.c.id <= up_to)
    return session.execute(query).scalar()


def mark(session: Session, delivery_ids: list[int], status: str, from_status: str, *,
         provider_id: str | None = None, error: str | None = None, count_attempt: bool = False) -> int:
    """Move the given rows from ``from_status`` to ``status``; returns how many moved."""
    if not delivery_ids:
        return 0
    values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
    if provider_id is not None:
        values["provider_id"] = provider_id
    if error is not None:
        values["error"] = error[:1000]
    if count_attempt:
        values["attempts"] = deliveries_t.c.attempts + 1
    result = session.execute(update(deliveries_t)
                             .where(_id_among(session, delivery_ids), deliveries_t.c.status == from_status)
                             .values(**values))
    return rowcount(result)


def _id_among(session: Session, delivery_ids: list[int]) -> ColumnElement[bool]:
    """``deliveries.id`` among ``delivery_ids``: ``= ANY(array)`` on PostgreSQL, an IN list on SQLite.

    One array parameter gives one statement text whatever the batch size (so
    the server can keep it prepared) and spares psycopg parsing a thousand
    placeholders in Python.
    """
    if session.get_bind().dialect.name == "postgresql":
        # The bounds let the planner see a narrow id range (an index scan) rather than guess at the array.
        return and_(deliveries_t.c.id.between(min(delivery_ids), max(delivery_ids)),
                    deliveries_t.c.id == any_(bindparam("delivery_ids", list(delivery_ids), type_=ARRAY(Integer))))
    return deliveries_t.c.id.in_(delivery_ids)


def mark_range(session: Session, campaign_id: int, first_id: int, last_id: int, status: str, from_status: str,
               *, provider_id: str | None = None, count_attempt: bool = False) -> int:
    """Move every row of the campaign with an id in [first_id, last_id] from ``from_status``.

    A batch is a run of consecutive pending ids, so a range names it in one
    cheap statement (no thousand-item IN list to bind and compile).
    """
    values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
    if provider_id is not None:
        values["provider_id"] = provider_id
    if count_attempt:
        values["attempts"] = deliveries_t.c.attempts + 1
    return rowcount(session.execute(update(deliveries_t)
                                    .where(deliveries_t.c.campaign_id == campaign_id,
                                           deliveries_t.c.id.between(first_id, last_id),
                                           deliveries_t.c.status == from_status)
                                    .values(**values)))


# Per-row outcomes of a batch in one statement on PostgreSQL, fenced like every other write
# here: a row moves only while it is still ``from_status`` (the claimant's ``sending``).
_MARK_EACH_PG = text(
    "UPDATE deliveries AS d SET status = u.status, provider_id = u.provider_id, error = u.error, "
    "updated_at = :now "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:statuses AS varchar[]), CAST(:providers AS varchar[]), "
    "CAST(:errors AS text[])) AS u(id, status, provider_id, error) "
    "WHERE d.id = u.id AND d.id BETWEEN :low AND :high AND d.status = :from_status")


def mark_each(session: Session, rows: list[dict[str, Any]], from_status: str) -> None:
    """Per-row outcomes: dicts with ``b_id``, ``status``, ``provider_id``, ``error``.

    PostgreSQL: one ``UPDATE ... FROM unnest(arrays)`` for the whole batch;
    SQLite: one executemany (a statement per row, in one transaction).
    """
    if rows and session.get_bind().dialect.name == "postgresql":
        session.execute(_MARK_EACH_PG, {
            "now": utcnow(), "from_status": str(from_status),
            "low": min(row["b_id"] for row in rows), "high": max(row["b_id"] for row in rows),
            "ids": [row["b_id"] for row in rows], "statuses": [str(row["status"]) for row in rows],
            "providers": [row["provider_id"] for row in rows], "errors": [row["error"] for row in rows]})
    elif rows:
        session.execute(update(deliveries_t)
                        .where(deliveries_t.c.id == bindparam("b_id"), deliveries_t.c.status == from_status)
                        .values(status=bindparam("status"), provider_id=bindparam("provider_id"),
                                error=bindparam("error"), updated_at=utcnow()),
                        rows)


def requeue(session: Session, campaign_id: int, from_status: str) -> int:
    """Put every row of one status back to pending (retry on purpose)."""
    return rowcount(session.execute(update(deliveries_t)
                                    .where(deliveries_t.c.campaign_id == campaign_id,
                                           deliveries_t.c.status == from_status)
                                    .values(status=LedgerStatus.PENDING, updated_at=utcnow())))


def failed_to_pending(session: Session, delivery_ids: list[int]) -> int:
    """Rows recorded ``failed`` for a cause that was ours or the network's go back to ``pending``
    (the circuit breaker: nothing of them was accepted, and the person did nothing wrong)."""
    if not delivery_ids:
        return 0
    return rowcount(session.execute(update(deliveries_t)
                                    .where(_id_among(session, delivery_ids),
                                           deliveries_t.c.status == LedgerStatus.FAILED)
                                    .values(status=LedgerStatus.PENDING, error=None, updated_at=utcnow())))


def list_of(session: Session, list_id: int | None) -> MailingList | None:
    """The list a campaign goes to (None for none, or a list since deleted)."""
    return session.get(MailingList, list_id) if list_id is not None else None


@dataclass(frozen=True)
class Reception:
    """What a campaign's events say so far: messages sent, recipients who complained, hard bounces."""

    sent: int
    complained: int
    hard_bounced: int


def troubles(session: Session, campaign_id: int) -> tuple[int, int]:
    """(recipients who complained, hard bounces) of a campaign: a read of the partial index
    ``ix_deliveries_troubles`` (migration 0026), a few rows, however big the campaign.

    The circuit breaker asks this first and takes the whole campaign's
    :func:`reception` only when there is something to weigh: that scan took
    about 2 s at 1,000,000 rows, every few seconds in every sending process.
    """
    table = deliveries_t
    # The index's own predicate, word for word (so the planner uses it), in parentheses: it holds an OR.
    trouble = text(f"({TROUBLE_PREDICATE})")
    row = session.execute(select(
        func.count().filter(table.c.complained_at.is_not(None)),
        func.count().filter(table.c.refused == "hard"),
    ).where(table.c.campaign_id == campaign_id, trouble)).one()
    return int(row[0] or 0), int(row[1] or 0)


def reception(session: Session, campaign_id: int) -> Reception:
    """One aggregate over the campaign's ledger rows (the circuit breaker reads it between batches)."""
    table = deliveries_t
    row = session.execute(select(
        func.count().filter(table.c.status == LedgerStatus.SENT),
        func.count().filter(table.c.complained_at.is_not(None)),
        func.count().filter(table.c.refused == "hard"),
    ).where(table.c.campaign_id == campaign_id)).one()
    return Reception(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def refused_by_provider() -> ColumnElement[bool]:
    """SQL: the row's events say the provider or the receiving server refused the message.

    A hard bounce or a rejection; a soft bounce unless a later delivery
    was reported. Any other event for the row says the provider had it.
    """
    return or_(deliveries_t.c.refused.in_(("hard", "rejected")),
               and_(deliveries_t.c.refused == "soft", deliveries_t.c.delivered_at.is_(None)))


def settle_from_events(session: Session, from_status: str, *conditions: ColumnElement[bool]) -> int:
    """Settle rows in ``from_status`` that provider events describe: ``failed`` (with the reason) when
    the events say the message was refused, else ``sent``; returns how many moved.

    The update is conditional on ``from_status``, as every ledger write is:
    a row that ``campaigns retry`` put back to pending in the meantime is
    left to that retry, and a row settled here is not requeued by it.
    """
    refused = refused_by_provider()
    return rowcount(session.execute(
        update(deliveries_t)
        .where(*conditions, deliveries_t.c.status == from_status, deliveries_t.c.event_provider.is_not(None))
        .values(status=case((refused, literal(LedgerStatus.FAILED)), else_=literal(LedgerStatus.SENT)),
                error=case((refused, "the provider's events report it " + func.coalesce(deliveries_t.c.refused, "")
                            + " (settled from events)"),
                           else_=literal(None)),
                updated_at=utcnow())))


def received_after_all(session: Session, campaign_ids: list[int]) -> int:
    """Campaigns marked ``failed`` (nobody received them) that now have a ``sent`` row become ``sent``.

    Events can settle a row of unknown outcome to sent after the campaign
    finished; the campaign then reached someone (and belongs in the archive).
    """
    table = Campaign.__table__
    reached = select(deliveries_t.c.id).where(deliveries_t.c.campaign_id == table.c.id,
                                              deliveries_t.c.status == LedgerStatus.SENT).exists()
    return rowcount(session.execute(update(table)
                                    .where(table.c.id.in_(campaign_ids),
                                           table.c.status == CampaignStatus.FAILED, reached)
                                    .values(status=CampaignStatus.SENT)))


def orphaned_to_unknown(session: Session, campaign_id: int) -> int:
    """Rows left ``sending`` by a process that died: the provider may have them.

    Rows the provider's events already describe (an event can arrive before
    the sender records the answer) are settled from them instead.
    """
    settle_from_events(session, LedgerStatus.SENDING, deliveries_t.c.campaign_id == campaign_id)
    return rowcount(session.execute(update(deliveries_t)
                           .where(deliveries_t.c.campaign_id == campaign_id,
                                  deliveries_t.c.status == LedgerStatus.SENDING)
                           .values(status=LedgerStatus.UNKNOWN, updated_at=utcnow(),
                                   error="the sender stopped while this message was in flight")))


def rows_with_status(session: Session, campaign_id: int, status: str, limit: int = 50) -> list[dict[str, Any]]:
    query = (select(deliveries_t.c.email, deliveries_t.c.status, deliveries_t.c.error, deliveries_t.c.updated_at)
             .where(deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == status)
             .order_by(deliveries_t.c.id).limit(limit))
    return [dict(row._mapping) for row in session.execute(query)]


def list_campaigns(session: Session, status: str | None = None) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.id.desc())
    if status:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def deliveries_of_subscriber(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """A subscriber's ledger rows, newest first (for ``subscribers show``)."""
    query = (select(deliveries_t.c.campaign_id, Edition.subject, deliveries_t.c.status, deliveries_t.c.updated_at,
                    deliveries_t.c.error)
             .join(Campaign, Campaign.id == deliveries_t.c.campaign_id)
             .join(Edition, Edition.id == Campaign.edition_id)
             .where(deliveries_t.c.subscriber_id == subscriber_id)
             .order_by(deliveries_t.c.campaign_id.desc()))
    return [dict(row._mapping) for row in session.execute(query)]


def skipped_now(session: Session, ids: list[int]) -> int:
    """Pending rows whose person left the list or is suppressed: ``skipped``; returns how many moved."""
    return mark(session, ids, LedgerStatus.SKIPPED, LedgerStatus.PENDING,
                error="unsubscribed or suppressed before sending")


# --- Scale-out sending (newsletter.distributed): ranges of the ledger -----------------

def pending_ranges(session: Session, campaign_id: int, size: int, *, after_id: int = 0,
                   limit: int | None = None) -> list[tuple[int, int, int]]:
    """Like :func:`_numbered_ranges`, but when the pending ids have no gaps (a fresh
    snapshot), cut them by arithmetic: a window over a million rows costs seconds."""
    low, high, total = session.execute(
        select(func.min(deliveries_t.c.id), func.max(deliveries_t.c.id), func.count())
        .where(deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == LedgerStatus.PENDING,
               deliveries_t.c.id > after_id)).one()
    if not total or limit is not None or high - low + 1 != total:
        return _numbered_ranges(session, campaign_id, size, after_id=after_id, limit=limit)
    return [(first, min(first + size - 1, high), min(size, high - first + 1)) for first in range(low, high + 1, size)]


def _numbered_ranges(session: Session, campaign_id: int, size: int, *, after_id: int = 0,
                     limit: int | None = None) -> list[tuple[int, int, int]]:
    """Cut the campaign's pending rows with ids above ``after_id`` (the first ``limit`` of
    them when given), in id order, into ranges of at most ``size`` rows.

    Returns ``(first_id, last_id, rows)`` per range, in one statement: row
    numbers over the ids (the same cut as a keyset walk taking ``size`` ids at
    a time, without a round trip per range).
    """
    numbered = (select(deliveries_t.c.id.label("id"),
                       ((func.row_number().over(order_by=deliveries_t.c.id) - 1) // size).label("part"))
                .where(deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == LedgerStatus.PENDING,
                       deliveries_t.c.id > after_id)
                .order_by(deliveries_t.c.id).limit(limit)
                .subquery())
    query = (select(func.min(numbered.c.id), func.max(numbered.c.id), func.count())
             .group_by(numbered.c.part).order_by(numbered.c.part))
    return [(int(a), int(b), int(n)) for a, b, n in session.execute(query)]


def pending_in_range(session: Session, campaign_id: int, first_id: int, last_id: int) -> int:
    return session.execute(select(func.count()).where(
        deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.id.between(first_id, last_id),
        deliveries_t.c.status == LedgerStatus.PENDING)).scalar() or 0


def range_state(session: Session, campaign_id: int, first_id: int, last_id: int) -> tuple[int, int]:
    """(pending, in flight) rows of the campaign with ids in [first_id, last_id]: one read of the range.

    A worker taking a chunk learns from it how many rows are left to send,
    and whether a dead owner left rows ``sending`` (then, and only then, it
    runs :func:`orphans_in_range_to_unknown`: two writes a chunk saved).
    """
    pending, sending = session.execute(select(
        func.count().filter(deliveries_t.c.status == LedgerStatus.PENDING),
        func.count().filter(deliveries_t.c.status == LedgerStatus.SENDING),
    ).where(deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.id.between(first_id, last_id))).one()
    return int(pending or 0), int(sending or 0)


def claim_range(session: Session, campaign_id: int, list_id: int | None, first_id: int, last_id: int,
                limit: int) -> list[Candidate]:
    """Claim up to ``limit`` pending rows of ``[first_id, last_id]`` for this transaction's caller.

    The rows are read with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's
    BEGIN IMMEDIATE serialises writers instead), checked for eligibility *now*
    exactly as :func:`claim_pending` does; eligible rows move to ``sending``
    (one attempt counted), ineligible ones to ``skipped``, both conditionally
    on still being ``pending``. The caller commits before sending: two
    workers never get the same row.
    """
    query = (_candidates(campaign_id, list_id).where(deliveries_t.c.id.between(first_id, last_id))
             .limit(limit).with_for_update(of=deliveries_t, skip_locked=True))
    batch = _as_candidates(session.execute(query).all())
    _ineligible(session, batch)
    eligible = [c for c in batch if c.eligible]
    moved = mark(session, [c.delivery_id for c in eligible], LedgerStatus.SENDING, LedgerStatus.PENDING,
                 count_attempt=True)
    if moved != len(eligible):  # cannot happen under the lock; refuse rather than risk a double send
        raise RuntimeError(f"claimed {moved} of {len(eligible)} rows of campaign {campaign_id}")
    return batch


def claim_in_range(session: Session, campaign_id: int, list_id: int | None, first_id: int, last_id: int,
                   limit: int, *, after_id: int | None = None) -> Claim | None:
    """:func:`claim_pending` within ``[first_id, last_id]`` (after ``after_id``, where the previous claim
    of the range ended, when given); None when no pending row is left there.

    What a scale-out worker claims with: the same checks as
    :func:`claim_range`, but the rows move in one range statement that
    returns the ids it moved (no array of a thousand ids to bind), and only
    the rows moved to ``sending`` come back (``Claim.rows``).
    """
    start = first_id - 1 if after_id is None else max(after_id, first_id - 1)
    return claim_pending(session, campaign_id, list_id, start, limit, up_to=last_id)


def orphans_in_range_to_unknown(session: Session, campaign_id: int, first_id: int, last_id: int) -> int:
    """Rows of one range left ``sending`` by a worker that died: the provider may have them
    (rows the provider's events already describe are settled from them, as in :func:`orphaned_to_unknown`)."""
    settle_from_events(session, LedgerStatus.SENDING, deliveries_t.c.campaign_id == campaign_id,
                       deliveries_t.c.id.between(first_id, last_id))
    return rowcount(session.execute(update(deliveries_t)
                           .where(deliveries_t.c.campaign_id == campaign_id,
                                  deliveries_t.c.id.between(first_id, last_id),
                                  deliveries_t.c.status == LedgerStatus.SENDING)
                           .values(status=LedgerStatus.UNKNOWN, updated_at=utcnow(),
                                   error="the worker stopped while this message was in flight")))


def settle_if_done(session: Session, campaign_id: int, from_status: str, to_status: str) -> bool:
    """Move the campaign to ``to_status`` if it is ``from_status`` and no row is pending or in
    flight, in one conditional statement: of several workers finishing together, one wins.

    A campaign that nobody received (no row sent, some failed or unknown)
    becomes ``failed`` (``CampaignStatus.FAILED``) instead of ``sent``.
    """
    open_rows = select(deliveries_t.c.id).where(
        deliveries_t.c.campaign_id == campaign_id,
        deliveries_t.c.status.in_((LedgerStatus.PENDING, LedgerStatus.SENDING))).exists()
    now = utcnow()
    result = session.execute(update(Campaign.__table__)
                             .where(Campaign.__table__.c.id == campaign_id,
                                    Campaign.__table__.c.status == from_status, ~open_rows)
                             .values(status=settled_status(campaign_id, to_status), finished_at=now,
                                     heartbeat_at=None, sender=None))
    if rowcount(result) != 1:
        return False
    webhooks.campaign_event(session, campaign_id)  # sent, or failed: the row says which
    return True


def settled_status(campaign_id: int, done_status: str) -> ColumnElement[str]:
    """SQL for the status a finished campaign takes: ``done_status``, or ``failed`` when nobody got it."""
    def any_row(*statuses: str) -> ColumnElement[bool]:
        return select(deliveries_t.c.id).where(deliveries_t.c.campaign_id == campaign_id,
                                              deliveries_t.c.status.in_(statuses)).exists()
    return case((and_(~any_row(LedgerStatus.SENT), any_row(LedgerStatus.FAILED, LedgerStatus.UNKNOWN)),
                 literal(CampaignStatus.FAILED)),
                else_=literal(done_status))


def nobody_received(counts: dict[str, int]) -> bool:
    """The ledger counts of a finished campaign that reached nobody: no row sent, some failed or unknown."""
    return counts.get(LedgerStatus.SENT, 0) == 0 and counts.get(LedgerStatus.FAILED,
                                                                0) + counts.get(LedgerStatus.UNKNOWN, 0) > 0
