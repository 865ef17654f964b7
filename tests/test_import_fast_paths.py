"""The import's fast paths give the same result as the careful ones, and leave nothing behind.

- Plain CSV rows are validated by one function (``parsing._plain_csv_validator``)
  that either returns exactly what the general path would, or hands the row
  over (None): checked with Hypothesis on hostile rows.
- On SQLite a chunk is first inserted as all new people; a chunk holding an
  address already stored is undone and decided row by row.
- SQLite's foreign-key checks are off only inside the import's transaction.
- A killed import leaves the store as it was, and its reader process goes too.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from newsletter.store.db import Store
from newsletter.vocabulary.addresses import address_hash

from support.hostile import DOMAINS, HOSTILE, LOCALS, NAMES
from support.imports import import_file, stored_state

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(HOSTILE),
               max_size=30)


def general(cells: list[str], keys: list[str], line: int, zones: dict):
    """The general path's answer: a ValidRow, or the error's message."""
    from newsletter.audience import parsing
    from newsletter.audience.formats import cells_reader
    from newsletter.errors import NewsletterError

    try:
        return parsing._validate(cells, keys, cells_reader("csv", keys), line, zones)
    except NewsletterError as exc:
        return exc.message


@settings(max_examples=300, deadline=None)
@given(local=LOCALS, domain=DOMAINS, name=NAMES, city=TEXT,
       zone=st.sampled_from(["", "Europe/Paris", "Mars/Olympus", "UTC", " Europe/Paris "]),
       extra=st.lists(TEXT, max_size=2), padding=st.sampled_from(["", " ", "\t"]))
@example(local="Reader.1", domain="example.org", name="Reader 1", city="London", zone="", extra=[], padding="")
def test_the_plain_csv_fast_path_agrees_with_the_general_path(local, domain, name, city, zone, extra, padding):
    from newsletter.audience import parsing

    keys = ["email", "name", "city", "timezone"]
    cells = [f"{padding}{local}@{domain}{padding}", name, city, zone, *extra]
    fast = parsing._plain_csv_validator(keys)
    zones: dict[str, bool] = {}
    expected = general(cells, keys, 7, zones)  # fills the zone cache as the general path would
    answer = fast(cells, 7, zones)
    if answer is not None:
        assert answer == expected
        assert answer.hash == address_hash(answer.email)


def test_the_common_row_takes_the_fast_path():
    from newsletter.audience import parsing

    fast = parsing._plain_csv_validator(["email", "name", "city"])
    row = fast(["Reader.1@Example.ORG", "Reader 1", "London"], 2, {})
    assert row is not None and (row.email, row.key, row.attributes) == (
        "Reader.1@example.org", "reader.1@example.org", {"city": "London"})
    # rows it does not vouch for go to the general path, which words the error
    assert fast(["Zoë@bücher.example", "Zoë", "Berlin"], 3, {}) is None
    assert fast(["broken@@example.org", "Bad", ""], 4, {}) is None
    assert fast(["a@example.org", "Tab\there", ""], 5, {}) is None
    # files whose columns need more than plain reading get no fast path
    assert parsing._plain_csv_validator(["email", "first_name", "last_name"]) is None
    assert parsing._plain_csv_validator(["email", "e-mail"]) is None


@pytest.fixture
def sqlite_store(tmp_path):
    opened = Store(f"sqlite:///{tmp_path / 'db' / 'newsletter.db'}")
    yield opened
    opened.close()


def rows_text(rows: list[tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
def any_store(database_url):
    opened = Store(database_url)
    yield opened
    opened.close()


def test_a_chunk_with_known_people_is_undone_and_decided_row_by_row(any_store, tmp_path, monkeypatch):
    from newsletter.audience import parsing

    sqlite_store = any_store  # both backends guess a chunk all new first

    monkeypatch.setattr(parsing, "CHUNK_ROWS", 3)
    import_file(sqlite_store, tmp_path, "first.csv", rows_text([("known@example.org", "Old")]), list_name="readers")
    statements: list[str] = []
    from sqlalchemy import event

    event.listen(sqlite_store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: statements.append(statement))
    rows = [(f"n{i}@example.org", f"N{i}") for i in range(6)]
    rows[4] = ("KNOWN@example.org", "New")  # the second chunk holds a stored address
    rows.append(("n0@example.org", "Again"))  # and the third one a line met in the first chunk
    report = import_file(sqlite_store, tmp_path, "second.csv", rows_text(rows), list_name="readers")
    assert (report["added"], report["updated"], report["skipped"]) == (5, 1, 1)
    assert report["skipped_rows"] == [{"line": 8, "reason": "the same address as an earlier line"}]
    people = {p[1]: p[3] for p in stored_state(sqlite_store)["people"]}
    assert people == {"known@example.org": "New", **{f"n{i}@example.org": f"N{i}" for i in (0, 1, 2, 3, 5)}}
    assert len(stored_state(sqlite_store)["memberships"]) == 6
    # the first chunk went in without looking anyone up; the second was looked up after its guess was undone
    lookups = [s for s in statements if s.startswith("SELECT id, email_key") or "CROSS JOIN LATERAL" in s]
    assert len(lookups) == 2
    if any_store.dialect == "sqlite":  # PostgreSQL's guesses are COPYs, below SQLAlchemy
        assert len([s for s in statements if "ON CONFLICT (email_key) DO NOTHING" in s]) == 2


def test_an_import_never_gives_an_erased_subscribers_id_to_someone_else(sqlite_store, tmp_path):
    import_file(sqlite_store, tmp_path, "a.csv", rows_text([("a@example.org", "A"), ("b@example.org", "B")]),
                list_name="readers")
    with sqlite_store.engine.begin() as connection:
        erased = connection.exec_driver_sql("SELECT max(id) FROM subscribers").scalar_one()
        connection.exec_driver_sql(f"DELETE FROM memberships WHERE subscriber_id = {erased}")
        connection.exec_driver_sql(f"DELETE FROM subscribers WHERE id = {erased}")
    import_file(sqlite_store, tmp_path, "c.csv", rows_text([("c@example.org", "C")]), list_name="readers")
    with sqlite_store.engine.connect() as connection:
        new_id = connection.exec_driver_sql("SELECT id FROM subscribers WHERE email_key = 'c@example.org'").scalar_one()
    assert new_id > erased


def foreign_keys_on(store) -> int:
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one())


def test_foreign_keys_are_checked_again_after_an_import_and_after_a_failed_one(sqlite_store, tmp_path, monkeypatch):
    import_file(sqlite_store, tmp_path, "a.csv", rows_text([("a@example.org", "A")]), list_name="readers")
    assert foreign_keys_on(sqlite_store) == 1
    from newsletter.store import importing

    def broken(self, rows):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(importing.ImportWriter, "write", broken)
    with pytest.raises(RuntimeError):
        import_file(sqlite_store, tmp_path, "b.csv", rows_text([("b@example.org", "B")]), list_name="readers")
    assert foreign_keys_on(sqlite_store) == 1
    with sqlite_store.engine.begin() as connection, pytest.raises(Exception, match="FOREIGN KEY"):
        connection.exec_driver_sql("INSERT INTO memberships (subscriber_id, list_id, status, subscribed_at, "
                                   "consent_source) VALUES (999, 999, 'confirmed', '2026-01-01', 'x')")


def reader_of(pid: int) -> int | None:
    """The import's reader process (a child of ``pid``), once it runs."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def read_position(pid: int, path: Path) -> int:
    """How far process ``pid`` has read into ``path`` (0 until it has it open)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(path):
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                    if line.startswith("pos:"):
                        return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to follow the reader")
def test_a_killed_import_leaves_nothing_and_takes_its_reader_along(tmp_path):
    database = tmp_path / "db" / "newsletter.db"
    Store(f"sqlite:///{database}").close()
    data = tmp_path / "big.csv"
    data.write_text(rows_text([(f"reader.{i}@example.org", f"Reader {i}") for i in range(300_000)]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{database}"
    from newsletter.workspace import init_workspace

    folder = tmp_path / "letter"
    init_workspace(folder, sender="News <news@example.org>", postal_address="1 Main Street",
                   base_url="https://news.example.org", transport="file")
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "subscribers", "import", str(data),
                                "--list", "readers", "--json"], cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reader = wait_for(lambda: reader_of(process.pid), what="the reader process")
        # well into the file: the reader runs at most a pipe (1 MB) and a chunk ahead of the writer
        wait_for(lambda: read_position(reader, data) > data.stat().st_size // 2, what="half the file read")
        assert process.poll() is None, "the import finished before it could be killed; use a bigger file"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        wait_for(lambda: not Path(f"/proc/{reader}").exists() or "Z" in Path(f"/proc/{reader}/stat").read_text()
                 .split(")")[1].split()[0], timeout=30, what="the reader to die with its parent")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM subscribers").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM memberships").fetchone() == (0,)
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store(f"sqlite:///{database}")
    try:
        report = import_file(store, tmp_path, "small.csv", rows_text([("after@example.org", "After")]),
                             list_name="readers")
        assert report["added"] == 1
    finally:
        store.close()

