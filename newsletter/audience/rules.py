"""The audience rules, each implemented once, in the caller's transaction.

Every way a person joins, confirms, leaves or is suppressed goes through
here: the command line (:mod:`newsletter.audience.manage`), the web signup,
the unsubscribe and confirm pages, and provider events (bounces,
complaints, unsubscribes). Each function takes the caller's session and
never commits: the caller decides the transaction (a webhook applies an
event in the transaction that stores it; a web page locks the subscriber's
row first with :func:`newsletter.store.audience.locked_subscriber`).
The bulk importer (:mod:`newsletter.store.importing`) applies the same rules
to whole chunks in SQL; tests/test_import_export.py holds it to them.

The rules:

- on a double opt-in list a new member is ``pending`` until confirmed;
  anywhere else, or when the caller vouches for it, ``confirmed``;
- whoever left a list joins it again only when the caller says they asked
  (``resubscribe``): leaving always wins;
- every change of consent after joining is a :class:`Consent` row (action,
  source, time, IP); how a list was joined stays on the membership;
- leaving every list also suppresses the address;
- a spam complaint suppresses the address and ends every membership
  (:func:`complaint`); soft bounces suppress it once ``limit`` of them
  happened within ``days`` (:func:`soft_bounce`); provider events arrive in
  any order, so what they suppress never weakens the reason already listed
  (unsubscribed < bounced < complained < erased: :func:`suppress_for_event`);
- a subscriber's status only ever gets stronger through suppression:
  active < unsubscribed < bounced < complained (a complainer who later
  bounces stays ``complained``);
- the suppression list keeps only a hash of the address; its newest reason wins;
- each change is reported to the outgoing webhooks in the same transaction
  (:mod:`newsletter.store.webhooks`): confirmed, unsubscribed, bounced,
  complained, erased (``created`` and ``updated`` by :mod:`newsletter.audience.manage`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from newsletter.errors import Conflict
from newsletter.store import audience as q
from newsletter.store import events as event_store
from newsletter.store import webhooks
from newsletter.store.models import MailingList, Membership, Subscriber, utcnow
from newsletter.vocabulary import (
    ConsentAction,
    MembershipStatus,
    SubscriberStatus,
    SuppressionReason,
    address_hash,
    address_key,
)

DETAIL_MAX = 500
# How strong a subscriber status is: suppression never weakens one.
_STRENGTH: dict[str, int] = {SubscriberStatus.ACTIVE: 0, SubscriberStatus.UNSUBSCRIBED: 1, SubscriberStatus.BOUNCED: 2,
             SubscriberStatus.COMPLAINED: 3}
_REASON_STRENGTH = {SuppressionReason.UNSUBSCRIBED: 1, SuppressionReason.BOUNCED: 2,
                    SuppressionReason.COMPLAINED: 3, SuppressionReason.ERASED: 4}
_STATUS_OF_REASON = {SuppressionReason.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
                     SuppressionReason.BOUNCED: SubscriberStatus.BOUNCED,
                     SuppressionReason.COMPLAINED: SubscriberStatus.COMPLAINED}


def join(session: Session, subscriber: Subscriber, mailing_list: MailingList, *, source: str,
         ip: str | None = None, confirmed: bool = False, resubscribe: bool = False) -> MembershipStatus:
    """Put the subscriber on the list; returns their membership status.

    ``confirmed``: the caller vouches for consent (no double opt-in mail).
    A member who left joins again only with ``resubscribe``, else Conflict.
    A pending member the caller vouches for is confirmed.
    """
    membership = q.find_membership(session, subscriber.id, mailing_list.id)
    wanted = (MembershipStatus.CONFIRMED if confirmed or not mailing_list.double_opt_in
              else MembershipStatus.PENDING)
    now = utcnow()
    if membership is None:
        session.add(Membership(subscriber_id=subscriber.id, list_id=mailing_list.id, status=wanted,
                               subscribed_at=now, confirmed_at=now if wanted == MembershipStatus.CONFIRMED else None,
                               consent_source=source, consent_ip=ip))
        return wanted
    if membership.status == MembershipStatus.UNSUBSCRIBED:
        if not resubscribe:
            raise Conflict(f"{subscriber.email} unsubscribed from {mailing_list.name}",
                           hint="add --resubscribe only if they asked to be subscribed again")
        membership.status, membership.subscribed_at, membership.unsubscribed_at = wanted, now, None
        membership.confirmed_at = now if wanted == MembershipStatus.CONFIRMED else None
        q.record_consent(session, subscriber.id, mailing_list.id, ConsentAction.RESUBSCRIBE, source, ip)
    elif membership.status == MembershipStatus.PENDING and wanted == MembershipStatus.CONFIRMED:
        membership.status, membership.confirmed_at = MembershipStatus.CONFIRMED, now
        q.record_consent(session, subscriber.id, mailing_list.id, ConsentAction.CONFIRM, source, ip)
        webhooks.subscriber_event(session, "subscriber.confirmed", subscriber, list=mailing_list.name, source=source)
    return MembershipStatus(membership.status)


def confirm(session: Session, subscriber: Subscriber, list_id: int, source: str,
            ip: str | None = None) -> MembershipStatus | None:
    """Confirm a pending membership (double opt-in); returns the status, None when not a member. Idempotent."""
    for membership in subscriber.memberships:
        if membership.list_id == list_id:
            if membership.status == MembershipStatus.PENDING:
                membership.status, membership.confirmed_at = MembershipStatus.CONFIRMED, utcnow()
                q.record_consent(session, subscriber.id, list_id, ConsentAction.CONFIRM, source, ip)
                webhooks.subscriber_event(session, "subscriber.confirmed", subscriber,
                                          list=membership.mailing_list.name, source=source)
            return MembershipStatus(membership.status)
    return None


def rejoin(session: Session, subscriber: Subscriber, list_id: int, source: str, ip: str | None = None) -> bool:
    """Subscribe again, confirmed, whoever asked through a link sent to them (it proves the address).

    Lifts the suppression and an ``unsubscribed`` status (a bounce or a
    complaint stays on the subscriber). True when it changed the membership;
    a second, parallel request under the row lock changes nothing more.
    """
    q.unsuppress(session, subscriber.email_hash)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        subscriber.status, subscriber.updated_at = SubscriberStatus.ACTIVE, utcnow()
    now = utcnow()
    for membership in subscriber.memberships:
        if membership.list_id == list_id:
            if membership.status == MembershipStatus.CONFIRMED:
                return False
            membership.status, membership.subscribed_at, membership.confirmed_at = (
                MembershipStatus.CONFIRMED, now, now)
            membership.unsubscribed_at = None
            q.record_consent(session, subscriber.id, list_id, ConsentAction.RESUBSCRIBE, source, ip)
            _joined_event(session, subscriber, list_id, source)
            return True
    session.add(Membership(subscriber_id=subscriber.id, list_id=list_id, status=MembershipStatus.CONFIRMED,
                           subscribed_at=now, confirmed_at=now, consent_source=source, consent_ip=ip))
    _joined_event(session, subscriber, list_id, source)
    return True


def _joined_event(session: Session, subscriber: Subscriber, list_id: int, source: str) -> None:
    if webhooks.wanted(session, "subscriber.updated"):
        mailing_list = session.get(MailingList, list_id)
        webhooks.subscriber_event(session, "subscriber.updated", subscriber,
                                  list=mailing_list.name if mailing_list else None,
                                  list_status=MembershipStatus.CONFIRMED, source=source)


def unsubscribe(session: Session, subscriber: Subscriber | int, list_id: int | None, source: str,
                ip: str | None = None) -> list[Membership]:
    """Leave one list (``list_id``), or every list (None: which also suppresses the address).

    ``subscriber`` is the subscriber or their id (an unknown id changes
    nothing). Returns the memberships this call ended; idempotent.
    """
    if isinstance(subscriber, int):
        found = session.get(Subscriber, subscriber)
        if found is None:
            return []
        subscriber = found
    left = _leave(session, subscriber, list_id, source, ip)
    if list_id is None:
        suppress(session, subscriber, SuppressionReason.UNSUBSCRIBED, source)
    return left


def _leave(session: Session, subscriber: Subscriber, list_id: int | None, source: str,
           ip: str | None = None) -> list[Membership]:
    """End one membership (or all: None), a consent row for each; returns those ended."""
    left = []
    for membership in subscriber.memberships:
        if (list_id is None or membership.list_id == list_id) and membership.status != MembershipStatus.UNSUBSCRIBED:
            membership.status, membership.unsubscribed_at = MembershipStatus.UNSUBSCRIBED, utcnow()
            q.record_consent(session, subscriber.id, membership.list_id, ConsentAction.UNSUBSCRIBE, source, ip)
            left.append(membership)
    if left:
        webhooks.subscriber_event(session, "subscriber.unsubscribed", subscriber,
                                  lists=[m.mailing_list.name for m in left], everywhere=list_id is None, source=source)
    return left


def complaint(session: Session, address_or_subscriber: str | Subscriber, source: str,
              detail: str | None = None) -> Subscriber | None:
    """A spam complaint: the address suppressed as ``complained`` and off every list we hold it on.

    The reader told their mailbox they do not want our mail: no list of
    ours may mail them again, and the suppression keeps the reason
    ``complained`` (not ``unsubscribed``). Returns the subscriber, or None.
    """
    subscriber = suppress_for_event(session, address_or_subscriber, SuppressionReason.COMPLAINED, source, detail)
    if subscriber is not None:
        _leave(session, subscriber, None, source)
    return subscriber


def unsubscribe_for_event(session: Session, subscriber: Subscriber, source: str) -> list[Membership]:
    """An unsubscribe reported by the provider for one of our messages: off every list, suppressed
    (as :func:`unsubscribe` with no list, but never weakening a stronger suppression)."""
    left = _leave(session, subscriber, None, source)
    suppress_for_event(session, subscriber, SuppressionReason.UNSUBSCRIBED, source)
    return left


def suppress_for_event(session: Session, address_or_subscriber: str | Subscriber, reason: SuppressionReason | str,
                       source: str, detail: str | None = None) -> Subscriber | None:
    """:func:`suppress`, unless the address is listed already for a reason as strong or stronger.

    Providers deliver events late, repeated and out of order: a bounce
    reported after a complaint must not turn ``complained`` into
    ``bounced``, nor anything turn ``erased`` into another reason. The
    subscriber's status still only strengthens. Returns the subscriber, or None.
    """
    reason = SuppressionReason(reason)
    if isinstance(address_or_subscriber, Subscriber):
        email_hash = address_or_subscriber.email_hash
    else:
        email_hash = address_hash(address_or_subscriber)
    listed = q.suppression_reason(session, email_hash)
    if listed is not None and _REASON_STRENGTH.get(SuppressionReason(listed), 0) >= _REASON_STRENGTH[reason]:
        if isinstance(address_or_subscriber, Subscriber):
            return address_or_subscriber
        return q.find_subscriber(session, address_key(address_or_subscriber))
    return suppress(session, address_or_subscriber, reason, source, detail)


def soft_bounce(session: Session, address: str, source: str, occurred_at: datetime, now: datetime, *,
                limit: int, days: float, detail: str = "") -> bool:
    """Count a soft bounce of ``address``; suppress it (``bounced``) once ``limit`` happened within ``days``.

    A soft bounce (a full mailbox, a server refusing for now) says nothing
    alone; repeated ones mean a dead or abandoned address. The window ends
    ``now``; a bounce older than it counts for nothing. Returns True when
    this bounce suppressed the address. The caller serialises soft bounces
    of one address (the event pipeline applies one batch at a time).
    """
    email_hash = address_hash(address)
    since = now - timedelta(days=days)
    if occurred_at < since:
        return False
    event_store.add_soft_bounce(session, email_hash, source, occurred_at)
    count = event_store.soft_bounces_since(session, email_hash, since)
    if count < limit:
        return False
    listed = q.suppression_reason(session, email_hash)
    if listed is not None and _REASON_STRENGTH.get(SuppressionReason(listed), 0) >= _REASON_STRENGTH[
            SuppressionReason.BOUNCED]:
        return False  # bounced already (or worse): nothing changes
    reason = f"{source}: {count} soft bounces within {days:g} days; last: {detail}".strip()
    suppress(session, address, SuppressionReason.BOUNCED, source, detail=reason.removesuffix("; last:"))
    return True


def suppress(session: Session, address_or_subscriber: str | Subscriber, reason: SuppressionReason | str,
             source: str, detail: str | None = None) -> Subscriber | None:
    """Put the address on the suppression list, and the subscriber's status up to ``reason``'s.

    ``address_or_subscriber``: a normalised address (the subscriber, if we
    hold one, is found by it) or the subscriber. ``detail`` (the provider's
    words for a bounce, say) is kept with the hash; by default it names the
    source. Returns the subscriber, or None when we hold none. Memberships
    are left as they are (:func:`unsubscribe` ends them).
    """
    reason = SuppressionReason(reason)
    subscriber: Subscriber | None
    if isinstance(address_or_subscriber, Subscriber):
        subscriber, email_hash = address_or_subscriber, address_or_subscriber.email_hash
    else:
        subscriber = q.find_subscriber(session, address_key(address_or_subscriber))
        email_hash = address_hash(address_or_subscriber)
    q.suppress(session, email_hash, reason, (f"source={source}" if detail is None else detail)[:DETAIL_MAX])
    status = _STATUS_OF_REASON.get(reason)
    if subscriber is not None and status is not None and _STRENGTH[status] >= _STRENGTH.get(subscriber.status, 0):
        subscriber.status, subscriber.updated_at = status, utcnow()
    if reason in (SuppressionReason.BOUNCED, SuppressionReason.COMPLAINED):
        _suppressed_event(session, reason, subscriber, address_or_subscriber, source, detail)
    return subscriber


def _suppressed_event(session: Session, reason: SuppressionReason, subscriber: Subscriber | None,
                      address: str | Subscriber, source: str, detail: str | None) -> None:
    event_type = f"subscriber.{reason}"
    extra = {"reason": str(reason), "source": source, "detail": (detail or "")[:DETAIL_MAX]}
    if subscriber is not None:
        webhooks.subscriber_event(session, event_type, subscriber, **extra)
    elif isinstance(address, str):  # an address we hold no subscriber for (a bounce of a deleted one)
        webhooks.emit(session, event_type, f"address:{address_hash(address)}",
                      {"id": None, "email": address, **extra})


def lift_suppression(session: Session, subscriber: Subscriber) -> None:
    """They asked to come back (``resubscribe``): off the suppression list, and ``active`` again."""
    q.unsuppress(session, subscriber.email_hash)
    if subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status, subscriber.updated_at = SubscriberStatus.ACTIVE, utcnow()


def erase(session: Session, subscriber: Subscriber, detail: str = "") -> None:
    """Remove a subscriber's data for good, keeping only a hash on the suppression list (and ``detail``,
    which must hold no personal data: who asked, by which way)."""
    q.suppress(session, subscriber.email_hash, SuppressionReason.ERASED, detail[:DETAIL_MAX])
    erased = {"id": subscriber.id, "email_hash": subscriber.email_hash}
    # Nothing personal stays behind: events of theirs still waiting to go out lose their data too.
    webhooks.redact_subject(session, f"subscriber:{subscriber.id}", {**erased, "redacted": True})
    webhooks.emit(session, "subscriber.erased", f"subscriber:{subscriber.id}", erased)
    q.delete_subscriber(session, subscriber)
