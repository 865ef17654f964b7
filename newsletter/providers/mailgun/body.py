"""The Mailgun Messages API form: one edition, up to 1,000 recipients, personalised by recipient-variables.

Mailgun's batch sending (``POST /v3/<domain>/messages``): every address in
``to`` gets its own copy when ``recipient-variables`` is given, a JSON
object keyed by address whose values replace ``%recipient.KEY%`` anywhere
in the message, headers and custom variables included. So:

- our merge tokens become Mailgun's: ``%%name%%`` -> ``%recipient.name%``
  (the HTML-escaped value), ``%%name:raw%%`` -> ``%recipient.name:raw%``;
  in the subject, ``%recipient.subject:name...%`` holds the value on one line
  (a merge value with a line break must not end the Subject header);
- per-recipient headers (List-Unsubscribe, List-Unsubscribe-Post, our
  Message-ID) are ``h:Name = %recipient.h:Name%``; per-recipient custom
  variables (our Message-ID, the subscriber id) are ``v:key = %recipient.v:key%``,
  the way django-anymail maps its per-recipient metadata, so that every
  webhook event carries them back in ``user-variables``;
- every key a recipient lacks is sent empty: Mailgun would otherwise leave
  the raw ``%recipient.x%`` in the message.

Addresses: domains go out IDNA-encoded (``newsletter.delivery.wire``);
Mailgun checks addresses "in accordance with RFC5321, RFC5322, RFC6854"
(no SMTPUTF8), so an address with non-ASCII characters before the @ is
REJECTED alone before the request (the API would refuse the whole request).
Names lose control characters and go out as ``formataddr`` writes them
(quoted when they hold a comma, RFC 2047 words when not ASCII).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import formataddr
from html import escape

from newsletter.delivery.base import BUILD_ERRORS, unbuildable
from newsletter.delivery.merge import TOKEN
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.wire import UnsendableAddress, clean_name, one_line, parse_mailbox, wire_address

MAX_RECIPIENTS = 1000
MAX_TAGS = 3            # Mailgun keeps at most 3 tags per message
MAX_TAG_CHARS = 128
MESSAGE_ID_VARIABLE = "message_id"  # v:message_id: our Message-ID, echoed in events' user-variables

Field = tuple[str, str]
# One substitution: (recipient-variables key, merge field, raw form, for the subject)
Slot = tuple[str, str, bool, bool]


@dataclass(frozen=True)
class Shared:
    """The parts of a form every batch of one edition shares (built once per message)."""

    fields: list[Field]   # from, subject, text, html, h:Reply-To, message headers, o:tag, o:testmode
    slots: list[Slot]     # the substitutions the subject and bodies use
    metadata: dict[str, str]  # the message's custom variables (v:), each recipient's may override


def shared_parts(message: Message, *, test_mode: bool = False) -> Shared:
    """The form fields of ``message`` that do not depend on the recipients.

    Raises UnsendableAddress for a sender (or reply-to) Mailgun cannot take.
    """
    slots: dict[str, Slot] = {}

    def rewrite(template: str, subject: bool) -> str:
        def replace(match) -> str:
            field, raw = match.group(1), bool(match.group(2))
            key = ("subject:" if subject else "") + field + (":raw" if raw else "")
            slots.setdefault(key, (key, field, raw, subject))
            return f"%recipient.{key}%"

        return TOKEN.sub(replace, template)

    fields: list[Field] = [("from", _mailbox(message.from_email, "sender")),
                           ("subject", rewrite(message.subject, True) or "-"),
                           ("text", rewrite(message.text, False)),
                           ("html", rewrite(message.html, False))]
    if message.reply_to:
        fields.append(("h:Reply-To", _mailbox(message.reply_to, "reply-to address")))
    fields += [(f"h:{name}", one_line(str(value))) for name, value in message.headers.items()]
    tags = [t for t in (str(tag).strip() for tag in message.tags) if t and t.isascii() and t.isprintable()]
    fields += [("o:tag", tag[:MAX_TAG_CHARS]) for tag in list(dict.fromkeys(tags))[:MAX_TAGS]]
    if test_mode:
        fields.append(("o:testmode", "yes"))
    return Shared(fields, list(slots.values()), {k: str(v) for k, v in message.metadata.items()})


def build_form(shared: Shared, recipients: list[Recipient]):
    """The form for ``recipients``: ``(fields, included, results)``.

    ``fields`` is the list of ``(name, value)`` pairs to post (one ``to``
    field, comma-separated; ``recipient-variables`` last); ``included`` the
    indexes of recipients in it; ``results`` one slot per recipient, None
    for those included, REJECTED for an address Mailgun cannot take, FAILED
    and retryable for a second copy of an address already in this request
    (recipient-variables are keyed by address: it goes in a later batch).
    """
    results: list[SendResult | None] = [None] * len(recipients)
    included: list[int] = []
    to: list[str] = []
    variables: dict[str, dict[str, str]] = {}
    header_names: dict[str, None] = {}
    metadata_names: dict[str, None] = dict.fromkeys(shared.metadata)
    rows = []
    for index, recipient in enumerate(recipients):
        try:
            address = _address(recipient.email)
            headers = {name: one_line(str(value)) for name, value in recipient.headers.items()}
            headers["Message-Id"] = f"<{recipient.message_id}>"
            metadata = {**shared.metadata, **{k: str(v) for k, v in recipient.metadata.items()},
                        MESSAGE_ID_VARIABLE: recipient.message_id}
            values = _values(recipient.merge_data, shared.slots)
            mailbox = formataddr((clean_name(recipient.name), address))
        except BUILD_ERRORS as exc:  # this recipient's data, not the batch's
            results[index] = (SendResult(recipient.message_id, Outcome.REJECTED, error=str(exc))
                              if isinstance(exc, _Refused) else unbuildable(recipient, exc))
            continue
        if address in variables:
            results[index] = SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                        error="the same address twice in one request: send it again later")
            continue
        header_names.update(dict.fromkeys(headers))
        metadata_names.update(dict.fromkeys(metadata))
        variables[address] = values
        rows.append((values, headers, metadata))
        to.append(mailbox)
        included.append(index)
    for values, headers, metadata in rows:
        for name in header_names:
            values[f"h:{name}"] = headers.get(name, "")
        for name in metadata_names:
            values[f"v:{name}"] = metadata.get(name, "")
    fields = list(shared.fields)
    fields.append(("to", ", ".join(to)))
    fields += [(f"h:{name}", f"%recipient.h:{name}%") for name in header_names]
    fields += [(f"v:{name}", f"%recipient.v:{name}%") for name in metadata_names]
    fields.append(("recipient-variables", json.dumps(variables, separators=(",", ":"))))
    return fields, included, results


class _Refused(UnsendableAddress):
    """An address Mailgun would refuse; the message says why."""


def _address(email: str) -> str:
    address = wire_address(email)
    if not address.isascii():
        raise _Refused("Mailgun does not accept non-ASCII characters before the @ (it checks RFC 5321/5322 syntax)")
    return address


def _values(merge_data: dict, slots: list[Slot]) -> dict[str, str]:
    """The recipient's value for every substitution the templates use ("" when it has none)."""
    values: dict[str, str] = {}
    for key, field, raw, subject in slots:
        value = merge_data.get(field)
        if value is None and field == "first_name":  # as MergeTemplate: values made before the field existed
            value = next(iter(str(merge_data.get("name") or "").split()), "")
        text = "" if value is None else str(value)
        if not raw:
            text = escape(text, quote=True)
        values[key] = one_line(text) if subject else text
    return values


def _mailbox(value: str, what: str) -> str:
    """A ``Name <address>`` setting as Mailgun takes it (the name an RFC 2047 word when not ASCII)."""
    name, address = parse_mailbox(value)
    if not address.isascii():
        raise UnsendableAddress(f"Mailgun does not accept non-ASCII characters before the @ of the {what}")
    return formataddr((name, address))
