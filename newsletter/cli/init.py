"""``newsletter init``: create a workspace."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter import transports as registry
from newsletter.cli._common import say


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--from", "sender", default="My Newsletter <newsletter@example.org>", show_default=True,
              help='Sender, "Name <address>".')
@click.option("--postal-address", default="", help="Your postal address for the footer (needed to send).")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Public https URL of 'newsletter serve' (http only for localhost).")
@click.option("--transport", default="file", show_default=True,
              type=click.Choice(registry.names(offered_by_init=True)), help="How mail is sent.")
@click.option("--name", default=None, help="The newsletter's name (default: the folder's name).")
def init_command(directory, sender, postal_address, base_url, transport, name):
    """Create a workspace: newsletter.toml, templates/, subscribers/, articles/ and a secret key.

    \b
    Example:
      newsletter init my-letter --from "Clinic News <news@clinic.example>" \\
          --postal-address "1 Main St, Springfield" --base-url https://news.clinic.example
    """
    from newsletter.workspace import init_workspace

    path = init_workspace(Path(directory), sender=sender, postal_address=postal_address,
                          base_url=base_url, transport=transport, name=name)
    say(escape(f"Created {path}"))
    if not postal_address:
        say("[yellow]Set postal_address in newsletter.toml before sending (it goes in every footer).[/]")
    _warn_about_base_url(path.parent)
    import shlex

    folder = shlex.quote(str(path.parent))  # the line is meant to be pasted, a space in the path included
    say(escape(f"Next: cd {folder} && newsletter subscribers add you@example.org --list readers --confirmed"))


def _warn_about_base_url(folder: Path) -> None:
    """Say now, not at the first send, that real mail needs a public base URL."""
    from newsletter.config import base_url_problem, load_settings

    problem = base_url_problem(load_settings(folder))
    if problem is not None:
        say(f"[yellow]{escape(problem.message)}[/]")
        say(escape(f"Hint: {problem.hint}"))


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)
