"""Validating and normalising email addresses.

``normalise_address`` gives the form we store and send to (email-validator's
normalisation: the domain lower-cased and IDNA-decoded, the local part kept);
``address_key`` gives the case-insensitive form that makes addresses unique.

email-validator costs about 20 microseconds an address, which is 20 s on a
million-row import. Plain ASCII addresses of the common shape take a strict
fast path (a regular expression that accepts only what email-validator
accepts, and normalises the same way); everything else, and everything the
fast path is unsure of, goes to email-validator. tests/test_addresses.py
checks that both paths agree.
"""

from __future__ import annotations

import hashlib
import re

from newsletter.errors import InvalidAddress

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
# Top-level names email-validator refuses (special-use, RFC 6761 and others).
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
_HEADER_BREAKERS = re.compile(r"[\r\n\x00-\x1f\x7f-\x9f\u2028\u2029,;<>]")


def normalise_address(raw: str) -> str:
    """Return the normalised address, or raise :class:`InvalidAddress` with the reason."""
    address = raw.strip()
    if not address:
        raise InvalidAddress("empty address", hint="give an address like reader@example.org")
    if _HEADER_BREAKERS.search(address):
        raise InvalidAddress(
            f"{address!r} contains a line break, control character or separator",
            hint="give one plain address like reader@example.org",
        )
    fast = _fast_normalise(address)
    if fast is not None:
        return fast
    return _validator_normalise(address)


def address_key(address: str) -> str:
    """The case-insensitive identity of a normalised address."""
    return address.lower()


def address_hash(address: str) -> str:
    """SHA-256 of the address key: what the suppression list keeps after erasure."""
    return hashlib.sha256(address_key(address).encode("utf-8")).hexdigest()


def _fast_normalise(address: str) -> str | None:
    """Normalise a plain ASCII address, or None when email-validator must decide."""
    match = _FAST.fullmatch(address)
    if match is None or len(address) > 254:
        return None
    local, domain = match.groups()
    domain = domain.lower()
    if len(local) > 64 or "--" in domain or domain.rsplit(".", 1)[1] in _SPECIAL_TLDS:
        return None
    return f"{local}@{domain}"


def _validator_normalise(address: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        # strict: RFC 5321 limits too (a local part over 64 characters is refused,
        # as the fast path refuses it).
        return validate_email(address, check_deliverability=False, strict=True).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{address!r} is not a valid address: {exc}", hint="check it for typos") from None
