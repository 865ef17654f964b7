"""A blog's feed turned into newsletters: add, poll, approve, pause, resume, remove.

One poll (:func:`poll_feed`; the daemon's job at each ``--every`` tick and
``newsletter feeds poll`` do the same) goes:

1. fetch the feed: a conditional GET (the validators of the last fetch whose
   items were recorded), a timeout, a size cap (``compose.feedfetch``);
2. read it (RSS, Atom, JSON Feed; ``compose.feeds``) and find the items whose
   guid is not recorded yet;
3. decide, and record the decision in **one transaction** with what it
   creates:

   - the feed's first poll records what the feed holds (``baseline``) and sends nothing;
   - nothing new: nothing is sent;
   - more new items than the feed's limit (``--max-new``, default
     :data:`DEFAULT_MAX_NEW`) at once: the feed is paused with the reason,
     nothing is recorded or sent (a broken feed that suddenly lists 500 "new"
     items never mass-sends); ``feeds resume`` then takes them as seen,
     ``feeds resume --send-held`` sends them;
   - otherwise the new items become editions, ``each`` mode one per item
     (oldest first), ``digest`` mode one for all, each with the feed's
     previous item as its "recently published" link. Each edition is a
     campaign scheduled now (sent by whoever polled, or by the daemon) or, for
     a ``--draft`` feed, a draft waiting for ``feeds approve``. The items are
     recorded with their campaign in the same transaction, with the feed's row
     locked and their guids checked again: a poll killed before the commit
     leaves nothing (the next poll does it all again), one killed after it
     leaves campaigns the scheduler sends (or resumes) exactly once, and two
     polls at once create one set of campaigns;

4. HTTP errors, invalid feeds and pre-flight failures are recorded on the feed
   (``feeds show``) and in its poll log; nothing is recorded as seen, so the
   next good poll sees the items as new.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import Conflict, InputError, NewsletterError, NotFound
from newsletter.vocabulary import CampaignStatus, FeedItemState, FeedPollOutcome, FeedStatus

if TYPE_CHECKING:
    from newsletter.compose.feeds import FeedItemData, ParsedFeed

log = logging.getLogger("newsletter.scheduling")  # the daemon's log (newsletter run prints it)

MODES = ("each", "digest")
DEFAULT_MAX_NEW = 10
MAX_NEW_LIMIT = 1000
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,59}")
NAME_HINT = "a name of lowercase letters, digits, - and _ (up to 60), e.g. --name blog"
URL_LIMIT = 2000
ARTICLE_PREFIX = "feed:"  # an edition's article_path: "feed:NAME"


@dataclass
class PollResult:
    """What one poll did; ``campaigns``: scheduled campaigns to send now, ``drafts``: waiting for approval
    (``previews``: a ``file://`` link to each draft's email as a reader sees it)."""

    feed: str
    outcome: str
    detail: str = ""
    new_items: int = 0
    http_status: int | None = None
    campaigns: list[int] = field(default_factory=list)
    drafts: list[int] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "outcome": self.outcome, "detail": self.detail, "new_items": self.new_items,
                "http_status": self.http_status, "campaigns": self.campaigns, "drafts": self.drafts,
                "previews": self.previews}


# --- adding and managing feeds -------------------------------------------------------------------

