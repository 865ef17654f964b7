"""The Postmark ``POST /email/batch`` request body: one complete message per recipient.

Postmark's batch endpoint takes a JSON array of up to 500 messages (50 MB a
request, 10 MB a message) and has no per-recipient substitutions outside its
stored templates, so each recipient's message carries its own merged
subject, HTML and text. A 500-message batch of a 30 kB edition is 15 MB of
JSON: encoding it with ``json.dumps`` per request would dominate the send.
:class:`BatchBuilder` therefore JSON-escapes the edition's literal pieces
once (:class:`JsonTemplate`) and, per recipient, escapes only the merge
values and joins; the result is byte-for-byte what ``json.dumps`` (ASCII
escapes) would write for the same message.

Addresses and names (``newsletter.delivery.wire``): domains go out
IDNA-encoded; an address with non-ASCII characters before the @ is
REJECTED alone (Postmark offers no SMTPUTF8); a name loses control
characters, is written as an RFC 5322 quoted string, and is left out when
it holds ``,`` or ``;`` (Postmark splits ``To`` on commas).

Our ids: the Message-ID goes in ``Headers`` and in ``Metadata`` as
``message_id`` (events come back with Postmark's own MessageID and our
Metadata). Postmark limits metadata (custom metadata FAQ) to 10 fields, keys
of at most 20 characters and values of at most 80: ``message_id`` comes
first; an id longer than 80 characters is sent as its part up to and
including the ``@`` (all ``newsletter.delivery.message_id.parse`` reads);
other fields that do not fit are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from newsletter.delivery.base import BUILD_ERRORS, unbuildable
from newsletter.delivery.merge import TOKEN, MergeTemplate
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.wire import MAX_NAME, UnsendableAddress, clean_name, one_line, parse_mailbox, wire_address

MAX_MESSAGES = 500                  # messages per batch request (Postmark's limit)
MAX_REQUEST_BYTES = 50_000_000      # a batch request, in bytes (Postmark: 50 MB)
MAX_MESSAGE_BYTES = 10_000_000      # one message (Postmark: 10 MB)
MAX_METADATA_FIELDS = 10
MAX_METADATA_KEY = 20
MAX_METADATA_VALUE = 80
MAX_TAG = 1000
MESSAGE_ID_HEADER = "X-Newsletter-Message-ID"

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _escaped(text: str) -> str:
    """``text`` as the inside of a JSON string (ASCII escapes, no surrounding quotes)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text  # nothing to escape: the common case for merge values
    return _encode(text)[1:-1]


class JsonTemplate:
    """A text with merge tokens, rendered straight into the inside of a JSON string.

    Renders as ``MergeTemplate(text).render(values)`` would, then
    JSON-escaped, at the cost of escaping the values only.
    """

    __slots__ = ("_bytes", "_literals", "_slots", "fields")

    def __init__(self, template: str):
        pieces = TOKEN.split(template)
        self._literals = [_escaped(piece) for piece in pieces[0::3]]
        self._bytes = [literal.encode("ascii") for literal in self._literals]
        self._slots = [(field, bool(raw)) for field, raw in zip(pieces[1::3], pieces[2::3], strict=True)]
        self.fields = frozenset(field for field, _ in self._slots)

    def _values(self, values: Mapping[str, Any]) -> list[str]:
        """The escaped value of each slot, in order."""
        out = []
        for field, raw in self._slots:
            value = values.get(field)
            if value is None and field == "first_name":  # as MergeTemplate: values made before the field existed
                value = next(iter(str(values.get("name") or "").split()), "")
            value = "" if value is None else str(value)
            out.append(_escaped(value if raw else escape(value, quote=True)))
        return out

    def render(self, values: Mapping[str, Any]) -> str:
        """The inside of the JSON string, as text."""
        literals = self._literals
        out = [literals[0]]
        for index, value in enumerate(self._values(values), start=1):
            out.append(value)
            out.append(literals[index])
        return "".join(out)

    def render_into(self, out: list[bytes], values: Mapping[str, Any]) -> None:
        """Append the inside of the JSON string to ``out``, as ASCII pieces (joined once by the caller)."""
        literals = self._bytes
        out.append(literals[0])
        for index, value in enumerate(self._values(values), start=1):
            out.append(value.encode("ascii"))
            out.append(literals[index])


def mailbox(address: str, name: str | None) -> str:
    """``"Name" <address>`` (or the bare address) as Postmark's From/To take it.

    Raises :class:`UnsendableAddress` for an address that cannot be written
    or has non-ASCII characters before the @.
    """
    wire = wire_address(address)
    if not wire.isascii():
        raise UnsendableAddress("Postmark does not accept non-ASCII characters before the @ (it offers no SMTPUTF8)")
    if name and not (name.isascii() and name.isprintable() and len(name) <= MAX_NAME):
        name = clean_name(name)
    name = (name or "").strip()
    if not name or "," in name or ";" in name:
        return wire
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{wire}>'


def _strings(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in mapping.items()}


