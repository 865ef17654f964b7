"""A blog's feed read into items, and items into Articles (one post, or a digest of several).

- RSS 0.9x/1.0/2.0 and Atom are read by feedparser (which also resolves
  relative links against the feed's address); JSON Feed 1.0/1.1
  (https://jsonfeed.org), which feedparser does not read, with :mod:`json`.
  Relative links left in a post are made absolute against the post's own
  address; unsafe ones are dropped by the renderer, as in any article.
- A document that is not well-formed XML is refused (:class:`FeedProblem`),
  even where feedparser's lenient parser could guess entries from it: a
  broken feed must never be taken for a feed of new posts. So is a document
  with no feed in it (an HTML page).
- Each item's guid is its ``id``/``<guid>``, else its link, else a hash of
  its title and content (so an item without either still has one identity).
- Items come oldest first: by date when every item has one, else in the
  reverse of the document's order (feeds list the newest first).
- An item's content (its full content, else its summary) goes through the
  same HTML reader as a pasted article (:func:`newsletter.compose.html_reader.read_html`),
  so page chrome (navigation, share buttons, comment sections) is dropped.
  The feed's previous item becomes the article's "recently published" link,
  the seed article's shape.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from newsletter.compose.model import (
    Article,
    Block,
    Heading,
    Image,
    ListBlock,
    Paragraph,
    Quote,
    RecentLink,
    Span,
    slugify,
)
from newsletter.errors import NewsletterError

JSON_FEED_VERSION = "https://jsonfeed.org/version/"
TITLE_LIMIT = 300
GUID_LIMIT = 2000


class FeedProblem(NewsletterError):
    """The document is not a feed this reader can trust (invalid XML, invalid JSON Feed, no feed at all)."""


@dataclass(frozen=True)
class FeedItemData:
    """One item of a feed: its identity, title, link, date and content as HTML."""

    guid: str
    title: str
    link: str
    published: datetime | None
    html: str
    author: str = ""


@dataclass
class ParsedFeed:
    title: str
    link: str
    items: list[FeedItemData] = field(default_factory=list)  # oldest first
    kind: str = ""  # rss20, atom10, json, ... (feedparser's version names, and "json")


def parse_feed(body: bytes, content_type: str = "", url: str = "") -> ParsedFeed:
    """The feed in ``body`` (fetched from ``url``); FeedProblem when it is not one."""
    head = body.lstrip()[:1]
    kind = content_type.split(";", 1)[0].strip().lower()
    if head == b"{" or kind in ("application/feed+json", "application/json"):
        return _parse_json_feed(body, url)
    return _parse_xml_feed(body, content_type, url)


def _parse_xml_feed(body: bytes, content_type: str, url: str) -> ParsedFeed:
    import xml.sax

    import feedparser

    headers = {"content-location": url} if url else {}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(body, response_headers=headers)
    problem = parsed.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXException):
        where = ""
        if isinstance(problem, xml.sax.SAXParseException):
            where = f" at line {problem.getLineNumber()}, column {problem.getColumnNumber()}"
        raise FeedProblem(f"invalid XML{where}: {_one_line(problem.getMessage())}",
                          hint="the feed is broken on the blog's side; nothing is sent until it is fixed")
    if not parsed.get("version") and not parsed.entries:
        raise FeedProblem("no RSS, Atom or JSON feed at this address (an HTML page?)",
                          hint="give the feed's own URL, e.g. https://blog.example/feed.xml")
    feed = parsed.feed
    items = [_xml_item(entry) for entry in parsed.entries]
    return ParsedFeed(title=_clean(feed.get("title", "")), link=str(feed.get("link", "") or url),
                      items=_oldest_first(items), kind=str(parsed.get("version") or "xml"))


def _xml_item(entry) -> FeedItemData:
    content = ""
    for part in entry.get("content") or []:
        if part.get("value"):
            content = _as_html(part["value"], part.get("type", "text/html"))
            break
    if not content and entry.get("summary"):
        detail = entry.get("summary_detail") or {}
        content = _as_html(entry["summary"], detail.get("type", "text/html"))
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    published = datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None  # a UTC struct_time
    title = _clean(entry.get("title", ""))
    link = str(entry.get("link", "") or "")
    return FeedItemData(guid=_guid(entry.get("id"), link, title, content), title=title, link=link,
                        published=published, html=content, author=_clean(entry.get("author", "")))


def _parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FeedProblem(f"invalid JSON Feed: {_one_line(exc)}",
                          hint="the feed is broken on the blog's side; nothing is sent until it is fixed") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(JSON_FEED_VERSION):
        raise FeedProblem("invalid JSON Feed: no \"version\": \"https://jsonfeed.org/version/1.1\"",
                          hint="give the feed's own URL, e.g. https://blog.example/feed.json")
    raw_items = document.get("items")
    if not isinstance(raw_items, list):
        raise FeedProblem("invalid JSON Feed: \"items\" is not a list")
    base = str(document.get("home_page_url") or url or "")
    items = []
    for raw in raw_items:
        if not isinstance(raw, dict):
            raise FeedProblem("invalid JSON Feed: an item is not an object")
        link = urljoin(url, str(raw.get("url") or "")) if raw.get("url") else ""
        if raw.get("content_html"):
            content = str(raw["content_html"])
        elif raw.get("content_text"):
            content = _as_html(str(raw["content_text"]), "text/plain")
        else:
            content = _as_html(str(raw.get("summary") or ""), "text/plain")
        title = _clean(raw.get("title") or "")
        authors = raw.get("authors") or ([raw["author"]] if isinstance(raw.get("author"), dict) else [])
        author = _clean(authors[0].get("name", "")) if authors and isinstance(authors[0], dict) else ""
        items.append(FeedItemData(guid=_guid(raw.get("id"), link, title, content), title=title, link=link,
                                  published=_iso_date(raw.get("date_published") or raw.get("date_modified")),
                                  html=content, author=author))
    return ParsedFeed(title=_clean(document.get("title") or ""), link=base, items=_oldest_first(items), kind="json")


def _as_html(value: str, kind: str) -> str:
    if "html" in (kind or ""):
        return value
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", value) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def _guid(given: object, link: str, title: str, content: str) -> str:
    guid = " ".join(str(given or "").split())[:GUID_LIMIT]
    if guid:
        return guid
    if link:
        return link[:GUID_LIMIT]
    return "sha256:" + hashlib.sha256(f"{title}\n{content}".encode("utf-8", "surrogatepass")).hexdigest()


def _iso_date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _oldest_first(items: list[FeedItemData]) -> list[FeedItemData]:
    if items and all(item.published for item in items):
        return sorted(items, key=lambda item: item.published or datetime.min.replace(tzinfo=UTC))
    return list(reversed(items))


def _clean(value: object) -> str:
    return " ".join(html.unescape(str(value or "")).split())[:TITLE_LIMIT]


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:160]


# --- items as articles ---------------------------------------------------------------------------

def item_article(item: FeedItemData, previous: RecentLink | None) -> Article:
    """One post as an Article: its content read like a pasted HTML article, the previous post as its link."""
    from newsletter.compose.html_reader import read_html

    article = read_html(item.html or "<p></p>")
    if article.title and article.title != item.title and item.title:
        # the content began with its own <h1>: keep it as a heading rather than lose it
        article.blocks.insert(0, Heading([Span(article.title)], level=2))
    article.title = item.title or article.title or "Untitled post"
    article.slug = slugify(article.title) or "post"
    article.author = article.author or item.author
    if item.published:
        article.date = item.published.date()
    _absolute_links(article.blocks, item.link)
    if item.link and _web(item.link):
        article.blocks.append(Paragraph([Span("Read it on the blog: "), Span(article.title, href=item.link)]))
    article.recently_published = previous if previous and previous.url else None
    article.source = item.html  # what the post itself says (a post about templates may show {{ tags }})
    return article


def digest_article(feed_title: str, items: list[FeedItemData], previous: RecentLink | None,
                   when: datetime) -> Article:
    """Every new post of a period in one Article: each post's title (linked) and content, oldest first."""
    from newsletter.compose.html_reader import read_html

    name = feed_title or "the blog"
    count = len(items)
    blocks: list[Block] = []
    for item in items:
        post = read_html(item.html or "<p></p>")
        title = item.title or post.title or "Untitled post"
        blocks.append(Heading([Span(title, href=item.link)] if _web(item.link) else [Span(title)], level=2))
        if post.title and post.title != title:
            blocks.append(Heading([Span(post.title)], level=3))
        for block in post.blocks:
            if isinstance(block, Heading):
                block.level = max(block.level, 3)
            blocks.append(block)
        _absolute_links(post.blocks, item.link)
    titles = ", ".join(item.title for item in items if item.title)
    article = Article(title=f"New on {name}: {count} post{'s' if count != 1 else ''}",
                      subtitle=titles[:200], blocks=blocks, date=when.date())
    article.slug = slugify(f"{name} {when:%Y-%m-%d %H%M}") or "digest"
    article.source = "\n".join(item.html for item in items)
    article.recently_published = previous if previous and previous.url else None
    return article


def recent_link(title: str, link: str) -> RecentLink | None:
    """The "recently published" link of a post, or None when it has no web address."""
    return RecentLink(title=title or link, url=link) if _web(link) else None


def _web(url: str) -> bool:
    from newsletter.compose.edition import require_web_address
    from newsletter.errors import InputError

    try:
        require_web_address(url)
    except InputError:
        return False
    return bool(url)


def _absolute_links(blocks: list[Block], base: str) -> None:
    """Relative links and images made absolute against the post's address (mail clients cannot follow them)."""
    if not base:
        return

    def fix(spans: list[Span]) -> None:
        for index, span in enumerate(spans):
            if span.href and not urlsplit(span.href).scheme:
                spans[index] = Span(span.text, href=urljoin(base, span.href), strong=span.strong, em=span.em,
                                    code=span.code)

    for block in blocks:
        if isinstance(block, (Paragraph, Heading, Quote)):
            fix(block.spans)
        elif isinstance(block, ListBlock):
            for item_spans in block.items:
                fix(item_spans)
        elif isinstance(block, Image) and block.src and not urlsplit(block.src).scheme:
            block.src = urljoin(base, block.src)
