"""Signed tokens for unsubscribe and confirmation links (itsdangerous).

A token carries a subscriber id and a list id, signed with the workspace
secret and a purpose of its own, so an unsubscribe token cannot confirm and
the other way round. Key rotation: ``secret_keys`` lists the current key
first; tokens signed with any of them verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.errors import InputError

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    list_id: int | None


def _serializer(secret_keys: tuple[str, ...] | list[str], purpose: str):
    from itsdangerous import URLSafeSerializer

    # itsdangerous signs with the last key of the list and verifies with all.
    return URLSafeSerializer(list(reversed(secret_keys)), salt=f"newsletter.{purpose}")


def make_token(secret_keys, purpose: str, subscriber_id: int, list_id: int | None) -> str:
    """A URL-safe token for ``purpose`` (UNSUBSCRIBE or CONFIRM)."""
    return _serializer(secret_keys, purpose).dumps([subscriber_id, list_id])


def read_token(secret_keys, purpose: str, token: str) -> TokenData:
    """The data in a token, or InputError when it is tampered with or made for another purpose."""
    from itsdangerous import BadSignature

    try:
        subscriber_id, list_id = _serializer(secret_keys, purpose).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise InputError("this link is not valid", hint="use the link from your most recent email") from None
    if not isinstance(subscriber_id, int) or not (list_id is None or isinstance(list_id, int)):
        raise InputError("this link is not valid", hint="use the link from your most recent email")
    return TokenData(subscriber_id, list_id)


def confirm_url(settings, subscriber_id: int, list_id: int) -> str:
    return f"{settings.base_url}/confirm/{make_token(settings.secret_keys, CONFIRM, subscriber_id, list_id)}"


def unsubscribe_url(settings, subscriber_id: int, list_id: int | None) -> str:
    return f"{settings.base_url}/unsubscribe/{make_token(settings.secret_keys, UNSUBSCRIBE, subscriber_id, list_id)}"
