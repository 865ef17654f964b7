"""Typed helpers for Core statements run through an ORM session.

``Session.execute`` is typed to answer a plain ``Result`` whatever the
statement; for an INSERT, UPDATE or DELETE it answers a ``CursorResult``,
which alone carries ``rowcount``. :func:`rowcount` narrows it, so a change
in what SQLAlchemy answers fails loudly instead of silently counting 0.
:func:`dialect_insert` is the upsert-capable INSERT of the session's
database (PostgreSQL or SQLite).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def rowcount(result: Result[Any]) -> int:
    """The number of rows an UPDATE or DELETE matched (the conditional writes' "did we win")."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the CursorResult of a DML statement, got {type(result).__name__}")
    return result.rowcount


def dialect_insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ``on_conflict_do_nothing`` / ``on_conflict_do_update`` for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
