"""``newsletter campaigns ...``: list, show, cancel, reschedule, resume and retry campaigns; recurring schedules."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table
from newsletter.vocabulary import CampaignStatus

# Plain strings: click.Choice matches enum members by name, not value.
STATUSES = [str(status) for status in CampaignStatus]


@click.group("campaigns")
def campaigns():
    """Show campaigns and their progress; cancel or move scheduled ones; resume and retry sends.

    \b
    Example:
      newsletter campaigns list --status scheduled
      newsletter campaigns show 7
    """


@campaigns.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only campaigns in this state.")
@json_option
@pass_app
def list_command(app, status, as_json):
    """List campaigns, newest first, scheduled ones included.

    \b
    Example:
      newsletter campaigns list --status scheduled --json
    """
    from newsletter.engine.campaigns import list_campaigns
    from newsletter.usecases.planning import enrich

    rows = enrich(app.store, list_campaigns(app.store, status))
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["ID", "Status", "Article", "List", "Time", "UTC", "Audience",
                                        "Sent / Failed / Unknown / Pending"], [
        [r["id"], r["status"], _article(r), r["list"], _local(r), _when(r["scheduled_at"]), r["audience"],
         "/".join(str(r["counts"][k]) for k in ("sent", "failed", "unknown", "pending"))] for r in rows],
        drop=("UTC", "Audience", "List")))


def _article(row) -> str:
    from pathlib import PurePath

    return PurePath(row["article"]).name if row.get("article") else row["slug"]


def _local(row) -> str:
    if row["local_time"] and row.get("waves"):
        wall = row["waves"][0]["local_time"].replace("T", " ")
        return f"{wall[:16] if wall.endswith(':00') else wall} each reader's zone"
    return row["scheduled_local"] or ""


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@campaigns.command("show")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def show(app, campaign_id, as_json):
    """Show one campaign: status, counts, and who failed or is unknown.

    \b
    Example:
      newsletter campaigns show 7 --json
    """
    from newsletter.engine.campaigns import describe_campaign
    from newsletter.usecases.abtests import show_test

    data = describe_campaign(app.store, campaign_id)
    abtest = show_test(app.store, campaign_id)
    if abtest is not None:
        data["abtest"] = abtest
    if as_json:
        print_json(data)
        return
    console = stdout_console()
    console.print(f"[bold]Campaign {data['id']}[/] {data['status']}: {data['subject']!r} to {data['list']} "
                  f"via {data['transport']}")
    if data.get("where") or data.get("to_dormant"):
        from rich.markup import escape

        segment = f"segment {data['segment']}: " if data.get("segment") else ""
        dormant = " (dormant subscribers included)" if data.get("to_dormant") else ""
        console.print(f"Audience: {escape(segment)}{escape(data.get('where') or 'everyone')}{dormant}")
    if data["status"] == "failed":
        console.print(f"[red bold]Nobody received this campaign[/]: {data['counts']['failed']} failed, "
                      f"{data['counts']['unknown']} unknown.")
    if data["error"]:
        console.print(f"[red]{data['error']}[/]")
    if data["status"] == "paused" and data.get("pause_reason"):
        then = ("newsletter run resumes it then" if data.get("resume_at")
                else f"resume it with: newsletter campaigns resume {data['id']}")
        console.print(f"[yellow]paused: {data['pause_reason']}[/] ({then})")
    console.print(table(None, list(data["counts"]), [list(data["counts"].values())]))
    if abtest is not None:
        _print_abtest(console, abtest)
    _print_events(console, data)
    for kind, hint in (("unknown", "--unknown"), ("failed", "--failed")):
        if data[kind]:
            console.print(table(f"{kind.capitalize()} (first {len(data[kind])})", ["Email", "Error"],
                                [[r["email"], r["error"]] for r in data[kind]]))
            say(f"Send them again on purpose with: newsletter campaigns retry {campaign_id} {hint}")
    if data["counts"]["pending"] and data["status"] in ("paused", "stopped", "sending"):
        say(f"{data['counts']['pending']} pending; continue with: newsletter campaigns resume {campaign_id}")


def _print_abtest(console, test) -> None:
    """Each variant's numbers (people, not requests) and the decision, or when it is due."""
    from rich.markup import escape

    def rate(value):
        return "-" if value is None else f"{value:.1%}"

    rows = [[v["variant"] + (" (winner)" if v["winner"] else ""), escape(v["subject"]), v["recipients"], v["sent"],
             v["clicked"], rate(v["click_rate"]), v["opened"], rate(v["open_rate"])] for v in test["variants"]]
    console.print(table(f"A/B test: {test['share']}% split evenly, winner by {test['by']} "
                        f"(minimum {test['min_sample']} per variant)",
                        ["Variant", "Subject", "Recipients", "Sent", "Clicked", "Click rate", "Opened", "Open rate"],
                        rows))
    rest = test["rest"]
    if test["winner"]:
        console.print(f"Decision: {test['winner']} ({escape(test['reason'])}); the rest: {rest['sent']} of "
                      f"{rest['recipients']} sent")
    elif test["decide_at"] is not None:
        console.print(f"The winner is picked at {test['decide_at']:%Y-%m-%d %H:%M} UTC; {rest['held']} wait for it")
    else:
        console.print("The test phase has not started")


