"""The door: every name, attribute, list name and consent record, cleaned and measured.

Everything a person or a file says about a subscriber passes here before the
database sees it (``subscribers add``, every import format, web signup
through :mod:`newsletter.audience.manage`):

- control characters (NUL, CR, LF, tab, the rest of C0 and C1, DEL, and the
  Unicode line and paragraph separators) in names and attributes become a
  space: a line break in a name must never reach a mail header, and
  PostgreSQL refuses NUL in text;
- a list name holding one is refused (it names something; nothing to guess);
- lengths are checked against the column sizes in ``store/models.py`` (in
  characters, as PostgreSQL counts them), so an over-long value is one
  line of error for that value, never a database error for a whole import;
- the consent source of an import (``import:FILENAME``) is shortened to fit,
  keeping the start and the end of the file name.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sqlalchemy import Column, String

from newsletter.errors import InputError
from newsletter.store.models import MailingList, Membership, Subscriber

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")



def _length(column: Column[Any]) -> int:
    """The declared length of a String column (the door's limits follow the schema)."""
    if not isinstance(column.type, String) or column.type.length is None:
        raise TypeError(f"{column} is not a String column with a length")
    return column.type.length


NAME_MAX = _length(Subscriber.__table__.c.name)
LIST_NAME_MAX = _length(MailingList.__table__.c.name)
SOURCE_MAX = _length(Membership.__table__.c.consent_source)
IP_MAX = _length(Membership.__table__.c.consent_ip)
TIMEZONE_MAX = _length(Subscriber.__table__.c.timezone)
ATTRIBUTE_KEY_MAX = 100
ATTRIBUTE_VALUE_MAX = 10_000  # a note or a tag list, not a document


def one_line(text: str) -> str:
    """``text`` with every run of control characters turned into one space, trimmed."""
    if text.isprintable():  # the common case, ten times cheaper than the expression
        return text.strip()
    return _CONTROL.sub(" ", text).strip()


def clean_name(name: str | None) -> str | None:
    """A subscriber's name on one line, at most NAME_MAX characters; InputError when longer."""
    if name is None:
        return None
    cleaned = one_line(name)
    if len(cleaned) > NAME_MAX:
        _measure(cleaned, NAME_MAX, "name", "shorten the name")
    return cleaned


def clean_attributes(attributes: dict | None) -> dict[str, str]:
    """Attributes with one-line keys and values within their limits; InputError otherwise."""
    if not attributes:
        return {}
    cleaned: dict[str, str] = {}
    for key, value in attributes.items():
        key = one_line(str(key))
        if not key:
            continue
        value = one_line(value if isinstance(value, str) else str(value))
        if len(key) > ATTRIBUTE_KEY_MAX:
            _measure(key, ATTRIBUTE_KEY_MAX, "attribute name", "use a shorter attribute (column) name")
        if len(value) > ATTRIBUTE_VALUE_MAX:
            _measure(value, ATTRIBUTE_VALUE_MAX, f"attribute {key[:40]!r}", "shorten the value")
        cleaned[key] = value
    return cleaned


def clean_list_name(name: str) -> str:
    """A list name of 1 to LIST_NAME_MAX printable characters; InputError otherwise."""
    stripped = name.strip()
    if not stripped:
        raise InputError("the list name is empty", hint="give a name such as readers")
    if _CONTROL.search(stripped):
        raise InputError("the list name contains a line break or control character",
                         hint="give a plain name such as readers")
    if len(stripped) > LIST_NAME_MAX:
        raise InputError(f"the list name has {len(stripped)} characters, more than {LIST_NAME_MAX}",
                         hint=f"choose a list name of at most {LIST_NAME_MAX} characters")
    return stripped


def clean_timezone_length(zone: str | None) -> str | None:
    if zone is not None:
        _measure(zone, TIMEZONE_MAX, "time zone", "use an IANA name such as Europe/Paris")
    return zone


def clean_ip(ip: str | None) -> str | None:
    """An IP address as given, or None when the value is not one (consent evidence, not worth a row)."""
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def import_source(file_name: str) -> str:
    """``import:FILE_NAME`` cut to fit the consent columns, keeping both ends of the name."""
    source = "import:" + one_line(file_name)
    if len(source) <= SOURCE_MAX:
        return source
    keep_end = 40
    return source[: SOURCE_MAX - keep_end - 1] + "…" + source[-keep_end:]


def _measure(value: str, limit: int, what: str, hint: str) -> None:
    if len(value) > limit:
        raise InputError(f"the {what} has {len(value)} characters, more than {limit}",
                         hint=f"{hint} (at most {limit} characters)")