def add_feed(store, settings, url: str, list_name: str, every: str, *, zone: str | None = None,
             mode: str = "each", draft: bool = False, name: str | None = None, max_new: int = DEFAULT_MAX_NEW,
             transport: str | None = None, poll: bool = True) -> dict[str, Any]:
    """Store a feed; with ``poll`` run its first poll now (it records what the feed holds, sends nothing).

    Returns the feed's summary and ``first_poll`` (a :class:`PollResult` dict, or None).
    """
    from newsletter.delivery import get_transport
    from newsletter.engine.campaigns import require_sendable
    from newsletter.scheduling.every import every_trigger
    from newsletter.store import feeds as q
    from newsletter.store.audience import get_list

    url = (url or "").strip()
    check_url(url)
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}", hint="--mode each (one email per post) or --mode digest")
    if not 1 <= max_new <= MAX_NEW_LIMIT:
        raise InputError(f"--max-new must be between 1 and {MAX_NEW_LIMIT}", hint="e.g. --max-new 10")
    zone = zone or "UTC"
    every_trigger(every, zone)  # a bad period or zone is refused before anything is stored
    name = name if name is not None else default_name(url)
    if not NAME.fullmatch(name):
        raise InputError(f"feed name {name[:80]!r} is not usable", hint=NAME_HINT)
    require_sendable(settings)
    chosen = transport or settings.transport
    get_transport(settings, chosen)  # a missing API key or SMTP URL fails now, not at the first post
    with store.session() as session:
        get_list(session, list_name)
        if q.feed_named(session, name) is not None:
            raise Conflict(f"there is already a feed called {name!r}",
                           hint="choose another with --name, or see it with: newsletter feeds show " + name)
        feed = q.Feed(name=name, url=url, list_name=list_name, every=" ".join(every.split()), timezone=zone,
                      mode=mode, draft=draft, transport=chosen, max_new=max_new, status=FeedStatus.ACTIVE,
                      paused_reason="", held=0, accept_jump=False, primed=False, title="", last_error="",
                      errors_in_row=0)
        session.add(feed)
        session.flush()
        feed_id = feed.id
    first = poll_feed(store, settings, feed_id) if poll else None
    return {**describe(store, name), "first_poll": first.as_dict() if first else None}


def check_url(url: str) -> None:
    """InputError unless ``url`` is an http(s) address of a sane length."""
    from urllib.parse import urlsplit

    if len(url) > URL_LIMIT:
        raise InputError(f"the feed URL is {len(url):,} characters long (at most {URL_LIMIT:,})",
                         hint="give the feed's plain address, e.g. https://blog.example/feed.xml")
    parts = urlsplit(url) if url.isprintable() and " " not in url else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"the feed URL {url[:80]!r} is not a web address",
                         hint="give its http(s) address, e.g. https://blog.example/feed.xml")


def default_name(url: str) -> str:
    """A feed's name from its URL's host: ``https://www.blog.example/feed`` gives ``blog-example``."""
    from urllib.parse import urlsplit

    from newsletter.compose.model import slugify

    host = (urlsplit(url).hostname or "feed").removeprefix("www.")
    return slugify(host, 60) or "feed"


def _feed(session, name: str, *, lock: bool = False):
    from newsletter.store import feeds as q

    return q.get_feed(session, name, lock=lock)


def list_feeds(store) -> list[dict[str, Any]]:
    from newsletter.store import feeds as q

    with store.session() as session:
        return [{**_summary(feed), "items": q.item_count(session, feed.id)} for feed in q.all_feeds(session)]


def describe(store, name: str, settings=None) -> dict[str, Any]:
    """The feed, its next poll, its last polls and its editions (with a preview link, a ``file://`` URL of
    :func:`draft_preview`, for each pending draft: ``settings`` given)."""
    from newsletter.store import feeds as q

    with store.session() as session:
        feed = _feed(session, name)
        summary = {**_summary(feed), "items": q.item_count(session, feed.id)}
        summary["polls"] = [{"at": p.polled_at, "outcome": p.outcome, "http_status": p.http_status,
                             "new_items": p.new_items, "detail": p.detail} for p in q.recent_polls(session, feed.id)]
        summary["editions"] = [{"campaign_id": c.id, "status": c.status, "subject": c.edition.subject,
                                "items": items, "created_at": c.created_at}
                               for c, items in q.feed_campaigns(session, feed.id)]
    if settings is not None:
        for edition in summary["editions"]:
            if edition["status"] == CampaignStatus.DRAFT:
                edition["preview"] = draft_preview(store, settings, edition["campaign_id"]).as_uri()
    return summary


def _summary(feed) -> dict[str, Any]:
    return {"name": feed.name, "url": feed.url, "list": feed.list_name, "every": feed.every,
            "timezone": feed.timezone, "mode": feed.mode, "draft": feed.draft, "transport": feed.transport,
            "max_new": feed.max_new, "status": feed.status, "paused_reason": feed.paused_reason or None,
            "held": feed.held, "title": feed.title, "primed": feed.primed, "last_polled_at": feed.last_polled_at,
            "last_error": feed.last_error or None, "errors_in_row": feed.errors_in_row,
            "next_poll": next_poll(feed), "created_at": feed.created_at}


