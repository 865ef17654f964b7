"""The Mailgun Messages API form: one edition, up to 1,000 recipients, personalised by recipient-variables.

Mailgun's batch sending (``POST /v3/<domain>/messages``): every address in
``to`` gets its own copy when ``recipient-variables`` is given, a JSON
object keyed by address whose values replace ``%recipient.KEY%`` anywhere
in the message, headers and custom variables included. So:

- our merge tokens become Mailgun's: ``%%name%%`` -> ``%recipient.name%``
  (the HTML-escaped value), ``%%name:raw%%`` -> ``%recipient.raw:name%``;
  in the subject, ``%recipient.subject-raw:name%`` (or ``subject:name``)
  holds the value on one line (a merge value with a line break must not
  end the Subject header);
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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formataddr
from html import escape
from typing import Any

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
        def replace(match: re.Match[str]) -> str:
            field, raw = match.group(1), bool(match.group(2))
            # Prefixes no field name can hold (fields are [A-Za-z_][A-Za-z0-9_]*): keys never collide
            # with each other, nor with the "h:" and "v:" keys below.
            key = (("subject-raw:" if raw else "subject:") if subject else ("raw:" if raw else "")) + field
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


def build_form(shared: Shared, recipients: list[Recipient]) -> tuple[list[Field], list[int], list[SendResult | None]]:
    """The form for ``recipients``: ``(fields, included, results)``.

    ``fields`` is the list of ``(name, value)`` pairs to post (one ``to``
    field, comma-separated; ``recipient-variables`` last); ``included`` the
    indexes of recipients in it; ``results`` one slot per recipient, None
    for those included, REJECTED for an address Mailgun cannot take, FAILED
    and retryable for a second copy of an address already in this request
    (recipient-variables are keyed by address: it goes in a later batch).

    A header or custom variable whose value is the same for everyone in the
    request (List-Unsubscribe-Post, the campaign id) goes once as a plain
    field instead of a recipient variable.
    """
    results: list[SendResult | None] = [None] * len(recipients)
    included: list[int] = []
    to: list[str] = []
    variables: dict[str, dict[str, str]] = {}
    slots = shared.slots
    for index, recipient in enumerate(recipients):
        try:
            address = _address(recipient.email)
            values = _values(recipient.merge_data, slots)
            for name, value in recipient.headers.items():
                value = value if value.__class__ is str and value.isprintable() else one_line(str(value))
                values["h:" + name] = value
            values["h:Message-Id"] = f"<{recipient.message_id}>"
            for name, value in shared.metadata.items():
                values["v:" + name] = value
            for name, value in recipient.metadata.items():
                values["v:" + name] = value if value.__class__ is str else str(value)
            values["v:" + MESSAGE_ID_VARIABLE] = recipient.message_id
            name = recipient.name
            if name and name.isascii() and name.isprintable() and len(name) <= 200 and "\\" not in name \
                    and '"' not in name and not _SPECIALS(name):
                mailbox = f"{name.strip()} <{address}>" if name.strip() else address
            else:
                mailbox = formataddr((clean_name(name), address))
        except BUILD_ERRORS as exc:  # this recipient's data, not the batch's
            results[index] = (SendResult(recipient.message_id, Outcome.REJECTED, error=str(exc))
                              if isinstance(exc, _Refused) else unbuildable(recipient, exc))
            continue
        if address in variables:
            results[index] = SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                        error="the same address twice in one request: send it again later")
            continue
        variables[address] = values
        to.append(mailbox)
        included.append(index)
    fields = list(shared.fields)
    fields.append(("to", ", ".join(to)))
    fields += _options(variables)
    fields.append(("recipient-variables", json.dumps(variables, separators=(",", ":"))))
    return fields, included, results


_SPECIALS = re.compile(r'[()<>@,;:.\[\]]').search  # RFC 5322 specials: formataddr quotes such a name


def _options(variables: dict[str, dict[str, str]]) -> list[Field]:
    """The ``h:`` and ``v:`` fields; moves values shared by every recipient out of their variables."""
    rows = list(variables.values())
    names = dict.fromkeys(k for k in (rows[0] if rows else ()) if k[:2] in ("h:", "v:"))
    if any(len(row) != len(rows[0]) for row in rows):  # recipients with different headers or variables
        for row in rows:
            names.update(dict.fromkeys(k for k in row if k[:2] in ("h:", "v:")))
    fields: list[Field] = []
    for name in names:
        first = rows[0].get(name, "")
        if all(row.get(name, "") == first for row in rows):
            for row in rows:
                row.pop(name, None)
            fields.append((name, first))
        else:
            for row in rows:
                row.setdefault(name, "")
            fields.append((name, f"%recipient.{name}%"))
    return fields


class _Refused(UnsendableAddress):
    """An address Mailgun would refuse; the message says why."""


def _address(email: str) -> str:
    address = wire_address(email)
    if not address.isascii():
        raise _Refused("Mailgun does not accept non-ASCII characters before the @ (it checks RFC 5321/5322 syntax)")
    return address


def _values(merge_data: Mapping[str, Any], slots: list[Slot]) -> dict[str, str]:
    """The recipient's value for every substitution the templates use ("" when it has none)."""
    values: dict[str, str] = {}
    for key, field, raw, subject in slots:
        value = merge_data.get(field)
        if value.__class__ is not str:
            if value is None and field == "first_name":  # as MergeTemplate: values made before the field existed
                value = next(iter(str(merge_data.get("name") or "").split()), "")
            value = "" if value is None else str(value)
        if not raw and _NEEDS_ESCAPE(value):
            value = escape(value, quote=True)
        if subject and not value.isprintable():
            value = one_line(value)
        values[key] = value
    return values


_NEEDS_ESCAPE = re.compile("[&<>\"']").search


def _mailbox(value: str, what: str) -> str:
    """A ``Name <address>`` setting as Mailgun takes it (the name an RFC 2047 word when not ASCII)."""
    name, address = parse_mailbox(value)
    if not address.isascii():
        raise UnsendableAddress(f"Mailgun does not accept non-ASCII characters before the @ of the {what}")
    return formataddr((name, address))
