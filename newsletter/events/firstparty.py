"""Clicks and opens that reach ``newsletter serve``: classified human or machine, counted, recorded.

Every request on a valid token adds one to the campaign's link-level
counts (``store.tracking.count``: human or machine, per UTC hour), in
every tracking mode. A personal token's human request is also a
:class:`~newsletter.tracking.TrackingEvent` (``clicked``/``opened``, provider
``newsletter``) through the event pipeline, in the same transaction, so it
lands in the same per-delivery record as provider events and is
deduplicated with them (first click kept; one event per delivery and link,
one open per delivery). Machine requests never reach the per-delivery
record: segments and rates built on it count people only.

Machine, with the reason kept for the report:

- ``head``: a HEAD request (link checkers look without following);
- ``agent``: a known scanner or tool user agent, or none at all;
- ``prefetch``: an open fetched by Apple Mail Privacy Protection's proxy
  (its bare ``Mozilla/5.0`` agent, or Apple's 17.0.0.0/8 network);
- ``early``: a personal click or open within ``[tracking] machine_seconds``
  of the message being handed to the provider (security gateways follow
  every link as the mail arrives);
- ``burst``: a click on another link of the same message (personal) or
  from the same client (aggregate: a hash of address and agent, kept in
  memory for a few seconds) within :data:`BURST_SECONDS`: a scanner
  opening every link at once. The first link of a burst was already
  counted as human.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.compose import clicks
from newsletter.delivery import message_id
from newsletter.events.pipeline import record_events_in
from newsletter.store import abtests as abtest_store
from newsletter.store import tracking as store
from newsletter.store import webhooks
from newsletter.store.db import Store
from newsletter.tracking import EventKind, TrackingEvent
from newsletter.vocabulary import LedgerStatus

PROVIDER = "newsletter"  # the provider name of first-party events
BURST_SECONDS = 2.0
_BURST_MEMORY = 10_000  # clients remembered (the oldest are forgotten first)

SCANNER_AGENTS = re.compile(
    r"bot\b|bot/|crawl|spider|scanner|barracuda|mimecast|proofpoint|symantec|messagelabs|trendmicro|fortinet|"
    r"forcepoint|sophos|ironport|safelinks|safe links|mailscanner|python-requests|python-urllib|aiohttp|httpx|"
    r"curl/|wget|go-http-client|java/|okhttp|apache-httpclient|libwww|headlesschrome|phantomjs|slurp|"
    r"bingpreview|facebookexternalhit|urlscan|virustotal|ms-office|microsoft office|skypeuripreview",
    re.I)
APPLE_PROXY_AGENT = "Mozilla/5.0"
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")


@dataclass(frozen=True)
class Request:
    """What the classification looks at: the HTTP method, the user agent and the client's address."""

    method: str
    user_agent: str
    client: str | None


@dataclass(frozen=True)
class Recorded:
    """A counted request: where a click goes (None for an open), and whether and why it was machine."""

    url: str | None
    machine: bool
    reason: str
    personal: bool


class Bursts:
    """Recent clicks per client (thread-safe, bounded): tells a scanner opening every link at once."""

    def __init__(self, seconds: float = BURST_SECONDS, memory: int = _BURST_MEMORY):
        self.seconds, self.memory = seconds, memory
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, list[tuple[float, int]]] = OrderedDict()

    def another_link(self, client: str, position: int, when: float) -> bool:
        """Record a click; True when the same client clicked a different link within the window."""
        with self._lock:
            recent = [(t, p) for t, p in self._recent.pop(client, []) if abs(when - t) <= self.seconds]
            burst = any(p != position for _, p in recent)
            recent.append((when, position))
            self._recent[client] = recent[-20:]
            while len(self._recent) > self.memory:
                self._recent.popitem(last=False)
            return burst


def agent_reason(request: Request, kind: str) -> str | None:
    """``head``, ``agent`` or ``prefetch`` when the request itself shows a machine, else None."""
    if request.method.upper() == "HEAD":
        return "head"
    agent = request.user_agent.strip()
    if kind == "open" and (agent == APPLE_PROXY_AGENT or _in_apple_network(request.client)):
        return "prefetch"
    if not agent or SCANNER_AGENTS.search(agent):
        return "agent"
    return None


