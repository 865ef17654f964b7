"""The web archive: past issues as web pages and an Atom feed.

Only what was actually delivered is published: editions of campaigns whose
status is ``sent`` and that have at least one ``sent`` ledger row (a
campaign nobody received, failed or stopped, never shows).

- ``GET /archive``: those editions, newest first (one entry per slug);
- ``GET /archive/{slug}``: the newest delivered edition with that slug, its
  stored HTML rendered for an anonymous reader: the greeting becomes
  "Hello,", the name "reader", the address "your email address", and the
  unsubscribe link points at a page that explains where the real one is
  (every email's "view in browser" link lands here, so this page must hold
  no personal data); 404 for drafts, scheduled, failed and unknown slugs;
- ``GET /feed.xml``: an Atom feed (RFC 4287) of the same entries.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from newsletter.compose.edition import web_url, without_greeting
from newsletter.delivery.merge import MergeTemplate
from newsletter.store import events as ev

ATOM = "http://www.w3.org/2005/Atom"
FEED_ENTRIES = 50
# The archived email shows external images the author put in it; scripts never run.
ARCHIVE_HEADERS = {
    "Content-Security-Policy": "script-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=300",
}


# The built-in themes mark their greeting line, which the web copy leaves out
# (compose.edition.without_greeting); a workspace theme that greets without the
# marks ("Hi %%name%%,") is greeted as everyone.
GREETING = re.compile(r"\bHi %%(?:first_)?name(?::raw)?%%,")
ANONYMOUS_NAME = "reader"
ANONYMOUS_EMAIL = "your email address"


def neutral_values(settings, slug: str) -> dict[str, str]:
    """Merge values for a reader we do not know: every other field (attributes) renders empty."""
    return {"name": ANONYMOUS_NAME, "first_name": ANONYMOUS_NAME, "email": ANONYMOUS_EMAIL,
            "unsubscribe_url": f"{settings.base_url}/unsubscribe",
            "preferences_url": f"{settings.base_url}/preferences",  # a help page: no reader is known
            "web_url": web_url(settings, slug), "list_name": settings.name}


def for_anyone(template: str, settings, slug: str) -> str:
    """``template`` (an edition's HTML or subject) filled in for an anonymous reader."""
    return MergeTemplate(GREETING.sub("Hello,", without_greeting(template))).render(neutral_values(settings, slug))


_BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body\s*>)", re.S | re.I)


def as_web_page(html: str) -> str:
    """The email's HTML as a web page: its body inside one ``<main>`` landmark (screen readers jump to it;
    in the mail itself MRML's ``role="article"`` is the right landmark, a mail client being the page)."""
    return _BODY.sub(lambda m: f"{m.group(1)}<main>{m.group(2)}</main>{m.group(3)}", html, count=1)


def archived_html(store, settings, slug: str) -> str | None:
    """The web version of ``slug``, or None when no delivered campaign carried it."""
    if len(slug) > 200 or not slug.isprintable():
        return None  # no slug is like that (and PostgreSQL refuses a NUL in a query)
    with store.session() as session:
        edition = ev.sent_edition(session, slug)
        if edition is None:
            return None
        return as_web_page(for_anyone(edition.html, settings, edition.slug))


def archive_entries(store, settings, limit: int = 200) -> list[dict]:
    with store.session() as session:
        entries = ev.sent_editions(session, limit)
    for entry in entries:
        entry["url"] = web_url(settings, entry["slug"])
        entry["subject"] = for_anyone(entry["subject"], settings, entry["slug"])
    return entries


def atom_feed(settings, entries: list[dict]) -> bytes:
    """The Atom document for ``entries`` (newest first)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    archive_url = f"{settings.base_url}/archive"
    updated = entries[0]["sent_at"] if entries else datetime(2000, 1, 1, tzinfo=UTC)
    _text(feed, "id", archive_url)
    _text(feed, "title", settings.name)
    _text(feed, "updated", _iso(updated))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", settings.sender_name or settings.name)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=f"{settings.base_url}/feed.xml",
                  type="application/atom+xml")
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", href=archive_url, type="text/html")
    for entry in entries:
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(item, "id", entry["url"])
        _text(item, "title", entry["subject"])
        _text(item, "updated", _iso(entry["sent_at"]))
        ET.SubElement(item, f"{{{ATOM}}}link", rel="alternate", href=entry["url"], type="text/html")
        if entry["preheader"]:
            _text(item, "summary", entry["preheader"])
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _text(parent, tag: str, value: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}{tag}").text = value


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def archive_index(request):
    ctx = request.app.state.ctx
    entries = await ctx.run(archive_entries, ctx.store, ctx.settings)
    return ctx.pages.page("archive.html", editions=entries, feed_url=f"{ctx.settings.base_url}/feed.xml",
                          robots="index")


async def archive_edition(request):
    from starlette.responses import HTMLResponse

    ctx = request.app.state.ctx
    html = await ctx.run(archived_html, ctx.store, ctx.settings, request.path_params["slug"])
    if html is None:
        return ctx.pages.message("No such issue", "We have not sent an issue at this address.", status=404,
                                 link={"href": f"{ctx.settings.base_url}/archive", "text": "See all past issues"})
    return HTMLResponse(html, headers=ARCHIVE_HEADERS)


async def feed(request):
    from starlette.responses import Response

    ctx = request.app.state.ctx
    entries = await ctx.run(archive_entries, ctx.store, ctx.settings, FEED_ENTRIES)
    return Response(atom_feed(ctx.settings, entries), media_type="application/atom+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300"})


async def unsubscribe_help(request):
    """``GET /unsubscribe`` (no token): where the archive's unsubscribe link leads."""
    ctx = request.app.state.ctx
    return ctx.pages.message(
        "Unsubscribing", "Every email we send has an unsubscribe link of its own at the bottom, "
        "and most mail apps show an Unsubscribe button next to the sender.",
        "Use the link in one of your emails: it unsubscribes you in one click, no login needed.",
        link={"href": f"{ctx.settings.base_url}/archive", "text": "Read past issues"})


async def preferences_help(request):
    """``GET /preferences`` (no token): where the archive's "manage your subscription" link leads."""
    ctx = request.app.state.ctx
    return ctx.pages.message(
        "Managing your subscription", "Every email we send ends with a \"Manage your subscription\" link of its "
        "own: it opens your page, where you choose your lists, pause our email, change your name and time zone, "
        "download or erase your data.",
        "Use the link in one of your emails: no login needed.",
        link={"href": f"{ctx.settings.base_url}/archive", "text": "Read past issues"})
