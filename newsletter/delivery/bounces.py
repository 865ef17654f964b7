"""Bounce messages that come back by mail: read a DSN (RFC 3464) into tracking events.

An SMTP sender has no provider to post events: the receiving side's mail
server reports a failed delivery by mailing a Delivery Status Notification
to the envelope sender (the Return-Path). :func:`parse_bounce` turns one
such message, as bytes, into :class:`~newsletter.tracking.TrackingEvent`\\ s
of provider ``smtp`` for the provider-neutral event pipeline
(``newsletter.events.pipeline``), so the same suppression rules apply as for
a provider's webhook. It reads; it stores nothing (it must not import the store).

What a DSN is here: a ``multipart/report`` (or any message) with a
``message/delivery-status`` part; its per-recipient blocks give
``Action``, ``Status``, ``Final-Recipient``, ``Original-Recipient`` and
``Diagnostic-Code``. Per recipient block:

- ``Action: failed`` with a ``5.x.x`` status (or, without a status, a 5xx
  diagnostic code): a hard BOUNCED event (the address is suppressed);
- ``Action: failed`` with a ``4.x.x`` status, or with neither status nor
  code (the MTA gave up after temporary failures; we do not suppress on a
  guess): a soft BOUNCED event (counted towards the soft-bounce limit);
- ``Action: delayed``: DEFERRED (the MTA is still trying: nothing counted);
- ``delivered``, ``relayed``, ``expanded``: no event.

qmail sends no DSN but a plain-text report (QSBMF, cr.yp.to/proto/qsbmf.txt):
"Hi. This is the qmail-send program at HOST.", then one paragraph per
recipient (``<address>:`` and qmail's reason, e.g. ``Remote host said: 550
...`` or ``(#5.1.1)``), then ``--- Below this line is a copy of the
message.`` (or ``--- Enclosed are the original headers of the message.``)
and the returned message. qmail reports only failures it gave up on, so
each recipient is ``Action: failed``, hard when the reason carries a 5xx
code or a ``#5.x.x`` status, soft otherwise (a 4xx, or "in the queue too
long" without a code).

Which delivery it was, strongest proof first:

1. the VERP address (``<local>+<tag>@domain``, see
   ``newsletter.delivery.message_id.verp_tag``) in the bounce's ``To``,
   ``Delivered-To``, ``X-Original-To`` or ``Envelope-To``: its HMAC proves
   the delivery is ours;
2. our Message-ID in the returned headers (``text/rfc822-headers`` or
   ``message/rfc822``): the pipeline checks its workspace tag.

Neither: the event carries no Message-ID; the pipeline applies the address
rules to the recipient alone and reports it unmatched.

Complaint reports (ARF, RFC 5965: a ``multipart/report`` with a
``message/feedback-report`` part), which mailbox providers send to the
``CFBL-Address`` (RFC 9477) or a feedback-loop mailbox, read the same way:
``Feedback-Type: abuse`` (or ``fraud``) is a COMPLAINED event, which the
pipeline applies by suppressing the complainer. The recipient comes from
``Original-Rcpt-To`` or ``Removal-Recipient`` when the provider kept them
(most redact them), the delivery from our Message-ID in the returned
message (or a VERP address in its headers); other feedback types
(``not-spam``, ``auth-failure``, ``virus``) give no event. Microsoft's
Junk Mail Reporting Program in its older "RFC822 attachment" format is not
ARF (``multipart/mixed`` from ``staff@hotmail.com``, subject "complaint
about message from ...", only the returned message, the complainer in its
``X-HmXmrOriginalRecipient``): it is read as an abuse report too.

Events are deduplicated by their id, a hash of the bounce's own Message-ID
(or, lacking one, of its bytes) and the recipient: reading the same mailbox
twice changes nothing. Hostile input is expected: at most
:data:`MAX_MESSAGE_BYTES` of a message are read (the caller caps), header
values are cleaned of control characters and capped, and no input raises.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from newsletter.delivery import message_id
from newsletter.tracking import EventKind, TrackingEvent, clean_text

PROVIDER = "smtp"
MAX_MESSAGE_BYTES = 1_000_000  # a DSN's reports are at its start; the returned message may be huge
MAX_RECIPIENTS = 100  # per-recipient blocks read from one report
MAX_FIELD_CHARS = 500
MAX_ADDRESS_CHARS = 320
# ARF feedback types that are a person's complaint (RFC 5965 section 7.3; "fraud": a phishing report).
COMPLAINT_FEEDBACK_TYPES = ("abuse", "fraud")
VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_CODE = re.compile(r"\b([245])\d\d\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_QMAIL_GREETING = re.compile(r"\A\s*Hi\. This is the qmail-send program at ")
_QMAIL_COPY = re.compile(r"^--- (?:Below this line is a copy of the message|"
                         r"Enclosed are the original headers of the message)\.?[ \t]*\r?$", re.MULTILINE)
_QMAIL_RECIPIENT = re.compile(r"\A<([^<>\s]*)>:[ \t]*\Z")
_QMAIL_STATUS = re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)")  # qmail-local's and qmail-remote's own codes
_QMAIL_CODE = re.compile(r"Remote host said: ([245])\d\d(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?\b")


@dataclass
class Bounce:
    """What one message turned out to be: ``dsn`` (False: neither a DSN nor an ARF report) and its events
    (none when not)."""

    dsn: bool
    events: list[TrackingEvent] = field(default_factory=list)
    verp_matched: bool = False  # the delivery was named by a VERP address


def parse_bounce(data: bytes, secret_keys: tuple[str, ...] | list[str]) -> Bounce:
    """The events of the DSN in ``data`` (one raw message); never raises on bad input."""
    try:
        return _parse(data[:MAX_MESSAGE_BYTES], tuple(secret_keys))
    except (ValueError, TypeError, LookupError, AttributeError, AssertionError, RecursionError, MessageError):
        # The standard library's parser is lenient but not total on hostile bytes (odd charsets,
        # broken encodings): a message it cannot read is, for us, not a DSN.
        return Bounce(dsn=False)


def _parse(data: bytes, secret_keys: tuple[str, ...]) -> Bounce:
    message = message_from_bytes(data, policy=policy.compat32)
    feedback_part = _find(message, "message/feedback-report")
    if feedback_part is not None:
        return _arf(message, feedback_part, data, secret_keys)
    status_part = _find(message, "message/delivery-status")
    if status_part is None and _is_jmrp(message):
        return _jmrp(message, data, secret_keys)
    if status_part is None:
        return _qmail(message, data, secret_keys)
    blocks = _field_blocks(status_part)
    per_message, per_recipient = (blocks[0], blocks[1:]) if blocks else ({}, [])
    ours, verp = _our_message_id(message, secret_keys)
    bounce_id = _text(message.get("message-id")) or hashlib.sha256(data).hexdigest()
    when = _date(per_message.get("arrival-date")) or _date(_text(message.get("date")))
    events = []
    for fields in per_recipient[:MAX_RECIPIENTS]:
        event = _event(fields, bounce_id, ours, when)
        if event is not None:
            events.append(event)
    return Bounce(dsn=True, events=events, verp_matched=verp)


def _event(fields: dict[str, str], bounce_id: str, ours: str | None, when: datetime | None) -> TrackingEvent | None:
    action = fields.get("action", "").strip().lower()
    if action not in ("failed", "delayed"):
        return None
    recipient = _address(fields.get("original-recipient")) or _address(fields.get("final-recipient"))
    status = fields.get("status", "")
    diagnostic = fields.get("diagnostic-code", "")
    status_match = _STATUS.match(status)
    status_class = status_match.group(1) if status_match else None
    if status_class is None:
        code = _CODE.search(diagnostic.partition(";")[2] or diagnostic)
        status_class = code.group(1) if code else None
    kind = EventKind.DEFERRED if action == "delayed" else EventKind.BOUNCED
    hard = kind is EventKind.BOUNCED and status_class == "5"
    key = "\n".join((bounce_id, recipient, action)).encode("utf-8", "replace")
    raw: dict[str, Any] = {name: value for name, value in fields.items()
                           if name in ("action", "status", "final-recipient", "original-recipient",
                                       "diagnostic-code", "remote-mta", "last-attempt-date")}
    raw["bounce-message-id"] = bounce_id[:MAX_FIELD_CHARS]
    detail = " ".join(part for part in (status_match.group(0).strip() if status_match else "",
                                        diagnostic.partition(";")[2].strip() or diagnostic) if part)
    return TrackingEvent(
        provider=PROVIDER, kind=kind, event_id="smtp-dsn:" + hashlib.sha256(key).hexdigest(),
        recipient=recipient, occurred_at=_date(fields.get("last-attempt-date")) or when, raw=raw,
        message_id=ours, hard=hard, detail=clean_text(detail, MAX_FIELD_CHARS))


def _arf(message: Message, part: Message, data: bytes, secret_keys: tuple[str, ...]) -> Bounce:
    """An ARF complaint report (RFC 5965) as one COMPLAINED event, or none for other feedback types."""
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else {}
    kind = fields.get("feedback-type", "").strip().lower()
    if kind not in COMPLAINT_FEEDBACK_TYPES:
        return Bounce(dsn=True)
    ours, verp = _our_message_id(message, secret_keys)
    recipient = (_address(fields.get("original-rcpt-to")) or _address(fields.get("removal-recipient")))
    report_id = _text(message.get("message-id")) or hashlib.sha256(data).hexdigest()
    when = _date(fields.get("arrival-date")) or _date(_text(message.get("date")))
    key = "\n".join((report_id, recipient, ours or "")).encode("utf-8", "replace")
    raw: dict[str, Any] = {name: value for name, value in fields.items()
                           if name in ("feedback-type", "user-agent", "version", "arrival-date", "reporting-mta",
                                       "source-ip", "reported-domain", "original-mail-from")}
    raw["report-message-id"] = report_id[:MAX_FIELD_CHARS]
    detail = " ".join(part for part in (f"ARF {kind}", fields.get("user-agent", ""),
                                        fields.get("reporting-mta", "")) if part)
    event = TrackingEvent(
        provider=PROVIDER, kind=EventKind.COMPLAINED, event_id="smtp-arf:" + hashlib.sha256(key).hexdigest(),
        recipient=recipient, occurred_at=when, raw=raw, message_id=ours, detail=clean_text(detail, MAX_FIELD_CHARS))
    return Bounce(dsn=True, events=[event], verp_matched=verp)


JMRP_FROM = "staff@hotmail.com"
_JMRP_SUBJECT = re.compile(r"^\s*complaint about message from\b", re.IGNORECASE)


def _is_jmrp(message: Message) -> bool:
    """Microsoft's JMRP complaint in its "RFC822 attachment" format (see the module docstring)."""
    senders = [address.lower() for _, address in getaddresses([_text(message.get("from"))])]
    return (senders == [JMRP_FROM] and bool(_JMRP_SUBJECT.match(_text(message.get("subject"))))
            and _find(message, "message/rfc822") is not None)


