"""``newsletter tokens ...``: API tokens for the HTTP API of ``newsletter serve``."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("tokens")
def tokens():
    """Create, list and revoke API tokens (the HTTP API under /api/ is served only while one exists).

    \b
    Scopes: subscribers:read, subscribers:write, lists:read, segments:read,
    campaigns:read, campaigns:write, send:write (write implies read).

    \b
    Example:
      newsletter tokens create clinic-website --scope subscribers:write
    """


@tokens.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE", help="What the token may do; repeat for more.")
@click.option("--rate", "rate", type=int, default=None,
              help="Requests per second it may make (more are answered 429).  [default: 50]")
@json_option
@pass_app
def create(app, name, scopes, rate, as_json):
    """Create a token and print its secret, this once (only its hash is kept).

    \b
    Example:
      newsletter tokens create clinic-website --scope subscribers:write
      newsletter tokens create n8n --scope campaigns:write --scope lists:read --json
    """
    from newsletter.usecases.tokens import DEFAULT_RATE, create_token

    data = create_token(app.store, name, list(scopes), rate_per_second=DEFAULT_RATE if rate is None else rate)
    if as_json:
        print_json(data)
        return
    say(f"Created API token {data['name']} ({', '.join(data['scopes'])}; {data['rate_per_second']} requests/s). "
        "Copy it now: it is not shown again.")
    click.echo(data["token"])
    say("Use it as: Authorization: Bearer TOKEN (newsletter serve serves /api/ while a token exists)")


@tokens.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """Show every token: scopes, rate, when it was created and last used (never its secret).

    \b
    Example:
      newsletter tokens list --json
    """
    from newsletter.usecases.tokens import list_tokens

    rows = list_tokens(app.store)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Name", "Scopes", "Rate/s", "Created", "Last used"], [
        [r["name"], " ".join(r["scopes"]), r["rate_per_second"], _when(r["created_at"]), _when(r["last_used_at"])]
        for r in rows], drop=("Created",)))
    say(f"{len(rows)} tokens")


@tokens.command("revoke")
@click.argument("name")
@pass_app
def revoke(app, name):
    """Revoke a token: requests with it are refused from now on.

    \b
    Example:
      newsletter tokens revoke clinic-website
    """
    from newsletter.usecases.tokens import revoke_token

    revoke_token(app.store, name)
    say(f"Revoked API token {name}")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"
