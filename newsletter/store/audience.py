"""Queries about subscribers, lists, memberships and the suppression list.

Plain functions over a SQLAlchemy session; the rules (who may be added, what
an unsubscribe changes) live in ``newsletter.audience.rules``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Row, case, delete, func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import Conflict, NotFound
from newsletter.store.models import (
    Consent,
    Delivery,
    MailingList,
    Membership,
    Subscriber,
    Suppression,
    utcnow,
)
from newsletter.store.sql import dialect_insert
from newsletter.vocabulary import MembershipStatus


def find_list(session: Session, name: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.name == name))


def get_list(session: Session, name: str) -> MailingList:
    found = find_list(session, name)
    if found is None:
        raise NotFound(f"no list named {name!r}", hint=f"create it with: newsletter lists create {name}")
    return found


def create_list(session: Session, name: str, double_opt_in: bool = False, *, public: bool = False,
                display_name: str = "") -> MailingList:
    """A new list; private (never offered or joinable on the web) unless ``public``."""
    if find_list(session, name) is not None:
        raise Conflict(f"list {name!r} already exists", hint="choose another name, or use it as it is")
    mailing_list = MailingList(name=name, double_opt_in=double_opt_in, public=public, display_name=display_name)
    session.add(mailing_list)
    session.flush()
    return mailing_list


def update_list(session: Session, name: str, **changes: bool | str | None) -> MailingList:
    """Change a list's ``public``, ``double_opt_in`` or ``display_name`` (None leaves one as it is)."""
    mailing_list = get_list(session, name)
    for key in ("public", "double_opt_in", "display_name"):
        if changes.get(key) is not None:
            setattr(mailing_list, key, changes[key])
    return mailing_list


def public_lists(session: Session) -> list[MailingList]:
    """The lists the signup form offers, oldest first."""
    return list(session.scalars(select(MailingList).where(MailingList.public.is_(True)).order_by(MailingList.id)))


def delete_list(session: Session, name: str) -> int:
    """Delete a list and its memberships; returns how many members it had."""
    mailing_list = get_list(session, name)
    members = session.scalar(select(func.count()).where(Membership.list_id == mailing_list.id)) or 0
    session.execute(delete(Membership).where(Membership.list_id == mailing_list.id))
    session.delete(mailing_list)
    return members


