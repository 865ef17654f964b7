"""Real-world data at the door: add and import on SQLite and PostgreSQL, never a traceback.

Every value is cleaned (control characters) and measured (column sizes)
before the database sees it; an import reports each bad or skipped row by
line and reason and keeps the rest; export then import round-trips consent.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from support.stores import another_database

LONG_NAME = "É" * 201
LONG_LIST = "l" * 101


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def shown(cli, email):
    return cli("subscribers", "show", email, "--json").json()


def one_line_error(result, *words):
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("args, words", [
    (("--name", LONG_NAME), ("201 characters", "200")),
    (("--list", LONG_LIST), ("101 characters", "100")),
    (("--list", "read\x00ers"), ("control character",)),
    (("--attr", "k" * 101 + "=v"), ("attribute name", "100")),
    (("--attr", "note=" + "v" * 10_001), ("attribute 'note'", "10000")),
])
def test_add_refuses_what_does_not_fit_with_one_line(workspace, cli, args, words):
    result = cli("subscribers", "add", "ada@example.org", *args)
    one_line_error(result, *words)
    assert cli("subscribers", "list", "--json").json() == []
    assert cli("lists", "list", "--json").json() == []


def test_add_puts_names_and_attributes_on_one_line(workspace, cli):
    name = "Renée\r\nBcc: x@example.org\x00\u2028O’Brien\x85\t"
    result = cli("subscribers", "add", "renee@example.org", "--name", name, "--attr", "city=Lyon\nBcc: y",
                 "--list", "lecteurs", "--json")
    assert result.exit_code == 0, result.stderr
    person = shown(cli, "renee@example.org")
    assert person["name"] == "Renée Bcc: x@example.org O’Brien"
    assert person["attributes"] == {"city": "Lyon Bcc: y"}


def test_import_reports_each_bad_row_on_both_backends_and_keeps_the_rest(workspace, cli, tmp_path):
    long_local = "x" * 65
    file_name = "é" * 20 + "-" + "very-long-export-name" * 9 + ".csv"  # 214 characters, 234 bytes
    data = write(tmp_path / file_name,
                 "email,name,city\n"
                 "nul@example.org,Nul\x00Byte,Oslo\n"
                 f"long@example.org,{LONG_NAME},Oslo\n"
                 f"{long_local}@example.org,Long Local,Oslo\n"
                 "sep@example.org,Line\u2028Separator,Oslo\n"
                 "ok@example.org,Ok,Oslo\n")
    result = cli("subscribers", "import", str(data), "--list", "readers", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert (report["added"], report["invalid"]) == (3, 2)
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert set(reasons) == {3, 4}
    assert "201 characters" in reasons[3] and "too long before the @-sign" in reasons[4]
    assert shown(cli, "nul@example.org")["name"] == "Nul Byte"
    assert shown(cli, "sep@example.org")["name"] == "Line Separator"
    source = shown(cli, "ok@example.org")["consent"][0]["source"]
    assert source.startswith("import:ééé") and source.endswith("-name.csv") and len(source) == 200


def test_import_of_a_long_list_name_is_one_line(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email\nada@example.org\n")
    one_line_error(cli("subscribers", "import", str(data), "--list", LONG_LIST), "101 characters")
    assert cli("subscribers", "list", "--json").json() == []


def test_skipped_rows_are_listed_with_line_and_reason(workspace, cli, tmp_path):
    cli("subscribers", "add", "gone@example.org", "--list", "readers")
    cli("subscribers", "unsubscribe", "gone@example.org")
    cli("subscribers", "add", "left@example.org", "--list", "readers")
    cli("subscribers", "unsubscribe", "left@example.org", "--list", "readers")
    cli("subscribers", "add", "same@example.org", "--list", "readers")
    data = write(tmp_path / "s.csv", "email\nnew@example.org\ngone@example.org\nleft@example.org\n"
                                     "same@example.org\nNEW@example.org\n")
    report = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert (report["added"], report["skipped"]) == (1, 4)
    reasons = {row["line"]: row["reason"] for row in report["skipped_rows"]}
    assert list(reasons) == [3, 4, 5, 6]
    assert "suppression list (unsubscribed)" in reasons[3]
    assert "unsubscribed from readers" in reasons[4]
    assert "nothing to change" in reasons[5]
    assert reasons[6] == "the same address as line 2"
    human = cli("subscribers", "import", str(data), "--list", "readers")
    assert human.exit_code == 0
    assert "Skipped rows" in human.stderr and "suppression list" in human.stderr
    assert "unsubscribed from readers" in human.stderr


def test_list_of_one_list_shows_who_left_it(workspace, cli):
    cli("subscribers", "add", "stays@example.org", "--list", "readers")
    cli("subscribers", "add", "left@example.org", "--list", "readers")
    cli("subscribers", "add", "left@example.org", "--list", "other")
    cli("subscribers", "unsubscribe", "left@example.org", "--list", "readers")
    listed = {r["email"]: r for r in cli("subscribers", "list", "--list", "readers", "--json").json()}
    assert listed["left@example.org"]["status"] == "active"  # still on "other"
    assert listed["left@example.org"]["list_status"] == "unsubscribed"
    assert listed["stays@example.org"]["list_status"] == "confirmed"
    table = cli("subscribers", "list", "--list", "readers")
    row = next(line for line in table.stdout.splitlines() if "left@example.org" in line)
    assert "unsubscribed" in row
    assert "Address status\tStatus on readers" in table.stdout


def _leavers(cli, tmp_path):
    """A store where people left in every way there is; returns what each one's state must stay."""
    cli("subscribers", "add", "stays@example.org", "--name", "=Stays, O'Neil", "--list", "readers",
        "--attr", "city=+Lyon")
    cli("subscribers", "add", "left-one@example.org", "--list", "readers")
    cli("subscribers", "add", "left-one@example.org", "--list", "other")
    cli("subscribers", "unsubscribe", "left-one@example.org", "--list", "readers")
    cli("subscribers", "add", "left-all@example.org", "--list", "readers")
    cli("subscribers", "unsubscribe", "left-all@example.org")
    cli("lists", "create", "vip", "--double-opt-in")
    cli("subscribers", "add", "waiting@example.org", "--list", "vip")
    bounced = write(tmp_path / "cleaned.csv", "Email Address,First Name,CLEAN_TIME\nbounced@example.org,B,2024-03-04\n")
    assert cli("subscribers", "import", str(bounced), "--list", "readers", "--json").json()["added"] == 1
    return {
        "stays@example.org": ("active", None, {"readers": "confirmed"}),
        "left-one@example.org": ("active", None, {"readers": "unsubscribed", "other": "confirmed"}),
        "left-all@example.org": ("unsubscribed", "unsubscribed", {"readers": "unsubscribed"}),
        "waiting@example.org": ("active", None, {"vip": "pending"}),
        "bounced@example.org": ("bounced", "bounced", {"readers": "unsubscribed"}),
    }


