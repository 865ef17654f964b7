"""Mailgun's JSON webhooks: verify a signed request, parse its event into a tracking event.

Mailgun posts one event per request: ``{"signature": {"timestamp",
"token", "signature"}, "event-data": {...}}``. A request is genuine and
fresh when (Mailgun's "Securing Webhooks"):

- ``signature`` is the hex HMAC-SHA256 of ``timestamp + token`` under the
  webhook signing key (``MAILGUN_WEBHOOK_SIGNING_KEY``), compared in constant
  time;
- ``timestamp`` is within :data:`MAX_AGE_SECONDS` of now (the clock is
  injected, for tests);
- ``token`` was not seen before: tokens are remembered while a request
  carrying them could still pass the freshness check (at most
  :data:`MAX_TOKENS`, the oldest forgotten first), in this process. After a
  restart a replayed request within the window would pass this check, but
  its event is stored once all the same: the pipeline deduplicates by the
  event's id.

Mailgun re-signs each retry of a webhook, so a retry is a new token for
the same event: events are deduplicated by ``event-data.id`` (Mailgun says
it is unique within a day: the event's own timestamp is added), never by
the token.

Event kinds (:data:`KINDS`): ``failed`` with ``severity: temporary`` is
DEFERRED (Mailgun tries again); ``severity: permanent`` is a hard BOUNCE,
except that ``reason: old`` (Mailgun gave up after hours of temporary
failures: a full mailbox, a greylisting server) is a soft bounce, and the
``suppress-*`` reasons (Mailgun refused to send to an address on its own
suppression lists) are REJECTED with the matching reason. Our Message-ID
comes back in ``user-variables.message_id`` (``v:message_id``, see
``body.py``), else in the message's ``message-id`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from newsletter.providers.base import NotConfigured, Refused
from newsletter.tracking import EventKind, RejectReason, TrackingEvent, clean_text, fingerprint

if TYPE_CHECKING:
    from newsletter.config import Settings

log = logging.getLogger(__name__)

NAME = "mailgun"
MAX_AGE_SECONDS = 300
MAX_TOKENS = 100_000
MAX_TOKEN_CHARS = 200

KINDS = {
    "accepted": EventKind.QUEUED, "delivered": EventKind.DELIVERED, "failed": EventKind.BOUNCED,
    "rejected": EventKind.REJECTED, "opened": EventKind.OPENED, "clicked": EventKind.CLICKED,
    "complained": EventKind.COMPLAINED, "unsubscribed": EventKind.UNSUBSCRIBED,
}
# Mailgun's reasons for not sending to an address at all (its own suppression lists).
SUPPRESSED = {
    "suppress-bounce": RejectReason.BOUNCED, "suppress-complaint": RejectReason.COMPLAINED,
    "suppress-unsubscribe": RejectReason.UNSUBSCRIBED,
}
SOFT_PERMANENT_REASONS = frozenset({"old"})


class MailgunEvents:
    """Checks signed Mailgun webhook requests with one signing key, and parses their events."""

    name = NAME

    def __init__(self, signing_key: str, clock: Callable[[], float], max_age: int = MAX_AGE_SECONDS,
                 max_tokens: int = MAX_TOKENS):
        self._key = signing_key.strip().encode()
        self.clock, self.max_age, self.max_tokens = clock, max_age, max_tokens
        self._seen: OrderedDict[str, float] = OrderedDict()  # token -> when it may be forgotten
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> MailgunEvents:
        """NotConfigured without a signing key."""
        if not settings.mailgun_webhook_signing_key:
            raise NotConfigured("MAILGUN_WEBHOOK_SIGNING_KEY is not set")
        return cls(settings.mailgun_webhook_signing_key, clock)

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Refused unless the body is signed with our key, fresh, and its token new."""
        try:
            block = json.loads(raw_body)["signature"]
            timestamp, token, signature = block["timestamp"], block["token"], block["signature"]
        except (ValueError, KeyError, TypeError):
            raise Refused("not a signed Mailgun webhook body") from None
        if not all(isinstance(v, str | int) for v in (timestamp, token, signature)):
            raise Refused("not a signed Mailgun webhook body")
        timestamp, token, signature = str(timestamp), str(token), str(signature)
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise Refused("bad token")
        try:
            age = self.clock() - int(timestamp)
        except (ValueError, OverflowError):  # not digits, or too many for a float
            raise Refused("bad timestamp") from None
        if abs(age) > self.max_age:
            raise Refused("stale timestamp")
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        # compare_digest refuses str with non-ASCII characters (TypeError): compare bytes.
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise Refused("bad signature")
        self._remember(token)

    def _remember(self, token: str) -> None:
        """Refused when ``token`` was seen within the window; else remember it (bounded)."""
        now = self.clock()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if token in self._seen:
                raise Refused("replayed token")
            if len(self._seen) >= self.max_tokens:
                self._seen.popitem(last=False)
            # A timestamp up to max_age ahead stays fresh until max_age after it.
            self._seen[token] = now + 2 * self.max_age

    def parse(self, raw_body: bytes) -> list[TrackingEvent]:
        """The request's event; ValueError when the body holds no ``event-data`` object."""
        data = json.loads(raw_body)
        event = data.get("event-data") if isinstance(data, dict) else None
        if not isinstance(event, dict):
            raise ValueError("no event-data object")
        return [tracking_event(event)]


def tracking_event(event: dict[str, Any]) -> TrackingEvent:
    """One Mailgun event, normalised (never fails: an odd event still becomes a stored ``other``)."""
    name = str(event.get("event", "")).lower()
    kind = KINDS.get(name, EventKind.OTHER)
    severity = str(event.get("severity", "")).lower()
    reason = str(event.get("reason", "")).lower()
    hard = False
    reject_reason = None
    if kind is EventKind.BOUNCED:
        if reason in SUPPRESSED:
            kind, reject_reason = EventKind.REJECTED, SUPPRESSED[reason]
        elif severity == "temporary":
            kind = EventKind.DEFERRED
        else:
            hard = reason not in SOFT_PERMANENT_REASONS
    elif kind is EventKind.REJECTED:
        reject_reason = RejectReason.OTHER
    return TrackingEvent(
        provider=NAME, kind=kind, event_id=_event_id(event),
        recipient=clean_text(event.get("recipient", "")).strip()[:320],
        occurred_at=_when(event.get("timestamp")), raw=event, message_id=_message_id(event), hard=hard,
        reject_reason=reject_reason, detail=_detail(event),
    )


def _event_id(event: dict[str, Any]) -> str:
    """``id@timestamp``: Mailgun's id is unique within a day, the event's time makes it unique for good."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        return fingerprint(event)
    return clean_text(f"{event_id}@{event.get('timestamp', '')}", 200)


def _message_id(event: dict[str, Any]) -> str | None:
    variables = event.get("user-variables")
    if isinstance(variables, dict) and isinstance(variables.get("message_id"), str):
        return clean_text(variables["message_id"], 500).strip()
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("message-id") if isinstance(headers, dict) else None
    return clean_text(value, 500).strip().strip("<>") if isinstance(value, str) else None


def _detail(event: dict[str, Any]) -> str:
    status = event.get("delivery-status")
    parts = [event.get("reason"), event.get("severity")]
    if isinstance(status, dict):
        parts += [status.get("code"), status.get("description"), status.get("message")]
    parts.append(event.get("url"))
    return clean_text(" ".join(str(p) for p in parts if p not in (None, "")), 2000)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