def next_poll(feed) -> datetime | None:
    """When the daemon polls an active feed next (None for a paused one)."""
    from newsletter.scheduling.every import every_trigger
    from newsletter.store.models import utcnow

    if feed.status != FeedStatus.ACTIVE:
        return None
    try:
        return every_trigger(feed.every, feed.timezone).get_next_fire_time(None, utcnow())
    except InputError:
        return None


def pause_feed(store, name: str) -> dict[str, Any]:
    with store.session() as session:
        feed = _feed(session, name, lock=True)
        if feed.status != FeedStatus.PAUSED:
            feed.status, feed.paused_reason = FeedStatus.PAUSED, "paused by hand"
    return describe(store, name)


def resume_feed(store, name: str, *, send_held: bool = False) -> dict[str, Any]:
    """Poll the feed again. After a jump (``held`` items): its next poll takes what the feed holds then as
    seen (sends none of it), or with ``send_held`` accepts the jump once and sends the items."""
    with store.session() as session:
        feed = _feed(session, name, lock=True)
        if feed.status == FeedStatus.ACTIVE:
            raise Conflict(f"feed {name!r} is not paused", hint=f"see it with: newsletter feeds show {name}")
        if send_held and not feed.held:
            raise InputError(f"feed {name!r} holds no items to send",
                             hint=f"resume it without --send-held: newsletter feeds resume {name}")
        if feed.held:
            # a full fetch next time: with the old validators a 304 would hide the items
            feed.etag = feed.last_modified = None
            if send_held:
                feed.accept_jump = True
            else:
                feed.primed = False
        feed.status, feed.paused_reason, feed.held = FeedStatus.ACTIVE, "", 0
    return describe(store, name)


def remove_feed(store, name: str) -> dict[str, Any]:
    """Delete the feed, its items and its poll log; its campaigns (and their ledgers) stay."""
    from newsletter.store import feeds as q

    with store.session() as session:
        feed = _feed(session, name, lock=True)
        drafts = q.campaigns_in_state(session, feed.id, CampaignStatus.DRAFT)
        q.delete_feed(session, feed.id)
    return {"name": name, "removed": True, "drafts_left": drafts}


# --- polling -------------------------------------------------------------------------------------

def feed_ids(store, name: str | None) -> list[int]:
    """The feed called ``name`` (NotFound; Conflict when paused), or every active feed."""
    from newsletter.store import feeds as q

    with store.session() as session:
        if name is None:
            return [feed.id for feed in q.active_feeds(session)]
        feed = _feed(session, name)
        if feed.status != FeedStatus.ACTIVE:
            raise Conflict(f"feed {name!r} is paused: {feed.paused_reason}",
                           hint=f"resume it first: newsletter feeds resume {name}")
        return [feed.id]


def poll_feed(store, settings, feed_id: int) -> PollResult:
    """One poll of the feed (see the module docstring); never raises for the feed's own problems."""
    from newsletter.compose.feedfetch import FeedFetchError, fetch
    from newsletter.compose.feeds import FeedProblem, parse_feed
    from newsletter.store import feeds as q

    with store.session() as session:
        feed = q.feed_by_id(session, feed_id)
        if feed is None:
            return PollResult(feed=str(feed_id), outcome="gone")
        if feed.status != FeedStatus.ACTIVE:
            return PollResult(feed=feed.name, outcome="paused", detail=feed.paused_reason)
        name, url, primed = feed.name, feed.url, feed.primed
        etag, modified = (feed.etag, feed.last_modified) if primed else (None, None)
    try:
        from newsletter import __version__

        fetched = fetch(url, etag=etag, last_modified=modified, user_agent=f"newsletter/{__version__} feed reader")
    except FeedFetchError as exc:
        return _record_error(store, feed_id, name, exc.message, exc.status)
    if fetched.status == 304:
        return _record_quiet(store, feed_id, name, FeedPollOutcome.NOT_MODIFIED, 304, fetched, None)
    try:
        parsed = parse_feed(fetched.body, fetched.content_type, fetched.url)
    except FeedProblem as exc:
        return _record_error(store, feed_id, name, exc.message, fetched.status)
    return _decide(store, settings, feed_id, parsed, fetched)


def _unique(items: list[FeedItemData]) -> list[FeedItemData]:
    from newsletter.store.feeds import guid_hash

    seen: dict[str, FeedItemData] = {}
    for item in items:
        seen.setdefault(guid_hash(item.guid), item)
    return list(seen.values())


