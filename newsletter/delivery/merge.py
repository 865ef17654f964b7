"""Merge fields: per-recipient values in an edition that is compiled only once.

The composer leaves tokens in the compiled HTML and text; each recipient's
values are filled in by a cheap second pass (or by SendGrid substitutions).

- ``%%field%%`` is replaced by the HTML-escaped value (for the HTML part);
- ``%%field:raw%%`` by the value as it is (for the text part and the subject).

Both forms exist because one SendGrid substitution applies to every part of
a message: each form is its own substitution key.

Standard fields: ``name``, ``first_name`` (the greeting's: see
:func:`newsletter.compose.edition.merge_values`; values without it use the
first word of ``name``), ``email``, ``unsubscribe_url``, ``preferences_url``, ``web_url``,
``list_name`` (the name readers see of the list the message goes to: a
segment's base list; the footer's "You get this as a subscriber of ..."); a
subscriber's attributes are available under their own names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape

STANDARD_FIELDS = ("name", "first_name", "email", "unsubscribe_url", "web_url", "preferences_url", "list_name")
TOKEN = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*)(:raw)?%%")


def token(field: str, raw: bool = False) -> str:
    """The token a template writes for ``field``."""
    return f"%%{field}:raw%%" if raw else f"%%{field}%%"


def substitutions(values: Mapping[str, str]) -> dict[str, str]:
    """Both tokens of every field mapped to their replacement (SendGrid's substitutions)."""
    result: dict[str, str] = {}
    for field, value in values.items():
        value = "" if value is None else str(value)
        result[token(field)] = escape(value, quote=True)
        result[token(field, raw=True)] = value
    return result


class MergeTemplate:
    """A text with merge tokens, split once so that each render is a join.

    Unknown fields render as an empty string; ``fields`` lists what the
    template uses so callers can check it beforehand.
    """

    __slots__ = ("_literals", "_slots", "fields")

    def __init__(self, template: str):
        pieces = TOKEN.split(template)
        # split() yields literal, field, raw-flag, literal, field, raw-flag, ..., literal
        self._literals = pieces[0::3]
        self._slots = [(field, bool(raw)) for field, raw in zip(pieces[1::3], pieces[2::3], strict=True)]
        self.fields = frozenset(field for field, _ in self._slots)

    def render(self, values: Mapping[str, str]) -> str:
        """The template with every token replaced by its value from ``values``."""
        literals = self._literals
        out = [literals[0]]
        for index, (field, raw) in enumerate(self._slots, start=1):
            value = values.get(field)
            if value is None and field == "first_name":  # values made before the field existed
                value = next(iter(str(values.get("name") or "").split()), "")
            value = "" if value is None else str(value)
            out.append(value if raw else escape(value, quote=True))
            out.append(literals[index])
        return "".join(out)


def fill_in(template: str, values: Mapping[str, str]) -> str:
    """``template`` with the tokens of the fields in ``values`` replaced (escaped or raw as each token
    says) and every other token left as it is: the values all recipients share, filled in once.

    A value holding ``%%`` is left out (its token stays): filled in, it could read as a token.
    """
    usable = {field: value for field, value in values.items() if "%%" not in value}
    if not usable:
        return template

    def replace(match: re.Match[str]) -> str:
        value = usable.get(match.group(1))
        if value is None:
            return match.group(0)
        return value if match.group(2) else escape(value, quote=True)

    return TOKEN.sub(replace, template)


def personalise(template: str, values: Mapping[str, str]) -> str:
    """One-off render of ``template`` (use :class:`MergeTemplate` in loops)."""
    return MergeTemplate(template).render(values)
