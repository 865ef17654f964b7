"""``newsletter lists ...``: mailing lists."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("lists")
def lists_group():
    """Create, list and delete mailing lists.

    \b
    Example:
      newsletter lists create readers --double-opt-in
    """


@lists_group.command("create")
@click.argument("name")
@click.option("--double-opt-in", is_flag=True, help="New members stay pending until they confirm by email.")
@pass_app
def create(app, name, double_opt_in):
    """Create a list.

    \b
    Example:
      newsletter lists create readers --double-opt-in
    """
    from newsletter.errors import InputError
    from newsletter.store.audience import create_list

    if not name.strip() or len(name) > 100:
        raise InputError("a list name must have 1 to 100 characters", hint="e.g. newsletter lists create readers")
    with app.store.session() as session:
        create_list(session, name.strip(), double_opt_in)
    say(f"Created list {name}" + (" (double opt-in)" if double_opt_in else ""))


@lists_group.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """Show every list with its member counts.

    \b
    Example:
      newsletter lists list --json
    """
    from newsletter.store.audience import list_counts

    with app.store.session() as session:
        rows = list_counts(session)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["List", "Double opt-in", "Confirmed", "Pending", "Unsubscribed"], [
        [r["name"], "yes" if r["double_opt_in"] else "no", r["confirmed"], r["pending"], r["unsubscribed"]]
        for r in rows
    ]))


@lists_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app, name, yes):
    """Delete a list and its memberships (the subscribers stay).

    \b
    Example:
      newsletter lists delete old-list --yes
    """
    from newsletter.store.audience import delete_list, get_list

    if not yes:
        with app.store.session() as session:
            get_list(session, name)
        click.confirm(f"Delete list {name} and all its memberships?", abort=True, err=True)
    with app.store.session() as session:
        members = delete_list(session, name)
    say(f"Deleted list {name} ({members} memberships)")
