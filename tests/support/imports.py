"""Imports straight into a store, and what a store holds, for comparing backends.

``stored_state`` reads every table an import writes as plain, id-free
values (people are named by their address key), so a SQLite store and a
PostgreSQL store that received the same files compare equal exactly when
the imports did the same thing.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.audience.importer import import_subscribers
from newsletter.store.models import Consent, MailingList, Membership, Subscriber, Suppression
from sqlalchemy import select

# Children first, so a cleared store deletes without breaking a reference.
_TABLES = ("consents", "memberships", "suppressions", "subscribers", "lists")


def import_file(store, folder: Path, name: str, text: str, **options) -> dict:
    """Write ``text`` to ``folder/name`` and import it into ``store``; the report as ``--json`` gives it."""
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return import_subscribers(store, path, **options).as_dict()


def clear(store) -> None:
    """Delete every subscriber, list, membership, consent and suppression of ``store``."""
    with store.engine.begin() as connection:
        for table in _TABLES:
            connection.exec_driver_sql(f"DELETE FROM {table}")


def stored_state(store) -> dict:
    """What the store holds, without ids or timestamps (which differ between backends by design)."""
    with store.session() as session:
        keys = dict(session.execute(select(Subscriber.id, Subscriber.email_key)).all())
        lists = dict(session.execute(select(MailingList.id, MailingList.name)).all())
        people = sorted((s.email, s.email_key, s.email_hash, s.name, sorted((s.attributes or {}).items()),
                         s.timezone, str(s.status))
                        for s in session.scalars(select(Subscriber)))
        memberships = sorted((keys[m.subscriber_id], lists[m.list_id], str(m.status), m.consent_source,
                              m.consent_ip, m.confirmed_at is None, m.unsubscribed_at is None)
                             for m in session.scalars(select(Membership)))
        consents = sorted((keys[c.subscriber_id], lists.get(c.list_id), str(c.action), c.source, c.ip)
                          for c in session.scalars(select(Consent)))
        suppressions = sorted((s.email_hash, str(s.reason), s.detail) for s in session.scalars(select(Suppression)))
    return {"people": people, "memberships": memberships, "consents": consents, "suppressions": suppressions,
            "lists": sorted(lists.values())}
