"""Outgoing webhooks: endpoints, the durable outbox, and the state of each event's delivery to each endpoint.

- ``webhook_endpoints``: a URL, its signing secret, enabled or not (and why
  not), and the current streak of failures (how many, since when).
- ``webhook_subscriptions``: the event types an endpoint receives (``*``: all).
- ``webhook_events``: the outbox. One row per event, written by :func:`emit`
  in the caller's transaction (so an event exists exactly when the change it
  reports was committed), with its stable id (``evt_...``), its type, its
  subject (``subscriber:42``, ``campaign:7``: events of one subject are
  delivered in order) and its body, serialised once so every retry sends the
  same bytes.
- ``webhook_deliveries``: one row per (endpoint, event), created with the
  event for every enabled endpoint subscribed to its type: ``pending ->
  sending -> delivered | failed`` (failed: given up after the retry window).
  No foreign keys: an endpoint removed while an event is written must not
  fail the caller's change; :func:`remove_endpoint` deletes its rows.
- ``webhook_attempts``: every HTTP attempt (status code or error, when, the next try).

The claims and outcomes of the delivery loop are in
:mod:`newsletter.store.webhook_outbox`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    exists,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.selectable import Subquery

from newsletter.store.models import (
    NEVER_REUSE_IDS,
    Base,
    Campaign,
    Delivery,
    Edition,
    Subscriber,
    UTCDateTime,
    utcnow,
)
from newsletter.store.sql import rowcount
from newsletter.vocabulary.webhooks import ALL

URL_MAX = 2000
# How long a process trusts its list of subscribed event types before reading it again. An endpoint
# added by another process (``webhooks add`` while ``serve`` runs) receives events at most this late.
CACHE_SECONDS = 5.0


class WebhookEndpoint(Base):
    """A receiver of events."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(URL_MAX))
    secret: Mapped[str] = mapped_column(String(200))  # "whsec_<base64>"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts in a row
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookSubscription(Base):
    """An event type an endpoint receives."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_type", "event_type"),)

    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                                             primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)


class WebhookEvent(Base):
    """One event of the outbox."""

    __tablename__ = "webhook_events"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """The delivery of one event to one endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_pk", name="uq_webhook_deliveries_endpoint_event"),
        # the claim's "is an earlier event of this subject still open?"
        Index("ix_webhook_deliveries_subject", "endpoint_id", "subject", "event_pk"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    event_pk: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(12))  # pending, sending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The retry window runs from here: an event waiting behind its subject's earlier one keeps its whole day.
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claim: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookAttempt(Base):
    """One HTTP attempt to deliver an event."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(Integer)
    event_pk: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


endpoints_t = WebhookEndpoint.__table__
subscriptions_t = WebhookSubscription.__table__
events_t = WebhookEvent.__table__
deliveries_t = WebhookDelivery.__table__
attempts_t = WebhookAttempt.__table__

# ---- which event types anyone wants: read once per CACHE_SECONDS per database, per process ----

_cache: weakref.WeakKeyDictionary[Engine, tuple[float, frozenset[str]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


Bind = Session | Connection  # the caller's transaction: an ORM session, or a Core connection (the importer)


def _engine(session: Bind) -> Engine:
    if isinstance(session, Connection):
        return session.engine
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def wanted_types(session: Bind) -> frozenset[str]:
    """The event types some enabled endpoint receives (``*`` when one takes all), cached per process."""
    engine = _engine(session)
    with _cache_lock:
        cached = _cache.get(engine)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    types = frozenset(session.scalars(
        select(subscriptions_t.c.event_type)
        .join(endpoints_t, endpoints_t.c.id == subscriptions_t.c.endpoint_id)
        .where(endpoints_t.c.enabled.is_(True)).distinct()))
    with _cache_lock:
        _cache[engine] = (time.monotonic() + CACHE_SECONDS, types)
    return types


def forget_wanted(session: Bind) -> None:
    """Drop this process's cached list (after a change to the endpoints)."""
    with _cache_lock:
        _cache.pop(_engine(session), None)


def wanted(session: Bind, event_type: str) -> bool:
    types = wanted_types(session)
    return event_type in types or ALL in types


# ---- the outbox ----

def new_event_id() -> str:
    """``evt_`` and 32 hex digits: the first 12 are the time in milliseconds, so ids sort by creation."""
    return f"evt_{int(time.time() * 1000):012x}{uuid.uuid4().hex[:20]}"


