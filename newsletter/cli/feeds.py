"""``newsletter feeds ...``: a blog's feed (RSS, Atom, JSON Feed) turned into newsletters."""

from __future__ import annotations

import click

from newsletter import transports as registry
from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("feeds")
def feeds():
    """Turn a blog's feed into newsletters: each new post becomes an email (or a digest per period).

    The scheduler daemon (`newsletter run`) polls each active feed on its
    period. A feed's first poll only records what it already holds; a poll
    that finds more new posts than the feed's limit pauses it instead of
    sending.

    \b
    Example:
      newsletter feeds add https://blog.example/feed.xml --list readers --every "mon 09:00" --tz Europe/London
      newsletter feeds show blog-example
    """


def _when(value, zone: str | None = None) -> str:
    from newsletter.scheduling.times import show

    return show(value, zone or "UTC") if value else ""


@feeds.command("add")
@click.argument("url")
@click.option("--list", "list_name", required=True, help="The list the posts are sent to.")
@click.option("--every", required=True, metavar="WHEN",
              help='When to poll: "mon 09:00", "mon,thu 07:30", "daily 09:00", "weekdays 08:00", "hourly", or a '
                   'cron expression ("0 9 * * MON").')
@click.option("--tz", "zone", metavar="ZONE", help="IANA time zone of --every, e.g. Europe/London (default: UTC).")
@click.option("--mode", type=click.Choice(["each", "digest"]), default="each", show_default=True,
              help="each: one email per new post; digest: one email per period with every new post.")
@click.option("--draft", is_flag=True, help="Compose each edition and wait for `newsletter feeds approve` instead "
                                            "of sending.")
@click.option("--name", help="The feed's name in commands (default: from the URL's host, e.g. blog-example).")
@click.option("--max-new", type=int, default=10, show_default=True,
              help="More new posts than this in one poll pauses the feed instead of sending (a broken feed "
                   "never mass-sends).")
@click.option("--transport", default=None, type=click.Choice(registry.names()),
              help="Override the workspace's transport.")
@click.option("--no-poll", is_flag=True, help="Do not poll it now (the first poll, by the daemon, records what "
                                              "the feed holds).")
@json_option
@pass_app
def add(app, url, list_name, every, zone, mode, draft, name, max_new, transport, no_poll, as_json):
    """Add the feed at URL; its new posts become newsletters for a list.

    It is polled once now: what the feed already holds is recorded as
    published and not sent. From then on the daemon polls it on --every and
    each new post (by guid) becomes an email; with --mode digest all the
    new posts of a period become one email. Nothing new, no email.

    \b
    Example:
      newsletter feeds add https://blog.example/feed.xml --list readers --every "mon 09:00" \
        --tz Europe/London --mode digest
    """
    from newsletter.usecases import feeds as use

    result = use.add_feed(app.store, app.settings, url, list_name, every, zone=zone, mode=mode, draft=draft,
                          name=name, max_new=max_new, transport=transport, poll=not no_poll)
    if as_json:
        print_json(result)
        return
    first = result["first_poll"]
    say(f"Feed {result['name']}: {result['url']} to {result['list']}, {result['mode']} mode"
        f"{' (drafts)' if result['draft'] else ''}, polled {result['every']} ({result['timezone']}); next poll "
        f"{_when(result['next_poll'], result['timezone'])}.")
    if first is not None:
        colour = "red" if first["outcome"] == "error" else "green"
        detail = first["detail"] or first["outcome"]
        say(f"[{colour}]{detail[:1].upper()}{detail[1:]}[/]")
    say("Keep `newsletter run` running; see it with: newsletter feeds show " + result["name"])
    click.echo(result["name"])


@feeds.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """List the feeds with their status, period and last poll.

    \b
    Example:
      newsletter feeds list --json
    """
    from newsletter.usecases import feeds as use

    rows = use.list_feeds(app.store)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Name", "Status", "Mode", "List", "Every", "Items", "Last poll", "Error",
                                        "URL"], [
        [r["name"], r["status"], r["mode"] + (" draft" if r["draft"] else ""), r["list"],
         f"{r['every']} {r['timezone']}", r["items"], _when(r["last_polled_at"]), r["last_error"] or "", r["url"]]
        for r in rows], drop=("URL", "Error", "Items", "List")))


