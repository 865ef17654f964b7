"""The article model every reader produces and every renderer consumes.

An :class:`Article` is plain data: text is kept as text (never as HTML), so
the renderers decide how to escape it and markup in an article can never
become live HTML. Inline formatting is a flat list of :class:`Span` runs,
which is all an email needs (bold, italic, code, links).
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A run of inline text with its formatting; ``href`` makes it a link."""

    text: str
    href: str | None = None
    strong: bool = False
    em: bool = False
    code: bool = False


@dataclass
class Heading:
    spans: list[Span]
    level: int = 2  # 2..4; the article title is the only level 1


@dataclass
class Paragraph:
    spans: list[Span]


@dataclass
class ListBlock:
    items: list[list[Span]]
    ordered: bool = False


@dataclass
class Quote:
    spans: list[Span]
    cite: str = ""


@dataclass
class Image:
    src: str
    alt: str = ""
    caption: str = ""


@dataclass
class Code:
    text: str


Block = Heading | Paragraph | ListBlock | Quote | Image | Code


@dataclass
class RecentLink:
    """The "recently published" article the newsletter points to; ``url`` may be missing."""

    title: str
    url: str | None = None


@dataclass
class Article:
    """One article, whatever file it came from."""

    title: str
    subtitle: str = ""
    preheader: str = ""
    author: str = ""
    author_bio: str = ""
    date: _dt.date | None = None
    image: str = ""
    image_alt: str = ""
    tags: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    recently_published: RecentLink | None = None
    slug: str = ""
    subject: str = ""  # the email subject; empty means the title
    source: str = ""  # the article text as read, for checks that must tell content from template

    def __post_init__(self) -> None:
        if not self.slug:
            self.slug = slugify(self.title) or "article"


def plain(spans: list[Span]) -> str:
    """The text of ``spans`` without formatting."""
    return "".join(span.text for span in spans)


def text_spans(text: str) -> list[Span]:
    """``text`` as spans, bare http(s) URLs made into links."""
    spans: list[Span] = []
    position = 0
    for match in _URL.finditer(text):
        if match.start() > position:
            spans.append(Span(text[position : match.start()]))
        url = match.group(0).rstrip(".,;:!?)\u201d\"'")
        spans.append(Span(url, href=url))
        position = match.start() + len(url)
    if position < len(text):
        spans.append(Span(text[position:]))
    return spans


_URL = re.compile(r"https?://[^\s<>\"]+")


SLUG_LIMIT = 80  # long enough for a long title's last words ("...-and-top-benefit"), short enough for a URL


def slugify(text: str, limit: int = SLUG_LIMIT) -> str:
    """A lowercase ASCII slug of ``text``: whole words only, as many as fit in ``limit`` characters.

    The archive URL and the file names come from it; front matter ``slug:``
    sets it (slugified the same way). A first word longer than ``limit`` is cut.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit:
            break
        slug = candidate
    return slug or "-".join(words)[:limit]


def parse_date(value) -> _dt.date | None:
    """A date from YAML (date/datetime) or ISO text; None when it is not one."""
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None
