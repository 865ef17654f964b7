"""The SendGrid v3 Mail Send request body: one edition, up to 1,000 personalizations.

The body is a plain dict: the library's helper classes cost ~5x more per
1,000-recipient body, and ``Mail.add_personalization`` inserts at index 0.

Addresses and names (``newsletter.delivery.wire``): domains go out
IDNA-encoded; SendGrid offers no SMTPUTF8, so an address with non-ASCII
characters before the @ is REJECTED alone, before the request (the API
would refuse the whole request with "Does not contain a valid address.");
names lose control characters, and a name with ``,`` or ``;`` is left out
(see :func:`_recipient`); ``from.name`` is plain UTF-8 JSON, decoded from
the RFC 2047 word ``formataddr`` makes of a non-ASCII sender name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from typing import Any

from newsletter.delivery.base import BUILD_ERRORS, unbuildable
from newsletter.delivery.merge import TOKEN, token
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.wire import MAX_NAME, UnsendableAddress, clean_name, one_line, parse_mailbox, wire_address

MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MESSAGE_ID_HEADER = "X-Newsletter-Message-ID"
# merge field -> its (HTML-escaped, raw) substitution tokens; None for a form no template uses
Plan = dict[str, tuple[str | None, str | None]]
# the same as (field, escaped token, raw token) triples, as a personalization walks them
Steps = tuple[tuple[str, str | None, str | None], ...]


def build_body(message: Message, recipients: list[Recipient], *, sandbox: bool = False,
               ) -> tuple[dict[str, Any], list[int], list[SendResult | None]]:
    """The v3 request body for ``recipients``, as a plain dict.

    Returns ``(body, included, results)``: ``included`` lists the indexes of
    recipients in the body; ``results`` has one slot per recipient, None for
    those included and a REJECTED result for any SendGrid would refuse (merge
    data over the 10,000-byte substitution limit, ids over the custom_args
    limit), so that one bad row does not sink its 999 neighbours.
    """
    from_name, from_email = _sender(message.from_email)
    # Every token a template uses gets a substitution, empty when the
    # recipient has no value: SendGrid would otherwise leave the raw token.
    plan = _token_plan(message.html, message.text, message.subject)
    subject_fields = {match.group(1) for match in TOKEN.finditer(message.subject)}
    subject = (message.subject, subject_fields) if subject_fields else None
    steps = tuple((field, escaped, raw) for field, (escaped, raw) in plan.items())
    shared_args = _strings(message.metadata)
    personalizations: list[dict[str, Any]] = []
    included: list[int] = []
    results: list[SendResult | None] = [None] * len(recipients)
    for index, recipient in enumerate(recipients):
        try:
            entry = _personalization(recipient, steps, shared_args, subject)
        except BUILD_ERRORS as exc:  # this recipient's data, not the batch's
            results[index] = unbuildable(recipient, exc)
            continue
        if isinstance(entry, str):
            results[index] = SendResult(recipient.message_id, Outcome.REJECTED, error=entry)
            continue
        personalizations.append(entry)
        included.append(index)
    body: dict[str, Any] = {
        "personalizations": personalizations,
        "from": _address(from_email, from_name),
        "subject": message.subject,
        "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}],
    }
    if message.reply_to:
        name, email = _sender(message.reply_to)
        body["reply_to"] = _address(email, name)
    if message.headers:
        body["headers"] = {k: str(v) for k, v in message.headers.items()}
    if message.tags:
        body["categories"] = list(dict.fromkeys(str(t)[:255] for t in message.tags))[:MAX_CATEGORIES]
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body, included, results


def _personalization(recipient: Recipient, steps: Steps, shared_args: dict[str, str],
                     subject: tuple[str, set[str]] | None = None) -> dict[str, Any] | str:
    """One recipient's personalization, or why SendGrid would refuse it.

    ``subject``: the subject template and the fields it uses, when it uses
    any. A merge value with a line break or other control character would
    break the Subject header SendGrid writes: that recipient gets their own
    subject, merged and on one line.
    """
    subs, size = _substitutions(recipient.merge_data, steps)
    # ``size`` counts the characters of the merge values; each becomes at most
    # 10 bytes (4 raw + 6 escaped), keys are short tokens: the exact UTF-8
    # count runs only for unusually large merge data.
    if size * 10 + 2_000 > MAX_SUBSTITUTION_BYTES and _over(subs, MAX_SUBSTITUTION_BYTES):
        return "merge data over SendGrid's 10,000-byte substitution limit"
    metadata = _strings(recipient.metadata)
    args = {**shared_args, **metadata, "message_id": recipient.message_id}
    if _over(args, MAX_CUSTOM_ARGS_BYTES - 200):  # room for JSON quoting
        return "metadata over SendGrid's 10,000-byte custom_args limit"
    to = _recipient(recipient.email, recipient.name)
    if isinstance(to, str):
        return to
    headers = {**_strings(recipient.headers), MESSAGE_ID_HEADER: recipient.message_id}
    entry = {"to": [to], "headers": headers, "custom_args": args}
    if subs:
        entry["substitutions"] = subs
    if subject is not None:
        values = recipient.merge_data
        for field in subject[1]:
            value = values.get(field)
            if value and not str(value).isprintable():
                from newsletter.delivery.merge import MergeTemplate

                entry["subject"] = one_line(MergeTemplate(subject[0]).render(values)) or "-"
                break
    return entry


_NEEDS_ESCAPE = re.compile("[&<>\"']").search


def _token_plan(*templates: str) -> dict[str, tuple[str | None, str | None]]:
    """For each field the templates use: its escaped-form token and raw-form token, None when unused.

    Only tokens that occur get a substitution: a smaller body, and no escaping
    of values nobody sees (SendGrid substitutes in subject and content only).
    """
    used = {(match.group(1), bool(match.group(2))) for text in templates for match in TOKEN.finditer(text)}
    return {
        field: (token(field) if (field, False) in used else None,
                token(field, raw=True) if (field, True) in used else None)
        for field in {field for field, _ in used}
    }


def _substitutions(values: Mapping[str, Any], steps: Steps) -> tuple[dict[str, str], int]:
    """The substitutions of ``merge.substitutions(values)`` the templates use (``steps``: each used
    field with its tokens, from :func:`_token_plan`), and the characters of their values.

    Every used token is present, empty when the recipient has no value; a
    value is HTML-escaped only for the escaped form, and only when escaping
    changes it. Fields the templates do not use cost nothing.
    """
    subs: dict[str, str] = {}
    size = 0
    for field, escaped, raw in steps:
        value = values.get(field)
        if value.__class__ is not str:
            value = "" if value is None else str(value)
        size += len(value)
        if escaped is not None:
            subs[escaped] = escape(value, quote=True) if _NEEDS_ESCAPE(value) else value
        if raw is not None:
            subs[raw] = value
    return subs, size


def _strings(mapping: dict[str, Any]) -> dict[str, str]:
    """``mapping`` with every value a string (SendGrid refuses other JSON types); may be ``mapping`` itself."""
    for value in mapping.values():
        if value.__class__ is not str:
            return {k: str(v) for k, v in mapping.items()}
    return mapping


def _over(mapping: Mapping[str, str], limit: int) -> bool:
    """Whether the UTF-8 size of keys and values exceeds ``limit`` (cheap when clearly under)."""
    chars = sum(map(len, mapping)) + sum(map(len, mapping.values()))
    if chars * 4 <= limit:  # a character is at most 4 bytes
        return False
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items()) > limit


def _address(email: str, name: str | None) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _recipient(email: str, name: str | None) -> dict[str, str] | str:
    """The ``to`` entry for one recipient, or why SendGrid cannot take the address.

    SendGrid documents that ``to.name`` "cannot include either the ; or ,
    characters" and that such messages may be dropped while the API answers
    202. Quoting the name is not documented to help, so a name with either is
    left out: the message goes to the bare address (the greeting's merge
    field still has the full name) rather than being lost.
    """
    if name and name.isascii() and name.isprintable() and len(name) <= MAX_NAME and "," not in name and ";" not in name:
        name = name.strip()  # the common case, as clean_name would leave it
    elif name:
        name = clean_name(name)
        if "," in name or ";" in name:
            name = ""
    try:
        address = wire_address(email)
    except UnsendableAddress as exc:
        return str(exc)
    if not address.isascii():
        return "SendGrid does not accept non-ASCII characters before the @ (it offers no SMTPUTF8)"
    return {"email": address, "name": name} if name else {"email": address}


def _sender(value: str) -> tuple[str, str]:
    """``(name, address)`` of the sender (or reply-to) setting, as SendGrid takes them.

    The name is plain UTF-8 (JSON carries it), never the RFC 2047 word
    ``formataddr`` writes; SendGrid states "Unicode encoding is not supported
    for the from field", so a non-ASCII local part raises UnsendableAddress.
    """
    name, address = parse_mailbox(value)
    if not address.isascii():
        raise UnsendableAddress("SendGrid does not accept non-ASCII characters before the @ of the sender")
    return name, address