def _print_events(console, data) -> None:
    """Per provider, what its events say, and the complaint and hard-bounce rates against the limits (red over)."""
    providers = [p for p in data.get("providers", ()) if any(p[k] for k in _EVENT_COLUMNS)]
    if not providers:
        return
    console.print(table("Provider events (recipients)", ["Provider", "Sent", *(c.replace("_", " ").capitalize()
                                                                            for c in _EVENT_COLUMNS)],
                        [[p["provider"], p["sent"], *(p[k] for k in _EVENT_COLUMNS)] for p in providers]))
    for p in providers:
        for label, rate, limit in (("complaint rate", p["complaint_rate"], p["complaint_limit"]),
                                   ("hard-bounce rate", p["hard_bounce_rate"], p["hard_bounce_limit"])):
            if rate is not None:
                verdict = "[green]within the limit[/]" if rate <= limit else "[red bold]over the limit[/]"
                console.print(f"{p['provider']} {label}: {rate:.2%} (limit {limit:.1%}) {verdict}")
    if not data["rates"]["ok"]:
        say("Gmail, Yahoo and the providers throttle or suspend senders over these limits: remove the "
            "addresses that bounce and make unsubscribing easy before the next send.")


_EVENT_COLUMNS = ("delivered", "hard_bounced", "soft_bounced", "rejected", "complained", "opened", "clicked")


@campaigns.command("resume")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def resume(app, campaign_id, as_json):
    """Send what a stopped or killed campaign has not sent yet.

    Rows whose outcome is unknown (in flight when the sender died) are listed,
    not sent again; use `campaigns retry ID --unknown` for those.

    \b
    Example:
      newsletter campaigns resume 7
    """
    from newsletter.cli.send import finish_report, watching
    from newsletter.usecases.campaigns import resume as resume_send

    with watching() as watch:
        report = resume_send(app.store, app.settings, campaign_id, watch)
    finish_report(report, as_json)


@campaigns.command("retry")
@click.argument("campaign_id", type=int)
@click.option("--failed", "which", flag_value="failed", help="Send again the recipients that failed.")
@click.option("--unknown", "which", flag_value="unknown", help="Send again those whose outcome is unknown.")
@json_option
@pass_app
def retry(app, campaign_id, which, as_json):
    """Send again the failed recipients, or those whose outcome is unknown.

    \b
    Example:
      newsletter campaigns retry 7 --unknown
    """
    from newsletter.cli.send import finish_report, watching
    from newsletter.usecases.campaigns import retry as retry_send

    with watching() as watch:
        report = retry_send(app.store, app.settings, campaign_id, which, watch)
    finish_report(report, as_json)


