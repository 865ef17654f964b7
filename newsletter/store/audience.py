"""Queries about subscribers, lists, memberships and the suppression list.

Plain functions over a SQLAlchemy session; the rules (who may be added, what
an unsubscribe changes) live in ``newsletter.audience.manage``.
"""

from __future__ import annotations

from typing import Iterator

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import Conflict, NotFound
from newsletter.store.models import (
    CONFIRMED,
    PENDING,
    UNSUBSCRIBED,
    Consent,
    MailingList,
    Membership,
    Subscriber,
    Suppression,
)


def find_list(session: Session, name: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.name == name))


def get_list(session: Session, name: str) -> MailingList:
    found = find_list(session, name)
    if found is None:
        raise NotFound(f"no list named {name!r}", hint=f"create it with: newsletter lists create {name}")
    return found


def create_list(session: Session, name: str, double_opt_in: bool = False) -> MailingList:
    if find_list(session, name) is not None:
        raise Conflict(f"list {name!r} already exists", hint="choose another name, or use it as it is")
    mailing_list = MailingList(name=name, double_opt_in=double_opt_in)
    session.add(mailing_list)
    session.flush()
    return mailing_list


def delete_list(session: Session, name: str) -> int:
    """Delete a list and its memberships; returns how many members it had."""
    mailing_list = get_list(session, name)
    members = session.scalar(select(func.count()).where(Membership.list_id == mailing_list.id)) or 0
    session.execute(delete(Membership).where(Membership.list_id == mailing_list.id))
    session.delete(mailing_list)
    return members


def list_counts(session: Session) -> list[dict]:
    """Every list with its member counts by status, oldest first."""
    counts = {
        status: func.coalesce(func.sum(case((Membership.status == status, 1), else_=0)), 0)
        for status in (CONFIRMED, PENDING, UNSUBSCRIBED)
    }
    query = (
        select(MailingList, *counts.values())
        .outerjoin(Membership, Membership.list_id == MailingList.id)
        .group_by(MailingList.id)
        .order_by(MailingList.id)
    )
    return [
        {"name": ml.name, "double_opt_in": ml.double_opt_in, "created_at": ml.created_at,
         "confirmed": int(c), "pending": int(p), "unsubscribed": int(u)}
        for ml, c, p, u in session.execute(query)
    ]


def find_subscriber(session: Session, email_key: str) -> Subscriber | None:
    return session.scalar(
        select(Subscriber)
        .where(Subscriber.email_key == email_key)
        .options(selectinload(Subscriber.memberships).selectinload(Membership.mailing_list))
    )


def find_membership(session: Session, subscriber_id: int, list_id: int) -> Membership | None:
    return session.get(Membership, (subscriber_id, list_id))


def suppression_reason(session: Session, email_hash: str) -> str | None:
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == email_hash))


def suppress(session: Session, email_hash: str, reason: str, detail: str = "") -> None:
    """Put an address hash on the suppression list (the newest reason wins)."""
    existing = session.get(Suppression, email_hash)
    if existing is None:
        session.add(Suppression(email_hash=email_hash, reason=reason, detail=detail))
    else:
        existing.reason, existing.detail = reason, detail


def unsuppress(session: Session, email_hash: str) -> None:
    session.execute(delete(Suppression).where(Suppression.email_hash == email_hash))


def record_consent(session: Session, subscriber_id: int, list_id: int | None, action: str,
                   source: str, ip: str | None = None) -> None:
    session.add(Consent(subscriber_id=subscriber_id, list_id=list_id, action=action, source=source, ip=ip))


def consents_of(session: Session, subscriber_id: int) -> list[Consent]:
    return list(session.scalars(select(Consent).where(Consent.subscriber_id == subscriber_id).order_by(Consent.id)))


_LISTED = (Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.attributes,
           Subscriber.timezone, Subscriber.created_at)


def iter_subscribers(session: Session, list_name: str | None = None, status: str | None = None,
                     chunk: int = 2000) -> Iterator[tuple]:
    """Stream ``(subscriber, [(list name, membership status), ...])`` in id order, ``chunk`` at a time.

    ``subscriber`` is a row with ``id``, ``email``, ``name``, ``status``,
    ``attributes``, ``timezone`` and ``created_at`` (plain rows, not ORM
    objects: a million of those cost more than the query). Keyset pagination
    keeps memory flat on any list size and on any backend. ``status`` filters
    the subscriber's status, or the membership status when a list is given.
    """
    last_id = 0
    while True:
        query = select(*_LISTED).where(Subscriber.id > last_id).order_by(Subscriber.id).limit(chunk)
        if list_name is not None:
            query = query.join(Membership).join(MailingList).where(MailingList.name == list_name)
            if status in (PENDING, CONFIRMED, UNSUBSCRIBED):
                query = query.where(Membership.status == status)
            elif status:
                query = query.where(Subscriber.status == status)
        elif status:
            query = query.where(Subscriber.status == status)
        batch = session.execute(query).all()
        if not batch:
            return
        memberships = _memberships_of(session, [s.id for s in batch])
        for subscriber in batch:
            yield subscriber, memberships.get(subscriber.id, [])
        last_id = batch[-1].id


def _memberships_of(session: Session, ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    rows = session.execute(
        select(Membership.subscriber_id, MailingList.name, Membership.status)
        .join(MailingList, MailingList.id == Membership.list_id)
        .where(Membership.subscriber_id.in_(ids))
        .order_by(MailingList.name)
    )
    result: dict[int, list[tuple[str, str]]] = {}
    for subscriber_id, name, status in rows:
        result.setdefault(subscriber_id, []).append((name, status))
    return result
