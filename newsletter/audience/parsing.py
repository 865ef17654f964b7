"""Reading a subscriber file into validated chunks, here or in a second process.

:func:`parse_file` streams a CSV export (a BOM, ``,`` ``;`` or tab
delimiters, quoted newlines) and yields :class:`Chunk`\\ s: up to
``CHUNK_ROWS`` validated rows, the bad rows with their line numbers (the
header is line 1) and the reason, and how far into the file it got.

:func:`parsed_chunks` runs that in a child process for big files: parsing
and validating is Python work that would otherwise hold the interpreter lock
the database writes need, so a million-row import uses both cores.
"""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing
import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.audience.fields import (
    ATTRIBUTE_KEY_MAX,
    ATTRIBUTE_VALUE_MAX,
    NAME_MAX,
    clean_attributes,
    clean_ip,
    clean_list_name,
    clean_name,
    clean_timezone_length,
    one_line,
)
from newsletter.audience.formats import CSV_COLUMNS, EMAIL_HEADERS, cells_reader, detect_format
from newsletter.errors import InputError, NewsletterError
from newsletter.fileio import open_input
from newsletter.store.importing import ValidRow
from newsletter.vocabulary import ArrivalStatus
from newsletter.vocabulary.addresses import _fast_normalise, address_hash, normalise_address
from newsletter.vocabulary.filters import normalise_tag, tag_problem

CHUNK_ROWS = 2000
SAMPLE_BYTES = 64 * 1024
# Files at least this big are parsed in a child process (forking it costs a few ms).
PROCESS_THRESHOLD = 4 * 1024 * 1024
FIELD_LIMIT = 16 * 1024 * 1024


@dataclass
class Chunk:
    rows: list[ValidRow]
    errors: list[dict] = field(default_factory=list)
    position: int = 0  # bytes of the file read so far


class Parsed:
    """A file being parsed: its ``format`` and an iterator of its chunks."""

    def __init__(self, format_name: str, chunks: Iterator[Chunk]):
        self.format, self.chunks = format_name, chunks


def open_for_reading(path: Path):
    """The file opened in binary, or InputError naming what is wrong."""
    return open_input(path, missing="no such file: {path}", missing_hint="check the path",
                      folder="{path} is a folder, not a file", folder_hint="give the path of a .csv file")


def check_encoding(encoding: str) -> None:
    """InputError for an encoding name Python does not know."""
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding[:40]!r}",
                         hint="use utf-8 (the default), latin-1, cp1252 or another Python codec name") from None


def parse_file(path: Path, format_name: str, encoding: str) -> Parsed:
    """Open ``path``, read its header and detect the format; the chunks come lazily."""
    check_encoding(encoding)
    # A cell over the csv module's 128 KB default would stop the whole import;
    # up to FIELD_LIMIT it reaches validation and only its row is refused.
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    handle = open_for_reading(path)
    try:
        wrapper_encoding = "utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding
        text = io.TextIOWrapper(handle, encoding=wrapper_encoding, newline="")
        reader = csv.reader(text, dialect=_sniff(handle, encoding))
        headers = _header(reader, path, encoding)
        detected = detect_format(headers) if format_name == "auto" else format_name
    except BaseException:
        handle.close()
        raise
    keys = [h.strip().lower() for h in headers]
    fast = _plain_csv_validator(keys) if detected == "csv" else None
    return Parsed(detected, _chunks(handle, reader, keys, cells_reader(detected, keys), path, encoding, fast))


def _header(reader, path: Path, encoding: str) -> list[str]:
    try:
        headers = next(reader, None)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not {encoding} text",
                         hint="save it as UTF-8, or pass --encoding latin-1") from None
    if not headers or not any(h.strip() for h in headers):
        raise InputError(f"{path} is empty", hint="the first line must name the columns, one of them 'email'")
    return headers


def _sniff(handle, encoding: str) -> type[csv.Dialect]:
    """Guess the delimiter from the first line; plain CSV when unsure."""
    sample = handle.read(SAMPLE_BYTES).decode(encoding, errors="ignore")
    handle.seek(0)
    first_line = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}

    class Dialect(csv.excel):
        delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","

    return Dialect


