"""``newsletter schedule``: queue a campaign for a time, or a recurring send."""

from __future__ import annotations

import click

from newsletter import transports as registry
from newsletter.cli._common import json_option, pass_app, print_json, say
from newsletter.cli.compose import compose_options
from newsletter.cli.send import abtest_options, read_abtest, tracking_options


@click.command("schedule")
@click.argument("article")
@click.option("--list", "list_name", default=None, help="The list to send to (a one-list --segment implies it).")
@click.option("--segment", default=None, help="Send to a saved segment of the list (newsletter segments).")
@click.option("--where", default=None, help="Send to the list's subscribers matching this filter, e.g. 'tag:vip'.")
@click.option("--to-dormant", is_flag=True, help="Include dormant subscribers (re-engagement; the sunset policy).")
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
@tracking_options
@abtest_options
@compose_options
@json_option
@pass_app
def schedule(app, /, article, list_name, segment, where, to_dormant, at, zone, local_time, cron, transport, again,
             track_clicks, track_opens,
             recent_title, recent_url, theme, as_json, **ab):
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
      newsletter schedule articles/event.md --segment london --at "2026-12-01 09:00"
      newsletter schedule articles/issue.md --list readers --at "2026-12-01 09:00" --subject-b "Try this" --by clicks
    """
    from newsletter.errors import InputError
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.segments import resolve_audience

    compose = use.ComposeOptions(recent_title, recent_url, theme)
    target = resolve_audience(app.store, list_name, segment, where, to_dormant)
    list_name = target.list_name
    abtest = read_abtest(app, ab, track_clicks, track_opens, compose, local_time)
    if cron:
        if abtest is not None:
            raise InputError("--cron cannot run an A/B test", hint="schedule one article with --at TIME")
        if segment or where or to_dormant:
            raise InputError("--cron sends to a whole list: --segment, --where and --to-dormant apply to one article",
                             hint='schedule one article with --at TIME, or drop --segment/--where')
        if at or local_time or again:
            raise InputError("--cron cannot be combined with --at, --local-time or --again",
                             hint='use --cron "0 9 * * MON" with a folder (each run sends an article new to the '
                                  'list), or --at TIME with one article')
        result = use.schedule_recurring(app.store, app.settings, article, list_name, cron, zone=zone,
                                        transport=transport, compose=compose)
        return _print_recurring(result, article, as_json)
    result = use.schedule_at(app.store, app.settings, article, list_name, at, zone=zone, local_time=local_time,
                             transport=transport, compose=compose, again=again, target=target,
                             track_clicks=track_clicks, track_opens=track_opens, abtest=abtest)
    _print_one_shot(result, local_time, as_json)


def _print_one_shot(result: dict, local_time: bool, as_json: bool) -> None:
    from newsletter.scheduling.times import show

    when = result.pop("when")
    if when.note:
        say(f"[yellow]{when.note}[/]")
    if as_json:
        print_json({**result, "scheduled_local": show(result["scheduled_at"], when.zone), "local_time": local_time})
        return
    cid, subject, audience, list_name = result["campaign_id"], result["subject"], result["audience"], result["list"]
    if local_time:
        say(f"Campaign {cid}: {subject!r} to {audience} subscribers of {list_name} at "
            f"{when.local:%Y-%m-%d %H:%M} in each subscriber's time zone, in {len(result['waves'])} waves "
            f"(first {show(result['scheduled_at'], 'UTC')})")
    else:
        say(f"Campaign {cid}: {subject!r} to {audience} subscribers of {list_name} at "
            f"{show(when.utc, when.zone)} ({show(when.utc, 'UTC')})")
    say(f"It is sent by the scheduler daemon: keep `newsletter run` running. "
        f"Change it with: newsletter campaigns reschedule {cid} --at TIME; cancel it with: "
        f"newsletter campaigns cancel {cid}")
    click.echo(cid)


def _print_recurring(result: dict, folder: str, as_json: bool) -> None:
    from newsletter.scheduling.times import show

    if as_json:
        print_json(result)
        return
    schedule_id, zone = result["schedule_id"], result["timezone"]
    say(f"Recurring schedule {schedule_id}: the newest new article of {folder} to {result['list']} on "
        f"{result['cron']!r} ({zone}); next run {show(result['next_run'], zone)}. Keep `newsletter run` running.")
    say(f"See it with: newsletter campaigns recurring; stop it with: newsletter campaigns stop-recurring {schedule_id}")
    click.echo(schedule_id)
