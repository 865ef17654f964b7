"""Creating and describing campaigns: an edition times a list's audience.

``create_campaign`` refuses to start without what the law and the mailbox
providers require (a postal address, an https base URL for one-click
unsubscribe, a sender) and refuses an empty audience. The audience is
snapshotted into the ledger when sending starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.delivery.message_id import new_nonce
from newsletter.errors import Conflict, InputError, NotFound
from newsletter.store import ledger, webhooks
from newsletter.store.audience import get_list
from newsletter.store.models import Campaign
from newsletter.vocabulary import CampaignStatus, LedgerStatus, TrackingMode

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.compose.edition import Edition as ComposedEdition
    from newsletter.config import Settings
    from newsletter.engine.abtests import ABChoice
    from newsletter.store.db import Store
    from newsletter.store.models import MailingList

FINAL_STATUSES = (CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.MISSED)


def require_sendable(settings: Settings, transport: str | None = None) -> None:
    """Raise InputError unless the workspace has what every bulk message needs.

    ``transport`` (default: the workspace's) decides whether mail leaves this
    machine; then links to a loopback, private or plain-http base URL are
    refused too (:func:`newsletter.config.base_url_problem`).
    """
    from newsletter.config import base_url_problem

    missing = [(key, variable) for key, variable, value in (
        ("postal_address", "NEWSLETTER_POSTAL_ADDRESS", settings.postal_address),
        ("base_url", "NEWSLETTER_BASE_URL", settings.base_url),
        ("from", "NEWSLETTER_FROM", settings.sender_address),
    ) if not value]
    if missing:
        key, variable = missing[0]
        raise InputError(
            f"cannot send: [newsletter] {key} is not set in {settings.config_file}",
            hint=f"set {key} in newsletter.toml or {variable}; every email must carry it",
        )
    problem = base_url_problem(settings, transport)
    if problem is not None:
        raise InputError(f"cannot send: {problem.message}", hint=problem.hint)


def create_campaign(store: Store, settings: Settings, edition: ComposedEdition, list_name: str, transport: str, *,
                    status: str = CampaignStatus.DRAFT, scheduled_at: datetime | None = None,
                    timezone: str | None = None, article_path: str = "", again: bool = False,
                    audience_filter: str | None = None, segment_name: str | None = None,
                    to_dormant: bool = False, tracking: TrackingChoice | None = None,
                    abtest: ABChoice | None = None) -> int:
    """Store the edition and a campaign for ``list_name``; returns the campaign id.

    ``abtest``: an A/B subject test, recorded in the same transaction
    (:mod:`newsletter.engine.abtests`).

    ``tracking`` (default: clicks on, opens off, the workspace's mode) is
    recorded with the campaign's article links in the same transaction
    (``newsletter.store.tracking``), so every batch and every resume
    tracks alike.

    The duplicate-send guard (:func:`refuse_duplicate`) runs in the same
    transaction, with the list's row locked, so two sends of one edition
    cannot both pass it. ``again`` is the user's explicit override.
    ``audience_filter`` (a segment's filter text) and ``to_dormant`` are
    recorded on the campaign; its snapshot applies them when sending starts.
    """
    require_sendable(settings, transport)
    with store.session() as session:
        return add_campaign(session, settings, edition, list_name, transport, status=status,
                            scheduled_at=scheduled_at, timezone=timezone, article_path=article_path, again=again,
                            audience_filter=audience_filter, segment_name=segment_name, to_dormant=to_dormant,
                            tracking=tracking, abtest=abtest)


def add_campaign(session: Session, settings: Settings, edition: ComposedEdition, list_name: str, transport: str,
                 *, status: str = CampaignStatus.DRAFT, scheduled_at: datetime | None = None,
                 timezone: str | None = None, article_path: str = "", again: bool = False,
                 audience_filter: str | None = None, segment_name: str | None = None,
                 to_dormant: bool = False, tracking: TrackingChoice | None = None,
                 abtest: ABChoice | None = None) -> int:
    """:func:`create_campaign` inside the caller's transaction (which has checked :func:`require_sendable`),
    so that a caller can commit the campaign together with its own bookkeeping (a feed's items)."""
    mailing_list = get_list(session, list_name)
    refuse_duplicate(session, edition, mailing_list, again)
    if audience_filter or to_dormant:
        _refuse_empty_segment(session, mailing_list, audience_filter, to_dormant)
    elif not ledger.has_audience(session, mailing_list.id):
        raise InputError(f"list {list_name!r} has no confirmed, unsuppressed subscribers",
                         hint=f"add some with: newsletter subscribers import FILE --list {list_name}")
    stored = ledger.save_edition(
        session, slug=edition.slug, subject=edition.subject, preheader=edition.preheader or "",
        html=edition.html, text=edition.text, theme=edition.theme, article_path=article_path,
        tags=list(edition.article.tags or []))
    campaign = Campaign(edition_id=stored.id, list_id=mailing_list.id, list_name=mailing_list.name,
                        status=status, transport=transport, scheduled_at=scheduled_at,
                        timezone=timezone, error="", id_nonce=new_nonce(),
                        audience_filter=audience_filter or None, segment_name=segment_name,
                        to_dormant=to_dormant)
    session.add(campaign)
    session.flush()
    if status == CampaignStatus.SCHEDULED:
        webhooks.campaign_event(session, campaign.id, status)
    # a content variant's links are tracked too: positions run on after the campaign's own
    variant_html = "".join(pair[0].html for pair in (abtest.editions if abtest else ()) if pair is not None)
    _save_tracking(session, settings, campaign.id, mailing_list.name, edition.html + variant_html,
                   tracking or TrackingChoice())
    if abtest is not None:
        from newsletter.engine.abtests import record

        record(session, campaign.id, edition.subject, abtest)
    return campaign.id


def _refuse_empty_segment(session: Session, mailing_list: MailingList, audience_filter: str | None,
                          to_dormant: bool) -> None:
    from newsletter.store.segments import audience_ids
    from newsletter.vocabulary.filters import parse_filter

    node = parse_filter(audience_filter, "--where") if audience_filter else None
    if not audience_ids(session, [mailing_list.id], node, include_dormant=to_dormant, limit=1):
        raise InputError(f"nobody in {mailing_list.name} matches the filter now (or all who do are suppressed, "
                         "dormant or unconfirmed)",
                         hint=f"check it with: newsletter segments count --list {mailing_list.name} --where '...'")


@dataclass(frozen=True)
class TrackingChoice:
    """A campaign's tracking options (``--track-clicks/--no-track-clicks``, ``--track-opens``)."""

    clicks: bool = True
    opens: bool = False


def _save_tracking(session: Session, settings: Settings, campaign_id: int, list_name: str, html: str,
                   choice: TrackingChoice) -> None:
    from newsletter.compose.clicks import article_links
    from newsletter.store.tracking import save_plan

    mode = TrackingMode(settings.tracking_mode_for(list_name))
    clicks, opens = choice.clicks and mode != TrackingMode.OFF, choice.opens and mode != TrackingMode.OFF
    links = article_links(html, settings.base_url) if clicks else []
    save_plan(session, campaign_id, mode, clicks, opens, links)


# A campaign of the same edition in one of these states means the list has it, or is about to.
_UNDER_WAY = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.STOPPED)


def refuse_duplicate(session: Session, edition: ComposedEdition, mailing_list: MailingList, again: bool) -> None:
    """Conflict when the list already received this edition, or is getting it.

    "This edition" is one with the same slug, or the same subject and text.
    "Received" is a campaign of it to this list with sent rows, or one still
    scheduled, sending, paused or stopped. ``again`` lets a finished one be
    sent again on purpose; one being sent now is refused regardless.
    """
    from sqlalchemy import and_, or_, select

    from newsletter.store.models import Delivery, Edition, MailingList

    # Lock the list's row: two creations for one list serialise here (SQLite: BEGIN IMMEDIATE already does).
    session.execute(select(MailingList.id).where(MailingList.id == mailing_list.id).with_for_update())
    sent_rows = select(Delivery.id).where(Delivery.campaign_id == Campaign.id, Delivery.status == "sent").exists()
    same = or_(Edition.slug == edition.slug, and_(Edition.subject == edition.subject, Edition.text == edition.text))
    earlier = session.execute(
        select(Campaign.id, Campaign.status).join(Edition, Edition.id == Campaign.edition_id)
        .where(Campaign.list_id == mailing_list.id, same, or_(Campaign.status.in_(_UNDER_WAY), sent_rows))
        .order_by(Campaign.status != CampaignStatus.SENDING, Campaign.id.desc()).limit(1)).first()
    if earlier is None:
        return
    campaign_id, status = earlier
    name = mailing_list.name
    if status == CampaignStatus.SENDING:
        raise Conflict(f"campaign {campaign_id} is sending {edition.slug!r} to {name} right now",
                       hint=f"wait for it to finish (newsletter campaigns show {campaign_id}); if its sender died, "
                            f"continue it with: newsletter campaigns resume {campaign_id}; --again cannot "
                            "override a send in progress")
    if again:
        return
    if status == CampaignStatus.SCHEDULED:
        raise Conflict(f"{edition.slug!r} is already scheduled for {name} (campaign {campaign_id})",
                       hint=f"see it with: newsletter campaigns show {campaign_id} (cancel {campaign_id} to drop "
                            "it; newsletter campaigns resume works once it has started); to send it twice on "
                            "purpose, add --again")
    when, sent = _when_and_how_many(session, campaign_id)
    raise Conflict(f"{edition.slug!r} was already sent to {name}: campaign {campaign_id} sent it to {sent} "
                   f"subscriber(s) on {when} (status {status})",
                   hint=f"see who got it with: newsletter campaigns show {campaign_id}; "
                        + (f"to finish that send: newsletter campaigns resume {campaign_id}; " if status in _UNDER_WAY
                           else "")
                        + "to send it to everyone again on purpose, add --again")


def _when_and_how_many(session: Session, campaign_id: int) -> tuple[str, int]:
    """When an earlier campaign sent (finished, else started, else created; UTC) and to how many."""
    campaign = get_campaign(session, campaign_id)
    moment = campaign.finished_at or campaign.started_at or campaign.created_at
    return f"{moment:%Y-%m-%d %H:%M} UTC", ledger.counts(session, campaign_id).get(LedgerStatus.SENT, 0)


def check_duplicate(store: Store, edition: ComposedEdition, list_name: str, again: bool) -> None:
    """:func:`refuse_duplicate` on its own, before asking the user anything (create_campaign checks again)."""
    with store.session() as session:
        refuse_duplicate(session, edition, get_list(session, list_name), again)


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}", hint="see them with: newsletter campaigns list")
    return campaign


def audience_list_id(campaign: Campaign) -> int:
    """The list a campaign starting now sends to; Conflict when that list was deleted since.

    (Snapshotting a deleted list's audience would find nobody and settle the
    campaign as ``sent`` to no one. Raised inside the start's transaction, the
    error also rolls back its claim: the campaign stays as it was.)
    """
    if campaign.list_id is None:
        raise Conflict(f"campaign {campaign.id} cannot start: its list {campaign.list_name!r} was deleted",
                       hint=f"cancel it (newsletter campaigns cancel {campaign.id}) and send to another list")
    return campaign.list_id


def describe_campaign(store: Store, campaign_id: int) -> dict[str, Any]:
    """Status, counts and the rows that need attention (the ``campaigns show --json`` shape)."""
    with store.session() as session:
        campaign = get_campaign(session, campaign_id)
        counts = ledger.counts(session, campaign_id)
        events = campaign_events(session, campaign_id)
        report = campaign_report(session, campaign_id, campaign.transport)
        return {
            **campaign_summary(campaign),
            "counts": counts,
            "total": sum(counts.values()),
            "unknown": ledger.rows_with_status(session, campaign_id, LedgerStatus.UNKNOWN),
            "failed": ledger.rows_with_status(session, campaign_id, LedgerStatus.FAILED),
            "events": events,
            "providers": report["providers"],
            "rates": report["overall"],
        }


def campaign_events(session: Session, campaign_id: int) -> dict[str, int]:
    """Recipients with a delivered, bounced, opened, clicked, complained or unsubscribed event (provider webhooks)."""
    from newsletter.store.events import campaign_event_counts

    return campaign_event_counts(session, campaign_id)


def campaign_report(session: Session, campaign_id: int, transport: str) -> dict[str, Any]:
    """Per provider, what the events say and the complaint and hard-bounce rates (newsletter.events.report)."""
    from newsletter.events.report import campaign_report as report

    return report(session, campaign_id, transport)


def campaign_summary(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "status": campaign.status,
        "subject": campaign.edition.subject,
        "slug": campaign.edition.slug,
        "article": campaign.edition.article_path,
        "list": campaign.list_name,
        "transport": campaign.transport,
        "scheduled_at": campaign.scheduled_at,
        "timezone": campaign.timezone,
        "created_at": campaign.created_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "error": campaign.error or None,
        # paused by a quota (newsletter.engine.quotas): why, and when it goes on
        "pause_reason": campaign.pause_reason or None,
        "resume_at": campaign.resume_at,
        # a segment send: the filter its snapshot applied, and the segment it came from
        "segment": campaign.segment_name,
        "where": campaign.audience_filter,
        "to_dormant": campaign.to_dormant,
    }


def list_campaigns(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    """Campaigns, newest first, with their ledger counts."""
    with store.session() as session:
        return [{**campaign_summary(c), "counts": ledger.counts(session, c.id)}
                for c in ledger.list_campaigns(session, status)]


def ensure_resumable(campaign: Campaign) -> None:
    if campaign.status == CampaignStatus.AUTOMATED:
        raise Conflict(f"campaign {campaign.id} is a step of a sequence: newsletter run sends it",
                       hint="see the sequence's steps with: newsletter sequences list, then sequences show NAME")
    if campaign.status in FINAL_STATUSES and campaign.status != CampaignStatus.SENT:
        raise Conflict(f"campaign {campaign.id} is {campaign.status}", hint="create a new one with newsletter send")
    if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        raise Conflict(f"campaign {campaign.id} has not started ({campaign.status})",
                       hint="it starts by itself when due, under newsletter run")


RESUMABLE = (CampaignStatus.PAUSED, CampaignStatus.STOPPED, CampaignStatus.SENDING, CampaignStatus.SENT,
             CampaignStatus.FAILED)  # failed: finished, and nobody received it
