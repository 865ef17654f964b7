"""``newsletter sequences ...``: welcome mail and drip sequences (the daemon sends them)."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("sequences")
def sequences():
    """Welcome mail and drip sequences: a folder of articles sent to each new member, step by step.

    Each article's front matter says when it goes: after: 0d (from joining, for
    the first step; from the previous step after), and optionally at: "09:00"
    in the reader's time zone. `newsletter run` sends them.

    \b
    Example:
      newsletter sequences create onboarding --list readers --folder sequences/onboarding
      newsletter sequences show onboarding --dry-run --days 14
    """


@sequences.command("create")
@click.argument("name")
@click.option("--list", "list_name", required=True, help="The list whose new members get the sequence.")
@click.option("--folder", required=True, help="The folder of its articles, one per step, in file-name order.")
@click.option("--enrol-existing", is_flag=True, help="Also enrol the list's current members (from now).")
@click.option("--restart", is_flag=True, help="A reader who leaves and joins again starts over from the first step.")
@click.option("--tz", "zone", default=None, help='Time zone for "at:" when a reader has none.  [default: UTC]')
@click.option("--transport", default=None, help="Transport to send with (default: the workspace's).")
@json_option
@pass_app
def create(app, name, list_name, folder, enrol_existing, restart, zone, transport, as_json):
    """Create a sequence from a folder of articles and attach it to a list.

    Every article is composed and checked now. Members who join (or confirm,
    on a double opt-in list) from now on are enrolled; current members only
    with --enrol-existing.

    \b
    Example:
      newsletter sequences create onboarding --list readers --folder sequences/onboarding --tz Europe/London
    """
    from newsletter.usecases.sequences import create as create_sequence

    data = create_sequence(app.store, app.settings, name, list_name, folder, transport=transport, zone=zone,
                           enrol_existing=enrol_existing, restart=restart)
    if as_json:
        print_json(data)
        return
    _print_show(data)
    say(f"Created sequence {name}: {len(data['steps'])} steps for list {list_name}; newsletter run sends them")


@sequences.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """List the sequences with their readers by status.

    \b
    Example:
      newsletter sequences list --json
    """
    from newsletter.usecases.sequences import list_all

    rows = list_all(app.store)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Sequence", "List", "Status", "Steps", "Active", "Finished", "Stopped",
                                        "Folder"],
                                 [[r["name"], r["list"], r["status"], r["steps"], r["readers_active"],
                                   r["readers_finished"], r["readers_stopped"], r["folder"]] for r in rows],
                                 drop=("Folder",)))


@sequences.command("show")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Print who gets which step when over the next --days days.")
@click.option("--days", type=float, default=7.0, show_default=True, help="How far the dry run looks ahead.")
@json_option
@pass_app
def show(app, name, dry_run, days, as_json):
    """Show a sequence's steps with per-step counts (sent, skipped, pending), or --dry-run.

    \b
    Example:
      newsletter sequences show onboarding
      newsletter sequences show onboarding --dry-run --days 14 --json
    """
    if dry_run:
        from newsletter.usecases.sequences import dry_run as plan

        data = plan(app.store, app.settings, name, days)
        if as_json:
            print_json(data)
            return
        stdout_console().print(table(f"Sequence {name}: the next {days:g} days", ["When (reader's time)", "Email",
                                                                                   "Step", "Subject", "Note"],
                                     [[r["local"], r["email"], r["step"], r["subject"], r["note"]]
                                      for r in data["rows"]], drop=("Note", "Subject")))
        if not data["rows"]:
            say("Nobody gets a step in that time.")
        if data["truncated"]:
            say(f"Only the first {len(data['rows'])} shown.")
        return
    from newsletter.usecases.sequences import show as describe

    data = describe(app.store, name)
    if as_json:
        print_json(data)
        return
    _print_show(data)


def _print_show(data) -> None:
    console = stdout_console()
    readers = data["readers"]
    console.print(f"Sequence {data['name']} ({data['status']}) for list {data['list']} via {data['transport']}: "
                  f"{readers['active']} active, {readers['finished']} finished, {readers['stopped']} stopped")
    console.print(table(None, ["Step", "After", "Subject", "Sent", "Skipped", "Pending", "Failed", "Unknown"],
                        [[s["step"], s["after"], s["subject"], s["sent"], s["skipped"], s["pending"], s["failed"],
                          s["unknown"]] for s in data["steps"]], drop=("Subject",)))


def _pause_or_resume(app, name: str, paused: bool, as_json: bool) -> None:
    from newsletter.usecases.sequences import set_paused

    data = set_paused(app.store, name, paused)
    if as_json:
        print_json(data)
        return
    say(f"Sequence {name} {'paused' if paused else 'resumed'}" +
        ("" if paused else "; steps that fell due more than the misfire grace ago are skipped and recorded"))


@sequences.command("pause")
@click.argument("name")
@json_option
@pass_app
def pause(app, name, as_json):
    """Pause a sequence: the daemon enrols and sends nothing for it until resumed.

    \b
    Example:
      newsletter sequences pause onboarding
    """
    _pause_or_resume(app, name, True, as_json)


@sequences.command("resume")
@click.argument("name")
@json_option
@pass_app
def resume(app, name, as_json):
    """Resume a paused sequence.

    \b
    Example:
      newsletter sequences resume onboarding
    """
    _pause_or_resume(app, name, False, as_json)