def metadata(shared: Mapping[str, Any], own: Mapping[str, Any], message_id: str) -> dict[str, str]:
    """The ``Metadata`` of one message within Postmark's limits (see the module docstring)."""
    carried = message_id if len(message_id) <= MAX_METADATA_VALUE else message_id.partition("@")[0] + "@"
    result = {"message_id": carried}
    seen = {"message_id"}
    for key, value in {**_strings(shared), **_strings(own)}.items():
        if len(result) >= MAX_METADATA_FIELDS:
            break
        folded = key.lower()
        if folded in seen or not key or len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            continue
        seen.add(folded)  # Postmark refuses keys that differ only in case
        result[key] = value
    return result


class BatchBuilder:
    """Builds the messages of one edition for any number of recipients (built once per Message)."""

    def __init__(self, message: Message, stream: str):
        name, address = parse_mailbox(message.from_email)
        if not address.isascii():
            raise UnsendableAddress("Postmark does not accept non-ASCII characters before the @ of the sender")
        self.message = message
        self.subject = MergeTemplate(message.subject)  # short: merged, put on one line, then escaped
        self.html = JsonTemplate(message.html)
        self.text = JsonTemplate(message.text)
        shared = {
            "From": mailbox(address, name),
            "MessageStream": stream,
        }
        if message.reply_to:
            reply_name, reply_address = parse_mailbox(message.reply_to)
            shared["ReplyTo"] = mailbox(reply_address, reply_name)
        if message.tags:
            shared["Tag"] = one_line(str(message.tags[0]))[:MAX_TAG]
        # The shared fields as JSON members, written once: '"From":"...","MessageStream":"..."'.
        self._shared = _encode(shared)[1:-1]
        self._headers = _strings(message.headers)
        self._shared_metadata = _strings(message.metadata)

    def entry(self, recipient: Recipient) -> bytes:
        """One recipient's message as a JSON object, in ASCII bytes preceded by a comma (the array's
        separator, so a request body is its entries one after the other); raises BUILD_ERRORS for bad data."""
        to = mailbox(recipient.email, recipient.name)
        values = recipient.merge_data
        # A merged value with a line break must not break the Subject header.
        subject = _escaped(one_line(self.subject.render(values)))
        headers = {**self._headers, **_strings(recipient.headers), "Message-ID": f"<{recipient.message_id}>",
                   MESSAGE_ID_HEADER: recipient.message_id}
        meta = metadata(self._shared_metadata, recipient.metadata, recipient.message_id)
        out = [(f',{{"To":"{_escaped(to)}","Subject":"{subject or "-"}",{self._shared},"HtmlBody":"').encode("ascii")]
        self.html.render_into(out, values)
        out.append(b'","TextBody":"')
        self.text.render_into(out, values)
        out.append("".join((
            '","Headers":[', ",".join([f'{{"Name":"{_escaped(k)}","Value":"{_escaped(v)}"}}'
                                      for k, v in headers.items()]),
            '],"Metadata":{', ",".join([f'"{_escaped(k)}":"{_escaped(v)}"' for k, v in meta.items()]), "}}",
        )).encode("ascii"))
        return b"".join(out)

    def entries(self, recipients: list[Recipient]) -> tuple[list[tuple[int, bytes]], list[SendResult | None]]:
        """``(entries, results)``: ``(index, json)`` for each recipient that can go, and one
        result slot per recipient: None for those in ``entries``, REJECTED for the others."""
        entries: list[tuple[int, bytes]] = []
        results: list[SendResult | None] = [None] * len(recipients)
        for index, recipient in enumerate(recipients):
            try:
                entry = self.entry(recipient)
            except BUILD_ERRORS as exc:  # this recipient's data, not the batch's
                results[index] = unbuildable(recipient, exc)
                continue
            if len(entry) > MAX_MESSAGE_BYTES:
                results[index] = SendResult(recipient.message_id, Outcome.REJECTED,
                                            error="message over Postmark's 10 MB limit")
                continue
            entries.append((index, entry))
        return entries, results


def chunks(entries: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    """``entries`` in request-sized groups: at most 500 messages and 50 MB each."""
    groups: list[list[tuple[int, bytes]]] = []
    current: list[tuple[int, bytes]] = []
    size = 1  # the closing bracket (each entry's comma stands for the opening one)
    for item in entries:
        if current and (len(current) >= MAX_MESSAGES or size + len(item[1]) > MAX_REQUEST_BYTES):
            groups.append(current)
            current, size = [], 1
        current.append(item)
        size += len(item[1])
    if current:
        groups.append(current)
    return groups


def parts(group: list[tuple[int, bytes]]) -> list[bytes]:
    """The request body of one group as pieces to send one after the other (the JSON array of its
    messages): no 50 MB join, which would cost more in fresh memory than the copy itself."""
    pieces = [b"[" + group[0][1][1:]] if group else [b"["]
    pieces.extend(entry for _, entry in group[1:])
    pieces.append(b"]")
    return pieces


def payload(group: list[tuple[int, bytes]]) -> bytes:
    """The request body of one group in one piece."""
    return b"".join(parts(group))