def _jmrp(message: Message, data: bytes, secret_keys: tuple[str, ...]) -> Bounce:
    """A JMRP complaint as one COMPLAINED event: the complainer from the returned message's
    ``X-HmXmrOriginalRecipient``, the delivery from our Message-ID in it."""
    returned = _find(message, "message/rfc822")
    inner = returned.get_payload() if returned is not None else None
    original = inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
    recipient = _address(_text(original.get("x-hmxmroriginalrecipient"))) if original is not None else ""
    ours, verp = _our_message_id(message, secret_keys)
    report_id = _text(message.get("message-id")) or hashlib.sha256(data).hexdigest()
    key = "\n".join((report_id, recipient, ours or "")).encode("utf-8", "replace")
    raw: dict[str, Any] = {"feedback-type": "abuse", "user-agent": "Microsoft JMRP (RFC822 attachment)",
                           "report-message-id": report_id[:MAX_FIELD_CHARS]}
    event = TrackingEvent(
        provider=PROVIDER, kind=EventKind.COMPLAINED, event_id="smtp-arf:" + hashlib.sha256(key).hexdigest(),
        recipient=recipient, occurred_at=_date(_text(message.get("date"))), raw=raw, message_id=ours,
        detail="ARF abuse Microsoft JMRP (RFC822 attachment)")
    return Bounce(dsn=True, events=[event], verp_matched=verp)


