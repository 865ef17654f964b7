"""One transactional message to one address (the HTTP API's ``POST /api/send``): a receipt, a reminder, a reply.

It goes out from the non-subscription identity (``[web] confirm_from``,
else the sender: :attr:`newsletter.config.Settings.transactional_sender`),
with no list headers, and never to a suppressed address (unsubscribed from
everything, bounced, complained, erased): that is a Conflict with the reason.

The body is Markdown (raw HTML in it is shown as text, not run); ``data``
fills its ``%%field%%`` tokens per recipient through the merge pass, which
escapes each value for the HTML part. The subject is one line: ``data``
is put into it here, each value on one line, so no value can add a header.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from newsletter.errors import ConfigError, Conflict, DeliveryError, InputError

SUBJECT_MAX = 200
BODY_MAX = 200_000
DATA_MAX = 100
VALUE_MAX = 10_000
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TOKEN = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*)(?::raw)?%%")


def send_one(store, settings, transport_factory, *, to: str, name: str | None, subject: str, markdown: str,
             data: dict[str, str]) -> dict[str, Any]:
    """Send one message; returns ``to``, ``message_id`` and ``outcome``. Raises before sending on any bad value."""
    from newsletter.audience.fields import clean_name, one_line
    from newsletter.delivery.message import Message, Outcome, Recipient
    from newsletter.delivery.mime import new_message_id
    from newsletter.store.audience import suppression_reason
    from newsletter.vocabulary import address_hash, normalise_address

    address = normalise_address(to)
    person = clean_name(name) or ""
    values = _clean_data(data)
    title = one_line(subject)
    if not title or len(title) > SUBJECT_MAX:
        raise InputError(f"the subject is one line of 1 to {SUBJECT_MAX} characters", hint="e.g. Your appointment")
    if not markdown.strip() or len(markdown) > BODY_MAX or "\x00" in markdown:
        raise InputError(f"the body is Markdown text of 1 to {BODY_MAX} characters",
                         hint="e.g. Hello %%name%%, your appointment is on %%day%%.")
    if not settings.sender_address:
        raise ConfigError("transactional mail is not set up: the sender address is missing", hint="set NEWSLETTER_FROM")
    with store.session() as session:
        reason = suppression_reason(session, address_hash(address))
    if reason:
        raise Conflict(f"{address} is on the suppression list ({reason}); nothing was sent",
                       hint="a suppressed address gets no mail from us; they can subscribe again themselves")
    title = _TOKEN.sub(lambda m: one_line(values.get(m.group(1), "")), title)
    merge = {"email": address, "name": person, **values}
    # The HTML part takes escaped values (%%field%%), the text part raw ones (%%field:raw%%), whatever was written.
    html = _TOKEN.sub(lambda m: f"%%{m.group(1)}%%", _html(markdown, title))
    text = _TOKEN.sub(lambda m: f"%%{m.group(1)}:raw%%", markdown.rstrip("\n") + "\n")
    message = Message(subject=title, from_email=settings.transactional_sender, html=html, text=text,
                      tags=["transactional"],
                      metadata={"kind": "transactional"})
    recipient = Recipient(email=address, message_id=new_message_id(settings.sender_address), name=person,
                          merge_data=merge)
    with transport_factory(settings) as transport:
        [result] = transport.send_batch(message, [recipient])
    if result.outcome in (Outcome.REJECTED, Outcome.FAILED):
        raise DeliveryError("the message could not be sent", hint="check the address, or try again later")
    return {"to": address, "message_id": result.message_id, "outcome": result.outcome.value}


def _clean_data(data: dict[str, str]) -> dict[str, str]:
    if len(data) > DATA_MAX:
        raise InputError(f"data has more than {DATA_MAX} fields", hint="send only what the message uses")
    cleaned = {}
    for key, value in data.items():
        if not _FIELD.fullmatch(key):
            raise InputError(f"data field {key[:40]!r} is not a name of letters, digits and _",
                             hint="use it in the body as %%field_name%%")
        if len(value) > VALUE_MAX or "\x00" in value:
            raise InputError(f"data field {key!r} is longer than {VALUE_MAX} characters or holds NUL",
                             hint="send a shorter value")
        cleaned[key] = value
    return cleaned


def _html(markdown: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).render(markdown)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f'<body style="font-family:sans-serif;line-height:1.5">{body}</body></html>')