def _chunks(handle, reader, keys, read_cells, path: Path, encoding: str, fast=None) -> Iterator[Chunk]:
    """Validated chunks; a decoding or quoting error stops everything (the caller rolls back).

    ``fast(cells, line, zones)`` (plain CSV) validates the common row itself and answers
    None for anything else, which then takes the general path.
    """
    chunk, last_line = Chunk([]), reader.line_num
    zones: dict[str, bool] = {}
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            valid = fast(cells, line, zones) if fast is not None else None
            if valid is not None:
                chunk.rows.append(valid)
            elif not "".join(cells).strip():
                continue
            else:
                try:
                    chunk.rows.append(_validate(cells, keys, read_cells, line, zones))
                except NewsletterError as exc:
                    chunk.errors.append({"line": line, "reason": exc.message})
            if len(chunk.rows) >= CHUNK_ROWS:
                chunk.position = handle.tell()
                yield chunk
                chunk = Chunk([])
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} near line {last_line + 1})",
            hint="save it as UTF-8 (Excel: 'CSV UTF-8'), or pass --encoding latin-1; nothing was imported",
        ) from None
    except csv.Error as exc:
        raise InputError(f"{path} line {last_line + 1}: {exc}",
                         hint="check the quoting on that line; nothing was imported") from None
    finally:
        chunk.position = handle.tell()
        handle.close()
    if chunk.rows or chunk.errors:
        yield chunk


def _validate(cells: list[str], keys: list[str], read_cells, line: int, zones: dict[str, bool]) -> ValidRow:
    if len(cells) > len(keys):
        raise InputError(f"{len(cells)} cells but the header names {len(keys)} columns")
    """One row checked at the door: every value fits its column, or InputError says which does not."""
    row = read_cells([cell.strip() for cell in cells])
    address = normalise_address(row.email)
    if row.timezone:
        clean_timezone_length(row.timezone)
        if row.timezone not in zones:
            zones[row.timezone] = _is_zone(row.timezone)
        if not zones[row.timezone]:
            raise InputError(f"unknown time zone {row.timezone!r}")
    lists = None
    if row.lists is not None:
        lists = tuple((clean_list_name(name), status) for name, status in row.lists.items())
    return ValidRow(line, address, address.lower(), address_hash(address), clean_name(row.name) or "",
                    clean_attributes(row.attributes), row.timezone, row.status, clean_ip(row.ip), lists,
                    _clean_tags(row.tags) if row.tags else (),
                    _consent_time(row.opted_in, "opt-in time") if row.opted_in else None,
                    _consent_time(row.confirmed, "confirmation time") if row.confirmed else None)


def _plain_csv_validator(keys: list[str]):
    """For a plain CSV file, ``fast(cells, line, zones)``: the ValidRow of a common row, or None.

    A million-row file is mostly rows of one plain ASCII address, a printable
    name and printable attribute values. Those are checked here in one
    function (the same checks, the same result as :func:`_validate`: the
    address's strict fast path, names and values printable and within their
    lengths, a known time zone); anything else answers None and takes the
    general path, which also words the errors. Files whose columns need more
    than this (several address columns, first and last names, attribute
    names to clean) get no fast path (None).
    """
    width = len(keys)
    email_at = [i for i, key in enumerate(keys) if key in EMAIL_HEADERS]
    if len(email_at) != 1 or any(key in ("first_name", "last_name", "first name", "last name") for key in keys):
        return None
    extra = [(i, key) for i, key in enumerate(keys) if key and key not in CSV_COLUMNS]
    if any(one_line(key) != key or len(key) > ATTRIBUTE_KEY_MAX for _, key in extra):
        return None
    if len({key for _, key in extra}) != len(extra):
        return None
    email_i = email_at[0]
    name_i = keys.index("name") if "name" in keys else None
    zone_i = next((keys.index(k) for k in ("timezone", "time_zone") if k in keys), None)
    subscribed = ArrivalStatus.SUBSCRIBED
    sha256 = hashlib.sha256

    def fast(cells: list[str], line: int, zones: dict[str, bool]) -> ValidRow | None:
        if len(cells) != width:
            return None
        address = _fast_normalise(cells[email_i].strip())
        if address is None:
            return None
        name = cells[name_i].strip() if name_i is not None else ""
        if not name.isprintable() or len(name) > NAME_MAX:
            return None
        zone = cells[zone_i].strip() if zone_i is not None else None
        if zone:
            if zones.get(zone) is not True:
                return None
        else:
            zone = None
        attributes = {}
        for i, key in extra:
            value = cells[i].strip()
            if value:
                if not value.isprintable() or len(value) > ATTRIBUTE_VALUE_MAX:
                    return None
                attributes[key] = value
        key = address.lower()
        return ValidRow(line, address, key, sha256(key.encode()).hexdigest(), name, attributes, zone, subscribed,
                        None, None, (), None, None)

    return fast


