"""Embeddable signup forms (``newsletter forms``): a name, the list it joins, its typed fields, a redirect.

``fields`` is a JSON list of ``{"name": ..., "type": ...}`` (validated by
``newsletter.audience.forms`` before it is stored); ``redirect_url``, when
set, is where a successful post sends the browser (303).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.errors import Conflict
from newsletter.store.models import NEVER_REUSE_IDS, Base, MailingList, UTCDateTime


class SignupForm(Base):
    """A named signup form for one list."""

    __tablename__ = "signup_forms"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    redirect_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def create_form(session: Session, *, name: str, list_id: int, fields: list[dict[str, Any]],
                redirect_url: str | None, now: datetime) -> SignupForm:
    """Store a new form; Conflict when the name is taken."""
    if find_form(session, name) is not None:
        raise Conflict(f"a form named {name!r} exists", hint="choose another name, or see newsletter forms list")
    form = SignupForm(name=name, list_id=list_id, fields=fields, redirect_url=redirect_url, created_at=now)
    session.add(form)
    session.flush()
    return form


def find_form(session: Session, name: str) -> SignupForm | None:
    return session.scalars(select(SignupForm).where(SignupForm.name == name)).first()


def all_forms(session: Session) -> list[tuple[SignupForm, str]]:
    """Every form with its list's name, by name."""
    rows = session.execute(select(SignupForm, MailingList.name).join(MailingList, MailingList.id == SignupForm.list_id)
                           .order_by(SignupForm.name))
    return [(row[0], row[1]) for row in rows]
