"""``newsletter tags ...``: list, rename and delete tags (``subscribers tag`` puts them on people)."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.group("tags")
def tags():
    """List, rename and delete tags.

    Tags are labels on subscribers (lower case): put them on people with
    `newsletter subscribers tag` or an import's TAGS column, and select them
    in segments with tag:NAME.

    \b
    Example:
      newsletter subscribers tag ada@example.org --add vip
      newsletter tags list
    """


@tags.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """Show every tag and how many subscribers carry it.

    \b
    Example:
      newsletter tags list --json
    """
    from newsletter.store.segments import tag_counts

    with app.store.session() as session:
        rows = tag_counts(session)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Tag", "Subscribers"], [[r["name"], r["subscribers"]] for r in rows]))


@tags.command("rename")
@click.argument("old")
@click.argument("new")
@pass_app
def rename(app, old, new):
    """Rename a tag (segments that name the old one must be recreated).

    \b
    Example:
      newsletter tags rename trial trial-2026
    """
    from newsletter.store.segments import rename_tag
    from newsletter.usecases.segments import tag_names
    from newsletter.vocabulary.filters import normalise_tag

    old_name = normalise_tag(old)
    new_names = tag_names([new], "NEW")
    if len(new_names) != 1:
        from newsletter.errors import InputError

        raise InputError("NEW must be one tag name", hint="e.g. newsletter tags rename trial trial-2026")
    with app.store.session() as session:
        carried = rename_tag(session, old_name, new_names[0])
    say(_escape(f"Renamed tag {old_name} to {new_names[0]} ({carried} subscribers)"))


@tags.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app, name, yes):
    """Delete a tag from everyone who carries it (the subscribers stay).

    \b
    Example:
      newsletter tags delete trial --yes
    """
    from newsletter.store.segments import delete_tag
    from newsletter.vocabulary.filters import normalise_tag

    if not yes:
        click.confirm(f"Delete tag {name} from every subscriber?", abort=True, err=True)
    with app.store.session() as session:
        carried = delete_tag(session, normalise_tag(name))
    say(_escape(f"Deleted tag {name} ({carried} subscribers carried it)"))
