"""The delivery loop's SQL over the outbox (:mod:`newsletter.store.webhooks`): claims, outcomes, reports.

A claim is a conditional UPDATE (``pending -> sending`` only where the row
is still pending), tagged with the claimer's token: of two daemons reading
the same rows, each sends only the rows its own update moved. A claimed row
carries a lease; a sender killed mid-delivery leaves it ``sending`` until
the lease ends, then :func:`release_expired` makes it pending again and the
same event (same id, same body) goes out again: at-least-once.

Only the *head* of a subject is claimed: a row whose endpoint has an earlier
event of the same subject still pending or sending waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from newsletter.store.sql import rowcount
from newsletter.store.webhooks import (
    WebhookDelivery,
    attempts_t,
    deliveries_t,
    endpoints_t,
    events_t,
)

OPEN = ("pending", "sending")


@dataclass(frozen=True)
class Claimed:
    """A delivery this process claimed: what to send where."""

    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    event_pk: int
    event_id: str
    event_type: str
    body: str
    created_at: datetime
    attempts: int
    first_attempt_at: datetime | None


def release_expired(session: Session, now: datetime) -> int:
    """Rows left ``sending`` past their lease (the sender died): pending again, due now."""
    return rowcount(session.execute(update(deliveries_t)
                                    .where(deliveries_t.c.state == "sending", deliveries_t.c.lease_until < now)
                                    .values(state="pending", claim=None, lease_until=None, next_attempt_at=now)))


def claim_due(session: Session, now: datetime, claim: str, lease_until: datetime, limit: int,
              skip_endpoints: set[int] | frozenset[int] = frozenset()) -> list[Claimed]:
    """Claim up to ``limit`` due heads of enabled endpoints (but ``skip_endpoints``), oldest events first;
    returns those this claim moved."""
    earlier = aliased(WebhookDelivery)
    blocked = (select(earlier.id)
               .where(earlier.endpoint_id == deliveries_t.c.endpoint_id, earlier.subject == deliveries_t.c.subject,
                      earlier.event_pk < deliveries_t.c.event_pk, earlier.state.in_(OPEN))
               .exists())
    heads = list(session.scalars(
        select(deliveries_t.c.id)
        .join(endpoints_t, endpoints_t.c.id == deliveries_t.c.endpoint_id)
        .where(deliveries_t.c.state == "pending", deliveries_t.c.next_attempt_at <= now,
               endpoints_t.c.enabled.is_(True), endpoints_t.c.id.not_in(skip_endpoints), ~blocked)
        .order_by(deliveries_t.c.event_pk, deliveries_t.c.id).limit(limit)))
    if not heads:
        return []
    session.execute(update(deliveries_t).where(deliveries_t.c.id.in_(heads), deliveries_t.c.state == "pending")
                    .values(state="sending", claim=claim, lease_until=lease_until, updated_at=now))
    rows = session.execute(
        select(deliveries_t.c.id, deliveries_t.c.endpoint_id, endpoints_t.c.url, endpoints_t.c.secret,
               events_t.c.id.label("event_pk"), events_t.c.event_id, events_t.c.type, events_t.c.body,
               events_t.c.created_at, deliveries_t.c.attempts, deliveries_t.c.first_attempt_at)
        .join(endpoints_t, endpoints_t.c.id == deliveries_t.c.endpoint_id)
        .join(events_t, events_t.c.id == deliveries_t.c.event_pk)
        .where(deliveries_t.c.claim == claim, deliveries_t.c.state == "sending")
        .order_by(deliveries_t.c.event_pk))
    return [Claimed(delivery_id=row[0], endpoint_id=row[1], url=row[2], secret=row[3], event_pk=row[4],
                    event_id=row[5], event_type=row[6], body=row[7], created_at=row[8], attempts=row[9],
                    first_attempt_at=row[10])
            for row in rows]


def record_attempt(session: Session, item: Claimed, claim: str, *, now: datetime, ok: bool, status: int | None,
                   error: str | None, next_attempt_at: datetime | None) -> bool:
    """Record one attempt's outcome, if this claim still holds the row (False: the lease was lost).

    ``ok``: delivered. Else pending again at ``next_attempt_at``, or given up
    (``failed``) when that is None.
    """
    state = "delivered" if ok else ("pending" if next_attempt_at is not None else "failed")
    moved = rowcount(session.execute(
        update(deliveries_t).where(deliveries_t.c.id == item.delivery_id, deliveries_t.c.claim == claim,
                                   deliveries_t.c.state == "sending")
        .values(state=state, attempts=deliveries_t.c.attempts + 1, claim=None, lease_until=None,
                first_attempt_at=func.coalesce(deliveries_t.c.first_attempt_at, now),
                next_attempt_at=next_attempt_at or now, last_status=status, last_error=error, updated_at=now)))
    if not moved:
        return False
    session.execute(insert(attempts_t).values(endpoint_id=item.endpoint_id, event_pk=item.event_pk,
                                              attempt=item.attempts + 1, status_code=status, error=error, ok=ok,
                                              at=now, next_attempt_at=next_attempt_at))
    return True


def endpoint_succeeded(session: Session, endpoint_id: int, now: datetime) -> None:
    session.execute(update(endpoints_t).where(endpoints_t.c.id == endpoint_id)
                    .values(failures=0, failing_since=None, last_success_at=now))


def endpoint_failed(session: Session, endpoint_id: int, now: datetime, *, disable_after_seconds: float,
                    min_failures: int, reason: str) -> bool:
    """Count a failure in the endpoint's streak; disable it when the streak is long enough. True: disabled now."""
    session.execute(update(endpoints_t).where(endpoints_t.c.id == endpoint_id)
                    .values(failures=endpoints_t.c.failures + 1,
                            failing_since=func.coalesce(endpoints_t.c.failing_since, now)))
    row = session.execute(select(endpoints_t.c.failures, endpoints_t.c.failing_since, endpoints_t.c.enabled)
                          .where(endpoints_t.c.id == endpoint_id)).first()
    if row is None or not row.enabled or row.failures < min_failures:
        return False
    if (now - row.failing_since).total_seconds() < disable_after_seconds:
        return False
    return rowcount(session.execute(
        update(endpoints_t).where(endpoints_t.c.id == endpoint_id, endpoints_t.c.enabled.is_(True))
        .values(enabled=False, disabled_at=now,
                disabled_reason=f"{row.failures} failures in a row since {row.failing_since:%Y-%m-%d %H:%M} UTC; "
                                f"last: {reason}"[:1000]))) == 1


