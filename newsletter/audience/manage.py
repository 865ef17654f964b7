"""Managing one subscriber at a time: add, unsubscribe, erase, confirm, show.

Each opens its own transaction and applies the rules of
:mod:`newsletter.audience.rules`; here only what comes before them:

- addresses are normalised and unique case-insensitively;
- an address on the suppression list (unsubscribed everywhere, bounced,
  complained, erased) is not added again unless ``resubscribe`` is given;
- names, attributes and list names pass the door (:mod:`newsletter.audience.fields`):
  control characters become spaces, lengths fit the columns, before any query.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.audience import rules
from newsletter.audience.fields import (
    IP_MAX,
    SOURCE_MAX,
    clean_attributes,
    clean_list_name,
    clean_name,
    clean_timezone_length,
    one_line,
)
from newsletter.errors import Conflict, InputError, NotFound
from newsletter.store import audience as q
from newsletter.store import webhooks
from newsletter.store.models import Subscriber, utcnow
from newsletter.vocabulary import (
    ConsentAction,
    SubscriberStatus,
    SuppressionReason,
    address_hash,
    address_key,
    normalise_address,
)


@dataclass
class AddResult:
    email: str
    created: bool
    list_status: str | None
    subscriber_id: int
    list_id: int | None


def validate_timezone(name: str | None) -> str | None:
    """An IANA zone name, or InputError."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Paris") from None
    return name


def add_subscriber(store, email: str, **options) -> AddResult:
    """Add or update one subscriber, and put them on ``list_name`` (created if missing), in a transaction of its own.

    The options are :func:`add_subscriber_in`'s.
    """
    with store.session() as session:
        return add_subscriber_in(session, email, **options)


def add_subscriber_in(session, email: str, *, name: str | None = None, list_name: str | None = None,
                      attributes: dict[str, str] | None = None, timezone: str | None = None,
                      confirmed: bool = False, resubscribe: bool = False, source: str = "cli",
                      ip: str | None = None) -> AddResult:
    """Add or update one subscriber in the caller's transaction, and put them on ``list_name`` (created if missing).

    Everything is validated before the first query: InputError names the
    first bad value (the web signup routes through here too). An address on
    the suppression list is a Conflict unless ``resubscribe``; joining goes
    by :func:`newsletter.audience.rules.join`.
    """
    address = normalise_address(email)
    timezone = validate_timezone(clean_timezone_length(timezone))
    name = clean_name(name)
    attributes = clean_attributes(attributes)
    list_name = clean_list_name(list_name) if list_name is not None else None
    # the caller's own values (web: the request's client); made to fit, never refused
    source, ip = one_line(source)[:SOURCE_MAX], (one_line(ip)[:IP_MAX] or None) if ip else None
    reason = q.suppression_reason(session, address_hash(address))
    if reason and not resubscribe:
        raise Conflict(f"{address} is on the suppression list ({reason})",
                       hint="add --resubscribe only if they asked to be subscribed again")
    subscriber, created = _upsert(session, address, name, attributes, timezone)
    if resubscribe:
        rules.lift_suppression(session, subscriber)
    status = list_id = None
    if list_name:
        mailing_list = q.find_list(session, list_name) or q.create_list(session, list_name)
        status = rules.join(session, subscriber, mailing_list, confirmed=confirmed, resubscribe=resubscribe,
                            source=source, ip=ip)
        list_id = mailing_list.id
    webhooks.subscriber_event(session, "subscriber.created" if created else "subscriber.updated", subscriber,
                              list=list_name, list_status=status, source=source)
    return AddResult(address, created, status, subscriber.id, list_id)


def _upsert(session, address, name, attributes, timezone) -> tuple[Subscriber, bool]:
    subscriber = q.find_subscriber(session, address_key(address))
    if subscriber is None:
        subscriber = Subscriber(email=address, email_key=address_key(address), email_hash=address_hash(address),
                                name=name or "", attributes=dict(attributes or {}), timezone=timezone,
                                status=SubscriberStatus.ACTIVE)
        session.add(subscriber)
        session.flush()
        return subscriber, True
    if name is not None:
        subscriber.name = name
    if attributes:
        subscriber.attributes = {**subscriber.attributes, **attributes}
    if timezone:
        subscriber.timezone = timezone
    subscriber.updated_at = utcnow()
    return subscriber, False


def confirm_membership(store, subscriber_id: int, list_id: int, source: str, ip: str | None = None) -> str:
    """Confirm a pending member (double opt-in); returns the membership status. Idempotent."""
    with store.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        status = rules.confirm(session, subscriber, list_id, source, ip) if subscriber else None
        if status is None:
            raise NotFound("no such subscription", hint="subscribe again")
        return status


