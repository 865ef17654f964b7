"""Campaign use cases: send now, schedule, resume, retry, cancel, reschedule.

Each takes the store (and the Settings when it needs them) and plain
values, and returns what the caller prints (a SendReport or a dict); none
prints or asks anything. Who sends is :func:`newsletter.usecases.dispatch.dispatcher_for`'s choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

from newsletter.usecases.dispatch import Watch, dispatcher_for
from newsletter.usecases.editions import audience_of, prepare_edition, sample_for_list

if TYPE_CHECKING:
    from newsletter.compose.edition import Edition
    from newsletter.engine.abtests import ABChoice
    from newsletter.engine.campaigns import TrackingChoice
    from newsletter.usecases.segments import Audience


@dataclass(frozen=True)
class ComposeOptions:
    """The options every send, schedule and preview composes with."""

    recent_title: str | None = None
    recent_url: str | None = None
    theme: str | None = None

    def as_dict(self) -> dict:
        return {"recent_title": self.recent_title, "recent_url": self.recent_url, "theme": self.theme}


@dataclass
class SendPlan:
    """A checked send, before its campaign exists: what :func:`send_now` stores and sends."""

    article: str
    list_name: str
    transport: str
    edition: Edition
    audience: int | None
    again: bool = False
    target: Audience | None = None  # a segment, --where or --to-dormant send (usecases.segments)
    sunset: dict | None = None  # what the sunset policy did just before (usecases.segments.apply_sunset)
    tracking: TrackingChoice | None = None  # None: clicks tracked, opens not
    abtest: ABChoice | None = None  # an A/B subject test (usecases.abtests)

    def campaign_audience(self) -> dict:
        """What ``create_campaign`` records for the snapshot to apply (nothing for a whole list)."""
        return _campaign_audience(self.target)


def _campaign_audience(target: Audience | None) -> dict:
    if target is None:
        return {}
    return {"audience_filter": target.filter_text, "segment_name": target.segment, "to_dormant": target.to_dormant}


def _count(store, list_name: str, target: Audience | None) -> int:
    if target is None or not (target.filter_text or target.to_dormant):
        return audience_of(store, list_name)
    from newsletter.usecases.segments import audience_size

    return audience_size(store, target)


def plan_send(store, settings, article: str, list_name: str, *, transport: str | None = None,
              compose: ComposeOptions = ComposeOptions(), again: bool = False, dry_run: bool = False,
              count: bool = True, target: Audience | None = None, track_clicks: bool = True,
              track_opens: bool = False, abtest: ABChoice | None = None) -> SendPlan:
    """Compose and check ``article`` for ``list_name``; raise on anything that would stop the send.

    ``count``: size the audience (most of a second for a million members;
    without it, :func:`send_now` still refuses a missing list or an empty
    audience). A dry run skips the duplicate-send guard and the transport.
    """
    from newsletter.engine.campaigns import check_duplicate, require_sendable
    from newsletter.engine.fencing import stale_seconds

    require_sendable(settings)
    stale_seconds(settings)  # NEWSLETTER_SENDER_STALE_SECONDS: a bad value stops us before anything is stored
    edition = prepare_edition(settings, article, **compose.as_dict())
    if abtest is not None:
        abtest.check(edition.subject)
    from newsletter.usecases.segments import apply_sunset

    # who is dormant now decides the audience (the policy is off by default: then nothing to do)
    sunset = (apply_sunset(store, settings, dry_run=dry_run)
              if settings.sunset_after_sends or settings.sunset_after_days else None)
    audience = _count(store, list_name, target) if count or dry_run else None
    plan = SendPlan(article, list_name, transport or settings.transport, edition, audience, again, target, sunset,
                    _tracking(track_clicks, track_opens), abtest)
    if not dry_run:
        from newsletter.delivery import get_transport

        check_duplicate(store, edition, list_name, again)
        get_transport(settings, plan.transport)  # a missing API key or SMTP URL fails here, before anything is stored
    return plan


def dry_run(store, settings, plan: SendPlan) -> dict:
    """What a send would do: its audience and one rendered sample (written to build/)."""
    member = None
    if plan.target is not None and (plan.target.filter_text or plan.target.to_dormant):
        from newsletter.usecases.segments import first_member

        member = first_member(store, plan.target)
    sample_path, recipient = sample_for_list(store, settings, plan.edition, plan.list_name, member_id=member)
    return {"campaign_id": None, "dry_run": True, "audience": plan.audience, "list": plan.list_name,
            "transport": plan.transport, "subject": plan.edition.subject, "sample": str(sample_path),
            "sample_recipient": recipient}


def send_now(store, settings, plan: SendPlan, watch: Watch, *, limit: int | None = None):
    """Store the campaign and send it (here or on the workers); returns the SendReport."""
    from newsletter.engine.campaigns import create_campaign

    campaign_id = create_campaign(store, settings, plan.edition, plan.list_name, plan.transport,
                                  article_path=plan.article, again=plan.again, tracking=plan.tracking,
                                  abtest=plan.abtest, **plan.campaign_audience())
    size = f"{plan.audience} subscribers of " if plan.audience else ""
    where = plan.target.describe() if plan.target else plan.list_name
    watch.note(f"Campaign {campaign_id}: sending to {size}{where} via {plan.transport}")
    dispatcher = dispatcher_for(store, settings)
    report = dispatcher.start(campaign_id, watch, limit=limit)
    return report if limit is not None else go_on_after_quota(dispatcher, campaign_id, report, watch)


def resume(store, settings, campaign_id: int, watch: Watch):
    """Send what a stopped or killed campaign has not sent yet; returns the SendReport."""
    dispatcher = dispatcher_for(store, settings)
    return go_on_after_quota(dispatcher, campaign_id, dispatcher.resume(campaign_id, watch), watch)


def go_on_after_quota(dispatcher, campaign_id: int, report, watch: Watch):
    """In the foreground: while a quota paused the campaign, say when it goes on, wait, and resume then.

    Stopping the wait (Ctrl-C, ``watch.stop``) leaves the campaign paused,
    for ``campaigns resume`` or the scheduler daemon. Returns the last report.
    """
    from newsletter.errors import Conflict
    from newsletter.vocabulary import CampaignStatus

    while (report is not None and not dispatcher.on_workers and report.status == CampaignStatus.PAUSED
           and report.resume_at is not None and not watch.stop.is_set()):
        from newsletter.engine.quotas import show_utc

        watch.note(f"Paused: {report.pause_reason}. Waiting until {show_utc(report.resume_at)} "
                   f"(Ctrl-C stops; continue later with: newsletter campaigns resume {campaign_id})")
        if not watch.wait_until(report.resume_at):
            break
        try:
            report = dispatcher.resume(campaign_id, watch)
        except Conflict as exc:  # the scheduler daemon (newsletter run) took it on at the same moment
            watch.note(f"Campaign {campaign_id} goes on elsewhere: {exc.message}")
            break
    return report


def retry(store, settings, campaign_id: int, which: str | None, watch: Watch):
    """Send again the ``failed`` (or ``unknown``) recipients; returns the SendReport."""
    from newsletter.errors import InputError

    if which is None:
        raise InputError("say which recipients to retry", hint=f"newsletter campaigns retry {campaign_id} --failed")
    return dispatcher_for(store, settings).resume(campaign_id, watch, retry=which)


def schedule_at(store, settings, article: str, list_name: str, at: str, *, zone: str | None = None,
                local_time: bool = False, transport: str | None = None, compose: ComposeOptions = ComposeOptions(),
                again: bool = False, target: Audience | None = None, track_clicks: bool = True,
                track_opens: bool = False, abtest: ABChoice | None = None) -> dict:
    """Store a campaign the daemon sends at ``at`` (``local_time``: in each subscriber's zone, in waves).

    Returns the summary of :func:`newsletter.usecases.planning.schedule_campaign` plus ``audience``,
    ``subject``, ``when`` (the parsed time) and ``list``.
    """
    from newsletter.delivery import get_transport
    from newsletter.engine.campaigns import require_sendable
    from newsletter.errors import InputError
    from newsletter.scheduling.times import parse_naive, parse_when
    from newsletter.usecases.planning import schedule_campaign

    require_sendable(settings)
    if not at:
        from newsletter.usecases.editions import command_line

        raise InputError("say when to send", hint=command_line(
            "newsletter", "schedule", article, list=list_name, at="2026-12-01 09:00", tz="Europe/Paris",
            transport=transport, **compose.as_dict()))
    if local_time and parse_naive(at).tzinfo is not None:
        raise InputError("--local-time takes a wall-clock time without an offset",
                         hint='e.g. --at "2026-12-01 09:00" --local-time')
    when = parse_when(at, zone, allow_past=local_time)  # waves check their own first time
    chosen = transport or settings.transport
    get_transport(settings, chosen)  # a missing API key or SMTP URL fails now, not at send time
    edition = prepare_edition(settings, article, **compose.as_dict())
    if abtest is not None:
        abtest.check(edition.subject)
    audience = _count(store, list_name, target)
    result = schedule_campaign(store, settings, edition, list_name, chosen, when, article_path=article,
                               local_time=local_time, again=again, audience=_campaign_audience(target),
                               tracking=_tracking(track_clicks, track_opens), abtest=abtest)
    return {**result, "list": list_name, "audience": audience, "subject": edition.subject, "when": when}


def _tracking(clicks: bool, opens: bool) -> TrackingChoice:
    from newsletter.engine.campaigns import TrackingChoice

    return TrackingChoice(clicks=clicks, opens=opens)


def schedule_recurring(store, settings, folder: str, list_name: str, cron: str, *, zone: str | None = None,
                       transport: str | None = None, compose: ComposeOptions = ComposeOptions()) -> dict:
    """Store a recurring schedule: the newest new article of ``folder`` to ``list_name`` on ``cron``."""
    from datetime import datetime

    from newsletter.delivery import get_transport
    from newsletter.engine.campaigns import require_sendable
    from newsletter.scheduling.recurring import add_schedule

    require_sendable(settings)
    chosen = transport or settings.transport
    get_transport(settings, chosen)
    audience_of(store, list_name)
    zone = zone or "UTC"
    schedule_id, trigger = add_schedule(store, settings, folder, list_name, cron, zone, chosen, compose.as_dict())
    return {"campaign_id": None, "schedule_id": schedule_id, "cron": cron, "timezone": zone, "list": list_name,
            "next_run": trigger.get_next_fire_time(None, datetime.now(UTC))}


def cancel(store, campaign_id: int) -> dict:
    """Cancel a campaign that has not started (see :func:`newsletter.usecases.planning.cancel_campaign`)."""
    from newsletter.usecases.planning import cancel_campaign

    return cancel_campaign(store, campaign_id)


def reschedule(store, campaign_id: int, at: str, zone: str | None = None) -> dict:
    """Move a campaign that has not started to ``at`` (see ``planning.reschedule_campaign``)."""
    from newsletter.usecases.planning import reschedule_campaign

    return reschedule_campaign(store, campaign_id, at, zone)


def create_due_campaign(store, settings, article: str, list_name: str, transport: str, zone: str,
                        compose: dict) -> int:
    """A recurring schedule's firing: a campaign of ``article``, scheduled now; returns its id."""
    from newsletter.engine.campaigns import create_campaign
    from newsletter.store.models import utcnow
    from newsletter.vocabulary import CampaignStatus

    edition = prepare_edition(settings, article, **compose)
    return create_campaign(store, settings, edition, list_name, transport, status=CampaignStatus.SCHEDULED,
                           scheduled_at=utcnow(), timezone=zone, article_path=article)
