"""The import's edge cases on both databases, and the same result on SQLite and PostgreSQL.

PostgreSQL writes an import with COPY (``store.importing.copy_rows``) and
SQLite with executemany; the decisions (who is new, who changed, who is
skipped and why) are the same code. These tests pin the edge cases on each
backend and, with Hypothesis, that both backends end with the same report
and the same stored rows for the same hostile files.
"""

from __future__ import annotations

import csv
import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.store.db import Store

from support.hostile import DOMAINS, LOCALS, NAMES
from support.imports import clear, import_file, stored_state
from support.services import postgres_schema_url
from support.stores import another_database


@pytest.fixture
def store(database_url):
    opened = Store(database_url)
    yield opened
    opened.close()


def people(store) -> dict[str, tuple]:
    """address key -> (email, name, status, attributes)."""
    return {p[1]: (p[0], p[3], p[6], dict(p[4])) for p in stored_state(store)["people"]}


def test_bad_rows_are_listed_with_their_lines_and_the_rest_imported(store, tmp_path):
    report = import_file(store, tmp_path, "a.csv", "email,name\ngood@example.org,Good\nnot-an-address,Bad\n"
                         "\nsecond@@example.org,Worse\nalso.good@example.org,Also\n", list_name="readers")
    assert (report["added"], report["invalid"], report["skipped"]) == (2, 2, 0)
    assert [e["line"] for e in report["errors"]] == [3, 5]
    assert set(people(store)) == {"good@example.org", "also.good@example.org"}


def test_the_same_address_in_other_case_is_one_person_and_the_first_line_wins(store, tmp_path):
    report = import_file(store, tmp_path, "a.csv", "email,name\nAnn@Example.org,First\nann@example.ORG,Second\n"
                         "ANN@EXAMPLE.ORG,Third\n", list_name="readers")
    assert (report["added"], report["skipped"]) == (1, 2)
    assert report["skipped_rows"] == [{"line": 3, "reason": "the same address as line 2"},
                                      {"line": 4, "reason": "the same address as line 2"}]
    assert people(store) == {"ann@example.org": ("Ann@example.org", "First", "active", {})}


def test_a_duplicate_in_a_later_chunk_is_skipped_too(store, tmp_path, monkeypatch):
    from newsletter.audience import parsing

    monkeypatch.setattr(parsing, "CHUNK_ROWS", 2)
    report = import_file(store, tmp_path, "a.csv", "email,name\na@example.org,A\nb@example.org,B\n"
                         "A@EXAMPLE.ORG,Again\n", list_name="readers")
    assert (report["added"], report["skipped"]) == (2, 1)
    assert report["skipped_rows"] == [{"line": 4, "reason": "the same address as an earlier line"}]
    assert people(store)["a@example.org"][1] == "A"


def test_accented_and_idn_addresses_keep_their_characters(store, tmp_path):
    report = import_file(store, tmp_path, "a.csv", "email,name\nZoë@bücher.example,Zoë\n"
                         "josé@例え.jp,José\nrenée@mail.παράδειγμα.example,Renée\n", list_name="readers")
    assert (report["added"], report["invalid"]) == (3, 0), report
    stored = people(store)
    assert {email for email, *_ in stored.values()} == {"Zoë@bücher.example", "josé@例え.jp",
                                                         "renée@mail.παράδειγμα.example"}
    assert stored["zoë@bücher.example"][1] == "Zoë"


def test_quotes_commas_and_line_breaks_in_names_arrive_as_one_line(store, tmp_path):
    text = 'email,name,city\r\nq@example.org,"O\'Brien, ""Pat""\r\nJr.","Paris, \\ ""Left Bank"""\r\n'
    report = import_file(store, tmp_path, "a.csv", text, list_name="readers")
    assert (report["added"], report["invalid"]) == (1, 0), report
    email, name, status, attributes = people(store)["q@example.org"]
    assert name == 'O\'Brien, "Pat" Jr.'
    assert attributes == {"city": 'Paris, \\ "Left Bank"'}


