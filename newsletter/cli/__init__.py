"""The ``newsletter`` command.

Sub-commands are imported only when they run, so ``newsletter --help`` starts
fast: ``COMMANDS`` maps each name to its module, its click object and the
one-line help shown in the listing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from newsletter import __version__

# name -> (module:attribute, short help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("newsletter.cli.init:init_command", "Create a workspace folder."),
    "subscribers": ("newsletter.cli.subscribers:subscribers", "Add, import, export, list and remove subscribers."),
    "lists": ("newsletter.cli.lists:lists_group", "Create, list and delete mailing lists."),
    "forms": ("newsletter.cli.forms:forms", "Signup forms to embed in a website, with typed fields."),
    "compose": ("newsletter.cli.compose:compose", "Turn an article into .html, .txt and .eml files."),
    "check": ("newsletter.cli.compose:check", "Pre-flight checks of an article's email."),
    "preview": ("newsletter.cli.preview:preview", "Preview an article's email in the browser, live."),
    "send": ("newsletter.cli.send:send", "Send an article to a list now."),
    "schedule": ("newsletter.cli.schedule:schedule", "Schedule an article for a list at a time."),
    "campaigns": ("newsletter.cli.campaigns:campaigns", "Show, cancel, resume and retry campaigns."),
    "sequences": ("newsletter.cli.sequences:sequences", "Welcome mail and drip sequences for new members."),
    "feeds": ("newsletter.cli.feeds:feeds", "Turn a blog's feed (RSS, Atom, JSON Feed) into newsletters."),
    "bounces": ("newsletter.cli.bounces:bounces", "Read bounce messages from a mailbox (SMTP senders)."),
    "dkim": ("newsletter.cli.dkim:dkim", "Make a DKIM key and print the DNS record to publish."),
    "doctor": ("newsletter.cli.doctor:doctor", "Check SPF, DKIM, DMARC, bounce MX and the relay's TLS."),
    "run": ("newsletter.cli.run:run", "Run the scheduler daemon."),
    "serve": ("newsletter.cli.serve:serve", "Serve unsubscribe, confirm, webhook and archive pages."),
    "worker": ("newsletter.cli.worker:worker", "Run a scale-out worker."),
    "tags": ("newsletter.cli.tags:tags", "List, rename and delete subscriber tags."),
    "segments": ("newsletter.cli.segments:segments", "Saved filters over lists: create, count, show, delete."),
    "webhooks": ("newsletter.cli.webhooks:webhooks", "Send signed events to other systems (CRM, n8n, Zapier)."),
    "tokens": ("newsletter.cli.tokens:tokens", "API tokens for the HTTP API: create, list, revoke."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        target, short_help = COMMANDS[name]
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        command.short_help = command.short_help or short_help
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _available(name: str) -> bool:
    module_name = COMMANDS[name][0].split(":")[0]
    return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False),
    envvar="NEWSLETTER_HOME",
    help="Workspace folder (default: the folder holding newsletter.toml, from here upward).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """Compose articles into emails, schedule them and send them to your subscribers.

    \b
    Example:
      newsletter init my-letter && cd my-letter
      newsletter subscribers import subscribers/export.csv --list readers
      newsletter compose articles/welcome.md --out build/
    """
    from newsletter.cli._common import App

    ctx.obj = App(workspace)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the command and turns expected errors into one line and exit 1.

    Expected errors are NewsletterErrors, click's usage errors, and the
    machine's own failures (a full disk, a database locked too long).
    """
    from newsletter.errors import NewsletterError

    try:
        code = cli.main(args=argv, prog_name="newsletter", standalone_mode=False)
        sys.stdout.flush()  # a full disk behind stdout is reported here, not at exit
    except NewsletterError as exc:
        _print_error(exc.message, exc.hint)
        code = exc.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "newsletter"
        _print_error(exc.format_message(), f"see '{command} --help'")
        code = 1
    except click.ClickException as exc:
        _print_error(exc.format_message(), None)
        code = 1
    except click.exceptions.Abort:
        _print_error("aborted", None)
        code = 1
    except KeyboardInterrupt:
        _print_error("interrupted", None)
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # noqa: BLE001 - only the known environmental failures become one line
        known = _environment_failure(exc)
        if known is None:
            raise
        _print_error(*known)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


def _environment_failure(exc: BaseException) -> tuple[str, str] | None:
    """``(message, hint)`` for failures of the machine rather than of the program, else None.

    A full disk (ENOSPC/EDQUOT, from a file, stdout or SQLite's "database or
    disk is full") and a SQLite database locked for longer than its busy
    timeout by another process. The message never carries the SQL or its
    parameters (they may hold addresses).
    """
    from newsletter.fileio import is_disk_full

    if is_disk_full(exc):
        if exc.filename is None:
            _silence_stdout()
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"no space left on the device{where}",
                "free some disk space and run the command again; files are written whole or not at all")
    import sqlite3

    original = getattr(exc, "orig", exc)  # SQLAlchemy wraps the driver's error
    if isinstance(original, sqlite3.OperationalError):
        text = str(original).lower()
        if "database is locked" in text or "database is busy" in text:
            from newsletter.store.db import BUSY_TIMEOUT_SECONDS

            return (f"the database is locked by another process (waited {BUSY_TIMEOUT_SECONDS:g} s)",
                    "wait for the send, import or scheduler holding it to finish, then run this again")
        if "disk is full" in text:
            return ("no space left on the device for the database",
                    "free some disk space and run the command again; the last change was rolled back")
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation when stdout is no file (tests)
        pass


def _print_error(message: str, hint: str | None) -> None:
    text = f"Error: {message}"
    if hint:
        text += f"\nHint: {hint}"
    click.echo(text, err=True)
