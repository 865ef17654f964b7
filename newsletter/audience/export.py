"""Exporting subscribers as CSV or JSON, streamed.

CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return) are prefixed with a single quote,
the OWASP advice against CSV injection (and so are cells starting with a
quote, so that ``subscribers import`` can take exactly one off again).

Consent travels with the data: ``list_statuses`` holds each list's
membership status (JSON) and ``suppressed`` the suppression reason, so
importing an export restores who left what (``formats.read_newsletter_row``).
``tags`` travel too (a comma list: tag names hold no commas).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from typing import IO

from sqlalchemy import select

from newsletter.store.audience import iter_subscribers
from newsletter.store.models import Suppression
from newsletter.store.segments import tags_of
from newsletter.vocabulary.addresses import address_hash

CSV_COLUMNS = ["email", "name", "status", "timezone", "lists", "list_statuses", "suppressed", "attributes",
               "created_at", "tags"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_BATCH = 1000


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will show as text, never evaluate."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def subscriber_records(store, list_name: str | None = None, status: str | None = None) -> Iterator[dict]:
    """Every matching subscriber as a plain dict (the ``subscribers list --json`` shape).

    ``suppressed`` is the suppression reason of the address, or None; with
    ``list_name``, ``list_status`` is the membership status on that list.
    """
    with store.session() as session:
        rows = iter_subscribers(session, list_name, status)
        while batch := list(islice(rows, _BATCH)):
            hashes = {address_hash(subscriber.email): subscriber.id for subscriber, _ in batch}
            reasons = {hashes[h]: reason for h, reason in session.execute(
                select(Suppression.email_hash, Suppression.reason).where(Suppression.email_hash.in_(list(hashes))))}
            tags = tags_of(session, [subscriber.id for subscriber, _ in batch])
            for subscriber, memberships in batch:
                statuses = {name: s for name, s in memberships}
                record = {
                    "email": subscriber.email,
                    "name": subscriber.name,
                    "status": subscriber.status,
                    "lists": [name for name, _ in memberships],
                    "list_statuses": statuses,
                    "suppressed": reasons.get(subscriber.id),
                    "timezone": subscriber.timezone,
                    "attributes": subscriber.attributes,
                    "created_at": subscriber.created_at.isoformat(),
                    "tags": tags.get(subscriber.id, []),
                }
                if list_name is not None:
                    record["list_status"] = statuses.get(list_name)
                yield record


def write_csv(records: Iterator[dict], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        row = dict(record, lists=";".join(record["lists"]),
                   list_statuses=json.dumps(record["list_statuses"], ensure_ascii=False), tags=",".join(record["tags"]),
                   attributes=json.dumps(record["attributes"], ensure_ascii=False) if record["attributes"] else "")
        writer.writerow([neutralise("" if row[c] is None else str(row[c])) for c in CSV_COLUMNS])
        count += 1
    return count


def write_json(records: Iterator[dict], out: IO[str]) -> int:
    """A JSON array written one element at a time (never the whole list in memory)."""
    out.write("[")
    count = 0
    for record in records:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps(record, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
