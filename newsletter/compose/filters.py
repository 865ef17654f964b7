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
from functools import lru_cache
from html import escape

from newsletter.compose.model import Span

_RAW_TOKEN = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*):raw%%")
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


def html_text(text: str) -> str:
    """Escaped ``text`` for HTML, merge tokens limited to their escaped form."""
    return escape(_RAW_TOKEN.sub(r"%%\1%%", text), quote=True)


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
            piece = f'<a href="{html_text(href)}"{style}>{piece}</a>'
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


@lru_cache(maxsize=1)
def known_mjml_tags() -> frozenset[str]:
    """Every tag mjml-python understands (it silently passes any other)."""
    from mjml.core.registry import components, register_core_components

    register_core_components()
    return frozenset(components) | {"mjml", "mj-all", "mj-class", "mj-include", "mj-selector", "mj-html-attribute"}