def emit(session: Bind, event_type: str, subject: str,
         data: dict[str, Any] | Callable[[], dict[str, Any]], now: datetime | None = None) -> str | None:
    """Write an event to the outbox in the caller's transaction, for every enabled endpoint that wants it.

    Does nothing (not even build ``data``, when it is a callable) unless some
    endpoint receives ``event_type``. Returns the event id, or None when
    nothing was written. ``subject`` orders delivery: events of one subject
    reach an endpoint one after the other, in the order they were written.
    """
    if not wanted(session, event_type):
        return None
    now = now or utcnow()
    payload = data() if callable(data) else data
    body = _body(event_type, now, payload)
    event_id = new_event_id()
    event_pk = session.execute(insert(events_t).values(event_id=event_id, type=event_type, subject=subject[:100],
                                                       body=body, created_at=now)
                               .returning(events_t.c.id)).scalar_one()
    events = select(literal(event_pk).label("id"), literal(subject[:100]).label("subject")).subquery()
    if not _fan_out(session, event_type, events, now):  # the cached list was stale: nobody wants it any more
        session.execute(delete(events_t).where(events_t.c.id == event_pk))
        return None
    return event_id


def _body(event_type: str, now: datetime, data: dict[str, Any]) -> str:
    return json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data},
                      ensure_ascii=False, separators=(",", ":"), default=str)


def _fan_out(session: Bind, event_type: str, events: Subquery, now: datetime) -> int:
    """A delivery row for each of ``events`` (columns ``id``, ``subject``) and each enabled endpoint that wants
    ``event_type``, in one INSERT ... SELECT: the endpoints as they are in this transaction. Returns how many."""
    receivers = (select(endpoints_t.c.id, events.c.id, events.c.subject, literal("pending"), literal(0),
                        literal(now, UTCDateTime), literal(now, UTCDateTime))
                 .join(events, true())
                 .where(endpoints_t.c.enabled.is_(True),
                        exists().where(subscriptions_t.c.endpoint_id == endpoints_t.c.id,
                                       subscriptions_t.c.event_type.in_((event_type, ALL)))))
    return rowcount(session.execute(insert(deliveries_t).from_select(
        ["endpoint_id", "event_pk", "subject", "state", "attempts", "next_attempt_at", "updated_at"], receivers)))


def emit_many(session: Bind, event_type: str, items: list[tuple[str, dict[str, Any]]],
              now: datetime | None = None) -> int:
    """:func:`emit` many events of one type (``(subject, data)`` each) in a few statements: a bulk import's.
    Returns how many were written (0 when nobody wants the type)."""
    if not items or not wanted(session, event_type):
        return 0
    now = now or utcnow()
    written = 0
    for start in range(0, len(items), 1000):
        rows = [{"event_id": new_event_id(), "type": event_type, "subject": subject[:100],
                 "body": _body(event_type, now, data), "created_at": now}
                for subject, data in items[start:start + 1000]]
        session.execute(insert(events_t), rows)
        ids = [row["event_id"] for row in rows]
        events = select(events_t.c.id, events_t.c.subject).where(events_t.c.event_id.in_(ids)).subquery()
        if not _fan_out(session, event_type, events, now):
            session.execute(delete(events_t).where(events_t.c.event_id.in_(ids)))
            return written
        written += len(rows)
    return written


def subscriber_event(session: Session, event_type: str, subscriber: Subscriber, **extra: Any) -> str | None:
    """:func:`emit` an event about a subscriber (subject ``subscriber:<id>``): id, email, name, status, ``extra``."""
    return emit(session, event_type, f"subscriber:{subscriber.id}",
                lambda: {"id": subscriber.id, "email": subscriber.email, "name": subscriber.name,
                         "status": subscriber.status, **extra})


def click_event(session: Session, campaign_id: int, url: str, delivery_id: int | None) -> str | None:
    """:func:`emit` a person's click: with the subscriber when ``delivery_id`` (a personal token) is given,
    else the campaign and link only (aggregate tracking knows nobody)."""
    if not wanted(session, "click"):
        return None
    data: dict[str, Any] = {"campaign_id": campaign_id, "url": url}
    if delivery_id is None:
        return emit(session, "click", f"campaign:{campaign_id}", data)
    row = session.execute(select(Subscriber.id, Subscriber.email)
                          .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                          .where(Delivery.id == delivery_id)).first()
    if row is None:
        return None
    return emit(session, "click", f"subscriber:{row.id}", {**data, "subscriber_id": row.id, "email": row.email})


# campaign status -> the event its arrival sends
CAMPAIGN_EVENTS = {"scheduled": "campaign.scheduled", "sending": "campaign.started", "sent": "campaign.sent",
                   "paused": "campaign.paused", "failed": "campaign.failed"}


