"""``newsletter segments ...``: saved filters over lists (create, list, show, count, delete)."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.group("segments")
def segments():
    """Saved filters over lists: send to part of a list without copying anyone.

    A segment keeps consent with its base list: unsubscribing from a segment's
    mail unsubscribes from that list, and suppression always applies. The
    filter language is in the README (Segments).

    \b
    Example:
      newsletter segments create london --list readers --where 'city = "London" and tag:vip'
      newsletter send articles/event.md --segment london --yes
    """


@segments.command("create")
@click.argument("name")
@click.option("--list", "lists", multiple=True, required=True, help="A list it selects from; repeat for more.")
@click.option("--where", required=True, help="The filter, e.g. 'tag:vip and not opened_within(90d)'.")
@json_option
@pass_app
def create(app, name, lists, where, as_json):
    """Save a filter over one or more lists as a segment.

    \b
    Example:
      newsletter segments create vips --list readers --where 'tag:vip and joined > 2026-01-01'
    """
    from newsletter.usecases.segments import create_segment

    data = create_segment(app.store, name, list(lists), where)
    if as_json:
        print_json(data)
        return
    say(_escape(f"Created segment {data['name']} over {', '.join(data['lists'])}: {data['count']} subscribers now"))


@segments.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """Show every segment with its lists and filter.

    \b
    Example:
      newsletter segments list --json
    """
    from newsletter.usecases.segments import all_segments

    rows = all_segments(app.store)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Segment", "Lists", "Filter"],
                                 [[r["name"], ", ".join(r["lists"]), r["where"]] for r in rows]))


@segments.command("show")
@click.argument("name")
@json_option
@pass_app
def show(app, name, as_json):
    """Show a segment and how many it selects now, per list.

    \b
    Example:
      newsletter segments show vips
    """
    from newsletter.usecases.segments import describe_segment

    data = describe_segment(app.store, name)
    if as_json:
        print_json(data)
        return
    console = stdout_console()
    console.print(_escape(f"Segment {data['name']}: {data['where']}"))
    console.print(table(None, ["List", "Subscribers"], [[k, v] for k, v in data["per_list"].items()]))
    say(f"{data['count']} subscribers in all (each once)"
        + (f"; {data['dormant_left_out']} dormant left out (send --to-dormant)" if data["dormant_left_out"] else ""))


@segments.command("count")
@click.argument("name", required=False)
@click.option("--list", "lists", multiple=True, help="Count on this list; repeat for more (default: the segment's).")
@click.option("--where", default=None, help="A filter to count (ad hoc, or narrowing the segment NAME).")
@click.option("--to-dormant", is_flag=True, help="Count dormant subscribers too.")
@json_option
@pass_app
def count(app, name, lists, where, to_dormant, as_json):
    """Count whom a segment, or an ad hoc --where, would reach now.

    \b
    Example:
      newsletter segments count vips
      newsletter segments count --list readers --where 'city = "London"'
    """
    from newsletter.errors import InputError
    from newsletter.usecases.segments import count as count_use

    if name is None and where is None:
        raise InputError("say what to count", hint="give a segment NAME or --where '...' with --list")
    data = count_use(app.store, list(lists), where, name, to_dormant)
    if as_json:
        print_json(data)
        return
    say(f"{data['count']} subscribers")


@segments.command("delete")
@click.argument("name")
@pass_app
def delete(app, name):
    """Delete a segment (nobody is unsubscribed; campaigns keep the filter they were sent with).

    \b
    Example:
      newsletter segments delete vips
    """
    from newsletter.usecases.segments import delete_segment

    delete_segment(app.store, name)
    say(_escape(f"Deleted segment {name}"))