def _decide(store, settings, feed_id: int, parsed: ParsedFeed, fetched) -> PollResult:
    from newsletter.store import feeds as q

    items = _unique(parsed.items)
    with store.session() as session:
        feed = q.feed_by_id(session, feed_id)
        if feed is None or feed.status != FeedStatus.ACTIVE:
            return PollResult(feed=feed.name if feed else str(feed_id), outcome="paused")
        name, primed, max_new, accept_jump = feed.name, feed.primed, feed.max_new, feed.accept_jump
        known = q.known_hashes(session, feed_id, [q.guid_hash(item.guid) for item in items])
        last = q.last_item(session, feed_id)
        previous = (last.title, last.link) if last is not None else None
    new = [item for item in items if q.guid_hash(item.guid) not in known]
    status = fetched.status
    if not primed:
        return _record_baseline(store, feed_id, name, new, parsed, fetched)
    if not new:
        return _record_quiet(store, feed_id, name, FeedPollOutcome.NOTHING_NEW, status, fetched, parsed)
    if len(new) > max_new and not accept_jump:
        return _pause_for_jump(store, feed_id, name, len(new), max_new, status)
    try:
        editions = _compose(store, settings, feed_id, parsed, new, previous)
    except NewsletterError as exc:
        return _record_error(store, feed_id, name, exc.message, status, new_items=len(new))
    try:
        return _record_editions(store, settings, feed_id, new, editions, parsed, fetched)
    except NewsletterError as exc:  # the list lost its audience, an edition of the same name is sending now
        return _record_error(store, feed_id, name, exc.message, status, new_items=len(new))


def _compose(store, settings, feed_id: int, parsed: ParsedFeed, new: list[FeedItemData],
             previous: tuple[str, str] | None) -> list[tuple[Any, list[FeedItemData]]]:
    """The editions of the new items: ``[(edition, items it carries), ...]``; NewsletterError on a check error."""
    from newsletter.compose.checks import check_edition, errors
    from newsletter.compose.edition import build_edition
    from newsletter.compose.feeds import digest_article, item_article, recent_link
    from newsletter.engine.campaigns import require_sendable
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    with store.session() as session:
        feed = q.feed_by_id(session, feed_id)
        if feed is None:
            raise NotFound("the feed was removed during its poll")
        mode, transport, name = feed.mode, feed.transport, feed.name
    require_sendable(settings, transport)
    link = recent_link(*previous) if previous else None
    groups: list[tuple[Any, list[FeedItemData]]] = []
    if mode == "digest":
        groups.append((digest_article(parsed.title or name, new, link, utcnow()), new))
    else:
        for item in new:
            groups.append((item_article(item, link), [item]))
            link = recent_link(item.title, item.link) or link
    theme = settings.theme or "default"
    templates = Path(settings.workspace) / "templates"
    editions = []
    for article, carried in groups:
        edition = build_edition(article, settings, theme=theme, workspace_templates=templates)
        problems = errors(check_edition(edition, settings))
        if problems:
            raise InputError(f"pre-flight check failed for {article.title[:80]!r}: {problems[0].message}")
        editions.append((edition, carried))
    return editions