def test_an_existing_subscriber_is_updated_and_joins_the_list(store, tmp_path):
    import_file(store, tmp_path, "first.csv", "email,name,city\nold@example.org,Old Name,Lima\n")
    report = import_file(store, tmp_path, "second.csv", "email,name,city\nOLD@example.org,New Name,\n"
                         "new@example.org,New,Osaka\n", list_name="readers")
    assert (report["added"], report["updated"], report["skipped"]) == (1, 1, 0), report
    assert people(store)["old@example.org"] == ("old@example.org", "New Name", "active", {"city": "Lima"})
    memberships = stored_state(store)["memberships"]
    assert [(m[0], m[1], m[2]) for m in memberships] == [("new@example.org", "readers", "confirmed"),
                                                         ("old@example.org", "readers", "confirmed")]


def test_reimporting_an_export_into_an_empty_store_restores_everyone(store, tmp_path, database_url, cli, workspace,
                                                                     monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    import_file(store, tmp_path, "a.csv", "email,name,city\nstays@example.org,Stays,Lima\n"
                "leaves@example.org,Leaves,\nthird@example.org,Third,\n", list_name="readers")
    assert cli("subscribers", "unsubscribe", "leaves@example.org", "--list", "readers").exit_code == 0
    export = tmp_path / "export.csv"
    assert cli("subscribers", "export", "--output", str(export)).exit_code == 0
    before = stored_state(store)
    with another_database(database_url, tmp_path) as other_url:
        other = Store(other_url)
        try:
            report = import_file(other, tmp_path, "export.csv", export.read_text(encoding="utf-8"))
            assert (report["added"], report["invalid"], report["skipped"]) == (3, 0, 0), report
            after = stored_state(other)
            assert after["people"] == before["people"]
            assert [m[:3] for m in after["memberships"]] == [m[:3] for m in before["memberships"]]
            again = import_file(other, tmp_path, "export.csv", export.read_text(encoding="utf-8"))
            assert (again["added"], again["updated"], again["skipped"]) == (0, 0, 3), again
        finally:
            other.close()


def test_a_header_only_file_imports_nobody(store, tmp_path):
    report = import_file(store, tmp_path, "a.csv", "email,name\n", list_name="readers")
    assert (report["added"], report["updated"], report["skipped"], report["invalid"]) == (0, 0, 0, 0)
    assert stored_state(store)["people"] == []


def test_a_failed_import_changes_nothing(store, tmp_path, monkeypatch):
    """A failure after COPY has written a chunk rolls every chunk back."""
    from newsletter.audience import parsing
    from newsletter.store import importing

    import_file(store, tmp_path, "first.csv", "email,name\nkept@example.org,Kept\n", list_name="readers")
    before = stored_state(store)
    monkeypatch.setattr(parsing, "CHUNK_ROWS", 2)
    original, calls = importing.ImportWriter.write, []

    def fail_on_third_chunk(self, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        return original(self, rows)

    monkeypatch.setattr(importing.ImportWriter, "write", fail_on_third_chunk)
    rows = "".join(f"p{i}@example.org,P{i}\n" for i in range(6))
    with pytest.raises(RuntimeError, match="disk is full"):
        import_file(store, tmp_path, "second.csv", "email,name\n" + rows, list_name="readers")
    assert stored_state(store) == before


# --- the same import on both backends ---------------------------------------------------

@pytest.fixture(scope="module")
def both_stores(tmp_path_factory):
    """A SQLite store and a PostgreSQL store, for comparing the same imports on each."""
    folder = tmp_path_factory.mktemp("both")
    schemas = postgres_schema_url()
    pg = Store(next(schemas))
    sqlite = Store(f"sqlite:///{folder / 'both.db'}")
    yield sqlite, pg, folder
    sqlite.close()
    pg.close()
    next(schemas, None)  # drops the schema


CASES = st.sampled_from([str, str.upper, str.lower, str.title])
ROWS = st.lists(st.tuples(LOCALS, DOMAINS, NAMES, CASES, st.sampled_from(["", "Lima", "Zoë's, \"town\""])),
                min_size=0, max_size=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(first=ROWS, second=ROWS, chunk=st.sampled_from([2, 3, 2000]), resubscribe=st.booleans())
def test_sqlite_and_postgresql_import_the_same_file_the_same_way(both_stores, monkeypatch, first, second, chunk,
                                                                 resubscribe):
    from newsletter.audience import parsing

    sqlite, pg, folder = both_stores
    monkeypatch.setattr(parsing, "CHUNK_ROWS", chunk)
    texts = [_csv(first), _csv(first[: len(first) // 2] + second)]  # the second file meets existing people
    results = []
    for store in (sqlite, pg):
        clear(store)
        reports = [import_file(store, folder, f"f{i}.csv", text, list_name="readers", resubscribe=resubscribe)
                   for i, text in enumerate(texts)]
        results.append((reports, stored_state(store)))
    assert results[0] == results[1]


def _csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "city"])
    for local, domain, name, case, city in rows:
        writer.writerow([case(f"{local}@{domain}"), name, city])
    return buffer.getvalue()


def test_an_import_does_not_wait_for_another_imports_analyze(tmp_path):
    """ANALYZE's lock lasts to the end of an import's transaction: a second import skips it, and goes on."""
    from newsletter.store.importing import ImportWriter, ValidRow

    schemas = postgres_schema_url()
    store = Store(next(schemas))
    try:
        with store.engine.connect() as first, store.engine.connect() as second:
            first.begin()
            first.exec_driver_sql("ANALYZE subscribers, memberships")  # held until `first` ends
            second.exec_driver_sql("SET lock_timeout = '5s'")  # (begins its transaction) without the import's own
            # short timeout, ANALYZE would fail here after 5 s
            writer = ImportWriter(second, None, "test")
            writer.written = 20_000
            started = time.monotonic()
            writer._analyze()  # would wait for `first` without the import's short lock timeout
            assert time.monotonic() - started < 3
            counts = writer.write([ValidRow(2, "a@example.org", "a@example.org", "h" * 64, "A", {}, None,
                                            "subscribed", None)])
            assert counts.added == 1
            assert second.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"  # the session's own, restored
            second.commit()
            first.rollback()
    finally:
        store.close()
        next(schemas, None)


LIST_STATUSES = st.dictionaries(st.sampled_from(["readers", "news", "Zoë's list"]),
                                st.sampled_from(["confirmed", "pending", "unsubscribed"]), max_size=3)
OWN_ROWS = st.lists(st.tuples(LOCALS, DOMAINS, NAMES, CASES,
                              st.sampled_from(["active", "unsubscribed", "bounced", "complained", "ACTIVE", "gone"]),
                              LIST_STATUSES, st.sampled_from(["", "", "unsubscribed", "bounced", "complained"])),
                    min_size=0, max_size=10)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(first=OWN_ROWS, second=OWN_ROWS, chunk=st.sampled_from([2, 2000]), resubscribe=st.booleans(),
       onto=st.sampled_from([None, "readers"]))
def test_sqlite_and_postgresql_import_our_export_format_the_same_way(both_stores, monkeypatch, first, second, chunk,
                                                                     resubscribe, onto):
    """Our export's rows restore statuses, lists, suppressions and consents: the same on both databases."""
    from newsletter.audience import parsing

    sqlite, pg, folder = both_stores
    monkeypatch.setattr(parsing, "CHUNK_ROWS", chunk)
    texts = [_own_csv(first), _own_csv(first[: len(first) // 2] + second)]
    results = []
    for store in (sqlite, pg):
        clear(store)
        reports = [import_file(store, folder, f"own{i}.csv", text, list_name=onto, resubscribe=resubscribe)
                   for i, text in enumerate(texts)]
        results.append((reports, stored_state(store)))
    assert results[0] == results[1]


def _own_csv(rows) -> str:
    import json

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "status", "timezone", "lists", "list_statuses", "suppressed", "attributes",
                     "created_at"])
    for local, domain, name, case, status, lists, suppressed in rows:
        writer.writerow([case(f"{local}@{domain}"), name, status, "", ";".join(lists),
                         json.dumps(lists, ensure_ascii=False), suppressed, "", "2026-01-01T00:00:00+00:00"])
    return buffer.getvalue()
