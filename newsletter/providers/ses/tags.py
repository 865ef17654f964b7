"""Our ids as SES message tags, and back.

SES replaces the Message-ID header of every message it sends ("If you
provide a Message-ID header, Amazon SES overrides the header with its own
value", SES developer guide, header fields), so our Message-ID travels
twice: in the ``X-Newsletter-Message-ID`` header (events list the original
headers) and in message tags (events always carry them, in ``mail.tags``).

A tag value may hold only ASCII letters, digits, ``_`` and ``-``, at most
256 characters (API reference, ``MessageTag``). Our Message-IDs,
``nl.<tag>.<campaign>.<delivery>.<nonce>@<domain>`` (``newsletter.delivery.message_id``;
older ones have no ``.<nonce>``), are written ``nl_<tag>_<campaign>_<delivery>_<nonce>``
(the domain is the sender's, read back from the event's ``mail.source``).
"""

from __future__ import annotations

import re

MESSAGE_TAG = "newsletter_message"
CAMPAIGN_TAG = "newsletter_campaign"
_VALUE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_OURS = re.compile(r"nl\.([0-9a-f]{1,64})\.(\d{1,12})\.(\d{1,12})(?:\.([0-9a-f]{1,32}))?@")
_TAGGED = re.compile(r"nl_([0-9a-f]{1,64})_(\d{1,12})_(\d{1,12})(?:_([0-9a-f]{1,32}))?")


def valid_value(value: str) -> bool:
    """Whether SES takes ``value`` as a tag name or value."""
    return bool(_VALUE.fullmatch(value))


def message_tags(message_id: str, campaign_id: str | None) -> list[dict[str, str]]:
    """The ``EmailTags`` for one message: our Message-ID (when it is ours) and the campaign id.

    A value SES would refuse is left out rather than failing the send (the
    header still carries the Message-ID).
    """
    tags = []
    match = _OURS.match(message_id)
    if match:
        nonce = match.group(4)
        tags.append({"Name": MESSAGE_TAG, "Value": "nl_{}_{}_{}".format(*match.groups()[:3])
                     + (f"_{nonce}" if nonce else "")})
    if campaign_id and valid_value(campaign_id):
        tags.append({"Name": CAMPAIGN_TAG, "Value": campaign_id})
    return tags


def message_id_from_tag(value: str, domain: str) -> str | None:
    """Our Message-ID from a ``newsletter_message`` tag value (None when it is not one of ours)."""
    match = _TAGGED.fullmatch(value)
    if not match:
        return None
    nonce = match.group(4)
    return "nl.{}.{}.{}{}@{}".format(*match.groups()[:3], f".{nonce}" if nonce else "", domain or "invalid")
