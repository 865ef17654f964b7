"""The plain-text part, written from the article model (never scraped from HTML).

Layout: the title underlined with ``=``, headings underlined with ``-``,
lists as ``- `` / ``1. `` with hanging indents, quotes as ``> ``, lines
wrapped at 72 characters, links as numbered footnotes (``text [1]`` and a
"Links" list at the end; a bare URL stays inline), images as ``[Image: alt]``
without their URL. Merge tokens use the raw form (``%%name:raw%%``): this
part is not HTML, so values must not be HTML-escaped.
"""

from __future__ import annotations

import re

from newsletter.compose.filters import CONTROL
from newsletter.compose.model import Article, Code, Heading, Image, ListBlock, Paragraph, Quote, RecentLink, Span

WIDTH = 72
_TOKEN = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*)%%")


def raw_tokens(text: str) -> str:
    """Merge tokens in ``text`` in their raw form (``%%x%%`` -> ``%%x:raw%%``)."""
    return _TOKEN.sub(r"%%\1:raw%%", text)


class _Footnotes:
    """Numbers each distinct link URL once, in order of appearance."""

    def __init__(self):
        self.urls: list[str] = []

    def spans(self, spans: list[Span]) -> str:
        out = []
        for span in spans:
            text = span.text
            if span.href and span.href.strip() != text.strip():
                if span.href not in self.urls:
                    self.urls.append(span.href)
                text = f"{text} [{self.urls.index(span.href) + 1}]"
            out.append(text)
        return raw_tokens(" ".join("".join(out).split()))


def render_text(article: Article, footer: dict[str, str], recent: RecentLink | None = None,
                language: str = "en") -> str:
    """The text part of ``article``; ``footer`` holds name, postal_address, sender_name."""
    from newsletter.compose.filters import long_date

    notes = _Footnotes()
    out: list[str] = _underlined(raw_tokens(article.title), "=")
    if article.subtitle:
        out += _wrap(raw_tokens(article.subtitle)) + [""]
    byline = " · ".join(
        x for x in (f"By {article.author}" if article.author else "", long_date(article.date, language)) if x)
    if byline:
        out += [raw_tokens(byline), ""]
    out += ["Hi %%first_name:raw%%,", ""]  # after the title, as in the HTML part
    for block in article.blocks:
        out += _block(block, notes)
    if recent and recent.url:
        out += ["-" * WIDTH, "", "RECENTLY PUBLISHED", *_wrap(raw_tokens(recent.title)), recent.url, ""]
    if article.author:
        out += ["-" * WIDTH, "", "ABOUT THE AUTHOR", raw_tokens(article.author)]
        out += (_wrap(raw_tokens(article.author_bio)) if article.author_bio else []) + [""]
    if notes.urls:
        out += ["Links:"] + [f"[{n}] {url}" for n, url in enumerate(notes.urls, start=1)] + [""]
    out += _footer(footer)
    return CONTROL.sub("", "\n".join(out)).rstrip() + "\n"


def _block(block, notes: _Footnotes) -> list[str]:
    if isinstance(block, Heading):
        return _underlined(notes.spans(block.spans), "-")
    if isinstance(block, Paragraph):
        return _wrap(notes.spans(block.spans)) + [""]
    if isinstance(block, ListBlock):
        lines: list[str] = []
        for number, item in enumerate(block.items, start=1):
            marker = f"{number}. " if block.ordered else "- "
            lines += _wrap(notes.spans(item), initial=marker, subsequent=" " * len(marker))
        return lines + [""]
    if isinstance(block, Quote):
        lines = _wrap(notes.spans(block.spans), initial="> ", subsequent="> ")
        return lines + ([f">     — {raw_tokens(block.cite)}"] if block.cite else []) + [""]
    if isinstance(block, Image):
        alt = block.alt or block.caption
        return ([f"[Image: {raw_tokens(alt)}]", ""]) if alt else []
    if isinstance(block, Code):
        return ["    " + line for line in raw_tokens(block.text).splitlines()] + [""]
    return []


def _underlined(text: str, mark: str) -> list[str]:
    lines = _wrap(text)
    return lines + [mark * min(WIDTH, max(len(line) for line in lines or [""])), ""]


_ASCII_SPACE = re.compile(r"[\t\n\x0b\x0c\r ]+")  # what textwrap splits on (never a no-break space)


def _wrap(text: str, initial: str = "", subsequent: str = "") -> list[str]:
    """``textwrap.wrap(text, WIDTH, ..., break_long_words=False, break_on_hyphens=False)``,
    many times faster: runs of spaces become one, then each line is cut at the
    last space that fits (a word longer than a line gets a line of its own)."""
    words = " ".join(word for word in _ASCII_SPACE.split(text) if word)
    if not words:
        return [initial.rstrip()]
    lines: list[str] = []
    prefix = initial
    while len(prefix) + len(words) > WIDTH:
        cut = words.rfind(" ", 0, WIDTH - len(prefix) + 1)
        if cut < 0:  # the first word alone is too long: it takes the line
            cut = words.find(" ")
            if cut < 0:
                break
        lines.append(prefix + words[:cut])
        words, prefix = words[cut + 1 :], subsequent
    lines.append(prefix + words)
    return lines


def _footer(footer: dict[str, str]) -> list[str]:
    name = footer.get("name", "")
    sender = footer.get("sender_name") or name
    return [
        "-" * WIDTH,
        *_wrap("You get this as a subscriber of %%list_name:raw%% at %%email:raw%%."),
        "",
        "Unsubscribe from %%list_name:raw%%: %%unsubscribe_url:raw%%",
        "Manage your subscription: %%preferences_url:raw%%",
        "View in your browser: %%web_url:raw%%",
        "",
        *_wrap(f"{sender} · {footer.get('postal_address', '')}".strip(" ·")),
    ]
