"""What every command shares: the workspace, the store, and output helpers.

Conventions (README, "Architecture"): ``--json`` output goes to stdout alone;
progress, warnings and messages go to stderr; people get Rich tables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

import click


class App:
    """Lazily loaded settings and store for the command being run."""

    def __init__(self, workspace: str | None):
        self.workspace_option = workspace

    @cached_property
    def settings(self):
        from newsletter.config import load_settings

        return load_settings(self.workspace_option)

    @cached_property
    def store(self):
        from newsletter.store.db import open_store

        return open_store(self.settings)


pass_app = click.make_pass_decorator(App)


def json_option(function: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout for scripts.")(function)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (dates as ISO 8601)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A message for people, on stderr (stdout stays clean for data)."""
    stderr_console().print(message)


def table(title: str | None, columns: list[str], rows: list[list[Any]]):
    """A Rich table with the given columns and rows (values shown with str()).

    Cells are literal text, never Rich markup: they hold names, list names
    and file names people chose, and ``[/]`` in a name must not crash a listing.
    """
    from rich.table import Table
    from rich.text import Text

    result = Table(title=title, show_lines=False)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(Text("" if value is None else str(value)) for value in row))
    return result


def progress():
    """A Rich progress bar on stderr showing count, rate and time left.

    Hidden when stderr is not a terminal, so logs and CI output stay clean.
    Use as ``with progress() as bar: task = bar.add_task("Importing", total=n)``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def rate_text(done: int, seconds: float, unit: str = "/s") -> str:
    """A human rate such as ``12,345/s`` for progress bars and summaries."""
    return f"{done / seconds:,.0f}{unit}" if seconds > 0 else ""


class graceful_stop:
    """Turn the first SIGTERM or Ctrl-C into a request to stop after the batch in flight.

    ``with graceful_stop() as stop:`` gives a threading.Event; a second Ctrl-C
    interrupts at once (KeyboardInterrupt).
    """

    def __init__(self):
        import threading

        self.event = threading.Event()
        self._previous = {}

    def _handle(self, signum, _frame):
        import signal

        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()
        say("[yellow]Stopping after the batch in flight (Ctrl-C again to stop at once)...[/]")

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self.event

    def __exit__(self, *exc):
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
