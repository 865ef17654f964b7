"""Importing subscribers from a file, streamed, validated row by row, atomic.

- The file is streamed (memory stays flat on a million rows) and written in
  chunks, all inside one transaction: interrupted, the store is as it was.
  ``dry_run`` does the same work and rolls back, so its counts are exact.
- A BOM, ``,`` ``;`` or tab delimiters and quoted newlines are handled; a
  file that is not UTF-8 stops with a clear message (pass ``encoding``).
- Bad rows are reported with the line they start on (the header is line 1)
  and the reason, and never abort the rest; every value is checked at the
  door (:mod:`newsletter.audience.fields`) before the database sees it.
- Skipped rows are reported the same way (a duplicate line, a suppressed
  address, nothing to change), so every line is accounted for.
- Re-importing the same file changes nothing (everything counts as skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.audience.fields import clean_list_name, import_source
from newsletter.audience.formats import FORMATS
from newsletter.audience.parsing import parsed_chunks
from newsletter.errors import InputError
from newsletter.store.importing import ChunkCounts, ImportWriter, ensure_list, import_transaction

# Skipped rows kept for the report; beyond this only the count grows (a
# re-import of a million-row file skips a million rows).
SKIPPED_ROWS_KEPT = 10_000


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    format: str
    added: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    errors: list[dict] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)
    dry_run: bool = False

    def count(self, chunk: ChunkCounts) -> None:
        self.added += chunk.added
        self.updated += chunk.updated
        self.skipped += chunk.skipped
        room = SKIPPED_ROWS_KEPT - len(self.skipped_rows)
        self.skipped_rows += [{"line": line, "reason": reason} for line, reason in sorted(chunk.skipped_rows)[:room]]

    @property
    def rows(self) -> int:
        """Data rows read so far, whatever became of them."""
        return self.added + self.updated + self.skipped + self.invalid

    def as_dict(self) -> dict:
        """The ``--json`` shape: ``errors`` and ``skipped_rows`` are ``{line, reason}`` in line order."""
        return {"added": self.added, "updated": self.updated, "skipped": self.skipped,
                "invalid": self.invalid, "errors": self.errors, "skipped_rows": self.skipped_rows,
                "skipped_rows_left_off": self.skipped - len(self.skipped_rows),
                "format": self.format, "dry_run": self.dry_run}


class _DryRunRollback(Exception):
    """Raised inside the transaction to undo a dry run."""


def import_subscribers(store, path: Path, *, list_name: str | None = None, format_name: str = "auto",
                       dry_run: bool = False, resubscribe: bool = False, encoding: str = "utf-8",
                       on_progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
    """Import ``path`` into the store (onto ``list_name``, created if missing).

    ``on_progress(bytes_read, total_bytes, rows_read)`` is called after every chunk.
    """
    if format_name != "auto" and format_name not in FORMATS:
        raise InputError(f"unknown format {format_name!r}", hint=f"choose auto or one of {', '.join(FORMATS)}")
    if list_name is not None:
        list_name = clean_list_name(list_name)
    with parsed_chunks(path, format_name, encoding) as parsed:
        report = ImportReport(format=parsed.format, dry_run=dry_run)
        total = path.stat().st_size
        try:
            with import_transaction(store.engine) as connection:
                list_id = ensure_list(connection, list_name) if list_name else None
                writer = ImportWriter(connection, list_id, import_source(path.name), resubscribe, list_name)
                for chunk in parsed.chunks:
                    report.invalid += len(chunk.errors)
                    report.errors.extend(chunk.errors)
                    report.count(writer.write(chunk.rows))
                    if on_progress:
                        on_progress(chunk.position, total, report.rows)
                if dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
    return report