def _qmail(message: Message, data: bytes, secret_keys: tuple[str, ...]) -> Bounce:
    """A qmail-send bounce (see the module docstring) as failed events, or not a DSN."""
    if message.is_multipart():
        return Bounce(dsn=False)
    payload = message.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return Bounce(dsn=False)
    text = payload.decode("utf-8", "replace")
    if not _QMAIL_GREETING.match(text):
        return Bounce(dsn=False)
    report, copy, returned = text, "", ""
    marker = _QMAIL_COPY.search(text)
    if marker:
        report, copy, returned = text[:marker.start()], marker.group(0), text[marker.end():]
    ours, verp = _our_message_id(message, secret_keys)
    if not verp and copy:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(
            returned.lstrip("\r\n").encode("utf-8", "replace"))
        found = _text(headers.get("message-id")).strip().strip("<>").strip()
        ours = found[:MAX_FIELD_CHARS] or ours
    bounce_id = _text(message.get("message-id")) or hashlib.sha256(data).hexdigest()
    when = _date(_text(message.get("date")))
    events = []
    for paragraph in re.split(r"\r?\n[ \t]*\r?\n", report)[1:]:
        lines = paragraph.strip("\r\n").splitlines()
        match = _QMAIL_RECIPIENT.match(lines[0].strip()) if lines else None
        recipient = _address(match.group(1)) if match else ""
        if not recipient:
            continue
        reason = " ".join(line.strip() for line in lines[1:] if line.strip())
        # The reason's own status (#5.1.1), else the remote's enhanced code, else its reply code's class
        # (x.0.0); none of them: 4.0.0, a soft bounce (IP addresses in the text are never read as codes).
        own, remote = _QMAIL_STATUS.search(reason), _QMAIL_CODE.search(reason)
        status = own.group(1) if own else (remote.group(2) or f"{remote.group(1)}.0.0") if remote else "4.0.0"
        fields = {"action": "failed", "final-recipient": f"rfc822; {recipient}", "status": status,
                  "diagnostic-code": f"qmail; {reason}"}
        event = _event({name: _text(value) for name, value in fields.items()}, bounce_id, ours, when)
        if event is not None:
            events.append(event)
        if len(events) >= MAX_RECIPIENTS:
            break
    return Bounce(dsn=True, events=events, verp_matched=verp)


