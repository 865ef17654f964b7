"""Import and export through the CLI: formats, bad rows, atomicity, injection."""

from __future__ import annotations

import csv
import io
import json

import pytest


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def people(cli, *args):
    return {r["email"]: r for r in cli("subscribers", "list", *args, "--json").json()}


def test_plain_csv_with_bad_rows_reports_lines_and_keeps_the_rest(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv",
                 "Email,Name,City\n"
                 "ada@example.org,Ada,London\n"
                 "not-an-email,Bad,Paris\n"
                 "\"bob@example.org\",\"Bob\nSmith\",Lagos\n"
                 "\"x@example.org\r\nBcc: y@example.org\",Evil,\n"
                 "carol@example.org,Carol,Lima,extra\n"
                 "ADA@example.org,Ada Again,\n")
    result = cli("subscribers", "import", str(data), "--list", "readers", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert (report["added"], report["updated"], report["skipped"]) == (2, 0, 1)
    lines = {e["line"]: e["reason"] for e in report["errors"]}
    assert report["invalid"] == len(lines) == 3
    assert set(lines) == {3, 6, 8}  # quoted newlines make bob span lines 4-5, the header-breaker 6-7
    assert "line break" in lines[6]
    assert "cells" in lines[8]
    stored = people(cli, "--list", "readers")
    assert set(stored) == {"ada@example.org", "bob@example.org"}
    assert stored["bob@example.org"]["name"] == "Bob Smith"  # a line break never reaches a header
    assert report["skipped_rows"] == [{"line": 9, "reason": "the same address as line 2"}]
    shown = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert shown["attributes"] == {"city": "London"} and shown["name"] == "Ada"
    assert shown["consent"][0]["source"] == "import:s.csv"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_bom_and_other_delimiters(workspace, cli, tmp_path, delimiter):
    data = write(tmp_path / "s.csv", f"\ufeffemail{delimiter}first_name{delimiter}last_name\n"
                                     f"zoe@example.org{delimiter}Zoë{delimiter}Ng\n"
                 )
    report = cli("subscribers", "import", str(data), "--json").json()
    assert report["added"] == 1 and report["invalid"] == 0
    assert people(cli)["zoe@example.org"]["name"] == "Zoë Ng"


def test_non_utf8_file_is_refused_whole_with_a_hint(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email,name\n" + "".join(f"p{i}@example.org,P\n" for i in range(3000))
                 + "zoe@example.org,Zoé\n", encoding="latin-1")
    result = cli("subscribers", "import", str(data), "--list", "readers")
    assert result.exit_code == 1
    assert "not utf-8 text" in result.stderr and "--encoding latin-1" in result.stderr
    assert "Traceback" not in result.stderr
    assert people(cli) == {}  # atomic: the first chunks were rolled back too
    ok = cli("subscribers", "import", str(data), "--encoding", "latin-1", "--json").json()
    assert ok["added"] == 3001 and people(cli)["zoe@example.org"]["name"] == "Zoé"


def test_reimport_changes_nothing_and_dry_run_writes_nothing(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email,name\na@example.org,A\nb@example.org,B\n")
    dry = cli("subscribers", "import", str(data), "--list", "readers", "--dry-run", "--json").json()
    assert dry["added"] == 2 and dry["dry_run"] is True
    assert people(cli) == {} and cli("lists", "list", "--json").json() == []
    assert cli("subscribers", "import", str(data), "--list", "readers", "--json").json()["added"] == 2
    again = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert (again["added"], again["updated"], again["skipped"]) == (0, 0, 2)
    changed = write(tmp_path / "t.csv", "email,name\na@example.org,Alice\nb@example.org,B\n")
    update = cli("subscribers", "import", str(changed), "--list", "readers", "--json").json()
    assert (update["added"], update["updated"], update["skipped"]) == (0, 1, 1)
    assert people(cli)["a@example.org"]["name"] == "Alice"


def test_interrupted_import_leaves_store_as_it_was(workspace, cli, tmp_path, monkeypatch):
    cli("subscribers", "add", "kept@example.org", "--list", "readers")
    rows = "".join(f"p{i}@example.org,P{i}\n" for i in range(5000))
    data = write(tmp_path / "s.csv", "email,name\n" + rows)
    from newsletter.store import importing

    calls = {"n": 0}
    original = importing.ImportWriter.write

    def crash_on_second_chunk(self, chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, chunk)

    monkeypatch.setattr(importing.ImportWriter, "write", crash_on_second_chunk)
    result = cli("subscribers", "import", str(data), "--list", "readers")
    assert result.exit_code == 1 and "aborted" in result.stderr
    assert list(people(cli)) == ["kept@example.org"]


def test_suppressed_addresses_are_skipped_unless_resubscribe(workspace, cli, tmp_path):
    cli("subscribers", "add", "gone@example.org")
    cli("subscribers", "remove", "gone@example.org", "--yes")
    data = write(tmp_path / "s.csv", "email\nGONE@example.org\nnew@example.org\n")
    report = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert (report["added"], report["skipped"]) == (1, 1)
    assert set(people(cli)) == {"new@example.org"}
    report = cli("subscribers", "import", str(data), "--list", "readers", "--resubscribe", "--json").json()
    assert report["added"] == 1
    assert set(people(cli)) == {"new@example.org", "GONE@example.org"}


def test_mailchimp_subscribed_unsubscribed_and_cleaned_exports(workspace, cli, tmp_path):
    header = "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_IP,TIMEZONE"
    subscribed = write(tmp_path / "subscribed.csv",
                       f"{header}\nada@example.org,Ada,Lovelace,4,203.0.113.9,Europe/London\n")
    unsubscribed = write(tmp_path / "unsubscribed.csv",
                         f"{header},UNSUB_TIME,UNSUB_REASON\nbob@example.org,Bob,,2,,,2024-01-02 10:00:00,spam\n")
    cleaned = write(tmp_path / "cleaned.csv", f"{header},CLEAN_TIME\ncat@example.org,Cat,,1,,,2024-03-04\n")
    for path in (subscribed, unsubscribed, cleaned):
        report = cli("subscribers", "import", str(path), "--list", "readers", "--json").json()
        assert report["format"] == "mailchimp" and report["added"] == 1, report
    ada = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert ada["name"] == "Ada Lovelace" and ada["timezone"] == "Europe/London"
    assert ada["attributes"] == {"member_rating": "4"} and ada["consent"][0]["ip"] == "203.0.113.9"
    bob = cli("subscribers", "show", "bob@example.org", "--json").json()
    assert bob["status"] == "unsubscribed" and bob["lists"][0]["status"] == "unsubscribed"
    assert bob["suppressed"] == "unsubscribed"
    cat = cli("subscribers", "show", "cat@example.org", "--json").json()
    assert cat["status"] == "bounced" and cat["suppressed"] == "bounced"
    confirmed = people(cli, "--list", "readers", "--status", "confirmed")
    assert list(confirmed) == ["ada@example.org"]


def test_listmonk_substack_buttondown_detected(workspace, cli, tmp_path):
    listmonk = write(tmp_path / "listmonk.csv",
                     'uuid,email,name,attributes,status\n1,lm@example.org,LM,"{""city"": ""Oslo"", ""n"": 3}",enabled\n'
                     '2,blocked@example.org,B,{},blocklisted\n3,bad@example.org,X,not json,enabled\n')
    substack = write(tmp_path / "substack.csv",
                     "email,active_subscription,expiry,plan,email_disabled,created_at\n"
                     "ss@example.org,false,,free,false,2024-01-01\noff@example.org,false,,free,true,2024-01-01\n")
    buttondown = write(tmp_path / "buttondown.csv",
                       'email,creation_date,notes,metadata,tags,subscriber_type\n'
                       'bd@example.org,2024-01-01,,"{""plan"": ""gold""}",vip,regular\n'
                       'wait@example.org,2024-01-01,,,,unactivated\nleft@example.org,2024-01-01,,,,unsubscribed\n')
    results = {}
    for path in (listmonk, substack, buttondown):
        results[path.stem] = cli("subscribers", "import", str(path), "--list", "readers", "--json").json()
    assert results["listmonk"]["format"] == "listmonk" and results["listmonk"]["errors"][0]["line"] == 4
    assert results["substack"]["format"] == "substack"
    assert results["buttondown"]["format"] == "buttondown"

    def shown(email):
        return cli("subscribers", "show", email, "--json").json()

    assert shown("lm@example.org")["attributes"] == {"city": "Oslo", "n": "3"}
    assert shown("blocked@example.org")["status"] == "unsubscribed"
    assert shown("off@example.org")["status"] == "unsubscribed"
    assert shown("ss@example.org")["attributes"]["plan"] == "free"
    assert shown("bd@example.org")["attributes"] == {"plan": "gold"}  # its tags column is tags now (segments)
    assert shown("wait@example.org")["lists"][0]["status"] == "pending"
    assert shown("left@example.org")["status"] == "unsubscribed"


def test_missing_or_headerless_file_is_one_line_error(workspace, cli, tmp_path):
    missing = cli("subscribers", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    headerless = write(tmp_path / "h.csv", "ada@example.org,Ada\n")
    result = cli("subscribers", "import", str(headerless))
    assert result.exit_code == 1 and "no email column" in result.stderr and "Hint:" in result.stderr


def test_export_csv_neutralises_formulas_and_round_trips(workspace, cli, tmp_path):
    cli("subscribers", "add", "ada@example.org", "--name", "=HYPERLINK(\"http://evil\")", "--list", "readers",
        "--attr", "note=+1", "--attr", "city=@home")
    cli("subscribers", "add", "bob@example.org", "--name", "-Bob", "--list", "other")
    out = tmp_path / "out.csv"
    assert cli("subscribers", "export", "--list", "readers", "--output", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["email"] for r in rows] == ["ada@example.org"]
    assert rows[0]["name"] == "'=HYPERLINK(\"http://evil\")"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@"))
    everything = cli("subscribers", "export", "--format", "json").stdout
    records = json.loads(everything)
    assert {r["email"] for r in records} == {"ada@example.org", "bob@example.org"}
    assert next(r for r in records if r["email"] == "ada@example.org")["attributes"] == {"note": "+1", "city": "@home"}


def test_export_of_unknown_list_fails_without_writing(workspace, cli, tmp_path):
    out = tmp_path / "out.csv"
    result = cli("subscribers", "export", "--list", "ghosts", "--output", str(out))
    assert result.exit_code == 1 and not out.exists()


def test_big_files_are_parsed_in_a_child_process_with_the_same_results(workspace, cli, tmp_path, monkeypatch):
    from newsletter.audience import parsing

    monkeypatch.setattr(parsing, "PROCESS_THRESHOLD", 0)
    rows = "".join(f"p{i}@example.org,P{i}\n" for i in range(4500)) + "broken,Row\n"
    data = write(tmp_path / "s.csv", "email,name\n" + rows)
    report = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert (report["added"], report["invalid"]) == (4500, 1)
    assert report["errors"] == [{"line": 4502, "reason": "'broken' is not a valid address: "
                                 "An email address must have an @-sign."}]
    assert len(people(cli, "--list", "readers")) == 4500
    latin = write(tmp_path / "l.csv", "email,name\n" + rows + "zoe@example.org,Zoé\n", encoding="latin-1")
    refused = cli("subscribers", "import", str(latin), "--list", "readers")
    assert refused.exit_code == 1 and "not utf-8 text" in refused.stderr


def test_a_huge_cell_refuses_its_row_only(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email,name,notes\n" f"big@example.org,{'x' * 200_000},\n"
                 f"note@example.org,Note,{'n' * 300_000}\nok@example.org,Ok,fine\n")
    report = cli("subscribers", "import", str(data), "--json").json()
    assert report["added"] == 1
    assert [(e["line"], e["reason"]) for e in report["errors"]] == [
        (2, "the name has 200000 characters, more than 200"),
        (3, "the attribute 'notes' has 300000 characters, more than 10000")]


def test_an_unknown_encoding_is_one_line(workspace, cli, tmp_path):
    data = write(tmp_path / "s.csv", "email\nada@example.org\n")
    result = cli("subscribers", "import", str(data), "--encoding", "klingon")
    assert result.exit_code == 1 and "unknown encoding 'klingon'" in result.stderr and "Hint:" in result.stderr
