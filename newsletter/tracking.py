"""What happened to a message after it was sent: one event model for every provider.

A provider's event parser (``newsletter.providers.<name>.events``) turns its
webhook body into :class:`TrackingEvent` objects; the pipeline
(``newsletter.events.pipeline``) stores and applies them without knowing
which provider spoke. This module is vocabulary: it imports nothing of the
project, so the store, the providers and the pipeline can all use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """The normalised kind of a tracking event (in the manner of django-anymail); stored as its value."""

    QUEUED = "queued"              # the provider accepted the message for delivery
    DELIVERED = "delivered"        # the receiving server accepted it
    DEFERRED = "deferred"          # the receiving server asked to try later
    BOUNCED = "bounced"            # the receiving server refused it (see ``hard``)
    REJECTED = "rejected"          # the provider refused to send it (see ``reject_reason``)
    COMPLAINED = "complained"      # the reader reported it as spam
    UNSUBSCRIBED = "unsubscribed"  # the reader unsubscribed through the provider
    RESUBSCRIBED = "resubscribed"  # the reader undid such an unsubscribe
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"                # a kind this project does not know


class RejectReason(StrEnum):
    """Why a provider refused to send (kind ``rejected``)."""

    BOUNCED = "bounced"            # the address bounced before: the provider suppresses it
    COMPLAINED = "complained"      # the address reported spam before
    UNSUBSCRIBED = "unsubscribed"  # the address unsubscribed at the provider
    INVALID = "invalid"            # the address cannot receive mail
    OTHER = "other"


# The kinds ``campaigns show`` reports, counted once per recipient.
REPORTED_KINDS: tuple[str, ...] = tuple(kind.value for kind in (
    EventKind.DELIVERED, EventKind.BOUNCED, EventKind.OPENED, EventKind.CLICKED, EventKind.COMPLAINED,
    EventKind.UNSUBSCRIBED))


@dataclass(frozen=True)
class TrackingEvent:
    """One event as a provider reported it, normalised.

    ``event_id`` is the provider's id for the event (providers deliver at
    least once: it is what repeats are recognised by); ``message_id`` is
    our Message-ID as the provider echoed it back (``newsletter.delivery.message_id``
    parses it), or None; ``hard`` tells a bounce that will happen again
    (a dead address) from a temporary refusal; ``detail`` is the
    provider's reason and diagnostic, for people; ``raw`` the event exactly
    as received. Text fields hold no NUL and fit their columns.
    """

    provider: str
    kind: EventKind
    event_id: str
    recipient: str
    occurred_at: datetime | None
    raw: dict[str, Any] = field(repr=False)
    message_id: str | None = None
    hard: bool = False
    reject_reason: RejectReason | None = None
    detail: str = ""


def fingerprint(raw: dict[str, Any]) -> str:
    """A stable id for an event the provider gave no id (so its repeats are still recognised)."""
    return "sha256:" + hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


def clean_text(value: Any, limit: int | None = None) -> str:
    """``value`` as text a column can hold: no NUL (PostgreSQL refuses it), at most ``limit`` characters."""
    return str(value).replace("\x00", "")[:limit]
