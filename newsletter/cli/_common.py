"""What every command shares: the workspace, the store, and output helpers.

Conventions (README, "Architecture"): ``--json`` output goes to stdout alone;
progress, warnings and messages go to stderr; people get Rich tables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cache, cached_property
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
    return _console()


def stderr_console():
    return _console(stderr=True, soft_wrap=True)


def _console(**options: Any):
    console = _console_class()(highlight=False, **options)
    if not console.is_terminal:
        console.soft_wrap = True  # a pipe or file gets whole lines, not lines broken at a guessed 80 columns
    return console


@cache
def _console_class() -> type:
    """Rich's Console, made once on first use (Rich is imported late: ``newsletter --help`` stays fast)."""
    from rich.console import Console

    class _Console(Console):
        """Off a terminal, lines are never cropped at the default 80 columns (plain table rows stay whole)."""

        def print(self, *objects: Any, **kwargs: Any) -> None:
            if not self.is_terminal:
                kwargs.setdefault("crop", False)
            super().print(*objects, **kwargs)

    return _Console


def say(message: str) -> None:
    """A message for people, on stderr (stdout stays clean for data)."""
    stderr_console().print(message)


ATOMIC_CELL = 24  # cells up to this long (statuses, counts, ids, dates) are never wrapped or cut


def table(title: str | None, columns: list[str], rows: list[list[Any]], drop: tuple[str, ...] = ()):
    """A table for people: Rich on a terminal, plain tab-separated rows elsewhere.

    On a terminal the table fits its width: a column of short cells
    (statuses, counts, dates: up to ``ATOMIC_CELL`` characters in every row)
    is as wide as its widest cell, so none is cut or wrapped (its header may
    wrap at a space); long cells (names, addresses, file names) fold. When even that
    does not fit, the columns named in ``drop`` are left out, in that order,
    and a caption says so. Off a terminal (a pipe, a file, a test) it prints
    the title, a header line and one line per row, cells separated by tabs.

    Cells are literal text, never Rich markup: they hold names, list names
    and file names people chose, and ``[/]`` in a name must not crash a listing.
    """
    return _FitTable(title, columns, [["" if value is None else str(value) for value in row] for row in rows], drop)


class _FitTable:
    """The renderable :func:`table` returns; it chooses its form when printed, from the console it meets."""

    def __init__(self, title: str | None, columns: list[str], rows: list[list[str]], drop: tuple[str, ...]):
        self.title, self.columns, self.rows, self.drop = title, columns, rows, drop

    def __rich_console__(self, console, options):
        if not console.is_terminal:
            yield from self._plain()
        else:
            yield self._fitted(options.max_width)

    def _plain(self):
        import re

        from rich.segment import Segment

        def line(cells: list[str]) -> Segment:
            return Segment("\t".join(re.sub(r"[\t\r\n\x0b\x0c\u2028\u2029]+", " ", cell) for cell in cells) + "\n")

        if self.title:
            yield Segment(self.title + "\n")
        yield line(self.columns)
        for row in self.rows:
            yield line(row)

    def _fitted(self, width: int):
        from rich.cells import cell_len
        from rich.table import Table
        from rich.text import Text

        count = len(self.columns)
        widest_cell = [max([0, *(cell_len(row[i]) for row in self.rows)]) for i in range(count)]
        header_word = [max(cell_len(word) for word in self.columns[i].split() or [""]) for i in range(count)]
        natural = [max(widest_cell[i], header_word[i]) for i in range(count)]  # a header may wrap at its spaces
        atomic = [all(len(row[i]) <= ATOMIC_CELL for row in self.rows) for i in range(count)]

        def needed(keep: list[int]) -> int:  # cells, padding and borders, long columns folded to 12
            return sum(natural[i] if atomic[i] else min(natural[i], 12) for i in keep) + 3 * len(keep) + 1

        keep, dropped = list(range(count)), []
        for name in self.drop:
            if needed(keep) <= width:
                break
            if name in self.columns and self.columns.index(name) in keep:
                keep.remove(self.columns.index(name))
                dropped.append(name)
        # Still too wide with every short column whole (short file names, long dates): the widest of them
        # fold as well, widest first, so a status word (the shortest cells) is the last one ever given up.
        for i in sorted((i for i in keep if atomic[i]), key=lambda i: -natural[i]):
            if needed(keep) <= width:
                break
            atomic[i] = False
        caption = f"{', '.join(dropped)} left out to fit the terminal; --json has everything" if dropped else None
        full = [max(widest_cell[i], cell_len(self.columns[i])) for i in range(count)]
        if sum(full[i] for i in keep) + 3 * len(keep) + 1 <= width:
            widths = {i: full[i] for i in keep}  # room for everything: no header wraps either
        else:
            widths = self._widths(keep, natural, atomic, width)
        result = Table(title=self.title, caption=caption, show_lines=False)
        for i in keep:  # every width is set here: Rich never has to squeeze (and cut) a column itself
            result.add_column(self.columns[i], width=widths[i], overflow="fold")
        for row in self.rows:
            result.add_row(*(Text(row[i]) for i in keep))
        return result

    @staticmethod
    def _widths(keep: list[int], natural: list[int], atomic: list[bool], width: int) -> dict[int, int]:
        """Short columns get their widest cell; long ones share what is left, in proportion, 12 at least."""
        widths = {i: natural[i] for i in keep}
        flexible = [i for i in keep if not atomic[i]]
        room = width - sum(natural[i] for i in keep if atomic[i]) - 3 * len(keep) - 1
        if not flexible or sum(natural[i] for i in flexible) <= room:
            return widths
        base = {i: min(natural[i], 12) for i in flexible}
        extra = max(room - sum(base.values()), 0)
        grow = {i: natural[i] - base[i] for i in flexible}
        total = sum(grow.values()) or 1
        widths.update({i: base[i] + extra * grow[i] // total for i in flexible})
        return widths


def progress(count: bool = True):
    """A Rich progress bar on stderr showing count (``done/total``, unless ``count`` is False), rate and time left.

    The ``rate`` field is free text beside the bar. Hidden when stderr is not
    a terminal, so logs and CI output stay clean. Use as ``with progress() as
    bar: task = bar.add_task("Sending", total=n, rate="")``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *([MofNCompleteColumn()] if count else []),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def rate_text(done: int, seconds: float, unit: str = "/s") -> str:
    """A human rate such as ``12,345/s`` for progress bars and summaries."""
    return f"{done / seconds:,.0f}{unit}" if seconds > 0 else ""


def import_progress_text(bytes_read: int, total_bytes: int, rows: int, seconds: float) -> str:
    """What an import's progress bar says beside the bar: ``0.1/0.6 MB · 1,200 rows · 9,000 rows/s``.

    Bytes are what the bar measures (the row count is unknown until the end);
    people read megabytes and rows, with units.
    """
    size = f"{bytes_read / 1_000_000:,.1f}/{total_bytes / 1_000_000:,.1f} MB"
    rate = rate_text(rows, seconds, " rows/s")
    return " · ".join(part for part in (size, f"{rows:,} rows", rate) if part)


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
