"""Signed tokens for unsubscribe and confirmation links (itsdangerous).

A token names a subscriber id and a list id, and its signature also covers
the subscriber's address (which the token does not carry): a token made for
one person never verifies for another, even if an id were ever reused. Each
purpose signs with a salt of its own, so an unsubscribe token cannot confirm
and the other way round.

- ``UNSUBSCRIBE``: ``SUBSCRIBER.LIST.SIGNATURE``; never expires (sent mail
  must keep its unsubscribe link working: CAN-SPAM asks 30 days, we promise
  for as long as the key is listed).
- ``CONFIRM``: ``SUBSCRIBER.LIST.ISSUED.SIGNATURE`` with ``ISSUED`` in epoch
  seconds; :func:`read_token` refuses it ``max_age`` seconds later
  (:class:`ExpiredLink`).

Verifying is two steps: :func:`read_token` checks the form and age and
returns the ids; :func:`check_address` checks the signature against the
address of the subscriber found under that id (:func:`check_legacy`: an
unsubscribe link from before addresses were signed). Key rotation:
``secret_keys`` lists the current key first; tokens signed with any of
them verify.
"""

from __future__ import annotations

import hmac
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from newsletter.errors import InputError

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
_INVALID = ("this link is not valid", "use the link from your most recent email")
MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database; a larger one was never issued


class ExpiredLink(InputError):
    """A confirmation link older than its lifetime: nothing is changed, the reader signs up again."""

    http_status = 410


@dataclass(frozen=True)
class TokenData:
    """What a well-formed token names; ``signed`` is what its signature must cover (with the address)."""

    subscriber_id: int
    list_id: int | None
    signed: str = ""
    signature: str = ""
    purpose: str = UNSUBSCRIBE
    secret_keys: tuple[str, ...] = ()


@lru_cache(maxsize=32)
def _signer(secret_keys: tuple[str, ...], purpose: str):
    from itsdangerous import Signer

    class _Signer(Signer):
        """Derives the signing key once, not per token (a send signs a million)."""

        def derive_key(self, secret_key=None):
            if secret_key is not None:
                return super().derive_key(secret_key)
            if not hasattr(self, "_derived"):
                self._derived = super().derive_key()
            return self._derived

    # itsdangerous signs with the last key of the list and verifies with all.
    return _Signer(list(reversed(secret_keys)), salt=f"newsletter.{purpose}")


def _binding(email: str) -> str:
    """The address as the signature covers it (case-insensitive, like address keys)."""
    return email.lower()


def make_token(secret_keys, purpose: str, subscriber_id: int, list_id: int | None, email: str,
               issued: float | None = None) -> str:
    """A URL-safe token for ``purpose`` (UNSUBSCRIBE or CONFIRM) bound to ``email``.

    ``issued`` (epoch seconds, default now) dates a CONFIRM token. One HMAC
    over a short string: a few microseconds, which matters when a send signs
    a million (a loop signs faster still with :func:`unsubscribe_tokens`).
    """
    head = f"{subscriber_id}.{list_id or 0}"
    if purpose == CONFIRM:
        head += f".{int(time.time() if issued is None else issued)}"
    return f"{head}.{_sign(_signing_key(tuple(secret_keys), purpose), f'{head}.{_binding(email)}')}"


def unsubscribe_tokens(secret_keys, list_id: int | None) -> Callable[[int, str], str]:
    """``token(subscriber_id, email)``: :func:`make_token`'s UNSUBSCRIBE token for ``list_id``, with the
    key looked up once (a send makes one per recipient)."""
    key, tail = _signing_key(tuple(secret_keys), UNSUBSCRIBE), f".{list_id or 0}"

    def token(subscriber_id: int, email: str) -> str:
        head = f"{subscriber_id}{tail}"
        return f"{head}.{_sign(key, f'{head}.{_binding(email)}')}"

    return token


@lru_cache(maxsize=32)
def _signing_key(secret_keys: tuple[str, ...], purpose: str) -> bytes:
    """The key itsdangerous's Signer signs with (derived from the last key of the list)."""
    return _signer(secret_keys, purpose).derive_key()