def campaign_event(session: Session, campaign_id: int, status: str | None = None) -> str | None:
    """:func:`emit` the event of a campaign's new status (read from the row when not given; none for others)."""
    if status is not None and (status not in CAMPAIGN_EVENTS or not wanted(session, CAMPAIGN_EVENTS[status])):
        return None
    if status is None and not any(wanted(session, event_type) for event_type in CAMPAIGN_EVENTS.values()):
        return None
    campaigns_t, editions_t = Campaign.__table__, Edition.__table__
    # Core, not the session's identity map: the status changes are Core UPDATEs the ORM objects do not see.
    campaign = session.execute(select(campaigns_t.c.id, campaigns_t.c.status, campaigns_t.c.list_name,
                                      campaigns_t.c.scheduled_at, campaigns_t.c.finished_at,
                                      campaigns_t.c.pause_reason, campaigns_t.c.error, editions_t.c.subject)
                               .join(editions_t, editions_t.c.id == campaigns_t.c.edition_id)
                               .where(campaigns_t.c.id == campaign_id)).first()
    if campaign is None:
        return None
    status = status or campaign.status
    if status not in CAMPAIGN_EVENTS:
        return None
    found: dict[str, Any] = {"id": campaign.id, "subject": campaign.subject, "list": campaign.list_name,
                             "status": status}
    if status == "scheduled":
        found["scheduled_at"] = campaign.scheduled_at
    if status in ("sent", "failed"):
        found["finished_at"] = campaign.finished_at
    if status == "paused" and campaign.pause_reason:
        found["reason"] = campaign.pause_reason
    if status == "failed" and campaign.error:
        found["error"] = campaign.error
    return emit(session, CAMPAIGN_EVENTS[status], f"campaign:{campaign_id}", found)


def redact_subject(session: Session, subject: str, data: dict[str, Any]) -> int:
    """Replace the ``data`` of the subject's events not yet delivered everywhere (an erasure): returns how many."""
    open_events = select(deliveries_t.c.event_pk).where(deliveries_t.c.subject == subject,
                                                        deliveries_t.c.state.in_(("pending", "sending")))
    changed = 0
    for row in session.execute(select(events_t.c.id, events_t.c.body)
                               .where(events_t.c.id.in_(open_events))).all():
        envelope = json.loads(row.body)
        envelope["data"] = data
        session.execute(update(events_t).where(events_t.c.id == row.id)
                        .values(body=json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))))
        changed += 1
    return changed


# ---- endpoints ----

def add_endpoint(session: Session, url: str, secret: str, event_types: list[str]) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(url=url, secret=secret, enabled=True, disabled_reason="", failures=0,
                               created_at=utcnow())
    session.add(endpoint)
    session.flush()
    for event_type in dict.fromkeys(event_types):
        session.add(WebhookSubscription(endpoint_id=endpoint.id, event_type=event_type))
    session.flush()
    forget_wanted(session)
    return endpoint


def all_endpoints(session: Session) -> list[tuple[WebhookEndpoint, list[str]]]:
    """Every endpoint with its event types, oldest first."""
    types: dict[int, list[str]] = {}
    for endpoint_id, event_type in session.execute(select(subscriptions_t.c.endpoint_id, subscriptions_t.c.event_type)
                                                   .order_by(subscriptions_t.c.event_type)):
        types.setdefault(endpoint_id, []).append(event_type)
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    return [(endpoint, types.get(endpoint.id, [])) for endpoint in endpoints]


def find_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


def remove_endpoint(session: Session, endpoint_id: int) -> bool:
    """Delete an endpoint, its subscriptions, delivery states and attempts. False when there was none."""
    session.execute(delete(deliveries_t).where(deliveries_t.c.endpoint_id == endpoint_id))
    session.execute(delete(attempts_t).where(attempts_t.c.endpoint_id == endpoint_id))
    session.execute(delete(subscriptions_t).where(subscriptions_t.c.endpoint_id == endpoint_id))
    removed = rowcount(session.execute(delete(endpoints_t).where(endpoints_t.c.id == endpoint_id))) == 1
    forget_wanted(session)
    return removed


def enable_endpoint(session: Session, endpoint_id: int, now: datetime) -> bool:
    """Enable an endpoint again with a fresh failure streak; its waiting deliveries are due now."""
    changed = rowcount(session.execute(update(endpoints_t).where(endpoints_t.c.id == endpoint_id)
                                       .values(enabled=True, disabled_reason="", disabled_at=None, failures=0,
                                               failing_since=None))) == 1
    session.execute(update(deliveries_t).where(deliveries_t.c.endpoint_id == endpoint_id,
                                               deliveries_t.c.state == "pending")
                    .values(next_attempt_at=now))
    forget_wanted(session)
    return changed
