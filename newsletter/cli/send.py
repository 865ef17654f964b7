"""``newsletter send``: create a campaign and send it now."""

from __future__ import annotations

import sys

import click

from newsletter.cli._common import json_option, pass_app, print_json, say
from newsletter.cli.compose import compose_options
from newsletter.providers import registry


@click.command("send")
@click.argument("article")
@click.option("--list", "list_name", required=True, help="The list to send to.")
@click.option("--transport", default=None, type=click.Choice(registry.names()),
              help="Override the workspace's transport.")
@click.option("--dry-run", is_flag=True, help="Show the audience size and one rendered sample; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Send to at most N recipients, then pause.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True,
              help="Send it even though this list already received this edition (same slug or same content). "
                   "Never while it is being sent.")
@compose_options
@json_option
@pass_app
def send(app, article, list_name, transport, dry_run, limit, yes, again, recent_title, recent_url, theme, as_json):
    """Send ARTICLE to every confirmed subscriber of a list, now.

    The pre-flight checks run first (errors stop the send). Each recipient has
    a ledger row, committed before and after the provider is called, so a
    killed send resumes with `newsletter campaigns resume ID`. An edition the
    list already received (or is receiving) is refused unless --again.

    \b
    Example:
      newsletter send articles/welcome.md --list readers --dry-run
      newsletter send articles/welcome.md --list readers --yes
    """
    from newsletter.engine.campaigns import check_duplicate, create_campaign, require_sendable
    from newsletter.engine.preflight import audience_of, preflight

    from newsletter.engine.fencing import stale_seconds

    settings = app.settings
    require_sendable(settings)
    stale_seconds(settings)  # NEWSLETTER_SENDER_STALE_SECONDS: a bad value stops us before anything is stored
    edition = preflight(app, article, recent_title, recent_url, theme)
    # Counting a million members takes most of a second: only when someone reads the number
    # (with --yes, create_campaign still refuses a missing list or an empty audience).
    audience = None if yes and not dry_run else audience_of(app.store, list_name)
    chosen = transport or settings.transport
    if not dry_run:
        check_duplicate(app.store, edition, list_name, again)
    if dry_run:
        _dry_run(app, article, edition, list_name, audience, chosen, as_json)
        return
    from newsletter.delivery import get_transport

    sender = get_transport(settings, chosen)  # a missing API key or SMTP URL fails here, before anything is stored
    if not yes:
        click.confirm(f"Send {edition.subject!r} to {audience} subscribers of {list_name} via {chosen}?",
                      abort=True, err=True)
    campaign_id = create_campaign(app.store, settings, edition, list_name, chosen, article_path=article, again=again)
    say(f"Campaign {campaign_id}: sending to {f'{audience} subscribers of ' if audience else ''}{list_name} "
        f"via {chosen}")
    if settings.broker_url:  # scale-out: `newsletter worker` processes send it
        from newsletter.cli.worker import send_through_workers

        finish_report(send_through_workers(app.store, settings, campaign_id, limit), as_json)
        return
    from newsletter.engine.sender import start_campaign

    report = run_with_progress(lambda **kw: start_campaign(app.store, settings, campaign_id, sender, **kw),
                               sender, limit)
    finish_report(report, as_json)


def run_with_progress(run, transport, limit):
    """Run a send with a progress bar and SIGTERM/Ctrl-C handling; returns its report."""
    import time

    from newsletter.cli._common import graceful_stop, progress, rate_text

    started = time.monotonic()
    with graceful_stop() as stop, transport, progress() as bar:
        task = bar.add_task("Sending", total=None, rate="")

        def on_progress(done, total):
            bar.update(task, completed=done, total=total, rate=rate_text(done, time.monotonic() - started))

        return run(limit=limit, on_progress=on_progress, stop=stop)


def finish_report(report, as_json: bool) -> None:
    """Print a send's outcome; exit 2 when some recipients failed."""
    if as_json:
        print_json(report.as_dict())
    else:
        say(f"Campaign {report.campaign_id} {report.status}: sent {report.sent}, failed {report.failed}, "
            f"unknown {report.unknown}, skipped {report.skipped} in {report.seconds:.1f} s")
    if report.unknown or report.counts.get("unknown"):
        unknown = report.counts.get("unknown", report.unknown)
        say(f"[yellow]{unknown} recipients have an unknown outcome (the provider may have them). "
            f"Check with: newsletter campaigns show {report.campaign_id}; send them on purpose with: "
            f"newsletter campaigns retry {report.campaign_id} --unknown[/]")
    if report.status == "failed":
        say(f"[red]Nobody received campaign {report.campaign_id}. See why with: newsletter campaigns show "
            f"{report.campaign_id}; send again with: newsletter campaigns retry {report.campaign_id} --failed "
            f"(or --unknown)[/]")
        sys.exit(2)
    if report.status == "paused" and report.counts.get("pending"):
        say(f"{report.counts['pending']} still pending; continue with: newsletter campaigns resume {report.campaign_id}")
    if report.failed:
        say(f"[red]{report.failed} recipients failed; see newsletter campaigns show {report.campaign_id}, "
            f"retry with: newsletter campaigns retry {report.campaign_id} --failed[/]")
        sys.exit(2)


def _dry_run(app, article, edition, list_name, audience, transport, as_json):
    from newsletter.engine.preflight import sample_for_list

    sample_path, recipient = sample_for_list(app, edition, list_name)
    data = {"campaign_id": None, "dry_run": True, "audience": audience, "list": list_name,
            "transport": transport, "subject": edition.subject, "sample": str(sample_path),
            "sample_recipient": recipient}
    if as_json:
        print_json(data)
        return
    say(f"Dry run: {edition.subject!r} would go to {audience} subscribers of {list_name} via {transport}.")
    say(f"Sample for {recipient}: {sample_path}")
    say(f"Send it with: newsletter send {article} --list {list_name} --yes")
