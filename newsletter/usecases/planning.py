"""Scheduling campaigns from the library (the CLI is a thin layer over these).

Every change of a scheduled campaign is a conditional update on its status,
so it races safely with the daemon starting it: ``cancel`` and
``reschedule`` work while the campaign is ``scheduled`` and say clearly when
the send has already started.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from newsletter.engine.campaigns import create_campaign, get_campaign
from newsletter.errors import Conflict
from newsletter.scheduling import waves as wave_plans
from newsletter.scheduling.times import When, parse_naive, parse_when, show
from newsletter.store import ledger
from newsletter.store import scheduling as q
from newsletter.store.models import Campaign
from newsletter.store.webhooks import campaign_event
from newsletter.vocabulary import CampaignStatus


def schedule_campaign(store, settings, edition, list_name: str, transport: str, when: When, *,
                      article_path: str = "", local_time: bool = False, again: bool = False,
                      audience: dict | None = None, tracking=None, abtest=None) -> dict:
    """Store a ``scheduled`` campaign (with its waves for ``local_time``); returns its summary.

    The daemon (``newsletter run``) picks it up from the campaigns table at
    its next sync: no process but the daemon touches APScheduler.

    ``again``: the duplicate-send guard's override (see ``create_campaign``).
    ``audience``: a segment send's ``audience_filter``/``segment_name``/``to_dormant`` (``create_campaign``).
    """
    if not local_time:
        campaign_id = create_campaign(store, settings, edition, list_name, transport, status=CampaignStatus.SCHEDULED,
                                      scheduled_at=when.utc, timezone=when.zone, article_path=article_path,
                                      again=again, tracking=tracking, abtest=abtest, **(audience or {}))
        return {"campaign_id": campaign_id, "scheduled_at": when.utc, "timezone": when.zone, "waves": []}
    # A draft until its waves exist: the daemon never sees a half-planned campaign.
    campaign_id = create_campaign(store, settings, edition, list_name, transport, status=CampaignStatus.DRAFT,
                                  scheduled_at=when.utc, timezone=when.zone, article_path=article_path, again=again,
                                  tracking=tracking, **(audience or {}))
    try:
        with store.session() as session:
            campaign = get_campaign(session, campaign_id)
            planned = wave_plans.create_waves(session, campaign, when.local.replace(tzinfo=None))
            campaign.status = CampaignStatus.SCHEDULED
            first = campaign.scheduled_at
            session.flush()
            campaign_event(session, campaign_id, CampaignStatus.SCHEDULED)
    except Exception:
        with store.session() as session:  # leave no stray draft behind
            ledger.delete_campaign(session, campaign_id)
        raise
    return {"campaign_id": campaign_id, "scheduled_at": first, "timezone": when.zone, "waves": planned}


def _segment_size(session, row: dict) -> int:
    from newsletter.store.segments import audience_count
    from newsletter.vocabulary.filters import parse_filter

    campaign = session.get(Campaign, row["id"])
    if campaign.list_id is None:
        return 0
    node = parse_filter(row["where"], "the campaign's filter") if row.get("where") else None
    return audience_count(session, [campaign.list_id], node, include_dormant=bool(row.get("to_dormant")))


def _refuse(campaign_id: int, status: str, verb: str) -> Conflict:
    if status == CampaignStatus.CANCELLED:
        return Conflict(f"campaign {campaign_id} is cancelled; it can no longer be {verb}",
                        hint="schedule the article again with: newsletter schedule ARTICLE --list L --at TIME")
    if status == CampaignStatus.MISSED and verb == "cancelled":
        return Conflict(f"campaign {campaign_id} was missed (nothing was sent); there is nothing to cancel",
                        hint=f"send it later with: newsletter campaigns reschedule {campaign_id} --at TIME")
    return Conflict(f"campaign {campaign_id} has already started ({status}); it can no longer be {verb}",
                    hint=f"see its progress with: newsletter campaigns show {campaign_id}")


def _status(session, campaign_id: int) -> str:
    return session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))


def cancel_campaign(store, campaign_id: int) -> dict:
    """``scheduled``/``draft`` -> ``cancelled``; Conflict once the send has started (or it was missed)."""
    with store.session() as session:
        get_campaign(session, campaign_id)
        if not q.claim_scheduled(session, campaign_id, CampaignStatus.CANCELLED, (CampaignStatus.SCHEDULED,
                                                                                  CampaignStatus.DRAFT)):
            status = _status(session, campaign_id)
            if status == CampaignStatus.CANCELLED:
                return {"campaign_id": campaign_id, "status": CampaignStatus.CANCELLED, "already": True}
            raise _refuse(campaign_id, status, "cancelled")
        q.set_waves(session, campaign_id, q.WAVE_PENDING, q.WAVE_CANCELLED)
    return {"campaign_id": campaign_id, "status": CampaignStatus.CANCELLED, "already": False}


def reschedule_campaign(store, campaign_id: int, at: str, zone: str | None) -> dict:
    """Move a campaign that has not started (``scheduled``, ``draft`` or ``missed``) to a new time.

    ``zone`` defaults to the campaign's own. A local-time campaign gets its
    waves planned again.
    """
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        from_statuses = (CampaignStatus.SCHEDULED, CampaignStatus.DRAFT, CampaignStatus.MISSED)
        if campaign.status not in from_statuses:
            raise _refuse(campaign_id, campaign.status, "rescheduled")
        has_waves = bool(q.waves_of(session, campaign_id))
        # Local-time waves check their own first send time against now.
        when = parse_when(at, zone or campaign.timezone, allow_past=has_waves)
        scheduled_at: datetime | None = when.utc
        if has_waves:
            campaign.timezone = when.zone
            wave_plans.replace_waves(session, campaign, when.local.replace(tzinfo=None))
            scheduled_at = campaign.scheduled_at
            session.expire(campaign)
        # The conditional update is what settles a race with the daemon starting it.
        if not q.claim_scheduled(session, campaign_id, CampaignStatus.SCHEDULED, from_statuses,
                                 scheduled_at=scheduled_at,
                                 timezone=when.zone, error=""):
            raise _refuse(campaign_id, _status(session, campaign_id), "rescheduled")
    return {"campaign_id": campaign_id, "status": CampaignStatus.SCHEDULED, "scheduled_at": scheduled_at,
            "timezone": when.zone, "note": when.note, "local_time": has_waves}


def enrich(store, rows: list[dict]) -> list[dict]:
    """Add to ``list_campaigns`` rows: the time in its own zone, local-time waves and the audience size.

    The audience of a campaign that has not started is the list's audience
    now; after the start it is the ledger's size.
    """
    with store.session() as session:
        with_waves = q.campaigns_with_waves(session, [r["id"] for r in rows])
        sizes: dict[str, int] = {}
        for row in rows:
            row["scheduled_local"] = show(row["scheduled_at"], row["timezone"]) if row["scheduled_at"] else None
            row["local_time"] = row["id"] in with_waves
            if row["local_time"]:
                row["waves"] = wave_plans.describe(session, row["id"])
            total = sum(row["counts"].values())
            if total or row["status"] not in (CampaignStatus.SCHEDULED, CampaignStatus.DRAFT, CampaignStatus.MISSED):
                row["audience"] = total
                continue
            if row.get("where") or row.get("to_dormant"):  # a segment send: its filter, counted now
                row["audience"] = _segment_size(session, row)
                continue
            if row["list"] not in sizes:
                campaign = session.get(Campaign, row["id"])
                sizes[row["list"]] = ledger.audience_size(session, campaign.list_id) if campaign.list_id else 0
            row["audience"] = sizes[row["list"]]
    return rows


def wall_clock(text: str) -> datetime:
    """The naive wall-clock part of a TIME (for local-time sends, an offset makes no sense)."""
    return parse_naive(text).replace(tzinfo=None)
