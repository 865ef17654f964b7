"""``newsletter lists ...``: mailing lists."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("lists")
def lists_group():
    """Create, list, update and delete mailing lists.

    A list is private unless made --public: private lists are never offered
    on the signup form and cannot be joined from the web. Readers see the
    --display-name (pages, confirmation emails), never the internal NAME.

    \b
    Example:
      newsletter lists create readers --public --display-name "Clinic News"
    """


def _display_name(value: str | None) -> str | None:
    """A display name as stored: one line, at most 200 characters (None: not given)."""
    from newsletter.errors import InputError

    if value is None:
        return None
    cleaned = " ".join(part for part in value.split(" ") if part)  # runs of spaces; a line break is refused below
    if len(cleaned) > 200 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in cleaned):
        raise InputError("a display name must be one line of at most 200 characters",
                         hint='e.g. --display-name "Clinic News"')
    return cleaned


@lists_group.command("create")
@click.argument("name")
@click.option("--public/--private", default=False,
              help="Public lists are offered on the signup form and joinable from the web.  [default: private]")
@click.option("--display-name", default=None, help="The name readers see (default: the newsletter's name).")
@click.option("--double-opt-in/--single-opt-in", default=None,
              help="New members stay pending until they confirm by email.  [default: double for public lists]")
@pass_app
def create(app, name, public, display_name, double_opt_in):
    """Create a list (private unless --public).

    \b
    Example:
      newsletter lists create readers --public --display-name "Clinic News"
      newsletter lists create patients
    """
    from newsletter.errors import InputError
    from newsletter.store.audience import create_list

    if not name.strip() or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InputError("a list name must be one line of 1 to 100 characters",
                         hint="e.g. newsletter lists create readers")
    double_opt_in = public if double_opt_in is None else double_opt_in
    with app.store.session() as session:
        create_list(session, name.strip(), double_opt_in, public=public,
                    display_name=_display_name(display_name) or "")
    kind = "public" if public else "private"
    say(f"Created {kind} list {name}" + (" (double opt-in)" if double_opt_in else ""))


@lists_group.command("update")
@click.argument("name")
@click.option("--public/--private", default=None, help="Offer the list on the signup form, or stop offering it.")
@click.option("--display-name", default=None, help="The name readers see (\"\" to use the default).")
@click.option("--double-opt-in/--single-opt-in", default=None, help="Whether new members must confirm by email.")
@pass_app
def update(app, name, public, display_name, double_opt_in):
    """Change whether a list is public, its display name, or its opt-in.

    \b
    Example:
      newsletter lists update readers --public --display-name "Clinic News"
    """
    from newsletter.errors import InputError
    from newsletter.store.audience import update_list

    if public is None and display_name is None and double_opt_in is None:
        raise InputError("nothing to change", hint="give --public/--private, --display-name or --double-opt-in")
    with app.store.session() as session:
        changed = update_list(session, name, public=public, display_name=_display_name(display_name),
                              double_opt_in=double_opt_in)
        summary = _describe(changed.public, changed.double_opt_in, changed.display_name)
    say(f"Updated list {name}: {summary}")


def _describe(public: bool, double_opt_in: bool, display_name: str) -> str:
    parts = ["public" if public else "private", "double opt-in" if double_opt_in else "single opt-in"]
    if display_name:
        parts.append(f"shown as {display_name!r}")
    return ", ".join(parts)


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
    stdout_console().print(table(None, ["List", "Shown as", "Web", "Double opt-in", "Confirmed", "Pending",
                                        "Unsubscribed"], [
        [r["name"], r["display_name"], "public" if r["public"] else "private", "yes" if r["double_opt_in"] else "no",
         r["confirmed"], r["pending"], r["unsubscribed"]]
        for r in rows
    ], drop=("Shown as", "Double opt-in", "Web")))


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
