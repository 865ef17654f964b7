"""SendGrid's Event Webhook: verify a signed request, parse its batch into tracking events.

- The ECDSA (P-256, SHA-256) signature in ``X-Twilio-Email-Event-Webhook-Signature``
  must verify over ``timestamp + raw body`` with the key of
  ``NEWSLETTER_SENDGRID_WEBHOOK_KEY`` (base64 DER, as SendGrid shows it), through
  the ``sendgrid`` library's own helper; a timestamp more than
  :data:`MAX_AGE_SECONDS` away from now is refused (the helper does not check
  it: a captured request could be replayed).
- The body is a JSON array of events. Each becomes a
  :class:`~newsletter.tracking.TrackingEvent`: ``sg_event_id`` is its id
  (a fingerprint of the event when missing), our Message-ID comes back in
  ``message_id`` (our ``custom_args``), SendGrid's event names map to our
  kinds (:data:`KINDS`), a bounce is hard unless its type is ``blocked``,
  and a drop names why (:data:`DROP_REASONS`).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from newsletter.errors import ConfigError
from newsletter.providers.base import NotConfigured, Refused
from newsletter.tracking import EventKind, RejectReason, TrackingEvent, clean_text, fingerprint

if TYPE_CHECKING:
    from newsletter.config import Settings

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 600

KINDS = {
    "processed": EventKind.QUEUED, "delivered": EventKind.DELIVERED, "deferred": EventKind.DEFERRED,
    "bounce": EventKind.BOUNCED, "dropped": EventKind.REJECTED, "open": EventKind.OPENED,
    "click": EventKind.CLICKED, "spamreport": EventKind.COMPLAINED, "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED, "group_resubscribe": EventKind.RESUBSCRIBED,
}
# The reasons SendGrid gives for dropping a message, lower-cased.
DROP_REASONS = {
    "bounced address": RejectReason.BOUNCED, "spam reporting address": RejectReason.COMPLAINED,
    "unsubscribed address": RejectReason.UNSUBSCRIBED, "invalid": RejectReason.INVALID,
}
DETAIL_FIELDS = ("type", "reason", "response", "bounce_classification", "url")


class SendGridEvents:
    """Checks signed SendGrid webhook requests with one public key, and parses their batches."""

    name = NAME

    def __init__(self, public_key: str, clock: Callable[[], float], max_age: int = MAX_AGE_SECONDS):
        from sendgrid.helpers.eventwebhook import EventWebhook

        self.helper = EventWebhook()
        try:
            self.key = self.helper.convert_public_key_to_ecdsa("".join(public_key.split()))
        except (ValueError, TypeError):
            raise ConfigError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not a valid public key",
                              hint="copy the verification key from SendGrid's Mail Settings > Event Webhook") from None
        self.clock, self.max_age = clock, max_age

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> SendGridEvents:
        """NotConfigured without a key; ConfigError for a malformed one."""
        if not settings.sendgrid_webhook_key:
            raise NotConfigured("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not set")
        return cls(settings.sendgrid_webhook_key, clock)

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Refused unless the request is signed with our key and its timestamp is fresh."""
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Refused("missing signature headers")
        try:
            age = self.clock() - int(timestamp)
        except ValueError:
            raise Refused("bad timestamp") from None
        if abs(age) > self.max_age:
            raise Refused("stale timestamp")
        try:
            # The helper signs timestamp + payload as text; a body that is not
            # UTF-8 cannot be a SendGrid batch.
            ok = self.helper.verify_signature(raw_body.decode("utf-8"), signature, timestamp, self.key)
        except (UnicodeDecodeError, ValueError, TypeError, binascii.Error):
            ok = False
        if not ok:
            raise Refused("bad signature")

    def parse(self, raw_body: bytes) -> list[TrackingEvent]:
        """The batch's events; ValueError when the body is not a JSON array of objects."""
        events = json.loads(raw_body)
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValueError("not a JSON array of events")
        return [tracking_event(event) for event in events]


def tracking_event(event: dict[str, Any]) -> TrackingEvent:
    """One SendGrid event, normalised (never fails: an odd event still becomes a stored ``other``)."""
    kind = KINDS.get(str(event.get("event", "")), EventKind.OTHER)
    reject_reason = None
    if kind is EventKind.REJECTED:
        reject_reason = DROP_REASONS.get(str(event.get("reason", "")).strip().lower(), RejectReason.OTHER)
    message_id = event.get("message_id")
    return TrackingEvent(
        provider=NAME, kind=kind,
        event_id=clean_text(event.get("sg_event_id") or "", 200) or fingerprint(event),
        recipient=clean_text(event.get("email", "")).strip()[:320],
        occurred_at=_when(event.get("timestamp")), raw=event,
        message_id=str(message_id) if message_id is not None else None,
        # "blocked" is a temporary refusal by the receiving server, not a dead address.
        hard=kind is EventKind.BOUNCED and str(event.get("type", "bounce")).lower() != "blocked",
        reject_reason=reject_reason,
        detail=clean_text(" ".join(str(event[k]) for k in DETAIL_FIELDS if event.get(k)), 2000),
    )


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