def _find(message: Message, content_type: str) -> Message | None:
    """The first part of ``content_type`` anywhere in ``message`` (depth-first)."""
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a ``message/delivery-status`` part: per-message first, then per recipient."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                blocks.append(_fields(block))
        return [block for block in blocks if block]
    # Not split by the parser (a malformed part): split on blank lines ourselves.
    raw = part.get_payload(decode=True)
    text = raw if isinstance(raw, bytes) else str(payload).encode("utf-8", "replace")
    for chunk in re.split(rb"\r?\n\s*\r?\n", text):
        fields = _fields(BytesHeaderParser(policy=policy.compat32).parsebytes(chunk.strip() + b"\n"))
        if fields:
            blocks.append(fields)
    return blocks


def _fields(block: Message) -> dict[str, str]:
    """A block's fields, names lowercased, values cleaned and capped (the first of a repeated field)."""
    fields: dict[str, str] = {}
    for name, value in block.items():
        fields.setdefault(str(name).strip().lower(), _text(value))
    return fields


def _our_message_id(message: Message, secret_keys: tuple[str, ...]) -> tuple[str | None, bool]:
    """Our Message-ID for the delivery the bounce is about, and whether a VERP address named it."""
    if secret_keys:
        for header in VERP_HEADERS:
            for value in message.get_all(header) or []:
                for _, address in getaddresses([_text(value)]):
                    local, _, domain = address.rpartition("@")
                    tag = local.partition("+")[2]
                    ids = message_id.parse_verp_tag(tag, secret_keys) if tag else None
                    if ids is not None:
                        return message_id.message_id_for(secret_keys[0], ids, domain or "verp.invalid"), True
    returned = _returned_headers(message)
    if returned is not None:
        found = _text(returned.get("message-id")).strip().strip("<>").strip()
        if found:
            return found[:MAX_FIELD_CHARS], False
    return None, False


def _returned_headers(message: Message) -> Message | None:
    """The headers of the message that bounced, as the DSN returned them (headers only, or whole)."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
        elif content_type == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
    return None


def _text(value: object) -> str:
    """A header value as one clean line: RFC 2047 left as is, control characters (CR, LF, NUL) removed,
    bytes that are not UTF-8 replaced (U+FFFD)."""
    if value is None:
        return ""
    if not isinstance(value, str):  # an email.header.Header for undecodable bytes
        value = str(value)
    # The parser keeps bytes that are not ASCII as lone surrogates, which no database column takes.
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL.sub(" ", value).strip()[:MAX_FIELD_CHARS]


def _address(value: str | None) -> str:
    """The address of an ``rfc822; user@host`` field (other address types: empty)."""
    if not value:
        return ""
    kind, _, address = value.partition(";")
    if not address:
        kind, address = "rfc822", kind
    if kind.strip().lower() != "rfc822":
        return ""
    address = address.strip().strip("<>").strip()
    if "@" not in address or " " in address or len(address) > MAX_ADDRESS_CHARS:
        return ""
    return address


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
