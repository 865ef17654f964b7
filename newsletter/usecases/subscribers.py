"""Subscriber use cases of the HTTP API: add with consent, read, update, unsubscribe, erase, a page of the list.

Each takes the store and plain values and returns plain data (the shapes the
API's models describe). They apply the audience rules through
:mod:`newsletter.audience.manage` (the CLI's functions), so the API, the CLI
and the web forms share one set of rules. Any change that others may want
to hear about (webhooks) goes through here.
"""

from __future__ import annotations

import base64
import binascii
from itertools import islice
from typing import Any

from newsletter.errors import InputError

PAGE_MAX = 1000


def add(store, settings, email: str, *, name: str | None = None, list_name: str | None = None,
        attributes: dict[str, str] | None = None, timezone: str | None = None, tags: list[str] | None = None,
        confirmed: bool = False, resubscribe: bool = False, source: str, ip: str | None) -> dict[str, Any]:
    """Add or update one subscriber (and their tags) in one transaction; ``source`` and ``ip`` are the consent's.

    Returns what the caller needs to go on, from what the change loaded
    (no second read: a website's signups are the API's hottest path):
    ``email``, ``name``, ``status``, ``timezone``, ``attributes``,
    ``created``, ``list`` (``{name, status}`` of the list joined, or None)
    and, for a pending double opt-in member, ``confirm_url``.
    """
    from newsletter.audience.manage import add_subscriber_in
    from newsletter.audience.tokens import confirm_url
    from newsletter.store.models import Subscriber
    from newsletter.vocabulary import MembershipStatus

    tag_list = _tags(tags)
    with store.session() as session:
        result = add_subscriber_in(session, email, name=name, list_name=list_name, attributes=attributes,
                                   timezone=timezone, confirmed=confirmed, resubscribe=resubscribe, source=source,
                                   ip=ip)
        if tag_list:
            _tag_in(session, [result.subscriber_id], tag_list, [])
        subscriber = session.get(Subscriber, result.subscriber_id)  # in the session's identity map: no query
        assert subscriber is not None
        data = {"email": subscriber.email, "name": subscriber.name, "status": subscriber.status,
                "timezone": subscriber.timezone, "attributes": dict(subscriber.attributes), "created": result.created,
                "list": None, "confirm_url": None}
        if list_name is not None and result.list_status is not None:
            data["list"] = {"name": list_name.strip(), "status": result.list_status}
    if result.list_status == MembershipStatus.PENDING and settings.base_url and result.list_id is not None:
        data["confirm_url"] = confirm_url(settings, result.subscriber_id, result.list_id, result.email)
    return data


def describe(store, email: str) -> dict[str, Any]:
    """One subscriber: lists, tags, attributes, consent history; NotFound with a hint when unknown."""
    from newsletter.audience.manage import describe as describe_one

    return describe_one(store, email)


def update(store, email: str, *, name: str | None = None, attributes: dict[str, str] | None = None,
           timezone: str | None = None, add_tags: list[str] | None = None,
           remove_tags: list[str] | None = None) -> dict[str, Any]:
    """Change a subscriber's name, attributes (merged), time zone or tags; returns :func:`describe`'s shape."""
    from newsletter.audience.fields import clean_attributes, clean_name, clean_timezone_length
    from newsletter.audience.manage import describe_subscriber, existing_subscriber, validate_timezone
    from newsletter.store import webhooks
    from newsletter.store.models import utcnow

    zone = validate_timezone(clean_timezone_length(timezone))
    cleaned_name = clean_name(name) if name is not None else None
    cleaned_attributes = clean_attributes(attributes) if attributes else None
    adding, removing = _tags(add_tags), _tags(remove_tags)
    with store.session() as session:
        subscriber = existing_subscriber(session, email)
        if cleaned_name is not None:
            subscriber.name = cleaned_name
        if cleaned_attributes:
            subscriber.attributes = {**subscriber.attributes, **cleaned_attributes}
        if zone:
            subscriber.timezone = zone
        if adding or removing:
            _tag_in(session, [subscriber.id], adding, removing)
        subscriber.updated_at = utcnow()
        session.flush()
        webhooks.subscriber_event(session, "subscriber.updated", subscriber, source="api")
        return describe_subscriber(session, subscriber)


def unsubscribe(store, email: str, list_name: str | None, *, source: str, ip: str | None) -> dict[str, Any]:
    """Unsubscribe from one list or from everything (then suppressed); returns the lists left."""
    from newsletter.audience.manage import unsubscribe as leave

    return {"email": email, "left": leave(store, email, list_name, source=source, ip=ip),
            "suppressed": list_name is None}


def erase(store, email: str, *, source: str) -> None:
    """Erase a subscriber's data; only a hash stays on the suppression list."""
    from newsletter.audience import rules
    from newsletter.audience.manage import existing_subscriber

    with store.session() as session:
        rules.erase(session, existing_subscriber(session, email), detail=f"erased through the API ({source})")


def import_file(store, data, file_name: str, *, list_name: str | None, format_name: str, dry_run: bool,
                resubscribe: bool, encoding: str) -> dict[str, Any]:
    """Import an uploaded file (``data``: a binary file object) as ``newsletter subscribers import`` would.

    The file is copied to a temporary folder under its own name (the
    consent source is ``import:FILE-NAME``, as for the CLI) and removed
    after. Returns the CLI's ``--json`` report.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from newsletter.audience.importer import import_subscribers

    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in Path(file_name or "").name)
    safe = safe.strip(".")[:100] or "upload.csv"
    with tempfile.TemporaryDirectory(prefix="newsletter-import-") as folder:
        path = Path(folder) / safe
        with path.open("wb") as handle:
            shutil.copyfileobj(data, handle, 1024 * 1024)
        report = import_subscribers(store, path, list_name=list_name, format_name=format_name, dry_run=dry_run,
                                    resubscribe=resubscribe, encoding=encoding)
    return report.as_dict()


def page(store, *, list_name: str | None, status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """Up to ``limit`` subscribers after ``cursor`` in a stable order, and the cursor of the next page (None: done)."""
    from newsletter.audience.fields import clean_list_name
    from newsletter.store.audience import get_list, iter_subscribers

    if not 1 <= limit <= PAGE_MAX:
        raise InputError(f"limit is 1 to {PAGE_MAX}", hint="e.g. ?limit=100")
    after = decode_cursor(cursor)
    with store.session() as session:
        if list_name is not None:
            list_name = get_list(session, clean_list_name(list_name)).name
        rows = list(islice(iter_subscribers(session, list_name, status, chunk=limit + 1, after_id=after), limit + 1))
    items = [{"email": row.email, "name": row.name, "status": row.status, "timezone": row.timezone,
              "created_at": row.created_at, "lists": [{"name": n, "status": s} for n, s in memberships]}
             for row, memberships in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(rows[limit - 1][0].id) if more else None}


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The id a cursor continues after (0: from the start); InputError for anything we did not hand out."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, _, number = text.partition(":")
        if version != "s1" or not number.isdigit() or len(number) > 18:
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InputError("the cursor is not one this API gave out",
                         hint="pass the next_cursor of the previous page unchanged, or none for the first page") \
            from None


def _tags(values: list[str] | None) -> list[str]:
    from newsletter.usecases.segments import tag_names

    return tag_names(list(values or []), "tags") if values else []


def _tag_in(session, ids: list[int], add: list[str], remove: list[str]) -> None:
    from newsletter.store import segments

    segments.tag_subscribers(session, ids, add, remove)
