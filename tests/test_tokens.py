"""Unsubscribe and confirmation tokens: the fast signing path makes exactly itsdangerous's signatures.

``newsletter.audience.tokens`` signs with one C call (``hmac.digest``) on the
key the library's Signer derives, instead of going through the Signer (whose
pure-Python HMAC cost a send about 8 µs a recipient). These tests fail if the
library's defaults (HMAC-SHA1, base64url without padding, key derivation)
ever change under us: every token made the fast way must be the one the
Signer makes and must verify through the Signer, for hostile addresses too.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer
from newsletter.audience.tokens import (
    CONFIRM,
    UNSUBSCRIBE,
    check_address,
    make_token,
    read_token,
    unsubscribe_tokens,
)

KEYS = ("the current key é", "an old key that still verifies")  # the current key first
ids = st.integers(min_value=1, max_value=2**31 - 1)
emails = st.text(min_size=0, max_size=300)  # anything: accented, control characters, CR/LF, empty


def library_token(keys, purpose: str, head: str, email: str) -> str:
    """The token as itsdangerous's own Signer signs it (the Signer signs with the last key of its list)."""
    signer = Signer(list(reversed(keys)), salt=f"newsletter.{purpose}")
    return f"{head}.{signer.get_signature(f'{head}.{email.lower()}').decode('ascii')}"


@given(subscriber=ids, list_id=st.one_of(st.none(), ids), email=emails)
def test_unsubscribe_token_is_the_signers(subscriber, list_id, email):
    made = make_token(list(KEYS), UNSUBSCRIBE, subscriber, list_id, email)
    assert made == library_token(KEYS, UNSUBSCRIBE, f"{subscriber}.{list_id or 0}", email)
    assert unsubscribe_tokens(KEYS, list_id)(subscriber, email) == made
    data = read_token(KEYS, UNSUBSCRIBE, made)
    assert (data.subscriber_id, data.list_id) == (subscriber, list_id)
    assert check_address(data, email)
    assert check_address(data, email.upper()) == (email.upper().lower() == email.lower())


@given(subscriber=ids, list_id=ids, email=emails, issued=st.integers(min_value=0, max_value=2**33))
def test_confirm_token_is_the_signers(subscriber, list_id, email, issued):
    made = make_token(KEYS, CONFIRM, subscriber, list_id, email, issued=issued)
    assert made == library_token(KEYS, CONFIRM, f"{subscriber}.{list_id}.{issued}", email)
    assert check_address(read_token(KEYS, CONFIRM, made, now=issued), email)


def test_tokens_differ_by_purpose_key_and_address():
    token = unsubscribe_tokens(KEYS, 3)
    assert token(7, "ann@example.org") != token(7, "bob@example.org")
    assert token(7, "Ann@Example.org") == token(7, "ann@example.org")  # addresses are case-insensitive keys
    assert token(7, "ann@example.org") == unsubscribe_tokens(KEYS[:1], 3)(7, "ann@example.org")  # current key signs
    assert token(7, "ann@example.org") != unsubscribe_tokens(KEYS[1:], 3)(7, "ann@example.org")
    assert token(7, "ann@example.org").rsplit(".", 1)[1] != make_token(
        KEYS, CONFIRM, 7, 3, "ann@example.org", issued=0).rsplit(".", 1)[1]
    # made with the old key alone: still verifies while that key is listed
    old = unsubscribe_tokens(KEYS[1:], 3)(7, "ann@example.org")
    assert check_address(read_token(KEYS, UNSUBSCRIBE, old), "ann@example.org")
    assert not check_address(read_token(KEYS[:1], UNSUBSCRIBE, old), "ann@example.org")
