"""Postmark's webhooks: check the basic-auth credentials, parse one event into a tracking event.

- Postmark signs nothing: its webhooks are authenticated by credentials in
  the webhook URL (``https://user:password@news.example.org/webhooks/postmark``),
  which it sends as HTTP basic auth. The request must carry exactly the
  user of ``[postmark] webhook_user`` (``NEWSLETTER_POSTMARK_WEBHOOK_USER``)
  and the password of ``NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD``, compared in
  constant time; anything else is refused (403). Postmark sends no
  timestamp, so there is no freshness to check: a replayed event is
  recognised by its id (the pipeline deduplicates).
- Postmark posts one event per request, a JSON object (an array of objects
  is accepted too). ``RecordType`` says what it is:

  ======================  =====================================================
  Bounce                  ``Type`` per Postmark's bounce types table:
                          :data:`HARD_BOUNCES` hard, :data:`SOFT_BOUNCES` soft,
                          ``Unsubscribe`` unsubscribed, ``SpamComplaint``
                          complained, the rest (auto-responders, challenge
                          verifications...) ``other``
  SpamComplaint           complained
  Delivery                delivered
  Open / Click            opened / clicked
  SubscriptionChange      ``SuppressSending`` true: by ``SuppressionReason``,
                          HardBounce a hard bounce, SpamComplaint a
                          complaint, otherwise (a ManualSuppression: the
                          reader unsubscribed) unsubscribed; false (a
                          reactivation) resubscribed
  ======================  =====================================================

  On a Broadcast stream Postmark sends no Bounce webhook: hard bounces and
  complaints arrive as SubscriptionChange events.
- The event id is Postmark's ``ID`` for bounces and spam complaints; the
  other events carry none, so it is a fingerprint of the event. Our
  Message-ID comes back in ``Metadata.message_id`` (see ``body.py``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.providers.base import NotConfigured, Refused
from newsletter.tracking import EventKind, TrackingEvent, clean_text, fingerprint

if TYPE_CHECKING:
    from newsletter.config import Settings

NAME = "postmark"
# Postmark's bounce types (Bounce API, "Bounce types"): an address that will bounce again...
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
# ...and a refusal that may pass next time.
SOFT_BOUNCES = frozenset({"Transient", "SoftBounce", "DnsError", "SpamNotification", "Blocked", "SMTPApiError",
                          "DMARCPolicy", "Unknown"})
KINDS = {"Delivery": EventKind.DELIVERED, "Open": EventKind.OPENED, "Click": EventKind.CLICKED,
         "SpamComplaint": EventKind.COMPLAINED}
DETAIL_FIELDS = ("Type", "Description", "Details", "SuppressionReason", "Origin", "OriginalLink")


class PostmarkEvents:
    """Checks the basic-auth credentials of Postmark webhook requests and parses their events."""

    name = NAME

    def __init__(self, user: str, password: str, clock: Callable[[], float] | None = None):
        self._credentials = f"{user}:{password}".encode()
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> PostmarkEvents:
        """NotConfigured unless both the webhook user and password are set."""
        if not settings.postmark_webhook_user or not settings.postmark_webhook_password:
            raise NotConfigured("NEWSLETTER_POSTMARK_WEBHOOK_USER and NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD "
                                "are not both set")
        return cls(settings.postmark_webhook_user, settings.postmark_webhook_password, clock)

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Refused unless the request carries our user and password (basic auth)."""
        value = headers.get("Authorization") or headers.get("authorization")
        if not value:
            raise Refused("missing credentials")
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic":
            raise Refused("not basic authentication")
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Refused("bad credentials") from None
        if not hmac.compare_digest(given, self._credentials):
            raise Refused("bad credentials")

    def parse(self, raw_body: bytes) -> list[TrackingEvent]:
        """The request's event(s); ValueError when the body is not a JSON object (or array of objects)."""
        data = json.loads(raw_body)
        events = data if isinstance(data, list) else [data]
        if not events or not all(isinstance(e, dict) for e in events):
            raise ValueError("not a Postmark event")
        return [tracking_event(event) for event in events]


def tracking_event(event: dict[str, Any]) -> TrackingEvent:
    """One Postmark event, normalised (never fails: an odd event still becomes a stored ``other``)."""
    record = str(event.get("RecordType") or "")
    kind, hard = _kind(record, event)
    metadata = event.get("Metadata")
    message_id = metadata.get("message_id") if isinstance(metadata, dict) else None
    event_id = event.get("ID") if record in ("Bounce", "SpamComplaint") else None
    when = next((event[k] for k in ("BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt") if event.get(k)), None)
    recipient = event.get("Email") or event.get("Recipient") or ""
    return TrackingEvent(
        provider=NAME, kind=kind,
        event_id=clean_text(event_id, 200) if event_id not in (None, "") else fingerprint(event),
        recipient=clean_text(recipient).strip()[:320],
        occurred_at=_when(when), raw=event,
        message_id=str(message_id) if message_id else None,
        hard=hard,
        detail=clean_text(" ".join(str(event[k]) for k in DETAIL_FIELDS if event.get(k)), 2000),
    )


def _kind(record: str, event: dict[str, Any]) -> tuple[EventKind, bool]:
    """The kind of the event, and whether it is a hard bounce."""
    if record == "Bounce":
        bounce = str(event.get("Type") or "")
        if bounce in HARD_BOUNCES:
            return EventKind.BOUNCED, True
        if bounce in SOFT_BOUNCES:
            return EventKind.BOUNCED, False
        if bounce == "SpamComplaint":
            return EventKind.COMPLAINED, False
        if bounce == "Unsubscribe":
            return EventKind.UNSUBSCRIBED, False
        return EventKind.OTHER, False
    if record == "SubscriptionChange":
        if event.get("SuppressSending") is not True:
            return EventKind.RESUBSCRIBED, False
        reason = str(event.get("SuppressionReason") or "")
        if reason == "HardBounce":
            return EventKind.BOUNCED, True
        if reason == "SpamComplaint":
            return EventKind.COMPLAINED, False
        return EventKind.UNSUBSCRIBED, False
    return KINDS.get(record, EventKind.OTHER), False


def _when(value: Any) -> datetime | None:
    """An ISO 8601 time as Postmark writes it (``2019-11-05T16:33:54.9070259Z``: 7 fraction digits)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fraction digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:min(digits, 6)] + rest[digits:]
        text = f"{head}.{rest}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment
