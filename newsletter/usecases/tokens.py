"""API tokens: create (the secret is shown once), list, revoke, and check one presented by a request.

A token's secret is ``nl_`` and 43 base64url characters (256 random bits);
only its SHA-256 is stored, so a copy of the database lets nobody in. Each
token has scopes (``SCOPES``: ``RESOURCE:read`` or ``RESOURCE:write``; write
implies read) and a rate limit in requests per second.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from newsletter.errors import InputError

SCOPES = {
    "subscribers:read": "read subscribers and their consent",
    "subscribers:write": "add, update, unsubscribe, erase and import subscribers",
    "lists:read": "read lists and their counts",
    "segments:read": "list segments and count them",
    "campaigns:read": "read campaigns, their status and report",
    "campaigns:write": "create, check, preview, schedule, cancel campaigns and send tests",
    "send:write": "send one transactional message",
}
PREFIX = "nl_"
NAME_MAX = 100
DEFAULT_RATE = 50  # requests per second; a website's signups need a few, a sync job more
RATE_MAX = 100_000
# last_used_at is written at most this often per token (one write a minute, not one per request)
LAST_USED_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenInfo:
    """What a request's token may do (never the secret, nor its hash)."""

    id: int
    name: str
    scopes: frozenset[str]
    rate_per_second: int
    last_used_at: datetime | None

    def allows(self, scope: str) -> bool:
        """``scope`` granted, or its ``:write`` sibling for a ``:read`` scope."""
        if scope in self.scopes:
            return True
        resource, _, level = scope.partition(":")
        return level == "read" and f"{resource}:write" in self.scopes


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def clean_token_name(name: str) -> str:
    """A token name: 1 to 100 letters, digits, ``-``, ``_`` or ``.`` (it becomes the consent source ``api:NAME``)."""
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise InputError(f"a token name is 1 to {NAME_MAX} ASCII letters, digits, '-', '_' or '.'",
                         hint="e.g. newsletter tokens create clinic-website --scope subscribers:write")
    return name


def clean_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    chosen = list(dict.fromkeys(s.strip() for s in scopes))
    if not chosen:
        raise InputError("say what the token may do", hint="add --scope subscribers:write (repeat for more); "
                                                           "scopes: " + ", ".join(SCOPES))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise InputError(f"unknown scope {unknown[0]!r}", hint="scopes: " + ", ".join(SCOPES))
    return chosen


def create_token(store, name: str, scopes: list[str] | tuple[str, ...], *, rate_per_second: int = DEFAULT_RATE,
                 now: datetime | None = None) -> dict[str, Any]:
    """Store a new token; returns its description with ``token``, the secret (shown this once, never stored)."""
    from newsletter.store import api
    from newsletter.store.models import utcnow

    name, chosen = clean_token_name(name), clean_scopes(scopes)
    if not 1 <= rate_per_second <= RATE_MAX:
        raise InputError(f"the rate is 1 to {RATE_MAX} requests per second", hint="e.g. --rate 50")
    secret = PREFIX + secrets.token_urlsafe(32)
    with store.session() as session:
        token = api.create_token(session, name=name, secret_hash=secret_hash(secret), scopes=chosen,
                                 rate_per_second=rate_per_second, now=now or utcnow())
        return {**_describe(token), "token": secret}


def list_tokens(store) -> list[dict[str, Any]]:
    from newsletter.store import api

    with store.session() as session:
        return [_describe(token) for token in api.all_tokens(session)]


def revoke_token(store, name: str) -> None:
    """Delete a token: requests with it are refused (401) from now on. NotFound when there is none."""
    from newsletter.store import api

    with store.session() as session:
        api.delete_token(session, name)


def any_token(store) -> bool:
    """Whether at least one token exists (``newsletter serve`` serves the API only then)."""
    from newsletter.store import api

    with store.session() as session:
        return api.token_count(session) > 0


def authenticate(store, secret: str, now: datetime | None = None) -> TokenInfo | None:
    """The token whose secret is ``secret``, or None; notes when it was used (at most once a minute)."""
    from newsletter.store import api
    from newsletter.store.models import utcnow

    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    now = now or utcnow()
    with store.session() as session:
        token = api.token_by_hash(session, secret_hash(secret))
        if token is None:
            return None
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
            api.mark_used(session, token.id, now)
        return TokenInfo(token.id, token.name, frozenset(token.scopes), token.rate_per_second, token.last_used_at)


def _describe(token) -> dict[str, Any]:
    return {"name": token.name, "scopes": list(token.scopes), "rate_per_second": token.rate_per_second,
            "created_at": token.created_at, "last_used_at": token.last_used_at}
