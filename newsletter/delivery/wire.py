"""Addresses and names as they go on the wire: the same treatment in every transport.

The store keeps addresses as people write them (the domain in Unicode, the
local part as given) and names as they were entered. Before anything leaves,
every transport passes them through here:

- :func:`wire_address`: the domain IDNA-encoded (UTS-46, IDNA 2008, through
  the ``idna`` package email-validator uses), so ``ann@bücher.example`` goes
  out as ``ann@xn--bcher-kva.example``; the local part unchanged. After it,
  a non-ASCII character can only be in the local part, so
  :func:`needs_smtputf8` is a plain ``isascii`` test: such an address needs
  an SMTPUTF8 (RFC 6531) path, which a transport offers or refuses for that
  recipient alone. An address that cannot go out at all raises
  :class:`UnsendableAddress` (a ``ValueError``) with the reason.
- :func:`clean_name`: the display name without control characters (CR, LF,
  NUL, TAB, the Unicode line separators): a name never breaks a header or a
  JSON consumer, whatever the door let in.
- :func:`one_line`: the same for a merged subject (a name with a line break
  in it must not end the Subject header);
- :func:`header_address`: the ``email.headerregistry.Address`` for a header,
  quoting or encoding the name as the email package does.

Plain ASCII addresses and names take a fast path of a few C-level string
tests (a million-recipient send goes through here).
"""

from __future__ import annotations

import re
import unicodedata
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache


class UnsendableAddress(ValueError):
    """An address that cannot be written on the wire; the message says why (never the address)."""


# RFC 5322 atext, plus any non-ASCII character other than surrogates (RFC 6531).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\ud7ff\ue000-\U0010ffff]"
_QTEXT = r"[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\ud7ff\ue000-\U0010ffff]"
_LOCAL = re.compile(rf'{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:{_QTEXT}|\\[\x20-\x7e])*"')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ASCII_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
# The common shape (dot-atom @ ASCII labels): accepted without further work.
_PLAIN = re.compile(
    rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*@{_LABEL}(?:\.{_LABEL})*").fullmatch
#: The longest display name written (the door allows 200 characters).
MAX_NAME = 200
_QUOTED_PAIR = re.compile(r"\\(.)")
# Characters that become a space in a name (line breaks, tabs, separators); other controls are dropped.
_SPACES = {"\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u2029"}


def wire_address(address: str) -> str:
    """``address`` as it goes on the wire: the domain IDNA-encoded, the local part unchanged.

    Raises :class:`UnsendableAddress` for an address no transport can write:
    control characters, no ``@``, a local part that is neither a dot-atom nor
    a quoted string, a domain IDNA cannot encode.
    """
    if address.isascii() and _PLAIN(address):
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UnsendableAddress("not an address (no local part or no domain)")
    if not _LOCAL.fullmatch(local):
        raise UnsendableAddress("the part before the @ has characters an address cannot carry")
    return f"{local}@{_wire_domain(domain)}"


@lru_cache(maxsize=4096)  # few distinct domains among many recipients
def _wire_domain(domain: str) -> str:
    if domain.isascii():
        if _ASCII_DOMAIN.fullmatch(domain) or _LITERAL.fullmatch(domain):
            return domain
        raise UnsendableAddress("the domain has characters a domain cannot carry")
    import idna

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        # idna's message quotes the label: keep personal data out of the reason.
        raise UnsendableAddress("the domain cannot be IDNA-encoded (not a valid internationalised domain)") from None


def needs_smtputf8(wire: str) -> bool:
    """Whether a :func:`wire_address` result needs SMTPUTF8 (a non-ASCII local part)."""
    return not wire.isascii()


def clean_name(name: str | None) -> str:
    """``name`` fit for a header: line breaks and tabs become spaces, other control
    characters and lone surrogates go, runs of spaces shrink to one, and at most
    :data:`MAX_NAME` characters stay (a longer unbroken name cannot be folded
    within SMTP's 998-byte line limit)."""
    if not name:
        return ""
    if name.isascii() and name.isprintable() and len(name) <= MAX_NAME:
        return name.strip()
    kept = []
    for char in name:
        if char in _SPACES:
            kept.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cs"):
            kept.append(char)
    return _squeeze("".join(kept)[:MAX_NAME])


def one_line(text: str) -> str:
    """A header text (a subject with merge values in it) on one line: as
    :func:`clean_name`, without the length limit (the email package folds
    and encodes a long unstructured header)."""
    if text.isascii() and text.isprintable():
        return text
    return _squeeze("".join(" " if c in _SPACES else c for c in text
                            if c in _SPACES or unicodedata.category(c) not in ("Cc", "Cs")))


def _squeeze(text: str) -> str:
    return " ".join(part for part in text.split(" ") if part)


def header_address(name: str | None, wire: str) -> Address:
    """The header-registry ``Address`` for a cleaned ``name`` and a :func:`wire_address`.

    Built from its parts, so the email package never re-parses the address
    (it refuses a non-ASCII local part when parsing) and quotes the name.
    """
    local, _, domain = wire.rpartition("@")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])  # Address quotes it again when it must
    return Address(display_name=clean_name(name), username=local, domain=domain)


def parse_mailbox(value: str) -> tuple[str, str]:
    """``(name, wire address)`` of a ``"Name <address>"`` setting such as the sender.

    The name comes back decoded (``formataddr`` writes a non-ASCII name as an
    RFC 2047 word: ``=?utf-8?b?...?=``) and cleaned.
    """
    raw_name, address = parseaddr(value)
    if "=?" in raw_name:
        try:
            raw_name = str(make_header(decode_header(raw_name)))
        except (ValueError, LookupError):
            pass  # not a valid encoded word: keep it as written
    return clean_name(raw_name), wire_address(address)