@feeds.command("show")
@click.argument("name")
@json_option
@pass_app
def show(app, name, as_json):
    """Show a feed: its settings, why it is paused, its last polls (and errors), its editions and drafts.

    \b
    Example:
      newsletter feeds show blog-example
    """
    from newsletter.usecases import feeds as use

    data = use.describe(app.store, name, app.settings)
    if as_json:
        print_json(data)
        return
    console = stdout_console()
    zone = data["timezone"]
    console.print(table(f"Feed {data['name']}", ["Field", "Value"], [
        ["URL", data["url"]], ["Title", data["title"]], ["List", data["list"]], ["Status", data["status"]],
        ["Paused because", data["paused_reason"] or ""],
        ["Mode", data["mode"] + (" (drafts)" if data["draft"] else "")],
        ["Every", f"{data['every']} ({zone})"], ["Next poll", _when(data["next_poll"], zone)],
        ["Max new per poll", data["max_new"]], ["Items recorded", data["items"]],
        ["Last poll", _when(data["last_polled_at"], zone)], ["Last error", data["last_error"] or ""],
        ["Transport", data["transport"]]]))
    if data["polls"]:
        console.print(table("Last polls", ["When", "Outcome", "HTTP", "New", "Detail"], [
            [_when(p["at"], zone), p["outcome"], p["http_status"] or "", p["new_items"], p["detail"]]
            for p in data["polls"]], drop=("HTTP",)))
    if data["editions"]:
        console.print(table("Editions", ["Campaign", "Status", "Items", "Subject", "Preview"], [
            [e["campaign_id"], e["status"], e["items"], e["subject"], e.get("preview", "")]
            for e in data["editions"]], drop=("Preview",)))
        drafts = [e["campaign_id"] for e in data["editions"] if e["status"] == "draft"]
        if drafts:
            say(f"Drafts wait for approval: newsletter feeds approve {name} {drafts[-1]} (the preview link "
                "opens the email as a reader sees it)")


@feeds.command("poll")
@click.argument("name", required=False)
@json_option
@pass_app
def poll(app, name, as_json):
    """Poll NAME (or every active feed) now and send what is new, as the daemon would at its next tick.

    Same rules as the daemon: the first poll records and sends nothing,
    more new posts than the limit pause the feed, drafts wait for approval.

    \b
    Example:
      newsletter feeds poll blog-example
    """
    from newsletter.cli.send import watching
    from newsletter.usecases import feeds as use

    with watching() as watch:
        results = use.poll_now(app.store, app.settings, name, watch)
    if as_json:
        print_json(results)
    else:
        for result in results:
            colour = {"error": "red", "paused": "yellow"}.get(result["outcome"], "green")
            say(f"[{colour}]{result['feed']}: {result['detail'] or result['outcome']}[/]")
            for preview in result["previews"]:
                say(f"  preview: {preview}")
            for report in result["reports"]:
                say(f"  campaign {report['campaign_id']}: {report['status']}"
                    + (f" (sent {report['sent']}, failed {report['failed']})" if "sent" in report else ""))
        if not results:
            say("No active feeds to poll (see them with: newsletter feeds list)")
    if any(r["outcome"] == "error" for r in results):
        raise SystemExit(2)


@feeds.command("approve")
@click.argument("name")
@click.argument("edition", type=int, required=False)
@json_option
@pass_app
def approve(app, name, edition, as_json):
    """Send a draft edition of a --draft feed (EDITION: its campaign id; without it, every draft, oldest first).

    `newsletter feeds show NAME` lists the drafts with a preview link to each.

    \b
    Example:
      newsletter feeds approve blog-example 12
    """
    from newsletter.cli.send import watching
    from newsletter.usecases import feeds as use

    with watching() as watch:
        reports = use.approve(app.store, app.settings, name, edition, watch)
    if as_json:
        print_json(reports)
        return
    for report in reports:
        say(f"Campaign {report['campaign_id']}: {report['status']}"
            + (f" (sent {report['sent']}, failed {report['failed']})" if "sent" in report else ""))


@feeds.command("pause")
@click.argument("name")
@json_option
@pass_app
def pause(app, name, as_json):
    """Stop polling a feed until it is resumed.

    \b
    Example:
      newsletter feeds pause blog-example
    """
    from newsletter.usecases import feeds as use

    _done(use.pause_feed(app.store, name), as_json, "paused")


@feeds.command("resume")
@click.argument("name")
@click.option("--send-held", is_flag=True,
              help="After a pause for too many new posts: send them (the next poll accepts the jump once). "
                   "Without it they are recorded as seen and never sent.")
@json_option
@pass_app
def resume(app, name, send_held, as_json):
    """Poll a paused feed again.

    \b
    Example:
      newsletter feeds resume blog-example
      newsletter feeds resume blog-example --send-held
    """
    from newsletter.usecases import feeds as use

    _done(use.resume_feed(app.store, name, send_held=send_held), as_json, "active again")


@feeds.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def remove(app, name, yes, as_json):
    """Remove a feed and what it remembers of its posts (its campaigns and their reports stay).

    \b
    Example:
      newsletter feeds remove blog-example --yes
    """
    from newsletter.usecases import feeds as use

    if not yes:
        click.confirm(f"Remove feed {name!r}?", abort=True, err=True)
    result = use.remove_feed(app.store, name)
    if as_json:
        print_json(result)
        return
    say(f"Feed {name}: removed")
    if result["drafts_left"]:
        say(f"Its drafts stay as draft campaigns: {', '.join(map(str, result['drafts_left']))}")


def _done(data: dict, as_json: bool, state: str) -> None:
    if as_json:
        print_json(data)
        return
    say(f"Feed {data['name']}: {state}; next poll {_when(data['next_poll'], data['timezone']) or 'none'}")
