"""Signup protection: proof-of-work challenges already used, and the quarantine of suspicious signups.

- ``signup_challenges_used``: the SHA-256 of every proof-of-work challenge a
  signup has spent, kept until the challenge expires, so one solved challenge
  cannot carry a second signup (a replay). The key is the primary key: two
  processes spending the same challenge at once, one of them wins.
- ``signup_quarantine``: signups that looked like a bot's or an abuse (no
  valid proof of work, a disposable or denied domain, a busy network). No
  confirmation email goes out for them until someone approves the row
  (``newsletter subscribers quarantine approve``); the row is deleted by the
  approval or the rejection, in the transaction that acts on it, so a row is
  approved at most once. Unique per (address key, list): a bombing of one
  address holds one row.

The network rate limits count rows of ``signup_attempts`` (``store.events``),
which keeps a hash of the client's /24 (IPv4) or /48 (IPv6) beside the IP's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.store.models import NEVER_REUSE_IDS, Base, MailingList, UTCDateTime
from newsletter.store.sql import dialect_insert, rowcount


class UsedChallenge(Base):
    """A proof-of-work challenge a signup spent (its SHA-256), until it expires."""

    __tablename__ = "signup_challenges_used"
    __table_args__ = (Index("ix_signup_challenges_used_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuarantinedSignup(Base):
    """A signup held back: no confirmation email until approved (see the module docstring)."""

    __tablename__ = "signup_quarantine"
    __table_args__ = (UniqueConstraint("email_key", "list_id", name="uq_signup_quarantine_key_list"),
                      NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    reasons: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    source_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # A signup form's typed fields (newsletter forms), given to the subscriber when approved.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Held:
    """A quarantined signup as the CLI lists it (``list_name``: the list's internal name)."""

    id: int
    email: str
    name: str
    list_id: int
    list_name: str
    reasons: str
    ip: str | None
    source: str
    source_url: str | None
    user_agent: str | None
    attributes: dict[str, Any]
    created_at: datetime


def spend_challenge(session: Session, key: str, expires_at: datetime, now: datetime) -> bool:
    """Record challenge ``key`` as spent; False when it already was (a replay). Forgets expired ones."""
    table = UsedChallenge.__table__
    session.execute(delete(table).where(table.c.expires_at < now))
    # RETURNING, not rowcount: psycopg answers -1 for an INSERT that SQLAlchemy gave an implicit RETURNING.
    inserted = session.execute(dialect_insert(session, table).values(key=key, expires_at=expires_at)
                               .on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key))
    return inserted.first() is not None


def quarantine(session: Session, *, email: str, email_key: str, name: str, list_id: int, reasons: str,
               ip: str | None, source: str, source_url: str | None, user_agent: str | None,
               now: datetime, attributes: dict[str, Any] | None = None) -> bool:
    """Hold a signup; False when the same address already waits for the same list (nothing changed)."""
    table = QuarantinedSignup.__table__
    inserted = session.execute(
        dialect_insert(session, table).values(
            email=email, email_key=email_key, name=name, list_id=list_id, reasons=reasons[:200], ip=ip,
            source=source[:200], source_url=source_url, user_agent=user_agent, attributes=attributes or {},
            created_at=now)
        .on_conflict_do_nothing(index_elements=["email_key", "list_id"]).returning(table.c.id))
    return inserted.first() is not None


def _held_query() -> Any:  # a Select of the Held columns
    q = QuarantinedSignup
    return (select(q.id, q.email, q.name, q.list_id, MailingList.name.label("list_name"), q.reasons, q.ip,
                   q.source, q.source_url, q.user_agent, q.attributes, q.created_at)
            .join(MailingList, MailingList.id == q.list_id))


def held(session: Session, list_id: int | None = None, limit: int | None = None) -> list[Held]:
    """Quarantined signups, oldest first (of one list when ``list_id`` is given)."""
    query = _held_query().order_by(QuarantinedSignup.id)
    if list_id is not None:
        query = query.where(QuarantinedSignup.list_id == list_id)
    if limit is not None:
        query = query.limit(limit)
    return [Held(**row._asdict()) for row in session.execute(query)]


def held_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(QuarantinedSignup)) or 0


def find_held(session: Session, held_id: int) -> Held | None:
    row = session.execute(_held_query().where(QuarantinedSignup.id == held_id)).first()
    return Held(**row._asdict()) if row else None


def release(session: Session, held_id: int) -> bool:
    """Delete a held row; True only for the transaction whose delete removed it (approve or reject once)."""
    table = QuarantinedSignup.__table__
    return rowcount(session.execute(delete(table).where(table.c.id == held_id))) == 1