def _record_editions(store, settings, feed_id: int, new: list[FeedItemData], editions, parsed: ParsedFeed,
                     fetched) -> PollResult:
    from newsletter.engine.campaigns import add_campaign
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    now = utcnow()
    with store.session() as session:
        feed = q.feed_by_id(session, feed_id, lock=True)
        if feed is None or feed.status != FeedStatus.ACTIVE:
            return PollResult(feed=feed.name if feed else str(feed_id), outcome="paused")
        if q.known_hashes(session, feed_id, [q.guid_hash(item.guid) for item in new]):
            # another poll (the daemon, or feeds poll) recorded them while we composed: it sends them
            return PollResult(feed=feed.name, outcome=FeedPollOutcome.NOTHING_NEW, http_status=fetched.status,
                              detail="recorded by another poll at the same time")
        status = CampaignStatus.DRAFT if feed.draft else CampaignStatus.SCHEDULED
        created = []
        for edition, carried in editions:
            # again=True: the guids are this feed's duplicate guard (two posts may share a title)
            campaign_id = add_campaign(session, settings, edition, feed.list_name, feed.transport, status=status,
                                       scheduled_at=None if feed.draft else now, timezone=feed.timezone,
                                       article_path=ARTICLE_PREFIX + feed.name, again=True)
            for item in carried:
                q.add_item(session, feed_id, guid=item.guid, title=item.title, link=item.link,
                           published_at=item.published, state=FeedItemState.EDITION, campaign_id=campaign_id)
            created.append(campaign_id)
        kind = "drafts" if feed.draft else "campaigns"
        detail = f"{len(new)} new item(s) became {kind} {', '.join(map(str, created))}"
        _remember_fetch(feed, parsed, fetched, now)
        q.record_poll(session, feed_id, FeedPollOutcome.EDITIONS, http_status=fetched.status, new_items=len(new),
                      detail=detail)
        name, draft = feed.name, feed.draft
    log.info("feed %s: %s", name, detail)
    result = PollResult(feed=name, outcome=FeedPollOutcome.EDITIONS, detail=detail, new_items=len(new),
                        http_status=fetched.status)
    if draft:
        result.drafts = created
        result.previews = [draft_preview(store, settings, campaign_id).as_uri() for campaign_id in created]
        for campaign_id, preview in zip(created, result.previews, strict=True):
            log.info("feed %s: draft campaign %s waits for approval (preview: %s; approve with: newsletter feeds "
                     "approve %s %s)", name, campaign_id, preview, name, campaign_id)
    else:
        result.campaigns = created
    return result


def _remember_fetch(feed, parsed: ParsedFeed | None, fetched, now: datetime) -> None:
    """The validators of a fetch whose items are now recorded (saved with them, never before)."""
    feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
    if parsed is not None and parsed.title:
        feed.title = parsed.title
    feed.last_polled_at, feed.last_error, feed.errors_in_row = now, "", 0
    feed.accept_jump = False  # a --send-held resume lets one good poll through, never more


def _record_baseline(store, feed_id: int, name: str, items: list[FeedItemData], parsed: ParsedFeed,
                     fetched) -> PollResult:
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    now = utcnow()
    with store.session() as session:
        feed = q.feed_by_id(session, feed_id, lock=True)
        if feed is None or feed.primed:
            return PollResult(feed=name, outcome=FeedPollOutcome.NOTHING_NEW, detail="primed by another poll")
        fresh = set(q.known_hashes(session, feed_id, [q.guid_hash(item.guid) for item in items]))
        for item in items:
            if q.guid_hash(item.guid) not in fresh:
                q.add_item(session, feed_id, guid=item.guid, title=item.title, link=item.link,
                           published_at=item.published, state=FeedItemState.BASELINE)
        feed.primed = True
        _remember_fetch(feed, parsed, fetched, now)
        detail = f"first poll: {len(items)} item(s) recorded as already published; nothing sent"
        q.record_poll(session, feed_id, FeedPollOutcome.BASELINE, http_status=fetched.status,
                      new_items=len(items), detail=detail)
    log.info("feed %s: %s", name, detail)
    return PollResult(feed=name, outcome=FeedPollOutcome.BASELINE, detail=detail, new_items=len(items),
                      http_status=fetched.status)


def _record_quiet(store, feed_id: int, name: str, outcome: str, status: int, fetched,
                  parsed: ParsedFeed | None) -> PollResult:
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    detail = "not modified since the last poll (HTTP 304)" if status == 304 else "nothing new"
    with store.session() as session:
        feed = q.feed_by_id(session, feed_id, lock=True)
        if feed is None:
            return PollResult(feed=name, outcome="gone")
        if status != 304:
            _remember_fetch(feed, parsed, fetched, utcnow())
        else:
            feed.last_polled_at, feed.last_error, feed.errors_in_row = utcnow(), "", 0
        q.record_poll(session, feed_id, outcome, http_status=status, detail=detail)
    log.info("feed %s: %s", name, detail)
    return PollResult(feed=name, outcome=outcome, detail=detail, http_status=status)


def _pause_for_jump(store, feed_id: int, name: str, count: int, limit: int, status: int) -> PollResult:
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    reason = (f"{count} new items at once, more than the limit of {limit}: paused so that a broken feed never "
              f"mass-sends. If they are real posts: newsletter feeds resume {name} --send-held; to skip them: "
              f"newsletter feeds resume {name}")
    with store.session() as session:
        feed = q.feed_by_id(session, feed_id, lock=True)
        if feed is None:
            return PollResult(feed=name, outcome="gone")
        feed.status, feed.paused_reason, feed.held = FeedStatus.PAUSED, reason, count
        feed.last_polled_at = utcnow()
        q.record_poll(session, feed_id, FeedPollOutcome.PAUSED, http_status=status, new_items=count, detail=reason)
    log.warning("feed %s: %s", name, reason)
    return PollResult(feed=name, outcome=FeedPollOutcome.PAUSED, detail=reason, new_items=count, http_status=status)


