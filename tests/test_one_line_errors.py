"""Failures people meet are one line and a hint, exit 1, never a traceback (issue 11).

The ``cli`` fixture runs the command in-process: an exception that is not
turned into one line escapes it and fails the test with its traceback.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.articles import RECENT, SEED


def one_line(result, *words):
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("Error: ") and lines[-1].startswith("Hint: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("at, zone", [
    ("9999-12-31 23:59", "America/New_York"),  # the zone's offset overflows past year 9999
    ("9999-12-31T23:59:59-14:00", None),
    ("9999-12-31 23:59", "Pacific/Kiritimati"),
    ("9999-12-31 23:00", None),
])
def test_schedule_and_reschedule_near_year_9999(workspace, cli, at, zone):
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    tz = ("--tz", zone) if zone else ()
    one_line(cli("schedule", SEED, "--list", "readers", "--at", at, *tz, "--recent-url", RECENT), at)
    if "T" not in at:  # waves in each subscriber's zone add offsets of their own
        one_line(cli("schedule", SEED, "--list", "readers", "--at", at, *tz, "--local-time", "--recent-url", RECENT),
                 at)
    ok = cli("schedule", SEED, "--list", "readers", "--at", "2030-01-01 09:00", "--recent-url", RECENT, "--json")
    assert ok.exit_code == 0, ok.stderr
    one_line(cli("campaigns", "reschedule", str(ok.json()["campaign_id"]), "--at", at, *tz), at)
    assert [c["status"] for c in cli("campaigns", "list", "--json").json()] == ["scheduled"]


def test_a_mistyped_year_is_caught(workspace, cli):
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    one_line(cli("schedule", SEED, "--list", "readers", "--at", "2206-01-01 09:00", "--recent-url", RECENT),
             "more than ten years ahead")


def test_an_impossible_front_matter_date(plain_workspace, cli, tmp_path):
    article = tmp_path / "a.md"
    article.write_text("---\ntitle: Budget\ndate: 2026-02-30\n---\nText.\n")
    one_line(cli("compose", str(article)), "impossible date", "a.md")
    article.write_text("---\ntitle: Budget\ndate: \"2026-02-30\"\n---\nText.\n")
    one_line(cli("check", str(article)), "is not a date")


@pytest.mark.parametrize("expression, words", [
    ("{{ 1/0 }}", ("ZeroDivisionError",)),
    ("{{ '%d' % article.title }}", ("TypeError",)),
])
def test_a_template_runtime_error_names_file_and_line(plain_workspace, cli, expression, words):
    theme = plain_workspace / "templates" / "broken"
    theme.mkdir(parents=True)
    (theme / "email.mjml.j2").write_text(f"<mjml>\n<mj-body>\n<mj-section><mj-column><mj-text>\n{expression}\n"
                                         "</mj-text></mj-column></mj-section>\n</mj-body></mjml>\n")
    one_line(cli("compose", SEED, "--theme", "broken", "--recent-url", RECENT),
             f"{theme / 'email.mjml.j2'}:4", *words)


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)",
                                 "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)",
                                 "java\tscript:alert(1)", "//evil.example/x", "https://ok.example/\nx"])
def test_an_unsafe_recently_published_url_is_refused(plain_workspace, cli, tmp_path, url):
    one_line(cli("compose", SEED, "--recent-url", url), "not a web address")
    one_line(cli("check", SEED, "--recent-url", url), "not a web address")
    article = tmp_path / "a.md"
    article.write_text(f"---\ntitle: Hello readers\nrecently_published:\n  title: Older\n  url: {url!r}\n---\nHi.\n"
                       .replace("'", '"'))
    one_line(cli("compose", str(article)), "not a web address")


def test_the_sqlite_database_locked_longer_than_the_busy_timeout(plain_workspace, cli, monkeypatch):
    from newsletter.store import db

    cli("subscribers", "add", "ada@example.org")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(plain_workspace / ".newsletter" / "newsletter.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        one_line(cli("subscribers", "add", "bob@example.org"), "database is locked", "0.2 s")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli("subscribers", "add", "bob@example.org").exit_code == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_behind_stdout_is_one_line(plain_workspace, cli):
    for i in range(50):
        cli("subscribers", "add", f"reader{i}@example.org", "--name", "Reader " * 20)
    with open("/dev/full", "w") as full:  # every write to it fails with ENOSPC
        done = subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "export"], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: no space left on the device") and "Hint: free some disk space" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_full_disk_while_writing_a_file_keeps_the_old_one(plain_workspace, cli, monkeypatch, tmp_path):
    import errno

    out = tmp_path / "export.csv"
    out.write_text("the previous export\n")
    cli("subscribers", "add", "ada@example.org")

    def no_space(_fd):  # the disk fills up as the data is forced to it (there is no portable full disk)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    one_line(cli("subscribers", "export", "--output", str(out)), "no space left", str(out))
    assert out.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export")) == []


def test_an_output_folder_that_cannot_be_written_is_one_line(plain_workspace, cli, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    one_line(cli("subscribers", "export", "--output", str(blocker / "export.csv")), "cannot write")
    one_line(cli("compose", SEED, "--recent-url", RECENT, "--out", str(blocker / "build")), "cannot create")