def _state(cli, email):
    person = shown(cli, email)
    return person["status"], person["suppressed"], {m["name"]: m["status"] for m in person["lists"]}


def test_export_then_import_into_an_empty_store_keeps_consent(workspace, cli, tmp_path, database_url, monkeypatch):
    expected = _leavers(cli, tmp_path)
    export = tmp_path / "export.csv"
    assert cli("subscribers", "export", "--output", str(export)).exit_code == 0
    header = next(csv.reader(io.StringIO(export.read_text())))
    assert {"list_statuses", "suppressed"} <= set(header)
    before = {email: shown(cli, email) for email in expected}
    with another_database(database_url, tmp_path) as other:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", other)
        report = cli("subscribers", "import", str(export), "--json").json()
        assert report["format"] == "newsletter" and report["added"] == len(expected), report
        assert report["invalid"] == 0
        for email, state in expected.items():
            assert _state(cli, email) == state, email
        stays = shown(cli, "stays@example.org")
        assert stays["name"] == before["stays@example.org"]["name"] == "=Stays, O'Neil"
        assert stays["attributes"] == {"city": "+Lyon"}
        confirmed = {r["email"] for r in cli("subscribers", "list", "--list", "readers", "--status", "confirmed",
                                             "--json").json()}
        assert confirmed == {"stays@example.org"}
        # importing the export again, even onto a list, subscribes none of those who left
        again = cli("subscribers", "import", str(export), "--list", "readers", "--json").json()
        assert again["added"] == 0
        for email, state in expected.items():
            if email != "waiting@example.org":
                assert _state(cli, email)[2].get("readers") == state[2].get("readers"), email


def test_an_export_from_before_list_statuses_keeps_unsubscribed_people_out(workspace, cli, tmp_path):
    old = write(tmp_path / "old.csv", "email,name,status,timezone,lists,attributes,created_at\n"
                                      "a@example.org,A,active,,readers,,2026-01-01T00:00:00\n"
                                      'b@example.org,B,unsubscribed,,readers,"{""x"": ""1""}",2026-01-01T00:00:00\n')
    report = cli("subscribers", "import", str(old), "--json").json()
    assert report["format"] == "newsletter" and report["added"] == 2
    assert _state(cli, "a@example.org") == ("active", None, {"readers": "confirmed"})
    assert _state(cli, "b@example.org") == ("unsubscribed", "unsubscribed", {"readers": "unsubscribed"})
    assert shown(cli, "b@example.org")["attributes"] == {"x": "1"}


def test_bad_list_statuses_are_reported_by_line(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email,status,list_statuses\n"
                                     'a@example.org,active,"{""readers"": ""maybe""}"\n'
                                     f'b@example.org,active,"{{""{LONG_LIST}"": ""confirmed""}}"\n'
                                     "c@example.org,gone,\n"
                                     'd@example.org,active,"{""readers"": ""confirmed""}"\n')
    report = cli("subscribers", "import", str(data), "--json").json()
    assert report["added"] == 1
    assert [e["line"] for e in report["errors"]] == [2, 3, 4]
    assert "unknown status 'maybe'" in report["errors"][0]["reason"]
    assert json.dumps(report["errors"][1]).count("101 characters") == 1


def test_markup_in_names_and_list_names_is_shown_as_written(workspace, cli, tmp_path):
    name, list_name = "[/bold] Ada [red]Lovelace", "[/]readers"
    added = cli("subscribers", "add", "ada@example.org", "--name", name, "--list", list_name, "--attr", "x=[/]")
    assert added.exit_code == 0 and f"on {list_name}" in added.stderr
    listed = cli("subscribers", "list")
    assert listed.exit_code == 0 and name in listed.stdout and list_name in listed.stdout
    person = cli("subscribers", "show", "ada@example.org")
    assert person.exit_code == 0 and name in person.stdout and "x=[/]" in person.stdout
    data = write(tmp_path / "[red]x[-].csv", "email\nada@example.org\nbad[/]\n")
    imported = cli("subscribers", "import", str(data), "--list", list_name)
    assert imported.exit_code == 0 and "bad[/]" in imported.stderr
    left = cli("subscribers", "unsubscribe", "ada@example.org", "--list", list_name)
    assert left.exit_code == 0 and f"from {list_name}" in left.stderr
