"""Exporting subscribers as CSV or JSON, streamed.

CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return) are prefixed with a single quote,
the OWASP advice against CSV injection.
"""

from __future__ import annotations

import csv
import json
from typing import IO, Iterator

from newsletter.store.audience import iter_subscribers

CSV_COLUMNS = ["email", "name", "status", "timezone", "lists", "attributes", "created_at"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will show as text, never evaluate."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def subscriber_records(store, list_name: str | None = None, status: str | None = None) -> Iterator[dict]:
    """Every matching subscriber as a plain dict (the ``subscribers list --json`` shape)."""
    with store.session() as session:
        for subscriber, memberships in iter_subscribers(session, list_name, status):
            yield {
                "email": subscriber.email,
                "name": subscriber.name,
                "status": subscriber.status,
                "lists": [name for name, _ in memberships],
                "list_statuses": {name: s for name, s in memberships},
                "timezone": subscriber.timezone,
                "attributes": subscriber.attributes,
                "created_at": subscriber.created_at.isoformat(),
            }


def write_csv(records: Iterator[dict], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        row = dict(record, lists=";".join(record["lists"]),
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