def delete_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Delete a subscriber with their memberships, consents and ledger rows.

    The ledger has no foreign key to subscribers (migration 0017): its rows
    go here, in the same transaction, as the database's cascade took them.
    """
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
    session.delete(subscriber)


def list_counts(session: Session) -> list[dict[str, Any]]:
    """Every list with its member counts by status, oldest first."""
    counts = {
        status: func.coalesce(func.sum(case((Membership.status == status, 1), else_=0)), 0)
        for status in MembershipStatus
    }
    query = (
        select(MailingList, *counts.values())
        .outerjoin(Membership, Membership.list_id == MailingList.id)
        .group_by(MailingList.id)
        .order_by(MailingList.id)
    )
    return [
        {"name": ml.name, "display_name": ml.display_name, "public": ml.public,
         "double_opt_in": ml.double_opt_in, "created_at": ml.created_at,
         "confirmed": int(c), "pending": int(p), "unsubscribed": int(u)}
        for ml, c, p, u in session.execute(query)
    ]


def find_subscriber(session: Session, email_key: str) -> Subscriber | None:
    return session.scalar(
        select(Subscriber)
        .where(Subscriber.email_key == email_key)
        .options(selectinload(Subscriber.memberships).selectinload(Membership.mailing_list))
    )


def locked_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    """The subscriber, its row locked until the transaction ends.

    Two requests changing one subscriber's consent at the same moment (a
    one-click unsubscribe posted twice, a confirm link opened twice) then
    run one after the other: the second sees the first's change and
    records nothing more. SQLite transactions here are serial already.
    """
    return session.scalar(select(Subscriber).where(Subscriber.id == subscriber_id).with_for_update())


def find_membership(session: Session, subscriber_id: int, list_id: int) -> Membership | None:
    return session.get(Membership, (subscriber_id, list_id))


def suppression_reason(session: Session, email_hash: str) -> str | None:
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == email_hash))


def suppression_detail(session: Session, email_hash: str) -> str | None:
    return session.scalar(select(Suppression.detail).where(Suppression.email_hash == email_hash))


def suppress(session: Session, email_hash: str, reason: str, detail: str = "") -> None:
    """Put an address hash on the suppression list (the newest reason wins).

    One upsert statement: two requests suppressing the same address at the
    same moment (a webhook batch and a one-click unsubscribe) both succeed.
    """
    statement = dialect_insert(session, Suppression.__table__).values(email_hash=email_hash, reason=reason,
                                                                      detail=detail, created_at=utcnow())
    session.execute(statement.on_conflict_do_update(index_elements=["email_hash"],
                                                    set_={"reason": reason, "detail": detail}))


def unsuppress(session: Session, email_hash: str) -> None:
    session.execute(delete(Suppression).where(Suppression.email_hash == email_hash))


def record_consent(session: Session, subscriber_id: int, list_id: int | None, action: str,
                   source: str, ip: str | None = None, **proof: Any) -> Consent:
    """Add a consent row; ``proof`` sets its other columns (``form``, ``consent_text``, ``source_url``,
    ``user_agent``, ``requested_at``, ``confirmed_at``, ``message_id``, ``detail``).

    Columns not given come from ``session.info[PROOF_KEY]`` when the caller
    set it (:func:`consent_proof`): one web request's proof reaches every
    row the audience rules add for it.
    """
    proof = {**session.info.get(PROOF_KEY, {}), **proof}
    consent = Consent(subscriber_id=subscriber_id, list_id=list_id, action=action, source=source, ip=ip, **proof)
    session.add(consent)
    return consent


PROOF_KEY = "newsletter.consent_proof"


@contextmanager
def consent_proof(session: Session, **proof: Any) -> Iterator[None]:
    """Within the block, every consent row added in ``session`` carries ``proof`` (unless told otherwise)."""
    before = session.info.get(PROOF_KEY)
    session.info[PROOF_KEY] = {key: value for key, value in proof.items() if value is not None}
    try:
        yield
    finally:
        if before is None:
            session.info.pop(PROOF_KEY, None)
        else:
            session.info[PROOF_KEY] = before


def last_signup(session: Session, subscriber_id: int, list_id: int) -> Consent | None:
    """The newest ``subscribe`` row of a subscriber on a list that names a confirmation email."""
    return session.scalar(select(Consent).where(Consent.subscriber_id == subscriber_id, Consent.list_id == list_id,
                                                Consent.action == "subscribe", Consent.message_id.is_not(None))
                          .order_by(Consent.id.desc()).limit(1))


def consents_of(session: Session, subscriber_id: int) -> list[Consent]:
    return list(session.scalars(select(Consent).where(Consent.subscriber_id == subscriber_id).order_by(Consent.id)))


_LISTED = (Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.attributes,
           Subscriber.timezone, Subscriber.created_at)


def iter_subscribers(session: Session, list_name: str | None = None, status: str | None = None,
                     chunk: int = 2000, after_id: int = 0,
                     ) -> Iterator[tuple[Row[*tuple[Any, ...]], list[tuple[str, str]]]]:
    """Stream ``(subscriber, [(list name, membership status), ...])`` in id order, ``chunk`` at a time.

    ``subscriber`` is a row with ``id``, ``email``, ``name``, ``status``,
    ``attributes``, ``timezone`` and ``created_at`` (plain rows, not ORM
    objects: a million of those cost more than the query). Keyset pagination
    keeps memory flat on any list size and on any backend. ``status`` filters
    the subscriber's status, or the membership status when a list is given.
    ``after_id``: start after this subscriber id (the API's cursor).
    """
    last_id = after_id
    while True:
        query = select(*_LISTED).where(Subscriber.id > last_id).order_by(Subscriber.id).limit(chunk)
        if list_name is not None:
            query = query.join(Membership).join(MailingList).where(MailingList.name == list_name)
            if status in tuple(MembershipStatus):
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
