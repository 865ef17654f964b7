"""Read bounce messages from a mailbox and apply them: ``newsletter bounces read SOURCE``.

The SMTP sender's bounce loop: the mailbox the return path delivers to (an
mbox file, a Maildir folder or an IMAP folder) holds the DSNs receiving servers sent back;
:func:`read_bounces` parses each (``newsletter.delivery.bounces``) and feeds
the events to the provider-neutral pipeline (``newsletter.events.pipeline``),
which deduplicates them, matches them to the ledger and applies the audience
rules (hard bounce: suppressed; soft: counted).

Order, per batch of messages: parse, commit the events (one transaction),
then mark the batch's messages done (Maildir: moved to ``cur/`` with the
seen flag; IMAP: ``\\Seen`` set). A crash between the commit and the move means those messages
are read again next time, and their events, already stored, change nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from newsletter.delivery.bounces import MAX_MESSAGE_BYTES, parse_bounce
from newsletter.delivery.mailboxes import MailboxMessage, open_mailbox
from newsletter.events.pipeline import SoftBounceLimit, record_events

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store.db import Store
    from newsletter.tracking import TrackingEvent

BATCH = 200


@dataclass
class BounceReport:
    """What one read found: messages ``read``; of those, ``dsn`` (bounce reports) and ``not_dsn``;
    ``truncated`` (longer than the size read). Events of the reports: ``events`` in all, by kind ``hard``,
    ``soft``, ``delayed`` and ``complaints`` (ARF reports, RFC 5965); of the new ones ``matched`` to a
    delivery of ours and ``unmatched``;
    ``repeated`` (stored by an earlier read); ``applied`` (changes to the audience: a suppression or a
    counted soft bounce)."""

    source: str
    mailbox: str
    read: int = 0
    dsn: int = 0
    not_dsn: int = 0
    truncated: int = 0
    events: int = 0
    matched: int = 0
    unmatched: int = 0
    repeated: int = 0
    hard: int = 0
    soft: int = 0
    delayed: int = 0
    complaints: int = 0
    applied: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_bounces(settings: Settings, store: Store, source: str | os.PathLike[str], *,
                 include_seen: bool = False, now: datetime | None = None, batch: int = BATCH) -> BounceReport:
    """Read every bounce in the mailbox at ``source`` and apply them; returns the counts."""
    mailbox = open_mailbox(source, include_seen=include_seen, max_bytes=MAX_MESSAGE_BYTES)
    report = BounceReport(source=mailbox.shown or str(source), mailbox=mailbox.kind)
    limit = SoftBounceLimit(settings.soft_bounce_limit, settings.soft_bounce_days)
    pending: list[tuple[MailboxMessage, bool]] = []  # each message, and whether it was a bounce report
    events: list[TrackingEvent] = []

    def flush() -> None:
        if events:
            counts = record_events(store, events, settings.secret_keys, now or datetime.now(UTC), limit)
            report.matched += counts["matched"]
            report.unmatched += counts["unmatched"]
            report.repeated += counts["received"] - counts["new"]
            report.applied += counts["applied"]
        for message, was_bounce in pending:  # only now that their events are committed
            if was_bounce:
                mailbox.mark_done(message)
            else:
                mailbox.mark_not_bounce(message)
        pending.clear()
        events.clear()

    try:
        for message in mailbox.messages():
            report.read += 1
            report.truncated += int(message.truncated)
            bounce = parse_bounce(message.data, settings.secret_keys)
            if bounce.dsn:
                report.dsn += 1
                report.events += len(bounce.events)
                events.extend(bounce.events)
            else:
                report.not_dsn += 1
            pending.append((message, bounce.dsn))
            if len(pending) >= batch:
                _count_kinds(report, events)
                flush()
        _count_kinds(report, events)
        flush()
    finally:
        mailbox.close()
    return report


def _count_kinds(report: BounceReport, events: list[TrackingEvent]) -> None:
    from newsletter.tracking import EventKind

    for event in events:
        if event.kind is EventKind.DEFERRED:
            report.delayed += 1
        elif event.kind is EventKind.COMPLAINED:
            report.complaints += 1
        elif event.hard:
            report.hard += 1
        else:
            report.soft += 1
