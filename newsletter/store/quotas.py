"""The send counters behind the hourly and daily caps (``send_counters``).

:func:`take` counts messages against every window of a scope at once, in
the caller's transaction: it grants what fits under the smallest room left
and adds exactly that to each window. The rows are locked for the rest of
the transaction (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already serialises writers), so two processes never both take the last
slots. The engine calls it in the transaction that claims the rows it will
send, so what is counted is committed before the provider is called: a
crash after the commit over-counts, it never under-counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from newsletter.store.models import SendCounter, SendPace
from newsletter.store.sql import dialect_insert, rowcount

counters_t = SendCounter.__table__
pace_t = SendPace.__table__
# Rows of windows older than this are deleted when a new day's row is made: nothing reads them.
KEEP = timedelta(days=8)


@dataclass(frozen=True)
class Window:
    """One capped window: ``kind`` (``hour`` or ``day``) starting at ``starts_at``, holding at most ``cap``."""

    kind: str
    starts_at: datetime
    ends_at: datetime
    cap: int


@dataclass(frozen=True)
class Taken:
    """What :func:`take` granted, and the window with the least room left (None without windows)."""

    granted: int
    tightest: Window | None
    used: int  # messages counted in the tightest window, this grant included


def take(session: Session, scope: str, windows: list[Window], want: int) -> Taken:
    """Count up to ``want`` messages against every window of ``scope``; returns what was granted."""
    if not windows or want <= 0:
        return Taken(want if not windows else 0, None, 0)
    keys = [(w.kind, w.starts_at) for w in windows]
    made = rowcount(session.execute(dialect_insert(session, counters_t).values(
        [{"scope": scope, "window": kind, "starts_at": start, "sent": 0} for kind, start in keys])
        .on_conflict_do_nothing(index_elements=["scope", "window", "starts_at"])))
    if made:  # a new window began: the scope's old ones are of no use any more
        session.execute(delete(counters_t).where(counters_t.c.scope == scope,
                                                 counters_t.c.starts_at < min(start for _, start in keys) - KEEP))
    used = _used(session, scope, keys, lock=True)
    room = {w: w.cap - used.get((w.kind, w.starts_at), 0) for w in windows}
    # the least room; of full windows, the one that ends last (it decides when sending may go on)
    tightest = min(windows, key=lambda w: (max(room[w], 0), -w.ends_at.timestamp()))
    granted = max(0, min(want, room[tightest]))
    if granted:
        _add(session, scope, keys, granted)
    return Taken(granted, tightest, used.get((tightest.kind, tightest.starts_at), 0) + granted)


def give_back(session: Session, scope: str, windows: list[Window], count: int) -> None:
    """Uncount ``count`` messages taken in this transaction and not sent after all (rows skipped at the claim)."""
    if windows and count > 0:
        _add(session, scope, [(w.kind, w.starts_at) for w in windows], -count)


def used(session: Session, scope: str, kind: str, starts_at: datetime) -> int:
    """Messages counted in one window (0 when none)."""
    return _used(session, scope, [(kind, starts_at)], lock=False).get((kind, starts_at), 0)


def _match(scope: str, keys: list[tuple[str, datetime]]) -> ColumnElement[bool]:
    return and_(counters_t.c.scope == scope,
                or_(*(and_(counters_t.c.window == kind, counters_t.c.starts_at == start) for kind, start in keys)))


def _used(session: Session, scope: str, keys: list[tuple[str, datetime]], *,
          lock: bool) -> dict[tuple[str, datetime], int]:
    query = select(counters_t.c.window, counters_t.c.starts_at, counters_t.c.sent).where(_match(scope, keys))
    if lock:
        query = query.with_for_update()
    return {(row.window, row.starts_at): row.sent for row in session.execute(query)}


def _add(session: Session, scope: str, keys: list[tuple[str, datetime]], amount: int) -> None:
    session.execute(update(counters_t).where(_match(scope, keys)).values(sent=counters_t.c.sent + amount))



def book(session: Session, scope: str, now: datetime, seconds: float) -> datetime:
    """Book ``seconds`` of the scope's sending time; returns when they start: now, or when the
    bookings before end. The row is locked for the transaction: two processes book one after the
    other. Time nobody booked is lost, never saved up for a burst."""
    session.execute(dialect_insert(session, pace_t).values(scope=scope, free_at=now)
                    .on_conflict_do_nothing(index_elements=["scope"]))
    free_at = session.execute(select(pace_t.c.free_at).where(pace_t.c.scope == scope).with_for_update()).scalar_one()
    start: datetime = max(free_at, now)
    session.execute(update(pace_t).where(pace_t.c.scope == scope)
                    .values(free_at=start + timedelta(seconds=seconds)))
    return start