def _in_apple_network(client: str | None) -> bool:
    try:
        return client is not None and ipaddress.ip_address(client) in APPLE_NETWORK
    except ValueError:
        return False


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def record(db: Store, secret_keys: Sequence[str], token: str, kind: str, request: Request, now: datetime, *,
           machine_seconds: float = 10.0, bursts: Bursts | None = None) -> Recorded | None:
    """Count one click (``kind`` "click") or open ("open") on ``token``; None when the token is not valid
    (tampered, unknown campaign or link): nothing is counted and nothing redirects."""
    ids = clicks.read_token(secret_keys, token, kind)
    if ids is None or (kind == "open") != (ids.position == store.OPEN_POSITION):
        return None
    url = _link_url(db, ids.campaign_id, ids.position) if kind == "click" else None
    if kind == "click" and url is None:
        return None
    with db.session() as session:
        row = store.sent_row(session, ids.delivery_id) if ids.delivery_id is not None else None
        personal = row is not None and row.campaign_id == ids.campaign_id
        reason = agent_reason(request, kind)
        if reason is None and personal and row is not None and row.updated_at is not None \
                and row.status == LedgerStatus.SENT \
                and (now - row.updated_at).total_seconds() < machine_seconds:
            reason = "early"
        if reason is None and kind == "click" and bursts is not None:
            client = f"d{ids.delivery_id}" if personal else _client_key(ids.campaign_id, request)
            if bursts.another_link(client, ids.position, now.timestamp()):
                reason = "burst"
        machine = reason is not None
        store.count(session, ids.campaign_id, kind, ids.position, hour_of(now), machine)
        if ids.variant is not None:  # an A/B test's aggregate link: its variant's count too
            abtest_store.count_request(session, ids.campaign_id, ids.variant, kind, machine)
        if kind == "click" and not machine and url is not None:
            webhooks.click_event(session, ids.campaign_id, url, ids.delivery_id if personal else None)
        event = _event(secret_keys, kind, ids, now) if personal and not machine else None
        if event is not None and not _already_recorded(db, event.event_id):
            record_events_in(session, [event], secret_keys, now)
    if event is not None:
        _remember_recorded(db, event.event_id)  # committed: a repeat needs no trip through the pipeline
    return Recorded(url, machine, reason or "", personal)


_LINKS: weakref.WeakKeyDictionary[Store, dict[tuple[int, int], str]] = weakref.WeakKeyDictionary()
_LINKS_LOCK = threading.Lock()
_LINKS_KEPT = 50_000


def _link_url(db: Store, campaign_id: int, position: int) -> str | None:
    """A link's URL, remembered per store: links never change once their campaign exists, and ids are never
    reused, so a click needs no query for them after the first. Unknown links are not remembered."""
    with _LINKS_LOCK:
        known = _LINKS.setdefault(db, {})
        url = known.get((campaign_id, position))
    if url is not None:
        return url
    with db.session() as session:
        url = store.link_url(session, campaign_id, position)
    if url is not None:
        with _LINKS_LOCK:
            if len(known) >= _LINKS_KEPT:
                known.clear()
            known[(campaign_id, position)] = url
    return url


_RECORDED: weakref.WeakKeyDictionary[Store, OrderedDict[str, None]] = weakref.WeakKeyDictionary()


def _already_recorded(db: Store, event_id: str) -> bool:
    """True when this process already stored the event (the pipeline would skip it as a repeat anyway)."""
    with _LINKS_LOCK:
        return event_id in _RECORDED.get(db, ())


def _remember_recorded(db: Store, event_id: str) -> None:
    with _LINKS_LOCK:
        recorded = _RECORDED.setdefault(db, OrderedDict())
        recorded[event_id] = None
        while len(recorded) > _LINKS_KEPT:
            recorded.popitem(last=False)


def _client_key(campaign_id: int, request: Request) -> str:
    """Who clicked, for the burst rule of aggregate links: a hash, kept in memory only."""
    raw = f"{campaign_id}\x00{request.client or ''}\x00{request.user_agent}"
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:24]


def _event(secret_keys: Sequence[str], kind: str, ids: clicks.TokenIds, now: datetime) -> TrackingEvent:
    assert ids.delivery_id is not None
    ours = message_id.message_id_for(secret_keys[-1], message_id.OurMessageId(ids.campaign_id, ids.delivery_id),
                                     "localhost")
    if kind == "click":
        return TrackingEvent(PROVIDER, EventKind.CLICKED, f"{PROVIDER}:click:{ids.delivery_id}:{ids.position}", "",
                             now, {"link": ids.position}, message_id=ours, detail=f"link {ids.position}")
    return TrackingEvent(PROVIDER, EventKind.OPENED, f"{PROVIDER}:open:{ids.delivery_id}", "", now, {},
                         message_id=ours, detail="pixel")
