"""The HTTP API's tables: API tokens (``newsletter tokens``) and the responses kept for ``Idempotency-Key``.

A token is stored as the SHA-256 of its secret (the secret is 256 random
bits, so a plain hash is enough: nothing to brute-force), with its scopes,
its rate limit and when it was last used. An idempotency row keeps one
POST's answer under ``(token, key)``, with the hash of the request it
answered; ``status`` 0 means the request is still being handled.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.errors import Conflict, NotFound
from newsletter.store.models import NEVER_REUSE_IDS, Base, UTCDateTime


class ApiToken(Base):
    """One API token: a name people choose, the hash of its secret, what it may do."""

    __tablename__ = "api_tokens"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    rate_per_second: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiIdempotency(Base):
    """The answer given to one POST with an ``Idempotency-Key`` (kept for a retry of the same request)."""

    __tablename__ = "api_idempotency"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# -- tokens -------------------------------------------------------------------------------------

def create_token(session: Session, *, name: str, secret_hash: str, scopes: list[str], rate_per_second: int,
                 now: datetime) -> ApiToken:
    """Store a new token; Conflict when the name is taken."""
    if find_token(session, name) is not None:
        raise Conflict(f"an API token named {name!r} exists",
                       hint=f"choose another name, or revoke it first: newsletter tokens revoke {name}")
    token = ApiToken(name=name, secret_hash=secret_hash, scopes=scopes, rate_per_second=rate_per_second,
                     created_at=now)
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, name: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.name == name)).first()


def token_by_hash(session: Session, secret_hash: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.secret_hash == secret_hash)).first()


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def token_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


def delete_token(session: Session, name: str) -> None:
    """Remove a token (and the answers kept for its idempotency keys); NotFound when there is none."""
    token = find_token(session, name)
    if token is None:
        raise NotFound(f"no API token named {name!r}", hint="see the tokens with: newsletter tokens list")
    session.execute(delete(ApiIdempotency).where(ApiIdempotency.token_id == token.id))
    session.delete(token)


def mark_used(session: Session, token_id: int, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


# -- idempotency keys ---------------------------------------------------------------------------

def find_answer(session: Session, token_id: int, key: str) -> ApiIdempotency | None:
    return session.get(ApiIdempotency, (token_id, key))


def claim_key(session: Session, token_id: int, key: str, request_hash: str, now: datetime) -> bool:
    """Record that ``key`` is being handled (status 0); False when a row for it exists already.

    The primary key decides between two requests racing with one key: only
    one insert succeeds.
    """
    try:
        with session.begin_nested():
            session.add(ApiIdempotency(token_id=token_id, key=key, request_hash=request_hash, status=0,
                                       content_type="", body="", created_at=now))
        return True
    except IntegrityError:
        return False


def keep_answer(session: Session, token_id: int, key: str, status: int, content_type: str, body: str) -> None:
    session.execute(update(ApiIdempotency)
                    .where(ApiIdempotency.token_id == token_id, ApiIdempotency.key == key)
                    .values(status=status, content_type=content_type, body=body))


def release_key(session: Session, token_id: int, key: str) -> None:
    """Forget a claim whose request failed unexpectedly (a retry may run it again)."""
    session.execute(delete(ApiIdempotency).where(ApiIdempotency.token_id == token_id, ApiIdempotency.key == key))


def forget_answers_before(session: Session, cutoff: datetime) -> int:
    """Delete the answers kept since before ``cutoff``; returns how many."""
    result = session.execute(delete(ApiIdempotency).where(ApiIdempotency.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
