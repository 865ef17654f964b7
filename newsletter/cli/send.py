"""``newsletter send``: create a campaign and send it now."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from newsletter import transports as registry
from newsletter.cli._common import json_option, pass_app, print_json, say
from newsletter.cli.compose import compose_options
from newsletter.usecases.editions import command_line, compose_flags


def tracking_options(command):
    """``--track-clicks/--no-track-clicks`` (default on) and ``--track-opens`` (default off)."""
    command = click.option("--track-opens", is_flag=True, default=False,
                           help="Add an open pixel (off by default: opens are estimates, and personal data).")(command)
    return click.option("--track-clicks/--no-track-clicks", default=True, show_default=True,
                        help="Rewrite article links to first-party tracked links ([tracking] mode decides how "
                             "much they say).")(command)


def abtest_options(command):
    """``--subject-b``, ``--subject-c``, ``--test-share``, ``--decide-after``, ``--by``, ``--min-sample``."""
    for option in reversed((
        click.option("--subject-b", default=None, metavar="TEXT",
                     help="A/B test: a second subject; part of the audience gets each, the winner goes to the rest."),
        click.option("--subject-c", default=None, metavar="TEXT", help="A/B test: a third subject."),
        click.option("--article-b", default=None, metavar="PATH",
                     help="A/B content test: variant B is this article (its subject unless --subject-b)."),
        click.option("--article-c", default=None, metavar="PATH", help="A/B content test: variant C's article."),
        click.option("--test-share", default=None, metavar="PERCENT",
                     help="A/B test: the share of the audience the variants go to first, split evenly "
                          "(default 20%)."),
        click.option("--decide-after", default=None, metavar="WAIT",
                     help="A/B test: how long after the test phase starts the winner is picked, e.g. 4h, 90m, 1d "
                          "(default 4h; `newsletter run` picks it)."),
        click.option("--by", default=None, type=click.Choice(["clicks", "opens"]),
                     help="A/B test: the measure (people who clicked, or opened with --track-opens; default clicks)."),
        click.option("--min-sample", default=None, type=click.IntRange(min=1),
                     help="A/B test: people each variant must reach before a winner is named (default 100); "
                          "under it, or on a tie, variant A goes to the rest."),
    )):
        command = option(command)
    return command


def read_abtest(app, ab, track_clicks, track_opens, compose, local_time=False):
    """The A/B test the options ask for (None: none); ``ab``: the options of :func:`abtest_options`."""
    from newsletter.usecases.abtests import ab_choice

    return ab_choice(ab["subject_b"], ab["subject_c"], ab["test_share"], ab["decide_after"], ab["by"],
                     ab["min_sample"], track_clicks=track_clicks, track_opens=track_opens,
                     on_workers=bool(app.settings.broker_url), local_time=local_time, article_b=ab["article_b"],
                     article_c=ab["article_c"], settings=app.settings, compose=compose.as_dict())


@click.command("send")
@click.argument("article")
@click.option("--list", "list_name", default=None, help="The list to send to (a one-list --segment implies it).")
@click.option("--segment", default=None, help="Send to a saved segment of the list (newsletter segments).")
@click.option("--where", default=None, help="Send to the list's subscribers matching this filter, e.g. 'tag:vip'.")
@click.option("--to-dormant", is_flag=True, help="Include dormant subscribers (re-engagement; the sunset policy).")
@click.option("--transport", default=None, type=click.Choice(registry.names()),
              help="Override the workspace's transport.")
@click.option("--dry-run", is_flag=True, help="Show the audience size and one rendered sample; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Send to at most N recipients, then pause.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True,
              help="Send it even though this list already received this edition (same slug or same content). "
                   "Never while it is being sent.")
@tracking_options
@abtest_options
@compose_options
@json_option
@pass_app
def send(app, /, article, list_name, segment, where, to_dormant, transport, dry_run, limit, yes, again, track_clicks,
         track_opens, recent_title, recent_url, theme, as_json, **ab):
    """Send ARTICLE to every confirmed subscriber of a list, now.

    The pre-flight checks run first (errors stop the send). Each recipient has
    a ledger row, committed before and after the provider is called, so a
    killed send resumes with `newsletter campaigns resume ID`. An edition the
    list already received (or is receiving) is refused unless --again.
    --segment or --where send to part of the list; consent and the
    unsubscribe link stay the list's. Dormant subscribers are skipped unless
    --to-dormant.

    \b
    Example:
      newsletter send articles/welcome.md --list readers --dry-run
      newsletter send articles/welcome.md --list readers --yes
      newsletter send articles/event.md --list readers --where 'city = "London"' --yes
      newsletter send articles/issue.md --list readers --subject-b "Try this" --test-share 20% --decide-after 4h --yes
    """
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.segments import resolve_audience

    abtest = read_abtest(app, ab, track_clicks, track_opens, use.ComposeOptions(recent_title, recent_url, theme))
    target = resolve_audience(app.store, list_name, segment, where, to_dormant)
    list_name = target.list_name
    plan = use.plan_send(app.store, app.settings, article, list_name, transport=transport, again=again,
                         compose=use.ComposeOptions(recent_title, recent_url, theme), dry_run=dry_run, count=not yes,
                         target=target, track_clicks=track_clicks, track_opens=track_opens, abtest=abtest)
    _sunset_note(plan.sunset)
    if dry_run:
        # the follow-up command repeats every option in use, so it works when pasted
        send_it = command_line("newsletter", "send", article, list=list_name, segment=segment, where=where,
                               to_dormant=to_dormant, transport=transport, again=again,
                               limit=limit and str(limit), **compose_flags(recent_title, recent_url, theme), yes=True)
        return _print_dry_run(use.dry_run(app.store, app.settings, plan), send_it, as_json)
    if not yes:
        click.confirm(f"Send {plan.edition.subject!r} to {plan.audience} subscribers of {target.describe()} via "
                      f"{plan.transport}?", abort=True, err=True)
    with watching() as watch:
        report = use.send_now(app.store, app.settings, plan, watch, limit=limit)
    finish_report(report, as_json)


def _sunset_note(sunset: dict | None) -> None:
    """What the sunset policy did before this send, on stderr (so --json stays one document)."""
    if not sunset or sunset["policy"] == "off":
        return
    if sunset["note"]:
        click.echo(f"Note: {sunset['note']}", err=True)
    elif sunset["marked"] or sunset["woken"]:
        verb = "would mark" if sunset["dry_run"] else "marked"
        click.echo(f"Sunset policy: {verb} {sunset['marked']} dormant, {sunset['woken']} active again "
                   f"({sunset['dormant']} dormant are skipped; include them with --to-dormant)", err=True)


@contextmanager
def watching():
    """A Watch with a progress bar and SIGTERM/Ctrl-C handling (the first one stops after the batch)."""
    import time

    from newsletter.cli._common import graceful_stop, progress, rate_text
    from newsletter.usecases.dispatch import Watch

    started = time.monotonic()
    with graceful_stop() as stop, progress() as bar:
        task = bar.add_task("Sending", total=None, rate="")

        def on_progress(done, total):
            bar.update(task, completed=done, total=total, rate=rate_text(done, time.monotonic() - started))

        yield Watch(stop=stop, on_progress=on_progress, note=say)


def finish_report(report, as_json: bool) -> None:
    """Print a send's outcome; exit 2 when some recipients failed, 1 when it paused on a refused login."""
    from newsletter.engine.sender import LOGIN_REFUSED

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
    for warning in getattr(report, "warnings", ()):  # the circuit breaker's (a complaint rate at 0.1%)
        say(f"[yellow]Warning: {warning}[/]")
    if report.status == "paused" and getattr(report, "pause_reason", ""):
        then = ("newsletter run resumes it then" if getattr(report, "resume_at", None) is not None
                else f"resume it with: newsletter campaigns resume {report.campaign_id}")
        say(f"[yellow]Paused: {report.pause_reason} ({then})[/]")
    if report.status == "paused" and report.counts.get("pending"):
        say(f"{report.counts['pending']} still pending;"
            f" continue with: newsletter campaigns resume {report.campaign_id}")
    if report.status == "paused" and getattr(report, "pause_reason", "").startswith(LOGIN_REFUSED):
        sys.exit(1)  # nothing can go out until a person fixes the credentials: a script must notice
    if report.failed:
        say(f"[red]{report.failed} recipients failed; see newsletter campaigns show {report.campaign_id}, "
            f"retry with: newsletter campaigns retry {report.campaign_id} --failed[/]")
        sys.exit(2)


def _print_dry_run(data: dict, send_it: str, as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    say(f"Dry run: {data['subject']!r} would go to {data['audience']} subscribers of {data['list']} via "
        f"{data['transport']}.")
    say(f"Sample for {data['sample_recipient']}: {data['sample']}")
    say(f"Send it with: {_escape(send_it)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
