"""A/B tests: each test's settings and decision, and its ledger rows by variant.

- ``ab_tests``: one row per A/B campaign, written with the campaign: the
  subjects of variants B (and C) (A is the edition's), the test share (a
  percentage of the audience), the wait before the decision, the measure
  (``clicks`` or ``opens``), the minimum sample, and the random seed of the
  split. ``decide_at`` is set when the split is made (the test phase
  starts); ``winner``, ``reason``, ``numbers`` and ``decided_at`` when the
  winner is picked.
- ``deliveries.variant``: ``A``/``B``/``C`` on the test-phase rows. The
  rest of the audience is snapshotted with them and waits ``held``
  (``LedgerStatus.HELD``: no claim reads it) with no variant; the decision
  turns those rows ``pending`` in the transaction that records the winner.
  One ledger row per subscriber and campaign (the unique key) is what makes
  "a subscriber never gets two variants" hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, bindparam, case, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store.models import Base, Delivery, UTCDateTime
from newsletter.store.sql import dialect_insert, rowcount
from newsletter.vocabulary import LedgerStatus


class ABTest(Base):
    """One campaign's A/B test (see the module docstring)."""

    __tablename__ = "ab_tests"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    subjects: Mapped[list[str]] = mapped_column(JSON)  # every variant's subject, A first
    # content variants: each variant's edition id (None: the campaign's own edition); NULL: subjects only
    editions: Mapped[list[int | None] | None] = mapped_column(JSON, nullable=True)
    share: Mapped[int] = mapped_column(Integer)  # percent of the audience in the test phase
    decide_after: Mapped[int] = mapped_column(Integer)  # seconds from the start of the test phase
    measure: Mapped[str] = mapped_column(String(8))  # clicks | opens
    min_sample: Mapped[int] = mapped_column(Integer)  # messages sent per variant before a winner may be named
    seed: Mapped[str] = mapped_column(String(32))
    decide_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    winner: Mapped[str | None] = mapped_column(String(1), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    numbers: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ABCount(Base):
    """Requests on an A/B test's aggregate links, per variant and kind (``click``/``open``): human and machine.

    Aggregate links name the variant, never the person (``newsletter.compose.clicks``): these are the
    test's numbers for readers without personal tracking.
    """

    __tablename__ = "ab_counts"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(1), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    human: Mapped[int] = mapped_column(Integer)
    machine: Mapped[int] = mapped_column(Integer)


tests_t = ABTest.__table__
counts_t = ABCount.__table__
deliveries_t = Delivery.__table__


@dataclass(frozen=True)
class TestRow:
    """A stored A/B test, as read."""

    campaign_id: int
    subjects: list[str]
    editions: list[int | None]
    share: int
    decide_after: int
    measure: str
    min_sample: int
    seed: str
    decide_at: datetime | None
    winner: str | None
    reason: str
    numbers: dict[str, Any] | None
    decided_at: datetime | None


def save_test(session: Session, campaign_id: int, *, subjects: list[str], editions: list[int | None] | None,
              share: int, decide_after: int, measure: str, min_sample: int, seed: str) -> None:
    session.execute(tests_t.insert().values(campaign_id=campaign_id, subjects=subjects, editions=editions,
                                            share=share,
                                            decide_after=decide_after, measure=measure, min_sample=min_sample,
                                            seed=seed, reason=""))


def load_test(session: Session, campaign_id: int) -> TestRow | None:
    """The campaign's A/B test, or None (a plain campaign)."""
    row = session.get(ABTest, campaign_id)
    if row is None:
        return None
    editions: list[int | None] = list(row.editions) if row.editions else [None] * len(row.subjects)
    return TestRow(row.campaign_id, list(row.subjects), editions, row.share, row.decide_after, row.measure,
                   row.min_sample, row.seed, row.decide_at, row.winner, row.reason or "", row.numbers, row.decided_at)


def unsplit_rows(session: Session, campaign_id: int) -> list[tuple[int, int]]:
    """``(delivery id, subscriber id)`` of the campaign's pending rows that have no variant yet."""
    rows = session.execute(select(deliveries_t.c.id, deliveries_t.c.subscriber_id)
                           .where(deliveries_t.c.campaign_id == campaign_id,
                                  deliveries_t.c.status == LedgerStatus.PENDING, deliveries_t.c.variant.is_(None))
                           .order_by(deliveries_t.c.id)).all()
    return [(int(a), int(b)) for a, b in rows]


def set_variants(session: Session, assignments: list[tuple[int, str]]) -> None:
    """Record the variant of each test-phase row (``(delivery id, variant)``)."""
    if not assignments:
        return
    statement = (update(deliveries_t).where(deliveries_t.c.id == bindparam("b_id"))
                 .values(variant=bindparam("b_variant")))
    session.connection().execute(statement, [{"b_id": i, "b_variant": v} for i, v in assignments])


def hold_rest(session: Session, campaign_id: int) -> int:
    """The campaign's pending rows without a variant become ``held``; returns how many."""
    return rowcount(session.execute(update(deliveries_t).where(
        deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == LedgerStatus.PENDING,
        deliveries_t.c.variant.is_(None)).values(status=LedgerStatus.HELD)))


def release_held(session: Session, campaign_id: int) -> int:
    """The campaign's ``held`` rows become ``pending`` (the winner goes to them); returns how many."""
    return rowcount(session.execute(update(deliveries_t).where(
        deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.status == LedgerStatus.HELD)
        .values(status=LedgerStatus.PENDING)))


def set_test(session: Session, campaign_id: int, **values: Any) -> None:
    session.execute(update(tests_t).where(tests_t.c.campaign_id == campaign_id).values(**values))


def claim_decision(session: Session, campaign_id: int, **values: Any) -> bool:
    """Record the decision only if none is recorded yet (of two deciders, one wins)."""
    return rowcount(session.execute(update(tests_t).where(
        tests_t.c.campaign_id == campaign_id, tests_t.c.winner.is_(None)).values(**values))) == 1


def test_rows_in_flight(session: Session, campaign_id: int) -> int:
    """Test-phase rows still ``pending`` or ``sending``: the decision waits for them."""
    return int(session.scalar(select(func.count()).select_from(deliveries_t).where(
        deliveries_t.c.campaign_id == campaign_id, deliveries_t.c.variant.is_not(None),
        deliveries_t.c.status.in_((LedgerStatus.PENDING, LedgerStatus.SENDING)))) or 0)


def count_request(session: Session, campaign_id: int, variant: str, kind: str, machine: bool) -> None:
    """Add one request on an aggregate link of ``variant`` (an upsert: safe from several processes)."""
    column = "machine" if machine else "human"
    statement = dialect_insert(session, counts_t).values(
        campaign_id=campaign_id, variant=variant, kind=kind, human=0 if machine else 1, machine=1 if machine else 0)
    session.execute(statement.on_conflict_do_update(index_elements=["campaign_id", "variant", "kind"],
                                                    set_={column: counts_t.c[column] + 1}))


def variant_numbers(session: Session, campaign_id: int) -> dict[str | None, dict[str, int]]:
    """Per variant (None: the rest, the winner's rows): rows, sent, people who clicked and opened, and
    the human ``clicks``/``opens`` and ``machine`` requests on the variant's aggregate links.

    ``clicked``/``opened`` are the per-delivery record (``clicked_at``, ``opened_at``): first-party
    requests classified machine never reach it (``newsletter.events.firstparty``), so these count people.
    Readers with aggregate links are counted by their human requests (``ab_counts``).
    """
    sent = func.sum(case((deliveries_t.c.status == LedgerStatus.SENT, 1), else_=0))
    clicked = func.count(deliveries_t.c.clicked_at)
    opened = func.count(deliveries_t.c.opened_at)
    held = func.sum(case((deliveries_t.c.status == LedgerStatus.HELD, 1), else_=0))
    rows = session.execute(select(deliveries_t.c.variant, func.count(), sent, clicked, opened, held)
                           .where(deliveries_t.c.campaign_id == campaign_id)
                           .group_by(deliveries_t.c.variant)).all()
    numbers: dict[str | None, dict[str, int]] = {
        variant: {"rows": int(n), "sent": int(s or 0), "clicked": int(c or 0), "opened": int(o or 0),
                  "held": int(h or 0), "clicks": 0, "opens": 0, "machine": 0}
        for variant, n, s, c, o, h in rows}
    requests = session.execute(select(counts_t.c.variant, counts_t.c.kind, counts_t.c.human, counts_t.c.machine)
                               .where(counts_t.c.campaign_id == campaign_id)).all()
    for variant, kind, human, machine in requests:
        row = numbers.get(variant)
        if row is not None:
            row["clicks" if kind == "click" else "opens"] += int(human)
            row["machine"] += int(machine)
    return numbers
