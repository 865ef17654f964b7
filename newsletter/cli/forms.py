"""``newsletter forms ...``: embeddable signup forms with typed fields (see ``newsletter.audience.forms``)."""

from __future__ import annotations

import sys

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("forms")
def forms():
    """Create signup forms to embed in a website (a plain HTML snippet) or link to (a hosted page).

    \b
    Example:
      newsletter forms create clinic --list news --field city:text --field tracking_consent:checkbox
    """


@forms.command("create")
@click.argument("name")
@click.option("--list", "list_name", required=True, help="The public list the form joins.")
@click.option("--field", "fields", multiple=True, metavar="NAME:TYPE",
              help="A field stored as an attribute; TYPE is text, number, date or checkbox. Repeat for more.")
@click.option("--redirect", default=None, help="Where the browser goes after a successful signup (http(s) URL).")
@json_option
@pass_app
def create(app, name, list_name, fields, redirect, as_json):
    """Create a form and print its HTML snippet (no script needed) and the address of its hosted page.

    The hosted page pre-fills its fields from the query string, e.g.
    /forms/clinic?email=ada@example.org&city=Paris.

    \b
    Example:
      newsletter forms create clinic --list news --field city:text --field tracking_consent:checkbox \\
        --redirect https://www.clinic.example/thanks > snippet.html
    """
    from newsletter.audience.forms import create_form

    form = create_form(app.store, app.settings, name, list_name, fields, redirect)
    if as_json:
        print_json(form)
        return
    sys.stdout.write(form["snippet"])
    say(f"Created the form {name} for {list_name}; its hosted page: {form['url']}")


@forms.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """List the signup forms.

    \b
    Example:
      newsletter forms list --json
    """
    from newsletter.audience.forms import list_forms

    rows = list_forms(app.store, app.settings)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Form", "List", "Fields", "Hosted page"],
                                 [[r["name"], r["list"], ", ".join(f"{f['name']}:{f['type']}" for f in r["fields"]),
                                   r["url"]] for r in rows]))
    say(f"{len(rows)} forms")
