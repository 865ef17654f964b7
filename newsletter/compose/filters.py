"""Jinja filters the themes use, and helpers shared by the renderers.

Every filter that returns markup builds it from the article model and escapes
all text and attribute values itself: what an article says can never become
live HTML. Merge tokens in article text are neutralised to their escaped
form (``%%name:raw%%`` -> ``%%name%%``), because a raw token in HTML would
put a subscriber's own name, unescaped, into the page.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from html import escape

from newsletter.compose.model import Span

_RAW_TOKEN = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*):raw%%")
# C0/C1 control characters but tab, CR and LF: no text needs them, MRML refuses
# the MJML that holds one (NUL, VT...), and mail clients show them as boxes
# (and the noncharacters U+FFFE/U+FFFF, which MRML refuses even in text)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
# MRML writes attribute values with Rust's escape_debug: a backslash doubles and
# combining marks, format characters (ZWJ in emoji, soft hyphens), no-break and
# other non-ASCII spaces become "\u{301}", a newline "\n" (text content is
# kept as written). It keeps character references, so in attribute values
# those characters travel as references (browsers read them back).
_MRML_MANGLED = frozenset("\\\t\n\r\u115f\u1160\u3164\uff9e\uff9f\uffa0")
_CANDIDATE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # the backslash, and all but printable ASCII
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "tel:", "%%")


def safe_href(url: str | None) -> str:
    """``url`` if its scheme is harmless, else "" (``javascript:`` and friends are dropped)."""
    url = (url or "").strip()
    if not url:
        return ""
    lowered = re.sub(r"[\s\x00-\x1f]", "", url).lower()
    if ":" in lowered.split("/", 1)[0] and not lowered.startswith(_SAFE_SCHEMES):
        return ""
    return url


def clean_text(text: str) -> str:
    """``text`` without control characters, merge tokens limited to their escaped form."""
    return _RAW_TOKEN.sub(r"%%\1%%", CONTROL.sub("", text))


def _reference(match: re.Match) -> str:
    char = match.group(0)
    if char in _MRML_MANGLED or unicodedata.category(char)[0] in "MCZ":
        return f"&#x{ord(char):x};"
    return char


def mrml_safe(html: str) -> str:
    """``html`` (already escaped) with every character MRML would mangle as ``&#x..;``."""
    return _CANDIDATE.sub(_reference, html)


def html_text(text: str) -> str:
    """Escaped ``text`` for HTML text content, merge tokens limited to their escaped form."""
    return escape(clean_text(text), quote=True)


def html_attribute(text: str) -> str:
    """:func:`html_text` safe in an attribute value too (MRML's escapes avoided, see ``_MRML_MANGLED``)."""
    return mrml_safe(html_text(text))


def finalize(value):
    """Jinja's ``finalize``: every ``{{ value }}`` in a theme is escaped by :func:`html_attribute`.

    Markup (from the ``inline`` filter) is already escaped; any other string
    (a title, an author, an alt text, the subject) is escaped here, where it
    may land in text or in an attribute: a raw merge token in article text
    never puts a subscriber's value unescaped into the HTML, and MRML cannot
    mangle it in an attribute.
    """
    from markupsafe import Markup

    if isinstance(value, str) and not isinstance(value, Markup):
        return Markup(html_attribute(value))
    return value


def inline_html(spans: list[Span], link_style: str = "") -> str:
    """Spans as escaped inline HTML (strong, em, code, links with ``link_style``)."""
    from markupsafe import Markup

    out: list[str] = []
    for span in spans:
        piece = html_text(span.text)
        if span.code:
            piece = f'<code style="font-family:Menlo,Consolas,monospace;font-size:0.9em">{piece}</code>'
        if span.em:
            piece = f"<em>{piece}</em>"
        if span.strong:
            piece = f"<strong>{piece}</strong>"
        href = safe_href(span.href)
        if href:
            style = f' style="{escape(link_style)}"' if link_style else ""
            piece = f'<a href="{html_attribute(href)}"{style}>{piece}</a>'
        out.append(piece)
    return Markup("".join(out))


def long_date(value: dt.date | None, language: str = "en") -> str:
    """``1 December 2026`` (English month names; other languages get ISO dates)."""
    if value is None:
        return ""
    if not language.lower().startswith("en"):
        return value.isoformat()
    return f"{value.day} {value.strftime('%B')} {value.year}"


def block_kind(block) -> str:
    """The block's type name in lowercase (``heading``, ``paragraph``, ``listblock``...)."""
    return type(block).__name__.lower()


FILTERS = {"inline": inline_html, "long_date": long_date, "kind": block_kind, "safe_href": safe_href}

