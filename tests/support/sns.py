"""Amazon SNS for the webhook tests: a local signing certificate, and SNS messages signed with it.

SNS signs each HTTP message with the key of a certificate it serves at
``SigningCertURL`` (https://sns.<region>.amazonaws.com/...). Here a key and a
self-signed certificate are generated with ``cryptography`` and served by
:class:`SnsHost` on 127.0.0.1 (the app accepts that only with
``[ses] sns_allow_loopback``), which also answers the ``SubscribeURL`` of a
subscription confirmation and records that it was called. Nothing is
downloaded: no real AWS certificate is ever fetched.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-ses-events"


def make_certificate(days: int = 30) -> tuple[Any, bytes]:
    """``(private key, certificate PEM)``: RSA 2048, CN sns.amazonaws.com, valid from yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return key, certificate.public_bytes(serialization.Encoding.PEM)


class SnsHost:
    """Serves ``/cert.pem`` and ``/confirm`` on 127.0.0.1; ``cert_fetches`` and ``confirmations`` count the calls."""

    def __init__(self) -> None:
        self.key, self.pem = make_certificate()
        self.cert_fetches = 0
        self.confirmations: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/cert.pem":
                    host.cert_fetches += 1
                    body = host.pem
                elif self.path.startswith("/confirm"):
                    host.confirmations.append(self.path)
                    body = b"<ConfirmSubscriptionResponse/>"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SnsHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sign(self, message: dict[str, Any], version: str = "2", key: Any = None) -> dict[str, Any]:
        """``message`` with SignatureVersion, SigningCertURL and Signature as SNS sets them."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from newsletter.providers.ses.events import string_to_sign

        message = {**message, "SignatureVersion": version, "SigningCertURL": self.url + "/cert.pem"}
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(string_to_sign(message).encode(), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, ses_event: dict[str, Any], *, when: datetime.datetime | None = None,
                     topic: str = TOPIC, version: str = "2") -> dict[str, Any]:
        """A signed SNS Notification carrying ``ses_event`` (as SES publishes: the event JSON in ``Message``)."""
        return self.sign({
            "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
            "Message": json.dumps(ses_event), "Timestamp": _stamp(when),
            "UnsubscribeURL": self.url + "/unsubscribe",
        }, version)

    def subscription_confirmation(self, *, topic: str = TOPIC, subscribe_url: str | None = None) -> dict[str, Any]:
        token = uuid.uuid4().hex
        return self.sign({
            "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token, "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.",
            "SubscribeURL": subscribe_url or f"{self.url}/confirm?Action=ConfirmSubscription&Token={token}",
            "Timestamp": _stamp(None),
        })


def _stamp(when: datetime.datetime | None) -> str:
    when = when or datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def ses_event(event_type: str, recipient: str, *, message_id: str | None = None, via: str = "header",
              **body: Any) -> dict[str, Any]:
    """An SES event-publishing record for one recipient; our Message-ID in the header or the tag (``via``)."""
    mail: dict[str, Any] = {
        "timestamp": "2026-12-01T10:00:00.000Z", "source": "news@clinic.example",
        "sendingAccountId": "123456789012", "messageId": "0100018c-ses-" + uuid.uuid4().hex,
        "destination": [recipient], "headersTruncated": False,
        "headers": [{"name": "From", "value": "Clinic News <news@clinic.example>"},
                    {"name": "To", "value": recipient}],
        "commonHeaders": {"from": ["Clinic News <news@clinic.example>"], "to": [recipient],
                          "messageId": "<0100018c-ses@email.amazonses.com>", "subject": "News"},
        "tags": {"ses:configuration-set": ["newsletter-events"], "newsletter_campaign": ["1"]},
    }
    if message_id and via == "header":
        mail["headers"].append({"name": "X-Newsletter-Message-ID", "value": message_id})
    elif message_id and via == "tag":
        from newsletter.providers.ses.tags import message_tags

        mail["tags"].update({t["Name"]: [t["Value"]] for t in message_tags(message_id, "1")})
    event: dict[str, Any] = {"eventType": event_type, "mail": mail}
    when = "2026-12-01T10:00:05.000Z"
    if event_type == "Bounce":
        event["bounce"] = {"bounceType": body.get("bounce_type", "Permanent"), "bounceSubType": "General",
                           "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1",
                                                  "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                           "timestamp": when, "feedbackId": "feedback-" + uuid.uuid4().hex}
    elif event_type == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": recipient}], "timestamp": when,
                              "feedbackId": "feedback-" + uuid.uuid4().hex, "complaintFeedbackType": "abuse"}
    elif event_type == "Delivery":
        event["delivery"] = {"timestamp": when, "recipients": [recipient], "smtpResponse": "250 2.6.0 ok",
                             "processingTimeMillis": 500}
    elif event_type == "Click":
        event["click"] = {"timestamp": when, "link": body.get("link", "https://clinic.example/a"),
                          "ipAddress": "192.0.2.1", "userAgent": "Mozilla"}
    elif event_type == "Open":
        event["open"] = {"timestamp": when, "ipAddress": "192.0.2.1", "userAgent": "Mozilla"}
    elif event_type == "DeliveryDelay":
        event["deliveryDelay"] = {"timestamp": when, "delayType": "MailboxFull",
                                  "delayedRecipients": [{"emailAddress": recipient, "status": "4.2.2"}]}
    elif event_type == "Reject":
        event["reject"] = {"reason": "Bad content"}
    elif event_type == "Send":
        event["send"] = {}
    return event
