"""Importing subscribers from a file, streamed, validated row by row, atomic.

- The file is streamed (memory stays flat on a million rows) and written in
  chunks, all inside one transaction: interrupted, the store is as it was.
  ``dry_run`` does the same work and rolls back, so its counts are exact.
- A BOM, ``,`` ``;`` or tab delimiters and quoted newlines are handled; a
  file that is not UTF-8 stops with a clear message (pass ``encoding``).
- Bad rows are reported with the line they start on (the header is line 1)
  and the reason, and never abort the rest.
- Re-importing the same file changes nothing (everything counts as skipped).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.audience.addresses import address_hash, normalise_address
from newsletter.audience.formats import FORMATS, cells_reader, detect_format
from newsletter.errors import InputError, NewsletterError
from newsletter.store.importing import ChunkCounts, ImportWriter, ValidRow

CHUNK_ROWS = 2000
SAMPLE_BYTES = 64 * 1024


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    format: str
    added: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    errors: list[dict] = field(default_factory=list)
    dry_run: bool = False

    def count(self, chunk: ChunkCounts) -> None:
        self.added += chunk.added
        self.updated += chunk.updated
        self.skipped += chunk.skipped

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "skipped": self.skipped,
                "invalid": self.invalid, "errors": self.errors, "format": self.format,
                "dry_run": self.dry_run}


class _DryRunRollback(Exception):
    """Raised inside the transaction to undo a dry run."""


def import_subscribers(store, path: Path, *, list_name: str | None = None, format_name: str = "auto",
                       dry_run: bool = False, resubscribe: bool = False, encoding: str = "utf-8",
                       on_progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import ``path`` into the store (onto ``list_name``, created if missing).

    ``on_progress(bytes_read, total_bytes)`` is called after every chunk.
    """
    if format_name != "auto" and format_name not in FORMATS:
        raise InputError(f"unknown format {format_name!r}", hint=f"choose auto or one of {', '.join(FORMATS)}")
    handle = _open(path)
    total = path.stat().st_size
    try:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding,
                                newline="")
        reader = csv.reader(text, dialect=_sniff(handle, encoding))
        headers = next(reader, None)
        if not headers or not any(h.strip() for h in headers):
            raise InputError(f"{path} is empty", hint="the first line must name the columns, one of them 'email'")
        detected = detect_format(headers) if format_name == "auto" else format_name
        report = ImportReport(format=detected, dry_run=dry_run)
        keys = [h.strip().lower() for h in headers]
        try:
            with store.engine.begin() as connection:
                writer = ImportWriter(connection, _list_id(connection, list_name), f"import:{path.name}", resubscribe)
                chunks = _valid_chunks(reader, keys, cells_reader(detected, keys), report, path, encoding)
                for chunk in read_ahead(chunks):
                    report.count(writer.write(chunk))
                    if on_progress:
                        on_progress(handle.tell(), total)
                if dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
        return report
    finally:
        handle.close()


def read_ahead(chunks, depth: int = 3):
    """Iterate ``chunks`` while a thread produces the next ones.

    Parsing and validating is Python work; SQLite's inserts release the GIL,
    so the two overlap on a second core. Errors in the producer re-raise here.
    """
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                ready.put(chunk)
            ready.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            ready.put(exc)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _open(path: Path):
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file", hint="give the path of a .csv file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _sniff(handle, encoding: str) -> type[csv.Dialect] | csv.Dialect:
    """Guess the delimiter from the start of the file; plain CSV when unsure."""
    sample = handle.read(SAMPLE_BYTES).decode(encoding, errors="ignore")
    handle.seek(0)
    first_line = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=counts.get) if any(counts.values()) else ","

    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    return Dialect


def _list_id(connection, list_name: str | None) -> int | None:
    if not list_name:
        return None
    from sqlalchemy import insert, select

    from newsletter.store.models import MailingList, utcnow

    table = MailingList.__table__
    found = connection.execute(select(table.c.id).where(table.c.name == list_name)).scalar()
    if found is not None:
        return found
    return connection.execute(
        insert(table).values(name=list_name, double_opt_in=False, created_at=utcnow()).returning(table.c.id)
    ).scalar()


def _valid_chunks(reader, keys, read_row, report: ImportReport, path: Path, encoding: str):
    """Yield lists of validated rows; record invalid ones in ``report``."""
    chunk: list[ValidRow] = []
    zones: dict[str, bool] = {}
    last_line = reader.line_num
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if not "".join(cells).strip():
                continue
            try:
                chunk.append(_validate(cells, keys, read_row, line, zones))
            except NewsletterError as exc:
                report.invalid += 1
                report.errors.append({"line": line, "reason": exc.message})
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} near line {last_line + 1})",
            hint="save it as UTF-8 (Excel: 'CSV UTF-8'), or pass --encoding latin-1; nothing was imported",
        ) from None
    except csv.Error as exc:
        raise InputError(f"{path} line {last_line + 1}: {exc}", hint="check the quoting on that line; nothing was imported") from None
    if chunk:
        yield chunk


def _validate(cells: list[str], keys: list[str], read_cells, line: int, zones: dict[str, bool]) -> ValidRow:
    if len(cells) > len(keys):
        raise InputError(f"{len(cells)} cells but the header names {len(keys)} columns")
    row = read_cells([cell.strip() for cell in cells])
    address = normalise_address(row.email)
    if row.timezone:
        if row.timezone not in zones:
            zones[row.timezone] = _is_zone(row.timezone)
        if not zones[row.timezone]:
            raise InputError(f"unknown time zone {row.timezone!r}")
    return ValidRow(line, row, address, address.lower(), address_hash(address))


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False