@campaigns.command("cancel")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def cancel(app, campaign_id, as_json):
    """Cancel a scheduled campaign before it starts.

    Once the send has started this says so and changes nothing.

    \b
    Example:
      newsletter campaigns cancel 7
    """
    from newsletter.usecases.campaigns import cancel as cancel_campaign

    result = cancel_campaign(app.store, campaign_id)
    if as_json:
        print_json(result)
    elif result["already"]:
        say(f"Campaign {campaign_id} was already cancelled.")
    else:
        say(f"Campaign {campaign_id} cancelled; nothing was sent.")


@campaigns.command("reschedule")
@click.argument("campaign_id", type=int)
@click.option("--at", "at", required=True, metavar="TIME",
              help='New time: ISO 8601 local time in --tz ("2026-12-01 09:00"), or with an offset.')
@click.option("--tz", "zone", metavar="ZONE", help="IANA time zone of TIME (default: the campaign's).")
@json_option
@pass_app
def reschedule(app, campaign_id, at, zone, as_json):
    """Move a scheduled (or missed) campaign to a new time, before it starts.

    \b
    Example:
      newsletter campaigns reschedule 7 --at "2026-12-02 09:00" --tz Europe/Paris
    """
    from newsletter.scheduling.times import show as show_time
    from newsletter.usecases.campaigns import reschedule as reschedule_campaign

    result = reschedule_campaign(app.store, campaign_id, at, zone)
    if result["note"]:
        say(f"[yellow]{result['note']}[/]")
    if as_json:
        print_json(result)
        return
    if result["local_time"]:
        say(f"Campaign {campaign_id} now goes out at {at} in each subscriber's time zone; first wave "
            f"{show_time(result['scheduled_at'], 'UTC')}.")
        return
    say(f"Campaign {campaign_id} now goes out at {show_time(result['scheduled_at'], result['timezone'])} "
        f"({show_time(result['scheduled_at'], 'UTC')}).")


@campaigns.command("recurring")
@json_option
@pass_app
def recurring(app, as_json):
    """List recurring schedules (newsletter schedule FOLDER --cron ...) and their last runs.

    \b
    Example:
      newsletter campaigns recurring --json
    """
    from newsletter.store import scheduling as q

    with app.store.session() as session:
        rows = [{"id": s.id, "folder": s.folder, "list": s.list_name, "cron": s.cron, "timezone": s.timezone,
                 "active": s.active, "runs": [{"fired_at": r.fired_at, "outcome": r.outcome, "article": r.article,
                                              "campaign_id": r.campaign_id, "detail": r.detail}
                                             for r in q.last_runs(session, s.id)]}
                for s in q.all_schedules(session)]
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["ID", "Folder", "List", "Cron", "Zone", "Active", "Last run"], [
        [r["id"], r["folder"], r["list"], r["cron"], r["timezone"], "yes" if r["active"] else "no",
         _last_run(r["runs"])] for r in rows]))


def _last_run(runs) -> str:
    if not runs:
        return ""
    run = runs[0]
    what = f"campaign {run['campaign_id']}" if run["campaign_id"] else run["detail"]
    return f"{_when(run['fired_at'])} {run['outcome']}: {what}"


@campaigns.command("stop-recurring")
@click.argument("schedule_id", type=int)
@pass_app
def stop_recurring(app, schedule_id):
    """Stop a recurring schedule (campaigns it already created are not touched).

    \b
    Example:
      newsletter campaigns stop-recurring 2
    """
    from newsletter.errors import NotFound
    from newsletter.store import scheduling as q

    with app.store.session() as session:
        schedule = session.get(q.Schedule, schedule_id)
        if schedule is None:
            raise NotFound(f"no recurring schedule {schedule_id}", hint="see them with: newsletter campaigns recurring")
        schedule.active = False
    say(f"Recurring schedule {schedule_id} stopped.")


def _add_report_commands() -> None:
    """``report`` and ``compare`` live in ``newsletter.cli.reports``."""
    from newsletter.cli.reports import compare, report

    campaigns.add_command(report)
    campaigns.add_command(compare)


_add_report_commands()