def _sign(key: bytes, value: str) -> str:
    """The signature itsdangerous's Signer makes of ``value`` with its derived ``key`` (HMAC-SHA1,
    base64url without padding), computed in one C call: the Signer's own path runs Python's HMAC
    (its lazy SHA-1 is not a digest OpenSSL's HMAC takes), about 8 µs a token.
    ``tests/test_tokens.py`` checks it against the Signer, so a change of the library's defaults fails."""
    return urlsafe_b64encode(hmac.digest(key, value.encode(), "sha1")).rstrip(b"=").decode("ascii")


def read_token(secret_keys, purpose: str, token: str, *, now: float | None = None,
               max_age: float | None = None) -> TokenData:
    """The ids a token names, once its form (and for CONFIRM its age) is right.

    InputError when it is malformed; :class:`ExpiredLink` when a CONFIRM
    token is older than ``max_age`` seconds. The signature is checked by
    :func:`check_address`, which needs the subscriber's address.
    """
    parts = token.split(".")
    try:
        if purpose == CONFIRM:
            subscriber, list_id, issued, signature = parts
            age = (time.time() if now is None else now) - int(issued)
        else:
            subscriber, list_id, signature = parts
            age = 0.0
        data = TokenData(int(subscriber), int(list_id) or None, token.rsplit(".", 1)[0], signature,
                         purpose, tuple(secret_keys))
    except (ValueError, TypeError):
        raise InputError(*_INVALID) from None
    in_range = 0 < data.subscriber_id <= MAX_ID and 0 <= (data.list_id or 0) <= MAX_ID
    if not (in_range and signature and signature.isascii() and data.signed.isascii()):
        raise InputError(*_INVALID)
    if max_age is not None and age > max_age:
        # Checked before the signature on purpose: an old link changes nothing either way.
        raise ExpiredLink("this confirmation link has expired",
                          hint="subscribe again on the signup form to get a fresh link")
    return data


def check_address(data: TokenData, email: str) -> bool:
    """True when ``data``'s signature was made for ``email`` with one of the keys."""
    signer = _signer(data.secret_keys, data.purpose)
    return signer.verify_signature(f"{data.signed}.{_binding(email)}".encode(), data.signature.encode("ascii"))


def check_legacy(data: TokenData) -> bool:
    """True for an UNSUBSCRIBE token made before tokens covered the address (signature over the ids only).

    Mail sent before that change must keep a working unsubscribe link; the
    caller accepts such a token only for ids that were never handed out
    again (``newsletter.store.events.legacy_link_limit``).
    """
    if data.purpose != UNSUBSCRIBE:
        return False
    return _signer(data.secret_keys, data.purpose).verify_signature(data.signed.encode("ascii"),
                                                                   data.signature.encode("ascii"))


def confirm_url(settings, subscriber_id: int, list_id: int, email: str, issued: float | None = None) -> str:
    token = make_token(settings.secret_keys, CONFIRM, subscriber_id, list_id, email, issued)
    return f"{settings.base_url}/confirm/{token}"


def preferences_url(settings, subscriber_id: int, email: str, list_id: int | None = None) -> str:
    """The preference centre of one subscriber: ``{base_url}/preferences/{token}``.

    The token is the UNSUBSCRIBE token of the same message (the list it
    names is ignored there): a send signs one token per recipient, not two,
    and both links travel in the same email, so a second key would protect
    nothing. It never verifies for another subscriber (the address is
    signed); links from before addresses were signed are refused.
    """
    return (f"{settings.base_url}/preferences/"
            f"{make_token(settings.secret_keys, UNSUBSCRIBE, subscriber_id, list_id, email)}")


def unsubscribe_url(settings, subscriber_id: int, list_id: int | None, email: str) -> str:
    return (f"{settings.base_url}/unsubscribe/"
            f"{make_token(settings.secret_keys, UNSUBSCRIBE, subscriber_id, list_id, email)}")
