"""SES events through Amazon SNS: verify a notification, confirm a subscription, parse SES's event.

SES publishes sending events (a configuration set's event destination, or
an identity's feedback notifications) to an SNS topic; the topic posts them
to ``POST /webhooks/ses`` as SNS HTTP(S) messages, one event per request
(with "raw message delivery" off: the SNS envelope carries the signature).

Verifying (``verify``), as the SNS developer guide ("Verifying the
signatures of Amazon SNS messages") asks:

- ``TopicArn`` must be one of ``[ses] topic_arns``: anyone can create an
  SNS topic and have AWS sign what it posts here, so the signature alone
  proves nothing about *whose* topic it is;
- ``SigningCertURL`` must be ``https://sns.<region>.amazonaws.com[.cn]/...``
  (:data:`CERT_URL`); the certificate is fetched over HTTPS (no redirects),
  cached by URL, and must be valid now (when it cannot be fetched, the
  OSError makes the web layer answer 503, so SNS tries again later);
- ``Signature`` (base64) must verify with the certificate's RSA key over
  the string to sign (:func:`string_to_sign`): PKCS#1 v1.5 with SHA-1 for
  ``SignatureVersion`` 1, SHA-256 for 2;
- ``Timestamp`` must be within :data:`MAX_AGE_SECONDS` of now (SNS retries
  for at most about an hour; a replay inside that window is harmless: every
  event is deduplicated by its id).

``sns_allow_loopback`` (tests only) also accepts ``http://127.0.0.1`` and
``http://localhost`` certificate and subscription URLs.

A ``SubscriptionConfirmation`` is confirmed by :meth:`SesEvents.handshake`
(fetching its ``SubscribeURL``, on the same host rule) once verified; a
``Notification``'s ``Message`` is SES's event JSON, which :func:`tracking_events`
turns into one :class:`~newsletter.tracking.TrackingEvent` per recipient.
Our Message-ID comes from the ``X-Newsletter-Message-ID`` header among
``mail.headers``, else from the ``newsletter_message`` tag (SES replaces
the Message-ID header; see ``newsletter.providers.ses.tags``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from newsletter.providers.base import NotConfigured, Refused
from newsletter.providers.ses.tags import MESSAGE_TAG, message_id_from_tag
from newsletter.tracking import EventKind, RejectReason, TrackingEvent, clean_text, fingerprint

if TYPE_CHECKING:
    from newsletter.config import Settings

NAME = "ses"
MAX_AGE_SECONDS = 2 * 3600
MAX_FUTURE_SECONDS = 300
MAX_CERT_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
LOOPBACK_URL = re.compile(r"^http://(127\.0\.0\.1|localhost)(:\d{1,5})?/")
MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The fields signed, in this order (a field absent from the message is left out: Subject).
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
MESSAGE_ID_HEADER = "x-newsletter-message-id"

KINDS = {
    "Bounce": EventKind.BOUNCED, "Complaint": EventKind.COMPLAINED, "Delivery": EventKind.DELIVERED,
    "Send": EventKind.QUEUED, "Reject": EventKind.REJECTED, "Open": EventKind.OPENED, "Click": EventKind.CLICKED,
    "DeliveryDelay": EventKind.DEFERRED, "Rendering Failure": EventKind.OTHER, "Subscription": EventKind.OTHER,
}


class SesEvents:
    """Checks SNS messages from our topics, confirms subscriptions, parses SES events."""

    name = NAME

    def __init__(self, topic_arns: tuple[str, ...], clock: Callable[[], float], *, allow_loopback: bool = False,
                 fetch: Callable[[str], bytes] | None = None):
        self.topic_arns = frozenset(topic_arns)
        self.clock, self.allow_loopback = clock, allow_loopback
        self.fetch = fetch or _fetch
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> SesEvents:
        """NotConfigured until ``[ses] topic_arns`` names the topics we accept."""
        if not settings.ses_topic_arns:
            raise NotConfigured("NEWSLETTER_SES_TOPIC_ARNS ([ses] topic_arns) is not set")
        return cls(settings.ses_topic_arns, clock, allow_loopback=settings.ses_sns_allow_loopback)

    # -- verify --------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Refused unless the body is an SNS message from one of our topics, signed by SNS, and fresh."""
        try:
            message = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            raise Refused("not an SNS message") from None
        if not isinstance(message, dict) or message.get("Type") not in MESSAGE_TYPES:
            raise Refused("not an SNS message (is raw message delivery on? it must be off)")
        kind = message["Type"]
        declared = headers.get("x-amz-sns-message-type")
        if declared is not None and declared != kind:
            raise Refused("message type header and body disagree")
        if message.get("TopicArn") not in self.topic_arns:
            raise Refused("not from a topic in [ses] topic_arns")
        version = str(message.get("SignatureVersion", ""))
        if version not in ("1", "2"):
            raise Refused("unknown signature version")
        self._check_age(message.get("Timestamp"))
        url = str(message.get("SigningCertURL") or "")
        if not self._allowed_url(url):
            raise Refused("certificate URL not on an SNS host")
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
            text = string_to_sign(message)
        except (binascii.Error, ValueError, TypeError):
            raise Refused("bad signature") from None
        if not self._signature_ok(url, signature, text.encode("utf-8"), version):
            raise Refused("bad signature")

    def _check_age(self, timestamp: Any) -> None:
        try:
            when = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise Refused("bad timestamp") from None
        age = self.clock() - when
        if age > MAX_AGE_SECONDS or age < -MAX_FUTURE_SECONDS:
            raise Refused("stale timestamp")

    def _allowed_url(self, url: str) -> bool:
        return bool(CERT_URL.match(url) or (self.allow_loopback and LOOPBACK_URL.match(url)))

    def _signature_ok(self, url: str, signature: bytes, data: bytes, version: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = self._public_key(url)
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        try:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA1() if version == "1" else hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def _public_key(self, url: str) -> Any:
        """The certificate's public key, fetched once per URL; Refused when it cannot be had or is not valid now."""
        from cryptography import x509

        with self._lock:
            cached = self._keys.get(url)
        if cached is None:
            try:
                cached = x509.load_pem_x509_certificate(self.fetch(url))  # OSError: the web layer answers 503
            except ValueError:
                raise Refused("the signing certificate is not a certificate") from None
            with self._lock:
                if len(self._keys) > 32:  # SNS rotates certificates rarely; never grow without bound
                    self._keys.clear()
                self._keys[url] = cached
        now = self.clock()
        if not (cached.not_valid_before_utc.timestamp() <= now <= cached.not_valid_after_utc.timestamp()):
            raise Refused("signing certificate not valid now")
        return cached.public_key()

    # -- the subscription handshake -------------------------------------------------------------

    def handshake(self, raw_body: bytes) -> dict[str, Any] | None:
        """Answer a verified SNS control message; None for a notification (then ``parse`` it).

        A ``SubscriptionConfirmation`` is confirmed by fetching its
        ``SubscribeURL`` (which must be on an SNS host); an
        ``UnsubscribeConfirmation`` is acknowledged and not acted on.
        Raises Refused for a confirmation URL off the SNS hosts, OSError
        when the confirmation request fails.
        """
        message = json.loads(raw_body)
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL") or "")
            if not self._allowed_url(url):
                raise Refused("subscription URL not on an SNS host")
            self.fetch(url)
            return {"confirmed": message.get("TopicArn")}
        if kind == "UnsubscribeConfirmation":
            return {"unsubscribed": message.get("TopicArn")}
        return None

    # -- parse -----------------------------------------------------------------------------------

    def parse(self, raw_body: bytes) -> list[TrackingEvent]:
        """The SES event of a notification, one TrackingEvent per recipient; ValueError when it is not one."""
        message = json.loads(raw_body)
        if not isinstance(message, dict):
            raise ValueError("not an SNS message")
        if message.get("Type") != "Notification":
            return []
        event = json.loads(message.get("Message") or "")
        if not isinstance(event, dict):
            raise ValueError("the notification's Message is not an SES event")
        return tracking_events(event)


def string_to_sign(message: Mapping[str, Any]) -> str:
    """The text SNS signs: each signed field's name and value, one a line, in order, ending with a newline."""
    fields = SIGNED_FIELDS[str(message["Type"])]
    return "".join(f"{name}\n{message[name]}\n" for name in fields
                   if name in message and not (name == "Subject" and message[name] is None))


def tracking_events(event: dict[str, Any]) -> list[TrackingEvent]:
    """SES's event (event publishing ``eventType`` or a notification's ``notificationType``), per recipient."""
    event_type = str(event.get("eventType") or event.get("notificationType") or "")
    mail: dict[str, Any] = event["mail"] if isinstance(event.get("mail"), dict) else {}
    kind = KINDS.get(event_type, EventKind.OTHER)
    found = event.get(_body_key(event_type))
    body: dict[str, Any] = found if isinstance(found, dict) else {}
    hard, reject_reason, detail = False, None, ""
    if event_type == "Bounce":
        recipients = [r for r in body.get("bouncedRecipients") or [] if isinstance(r, dict)]
        hard = body.get("bounceType") == "Permanent"
        detail = " ".join(str(body[k]) for k in ("bounceType", "bounceSubType") if body.get(k))
    elif event_type == "Complaint":
        recipients = [r for r in body.get("complainedRecipients") or [] if isinstance(r, dict)]
        detail = " ".join(str(body[k]) for k in ("complaintFeedbackType", "complaintSubType") if body.get(k))
    elif event_type == "DeliveryDelay":
        recipients = [r for r in body.get("delayedRecipients") or [] if isinstance(r, dict)]
        detail = str(body.get("delayType") or "")
    elif event_type == "Delivery":
        recipients = [{"emailAddress": r} for r in body.get("recipients") or []]
        detail = str(body.get("smtpResponse") or "")
    else:
        recipients = [{"emailAddress": r} for r in mail.get("destination") or []]
        if event_type == "Reject":
            reject_reason, detail = RejectReason.OTHER, str(body.get("reason") or "")
        elif event_type == "Click":
            detail = str(body.get("link") or "")
        elif event_type == "Subscription" and (body.get("newTopicPreferences") or {}).get("unsubscribeAll"):
            kind = EventKind.UNSUBSCRIBED
    message_id = our_message_id(mail)
    occurred = _when(body.get("timestamp") or mail.get("timestamp"))
    events = []
    for recipient in recipients:
        address = clean_text(recipient.get("emailAddress") or "").strip()[:320]
        diagnostic = " ".join(str(recipient[k]) for k in ("status", "diagnosticCode") if recipient.get(k))
        events.append(TrackingEvent(
            provider=NAME, kind=kind, event_id=fingerprint({"ses": event, "recipient": address}),
            recipient=address, occurred_at=occurred, raw=event, message_id=message_id, hard=hard,
            reject_reason=reject_reason, detail=clean_text(f"{detail} {diagnostic}".strip(), 2000),
        ))
    return events


def our_message_id(mail: Mapping[str, Any]) -> str | None:
    """Our Message-ID from SES's ``mail`` object: our header, else our tag, else the common Message-ID."""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == MESSAGE_ID_HEADER:
            return clean_text(header.get("value") or "", 998).strip().strip("<>") or None
    tags: Mapping[str, Any] = mail["tags"] if isinstance(mail.get("tags"), dict) else {}
    domain = str(mail.get("source") or "").rpartition("@")[2].rstrip(">").strip()
    for value in tags.get(MESSAGE_TAG) or []:
        found = message_id_from_tag(str(value), domain)
        if found:
            return found
    common = (mail.get("commonHeaders") or {}).get("messageId")
    if not common:
        return None
    return clean_text(common, 998).strip().strip("<>") or None


def _body_key(event_type: str) -> str:
    """``bounce`` for Bounce, ``deliveryDelay`` for DeliveryDelay, ``failure`` for Rendering Failure."""
    if event_type == "Rendering Failure":
        return "failure"
    return event_type[:1].lower() + event_type[1:]


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect could leave the SNS hosts
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _fetch(url: str) -> bytes:
    """GET ``url`` (an SNS host, checked by the caller), at most MAX_CERT_BYTES, no redirects."""
    with _OPENER.open(url, timeout=FETCH_TIMEOUT) as answer:
        data: bytes = answer.read(MAX_CERT_BYTES + 1)
    if len(data) > MAX_CERT_BYTES:
        raise ValueError("answer too large")
    return data