def _record_error(store, feed_id: int, name: str, message: str, status: int | None,
                  new_items: int = 0) -> PollResult:
    from newsletter.store import feeds as q
    from newsletter.store.models import utcnow

    with store.session() as session:
        feed = q.feed_by_id(session, feed_id, lock=True)
        if feed is None:
            return PollResult(feed=name, outcome="gone")
        feed.last_polled_at, feed.last_error = utcnow(), message
        feed.errors_in_row += 1
        q.record_poll(session, feed_id, FeedPollOutcome.ERROR, http_status=status, new_items=new_items,
                      detail=message)
    log.error("feed %s: %s", name, message)
    return PollResult(feed=name, outcome=FeedPollOutcome.ERROR, detail=message, http_status=status,
                      new_items=new_items)


# --- sending what a poll created, drafts and approval --------------------------------------------

def poll_now(store, settings, name: str | None, watch) -> list[dict[str, Any]]:
    """``feeds poll [NAME]``: poll (one feed, or every active one) and send what became campaigns, here or
    on the workers (as the daemon would at its next tick). Returns one dict per feed, with ``reports``."""
    results = []
    for feed_id in feed_ids(store, name):
        result = poll_feed(store, settings, feed_id)
        reports = [send_campaign(store, settings, campaign_id, watch) for campaign_id in result.campaigns]
        results.append({**result.as_dict(), "reports": reports})
    return results


def send_campaign(store, settings, campaign_id: int, watch) -> dict[str, Any]:
    """Start a feed's campaign through the dispatcher; a campaign another process started is left to it."""
    from newsletter.usecases.dispatch import dispatcher_for

    watch.note(f"Campaign {campaign_id}: sending")
    try:
        report = dispatcher_for(store, settings).start(campaign_id, watch)
    except Conflict as exc:
        return {"campaign_id": campaign_id, "status": "started elsewhere", "detail": exc.message}
    if report is None:
        return {"campaign_id": campaign_id, "status": "queued"}
    return {"campaign_id": campaign_id, "status": str(report.status), "sent": report.sent, "failed": report.failed,
            "unknown": report.unknown, "skipped": report.skipped}


def approve(store, settings, name: str, campaign_id: int | None, watch) -> list[dict[str, Any]]:
    """Send the feed's draft ``campaign_id`` (or every draft it has, oldest first); returns one report each."""
    from newsletter.store import feeds as q

    with store.session() as session:
        feed = _feed(session, name)
        drafts = q.campaigns_in_state(session, feed.id, CampaignStatus.DRAFT)
    if campaign_id is not None:
        if campaign_id not in drafts:
            raise NotFound(f"feed {name!r} has no draft {campaign_id}",
                           hint=f"see its drafts with: newsletter feeds show {name}")
        drafts = [campaign_id]
    if not drafts:
        raise NotFound(f"feed {name!r} has no draft waiting for approval",
                       hint=f"see its editions with: newsletter feeds show {name}")
    return [send_campaign(store, settings, draft, watch) for draft in drafts]


def draft_preview(store, settings, campaign_id: int) -> Path:
    """Write the draft's HTML as a sample reader gets it to build/feeds/; returns the file's path."""
    from newsletter.compose.edition import SAMPLE_EMAIL, SAMPLE_NAME, SAMPLE_TOKEN, merge_values
    from newsletter.delivery.merge import personalise
    from newsletter.fileio import write_atomically
    from newsletter.store.models import Campaign

    with store.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise InputError(f"no campaign {campaign_id}")
        slug, html = campaign.edition.slug, campaign.edition.html
    values = merge_values(settings, slug, email=SAMPLE_EMAIL, name=SAMPLE_NAME, token=SAMPLE_TOKEN)
    path = (Path(settings.workspace) / "build" / "feeds" / f"{campaign_id}-{slug}.html").resolve()
    write_atomically(path, personalise(html, values).encode("utf-8"))
    return path
