"""Our campaign Message-IDs: ``nl.<tag>.<campaign>.<delivery>.<nonce>@<domain>``, made and read here only.

The engine gives every ledger row a Message-ID of this form (stable across
resumes: a resent message keeps its id); providers echo it back in their
events, and the event pipeline finds the ledger row from it. ``tag`` is
keyed by the workspace's secret key, so two workspaces sending from one
domain never share ids and events for other senders' mail are told apart;
every key of the rotation is accepted when reading.

``nonce`` is random, drawn once per campaign and stored with it: campaign
and delivery numbers start again at 1 in a rebuilt database, and with the
same secret the ids would repeat, which Gmail answers by silently dropping
the "duplicate". Ids made before the nonce existed (no ``.<nonce>``) still
parse, so events for old mail keep matching.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

PATTERN = re.compile(r"^nl\.([0-9a-f]+)\.(\d{1,12})\.(\d{1,12})(?:\.([0-9a-f]{8,32}))?@")
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL; a larger one cannot be ours
NONCE_CHARS = 16  # 64 random bits: a repeat across rebuilt databases is out of reach
_NONCE = re.compile(r"^[0-9a-f]{8,32}$")


def new_nonce() -> str:
    """A fresh random nonce for one campaign's Message-IDs (hex, ``NONCE_CHARS`` long)."""
    return secrets.token_hex(NONCE_CHARS // 2)


def tag(secret_key: str) -> str:
    """The workspace tag our Message-IDs carry for ``secret_key``."""
    return hmac.new(secret_key.encode(), b"message-id", hashlib.sha256).hexdigest()[:10]


def tags(secret_keys: Iterable[str]) -> frozenset[str]:
    """The tags our Message-IDs may carry: one per key, so rotation keeps old mail matched."""
    return frozenset(tag(key) for key in secret_keys)


def id_template(secret_key: str, campaign_id: int, sender_address: str, nonce: str = "") -> str:
    """A ``str.format`` template with one ``{}`` for the delivery id (one format call per recipient).

    ``nonce`` is the campaign's stored random part (:func:`new_nonce`; the
    engine always passes it); ``""`` makes the form without one, as for
    campaigns created before nonces existed (such ids match by numbers alone).
    """
    domain = sender_address.rpartition("@")[2] or "localhost"
    if nonce and not _NONCE.match(nonce):
        raise ValueError("a Message-ID nonce is 8 to 32 lowercase hex characters")
    suffix = f".{nonce}" if nonce else ""
    return f"nl.{tag(secret_key)}.{campaign_id}.{{}}{suffix}@{domain}"


@dataclass(frozen=True)
class OurMessageId:
    """The ids one of our Message-IDs names, and its campaign nonce when it carries one (ids of the old
    form and those rebuilt from a VERP tag do not). Two are equal when their ids are."""

    campaign_id: int
    delivery_id: int
    nonce: str | None = field(default=None, compare=False)

    def same_campaign(self, stored_nonce: str | None) -> bool:
        """False only when both this id and the campaign carry a nonce and they differ: the id was made
        for a campaign of another database (rebuilt with the same secret) that had the same number."""
        return self.nonce is None or stored_nonce is None or self.nonce == stored_nonce


def parse(message_id: str | None, known_tags: frozenset[str]) -> OurMessageId | None:
    """The ids in ``message_id`` when it is ours (a known tag, ids a row can have), else None."""
    match = PATTERN.match(message_id or "")
    if not match or match.group(1) not in known_tags:
        return None
    campaign_id, delivery_id = int(match.group(2)), int(match.group(3))
    if not (0 < campaign_id <= MAX_ID and 0 < delivery_id <= MAX_ID):
        return None
    return OurMessageId(campaign_id, delivery_id, match.group(4))


# VERP (variable envelope return path): the envelope sender of each message names its delivery, so a
# bounce that comes back by mail, to ``bounces+<verp tag>@domain``, is matched to its ledger row even when
# the bounce quotes nothing of the message. The tag is ``<campaign>.<delivery>.<mac>``: the mac, an HMAC
# of both ids under the workspace secret, proves the address is ours (a forged bounce cannot name another
# delivery). At most 10 + 1 + 10 + 1 + 16 = 38 characters of RFC 5321 atext, so ``bounces+`` and the tag
# fit a 64-character local part.
_ANY_OURS = re.compile(r"^nl\.[0-9a-f]+\.(\d{1,12})\.(\d{1,12})(?:\.[0-9a-f]{8,32})?@")
VERP_TAG = re.compile(r"^(\d{1,10})\.(\d{1,10})\.([0-9a-f]{16})$")
VERP_MAC_CHARS = 16


def _verp_mac(secret_key: str, campaign_id: int, delivery_id: int) -> str:
    return hmac.new(secret_key.encode(), f"verp.{campaign_id}.{delivery_id}".encode(),
                    hashlib.sha256).hexdigest()[:VERP_MAC_CHARS]


def verp_tag(secret_key: str, our_message_id: str) -> str | None:
    """The VERP tag naming the delivery of ``our_message_id`` (one of ours), or None for any other id."""
    match = _ANY_OURS.match(our_message_id)
    if not match:
        return None
    campaign_id, delivery_id = int(match.group(1)), int(match.group(2))
    if not (0 < campaign_id <= MAX_ID and 0 < delivery_id <= MAX_ID):
        return None
    return f"{campaign_id}.{delivery_id}.{_verp_mac(secret_key, campaign_id, delivery_id)}"


def parse_verp_tag(value: str, secret_keys: Iterable[str]) -> OurMessageId | None:
    """The delivery a VERP tag names when its mac holds under one of ``secret_keys``, else None."""
    match = VERP_TAG.match(value.lower())
    if not match:
        return None
    campaign_id, delivery_id = int(match.group(1)), int(match.group(2))
    if not (0 < campaign_id <= MAX_ID and 0 < delivery_id <= MAX_ID):
        return None
    for key in secret_keys:
        if hmac.compare_digest(_verp_mac(key, campaign_id, delivery_id), match.group(3)):
            return OurMessageId(campaign_id, delivery_id)
    return None


def message_id_for(secret_key: str, ids: OurMessageId, domain: str) -> str:
    """Our Message-ID for ``ids`` under ``secret_key`` (what a VERP bounce stands for, for the event pipeline).

    Without the campaign's nonce (a VERP tag does not carry it): :func:`parse`
    reads the same ids from it, which is all the pipeline matches on.
    """
    return id_template(secret_key, ids.campaign_id, f"@{domain}", nonce="").format(ids.delivery_id)