def deliveries(session: Session, *, failed_only: bool = False, endpoint_id: int | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """The latest attempts, newest first (``failed_only``: the failed ones)."""
    query = (select(attempts_t.c.id, attempts_t.c.endpoint_id, endpoints_t.c.url, events_t.c.event_id,
                    events_t.c.type, attempts_t.c.attempt, attempts_t.c.ok, attempts_t.c.status_code,
                    attempts_t.c.error, attempts_t.c.at, attempts_t.c.next_attempt_at,
                    deliveries_t.c.state)
             .join(events_t, events_t.c.id == attempts_t.c.event_pk)
             .join(endpoints_t, endpoints_t.c.id == attempts_t.c.endpoint_id)
             .outerjoin(deliveries_t, and_(deliveries_t.c.endpoint_id == attempts_t.c.endpoint_id,
                                           deliveries_t.c.event_pk == attempts_t.c.event_pk))
             .order_by(attempts_t.c.id.desc()).limit(limit))
    if failed_only:
        query = query.where(attempts_t.c.ok.is_(False))
    if endpoint_id is not None:
        query = query.where(attempts_t.c.endpoint_id == endpoint_id)
    return [dict(row._mapping) for row in session.execute(query)]


def backlog(session: Session) -> dict[int, dict[str, int]]:
    """Per endpoint: how many deliveries are in each state."""
    result: dict[int, dict[str, int]] = {}
    for endpoint_id, state, count in session.execute(
            select(deliveries_t.c.endpoint_id, deliveries_t.c.state, func.count())
            .group_by(deliveries_t.c.endpoint_id, deliveries_t.c.state)):
        result.setdefault(endpoint_id, {})[state] = count
    return result


def prune(session: Session, before: datetime) -> int:
    """Forget events older than ``before`` that no endpoint still has to receive (and their rows)."""
    still_open = select(deliveries_t.c.event_pk).where(deliveries_t.c.state.in_(OPEN))
    old = list(session.scalars(select(events_t.c.id).where(events_t.c.created_at < before,
                                                           events_t.c.id.not_in(still_open)).limit(10_000)))
    if not old:
        return 0
    session.execute(delete(deliveries_t).where(deliveries_t.c.event_pk.in_(old)))
    session.execute(delete(attempts_t).where(attempts_t.c.event_pk.in_(old)))
    return rowcount(session.execute(delete(events_t).where(events_t.c.id.in_(old))))


def release(session: Session, claim: str, endpoint_ids: set[int] | None = None) -> int:
    """Give back rows this claim holds and will not send now (a stop, a resting endpoint): pending, as they were."""
    query = update(deliveries_t).where(deliveries_t.c.claim == claim, deliveries_t.c.state == "sending")
    if endpoint_ids is not None:
        query = query.where(deliveries_t.c.endpoint_id.in_(endpoint_ids))
    return rowcount(session.execute(query.values(state="pending", claim=None, lease_until=None)))