def unsubscribe(store, email: str, list_name: str | None = None, source: str = "cli",
                ip: str | None = None) -> list[str]:
    """Unsubscribe from one list, or from everything (which also suppresses the address).

    Returns the names of the lists left. Idempotent.
    """
    with store.session() as session:
        subscriber = _existing(session, email)
        list_id = None
        if list_name is not None:
            list_id = q.get_list(session, clean_list_name(list_name)).id
            if not any(m.list_id == list_id for m in subscriber.memberships):
                raise NotFound(f"{subscriber.email} is not on list {list_name!r}",
                               hint=f"see their lists with: newsletter subscribers show {subscriber.email}")
        return [m.mailing_list.name for m in rules.unsubscribe(session, subscriber, list_id, source, ip)]


def erase(store, email: str) -> None:
    """Remove a subscriber's data for good, keeping only a hash on the suppression list (its detail says how)."""
    with store.session() as session:
        rules.erase(session, _existing(session, email), detail="erased with newsletter subscribers remove")


def describe(store, email: str, deliveries_of=None) -> dict:
    """Everything we hold about one subscriber, as plain data (the ``show --json`` shape)."""
    with store.session() as session:
        return describe_subscriber(session, _existing(session, email), deliveries_of)


def describe_subscriber(session, subscriber: Subscriber, deliveries_of=None) -> dict:
    """:func:`describe` in the caller's session (the data export of the preference centre too)."""
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "timezone": subscriber.timezone,
        "snoozed_until": subscriber.snoozed_until,
        "attributes": subscriber.attributes,
        "created_at": subscriber.created_at,
        "suppressed": q.suppression_reason(session, subscriber.email_hash),
        "lists": [
            {"name": m.mailing_list.name, "status": m.status, "subscribed_at": m.subscribed_at,
             "confirmed_at": m.confirmed_at, "unsubscribed_at": m.unsubscribed_at}
            for m in sorted(subscriber.memberships, key=lambda m: m.mailing_list.name)
        ],
        "consent": consent_history(session, subscriber),
        "tags": _tags(session, subscriber.id),
        "dormant_since": subscriber.dormant_at,
        "deliveries": deliveries_of(session, subscriber.id) if deliveries_of else [],
    }


def _tags(session, subscriber_id: int) -> list[str]:
    from newsletter.store.segments import tags_of

    return tags_of(session, [subscriber_id]).get(subscriber_id, [])


PROOF_FIELDS = ("form", "consent_text", "source_url", "user_agent", "requested_at", "confirmed_at", "message_id",
                "detail")


def consent_history(session, subscriber: Subscriber) -> list[dict]:
    """How each list was joined, then every later change, oldest first, with the proof we hold.

    A list joined by an import or the CLI has its record on the membership;
    one joined by a web form or the preference centre has a ``subscribe``
    row of its own (with the form, text, page and browser): that row
    replaces the membership's entry.
    """
    names = {m.list_id: m.mailing_list.name for m in subscriber.memberships}
    rows = q.consents_of(session, subscriber.id)
    recorded = {c.list_id for c in rows if c.action == ConsentAction.SUBSCRIBE}
    joined = [{"action": "import" if m.consent_source.startswith("import:") else "subscribe",
               "list": m.mailing_list.name, "source": m.consent_source, "ip": m.consent_ip, "at": m.subscribed_at,
               **dict.fromkeys(PROOF_FIELDS)}
              for m in subscriber.memberships if m.list_id not in recorded]
    changes = [{"action": c.action, "list": None if c.list_id is None else names.get(c.list_id), "source": c.source,
                "ip": c.ip, "at": c.created_at, **{name: getattr(c, name) for name in PROOF_FIELDS}}
               for c in rows]
    return sorted(joined + changes, key=lambda entry: entry["at"])


def existing_subscriber(session, email: str) -> Subscriber:
    """The subscriber of ``email`` (normalised); NotFound with a hint when we hold none."""
    return _existing(session, email)


def _existing(session, email: str) -> Subscriber:
    address = normalise_address(email)
    subscriber = q.find_subscriber(session, address_key(address))
    if subscriber is None and q.suppression_reason(session, address_hash(address)) == SuppressionReason.ERASED:
        # What an erasure leaves: the hash, and how it was erased (no date or name: nothing personal).
        detail = q.suppression_detail(session, address_hash(address)) or "erased"
        raise NotFound(f"no subscriber {address}: their data was erased ({detail})",
                       hint="only a hash of the address is kept, on the suppression list")
    if subscriber is None:
        raise NotFound(f"no subscriber {address}", hint=f"add them with: newsletter subscribers add {address}")
    return subscriber
