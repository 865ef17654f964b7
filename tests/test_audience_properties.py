"""Property: add, import, export and import again over hostile real-world data.

Generated addresses (IDN domains, non-ASCII and quoted local parts, 64+
character parts) and names (accents, quotes, commas, control characters,
over-long) go through the real CLI on SQLite and PostgreSQL. Whatever the
data: no traceback (the in-process ``cli`` lets any exception through);
every line of the file is accounted for exactly once, as imported or as
reported with its line and a reason; an export imported into an empty store
gives back the same people with the same status on the list; nobody doubled.
"""

from __future__ import annotations

import csv
import io
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.stores import another_database

HOSTILE = "\r\n\x00\t\x0b\x1b\x7f\x85\u2028\u2029\ufeff,;\"'<>=+-@ "
LOCALS = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}", fullmatch=True),
    st.sampled_from(["renée.dupont", "josé", "δοκιμή", "用户", "o'neil", '"quoted name"', "a,b", "x" * 64,
                     "y" * 65, "ü" * 64, "ü" * 65, ".dot", "a..b", "tab\there"]),
)
DOMAINS = st.sampled_from(["example.org", "Example.COM", "bücher.example", "xn--bcher-kva.example",
                           "mail.παράδειγμα.example", "例え.jp", "x.test", "localhost", "a" * 64 + ".com"])
NAMES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(HOSTILE),
             max_size=40),
    st.sampled_from(["Renée O'Brien-Dupont", '"Doc" Holliday, Jr.', "=HYPERLINK(\"http://x\")", "Zoë\r\nBcc: x",
                     "Nul\x00Byte", "É" * 200, "É" * 201, "", "  spaced  out  "]),
)
ROWS = st.lists(st.tuples(LOCALS, DOMAINS, NAMES), min_size=1, max_size=6)
ADDRESS = "1500 Market Street, Suite 200, Philadelphia, PA 19102, USA, " + "Étage 3 " * 20


def _listed(cli, list_name):
    result = cli("subscribers", "list", "--list", list_name, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=st.tuples(LOCALS, DOMAINS, NAMES), rows=ROWS, leave=st.integers(min_value=0, max_value=6))
def _property(cli, tmp_path, monkeypatch, database_url, other_url, counter, first, rows, leave):
    n = next(counter)
    list_name = f"list-{n}"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)

    # one person at the door of `subscribers add`: added, or refused with one line
    local, domain, name = first
    added = cli("subscribers", "add", f"{local}@e{n}.{domain}", "--name", name, "--list", list_name,
                "--attr", f"address={ADDRESS}")
    assert added.exit_code in (0, 1)
    if added.exit_code == 1:
        assert added.stderr.startswith("Error: ") and "\nHint: " in added.stderr, added.stderr

    # the rest from a file (written by the csv module: quoting as spreadsheets do)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "postal"])
    for local, domain, name in rows:
        writer.writerow([f"{local}@e{n}.{domain}", name, ADDRESS])
    data = tmp_path / f"people-{n}.csv"
    data.write_text(buffer.getvalue(), encoding="utf-8")
    report = cli("subscribers", "import", str(data), "--list", list_name, "--json")
    assert report.exit_code == 0, report.stderr
    report = report.json()
    starts = _row_starts(data)
    reported = [e["line"] for e in report["errors"]] + [s["line"] for s in report["skipped_rows"]]
    assert len(reported) == len(set(reported)), report  # no line reported twice
    assert set(reported) <= set(starts), (reported, starts)
    assert report["added"] + report["updated"] + report["skipped"] + report["invalid"] == len(rows)
    assert all(e["reason"] for e in report["errors"] + report["skipped_rows"])
    for line, (local, domain, _name) in zip(starts, rows, strict=False):
        if line not in reported:
            found = cli("subscribers", "show", f"{local}@e{n}.{domain}", "--json")
            assert found.exit_code == 0, (line, found.stderr)

    before = _listed(cli, list_name)
    emails = [p["email"] for p in before]
    assert len(emails) == len({e.lower() for e in emails})  # nobody doubled
    if before:  # someone leaves the list: that must survive the round trip
        leaver = before[leave % len(before)]["email"]
        assert cli("subscribers", "unsubscribe", leaver, "--list", list_name).exit_code == 0
        before = _listed(cli, list_name)

    export = tmp_path / f"export-{n}.csv"
    assert cli("subscribers", "export", "--list", list_name, "--output", str(export)).exit_code == 0
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", other_url)
    again = cli("subscribers", "import", str(export), "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["invalid"] == 0 and again.json()["added"] == len(before), again.json()
    after = _listed(cli, list_name) if before else []  # an empty export names no list
    keys = ("email", "name", "status", "list_status")
    assert [{k: p[k] for k in keys} for p in after] == [{k: p[k] for k in keys} for p in before]


def _row_starts(path):
    """The line each CSV record starts on (quoted cells may hold line breaks)."""
    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    starts, previous = [], reader.line_num
    for _ in reader:
        starts.append(previous + 1)
        previous = reader.line_num
    return starts


def test_add_import_export_import_over_hostile_data(workspace, cli, tmp_path, monkeypatch, database_url):
    counter = itertools.count()
    with another_database(database_url, tmp_path) as other_url:
        _property(cli, tmp_path, monkeypatch, database_url, other_url, counter)