def _clean_tags(raw: tuple[str, ...]) -> tuple[str, ...]:
    tags = []
    for item in raw:
        name = normalise_tag(item)
        problem = tag_problem(name)
        if problem:
            raise InputError(f"tag {item[:40]!r}: {problem}")
        tags.append(name)
    return tuple(dict.fromkeys(tags))


def _consent_time(text: str | None, what: str):
    """An export's time (ISO 8601; without an offset it is UTC, as Mailchimp's are), or None."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"the {what} {text[:40]!r} is not a date and time (YYYY-MM-DD HH:MM:SS)") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when > datetime.now(UTC) + timedelta(days=1):
        raise InputError(f"the {what} {text[:40]!r} is in the future")
    return when


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


@contextmanager
def parsed_chunks(path: Path, format_name: str, encoding: str) -> Iterator[Parsed]:
    """Parse ``path`` here (small files) or in a child process (big ones); same results."""
    check_encoding(encoding)
    open_for_reading(path).close()  # a missing file is reported before any process starts
    if path.stat().st_size < PROCESS_THRESHOLD:
        yield parse_file(path, format_name, encoding)
        return
    receiving, sending = multiprocessing.Pipe(duplex=False)
    _widen(sending)
    # Forked, not spawned: a spawned reader imported the whole store again (SQLAlchemy,
    # the models: 0.3-1 s before the first row, most of a 100,000-row import). The
    # child only reads the file and writes to its pipe, and leaves by os._exit: it
    # never touches the database connections it inherits, nor anything the CLI's
    # progress thread may hold (if that thread held the stderr lock at the fork,
    # only the child's final flush could wait on it, after its last chunk was sent,
    # and the parent kills the child once it has read that). Python 3.12 warns about
    # any fork beside a thread; this one is known.
    context = (multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods()
               else multiprocessing.get_context("spawn"))
    child = context.Process(
        target=_parse_in_child, args=(str(path), format_name, encoding, sending, os.getpid()), daemon=True,
        name="newsletter-import-reader")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
        child.start()
    sending.close()
    try:
        yield Parsed(_receive(receiving), _received_chunks(receiving))
    finally:
        child.kill()
        child.join()
        receiving.close()


def _widen(connection) -> None:
    """Grow the pipe to 1 MB (Linux), so the reader can run a few chunks ahead of the writer."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


def _receive(connection):
    try:
        kind, payload = pickle.loads(connection.recv_bytes())
    except EOFError:
        raise NewsletterError("the file reader stopped unexpectedly", hint="run the import again") from None
    if kind == "error":
        raise InputError(*payload)
    return payload


def _received_chunks(connection) -> Iterator[Chunk]:
    while (chunk := _receive(connection)) is not None:
        rows, errors, position = chunk
        yield Chunk(list(map(ValidRow._make, rows)), errors, position)


def _parse_in_child(path: str, format_name: str, encoding: str, connection, parent_pid: int) -> None:
    """The child process: send the format, then each chunk as plain tuples, then None.

    Pickled here, in the one thread, and written as bytes: a Queue's feeder
    thread would fight the parser for the interpreter lock.
    """
    from newsletter.processes import die_with_parent

    die_with_parent(parent_pid)

    def send(kind, payload):
        connection.send_bytes(pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL))

    try:
        parsed = parse_file(Path(path), format_name, encoding)
        send("ok", parsed.format)
        for chunk in parsed.chunks:
            send("ok", ([tuple(row) for row in chunk.rows], chunk.errors, chunk.position))
        send("ok", None)
    except NewsletterError as exc:
        send("error", (exc.message, exc.hint))
    finally:
        connection.close()
