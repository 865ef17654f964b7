"""``newsletter schedule``: queue a campaign for a time, or a recurring send."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say
from newsletter.cli.compose import compose_options
from newsletter.providers import registry


@click.command("schedule")
@click.argument("article")
@click.option("--list", "list_name", required=True, help="The list to send to.")
@click.option("--at", "at", metavar="TIME", help='When: ISO 8601 local time in --tz ("2026-12-01 09:00", '
              "2026-12-01T09:00:30), or with an offset.")
@click.option("--tz", "zone", metavar="ZONE", help="IANA time zone of TIME, e.g. America/New_York (default: UTC).")
@click.option("--local-time", is_flag=True,
              help="Deliver at TIME's wall-clock time in each subscriber's own zone, in waves.")
@click.option("--cron", metavar="EXPR", help='Recurring: ARTICLE is a folder; send its newest new article on '
              'this cron schedule, e.g. "0 9 * * MON".')
@click.option("--transport", default=None, type=click.Choice(registry.names()),
              help="Override the workspace's transport.")
@click.option("--again", is_flag=True,
              help="Schedule it even though this list already received this edition (same slug or same content). "
                   "Never while it is being sent.")
@compose_options
@json_option
@pass_app
def schedule(app, article, list_name, at, zone, local_time, cron, transport, again, recent_title, recent_url, theme,
             as_json):
    """Schedule ARTICLE for a list at a time; `newsletter run` sends it when due.

    The edition is composed and checked now (errors stop it). The time is
    stored in UTC and shown in the zone you gave. A local time that does not
    exist (clocks jump forward) is refused; one that happens twice (clocks go
    back) means the first. With --local-time each subscriber gets it at TIME
    in their own zone (no zone set: --tz). With --cron, ARTICLE is a folder
    and each run sends its newest article not yet sent to the list, or skips.
    An edition the list already received (or has scheduled) is refused unless
    --again.

    \b
    Example:
      newsletter schedule articles/ketamine.md --list readers --at "2026-12-01 09:00" --tz America/New_York
      newsletter schedule articles/ketamine.md --list readers --at "2026-12-01 09:00" --local-time
      newsletter schedule articles/ --list readers --cron "0 9 * * MON" --tz Europe/Paris
    """
    from newsletter.engine.campaigns import require_sendable
    from newsletter.errors import InputError

    settings = app.settings
    require_sendable(settings)
    if cron:
        if at or local_time or again:
            raise InputError("--cron cannot be combined with --at, --local-time or --again",
                             hint='use --cron "0 9 * * MON" with a folder (each run sends an article new to the '
                                  'list), or --at TIME with one article')
        return _recurring(app, article, list_name, cron, zone, transport, recent_title, recent_url, theme, as_json)
    if not at:
        raise InputError("say when to send", hint=f'newsletter schedule {article} --list {list_name} '
                                                  '--at "2026-12-01 09:00" --tz Europe/Paris')
    _one_shot(app, article, list_name, at, zone, local_time, transport, recent_title, recent_url, theme, as_json,
              again)


def _one_shot(app, article, list_name, at, zone, local_time, transport, recent_title, recent_url, theme, as_json,
              again=False):
    from newsletter.delivery import get_transport
    from newsletter.engine.preflight import audience_of, preflight
    from newsletter.errors import InputError
    from newsletter.scheduling.planning import schedule_campaign
    from newsletter.scheduling.times import parse_naive, parse_when, show

    settings = app.settings
    if local_time and parse_naive(at).tzinfo is not None:
        raise InputError("--local-time takes a wall-clock time without an offset",
                         hint='e.g. --at "2026-12-01 09:00" --local-time')
    when = parse_when(at, zone, allow_past=local_time)  # waves check their own first time
    chosen = transport or settings.transport
    get_transport(settings, chosen)  # a missing API key or SMTP URL fails now, not at send time
    edition = preflight(app, article, recent_title, recent_url, theme)
    audience = audience_of(app.store, list_name)
    if when.note:
        say(f"[yellow]{when.note}[/]")
    result = schedule_campaign(app.store, settings, edition, list_name, chosen, when, article_path=article,
                               local_time=local_time, again=again)
    if as_json:
        print_json({**result, "list": list_name, "audience": audience, "subject": edition.subject,
                    "scheduled_local": show(result["scheduled_at"], when.zone), "local_time": local_time})
        return
    cid = result["campaign_id"]
    if local_time:
        say(f"Campaign {cid}: {edition.subject!r} to {audience} subscribers of {list_name} at "
            f"{when.local:%Y-%m-%d %H:%M} in each subscriber's time zone, in {len(result['waves'])} waves "
            f"(first {show(result['scheduled_at'], 'UTC')})")
    else:
        say(f"Campaign {cid}: {edition.subject!r} to {audience} subscribers of {list_name} at "
            f"{show(when.utc, when.zone)} ({show(when.utc, 'UTC')})")
    say(f"It is sent by the scheduler daemon: keep `newsletter run` running. "
        f"Change it with: newsletter campaigns reschedule {cid} --at TIME, or cancel {cid}")
    click.echo(cid)


def _recurring(app, folder, list_name, cron, zone, transport, recent_title, recent_url, theme, as_json):
    from datetime import datetime, timezone

    from newsletter.delivery import get_transport
    from newsletter.engine.preflight import audience_of
    from newsletter.scheduling.recurring import add_schedule, preflight_options
    from newsletter.scheduling.times import show

    settings = app.settings
    chosen = transport or settings.transport
    get_transport(settings, chosen)
    audience_of(app.store, list_name)
    zone = zone or "UTC"
    schedule_id, trigger = add_schedule(app.store, settings, folder, list_name, cron, zone, chosen,
                                        preflight_options(recent_title, recent_url, theme))
    upcoming = trigger.get_next_fire_time(None, datetime.now(timezone.utc))
    if as_json:
        print_json({"campaign_id": None, "schedule_id": schedule_id, "cron": cron, "timezone": zone,
                    "list": list_name, "next_run": upcoming})
        return
    say(f"Recurring schedule {schedule_id}: the newest new article of {folder} to {list_name} on {cron!r} "
        f"({zone}); next run {show(upcoming, zone)}. Keep `newsletter run` running.")
    say(f"See it with: newsletter campaigns recurring; stop it with: newsletter campaigns stop-recurring {schedule_id}")
    click.echo(schedule_id)
