"""Tables and progress for people (issue #22): fit the terminal, never cut a status word, plain rows in a pipe,
import progress with units, a send's total known at once."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from newsletter.cli._common import import_progress_text, table
from newsletter.vocabulary import CampaignStatus, MembershipStatus, SubscriberStatus
from rich.cells import cell_len
from rich.console import Console

from support.cli import populate

COLUMNS = ["ID", "Status", "Article", "List", "Time", "UTC", "Audience", "Sent / Failed / Unknown / Pending"]
DROP = ("UTC", "Audience", "List")
LONG = "ketamine-therapy-explained-meaning-importance-and-top-benefit.txt"
STATUS_WORDS = sorted({str(s) for s in (*CampaignStatus, *SubscriberStatus, *MembershipStatus)})


def _render(width: int, rows: list[list[str]]) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system=None).print(table(None, COLUMNS, rows, drop=DROP))
    return out.getvalue()


def _row(status: str, article: str = LONG, list_name: str = "patients") -> list[str]:
    return ["12", status, article, list_name, "2026-12-01 09:00 EST", "2026-12-01 14:00 UTC", "1200", "0/0/0/1200"]


def test_at_80_columns_statuses_and_dates_are_whole_and_the_long_name_folds():
    text = _render(80, [_row("scheduled"), _row("sent", "welcome.md", "readers")])
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("│ scheduled │" in line for line in lines) and "2026-12-01 09:00 EST" in text
    assert "schedul…" not in text and "ketamin…" not in text  # the cut words
    assert "UTC, Audience left out to fit the terminal; --json has everything" in " ".join(text.split())
    article = "".join(line.split("│")[3].strip() for line in lines if line.startswith("│") and "│" in line[1:])
    assert LONG in article  # folded over lines, nothing lost


def test_a_wide_terminal_shows_every_column_on_one_line_a_row():
    text = _render(200, [_row("scheduled")])
    assert "left out" not in text
    assert sum(1 for line in text.splitlines() if LONG in line) == 1
    assert "Sent / Failed / Unknown / Pending" in text


@settings(max_examples=60, deadline=None)
@given(width=st.integers(80, 220),
       rows=st.lists(st.tuples(st.sampled_from(STATUS_WORDS),
                               st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=120),
                               st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)),
                     min_size=1, max_size=6))
def test_no_status_word_is_ever_cut(width, rows):
    text = _render(width, [_row(status, article, name) for status, article, name in rows])
    assert max(cell_len(line) for line in text.splitlines()) <= width  # terminal cells (zero-width marks count 0)
    status_cells = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    for status, _article, _name in rows:
        assert status in status_cells


def test_short_cells_that_cannot_all_fit_fold_the_widest_first_never_the_status():
    """Found by hypothesis: 24-character file names count as short cells; at 80 columns they must fold."""
    text = _render(80, [_row("unsubscribed", "0" * 24, "0")])
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert "unsubscribed" in [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]


def test_off_a_terminal_tables_are_plain_tab_separated_rows(workspace, cli, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text('email,name\npatricia@example.org,"Dubois, Patricia"\nmax@example.org,"Max\tTab"\n')
    assert cli("subscribers", "import", str(people), "--list", "patients").exit_code == 0
    cli("subscribers", "unsubscribe", "max@example.org", "--list", "patients")
    listed = cli("subscribers", "list", "--list", "patients").stdout.splitlines()
    assert listed[0] == "Email\tName\tAddress status\tStatus on patients\tLists"
    assert "patricia@example.org\tDubois, Patricia\tactive\tconfirmed\tpatients" in listed
    assert not any(mark in "".join(listed) for mark in "│┃━")
    assert all(line.count("\t") == 4 for line in listed)


def test_subscribers_list_help_explains_both_statuses(cli):
    text = " ".join(cli("subscribers", "list", "--help").stdout.split())
    assert '"Address status" is the address\'s own, for every list' in text
    assert '"Status on LIST" is the membership of that one list' in text


@pytest.mark.slow
def test_in_a_real_80_column_terminal_campaign_statuses_are_whole(workspace, cli, tmp_path):
    """The command itself, its stdout a pseudo-terminal 80 columns wide."""
    import pty

    populate(cli, tmp_path, 2, "patients")
    article = workspace / "articles" / "ketamine-therapy-explained-meaning-importance.md"
    article.write_text("---\ntitle: Ketamine Therapy Explained\n---\n\nHello.\n")
    scheduled = cli("schedule", str(article), "--list", "patients", "--at", "2030-12-01 09:00", "--tz",
                    "America/New_York")
    assert scheduled.exit_code == 0, scheduled.stderr
    controller, terminal = pty.openpty()
    environment = {**os.environ, "COLUMNS": "80", "LINES": "40", "TERM": "xterm", "NO_COLOR": "1"}
    child = subprocess.Popen([sys.executable, "-m", "newsletter", "campaigns", "list"], stdout=terminal,
                             stderr=subprocess.PIPE, env=environment, cwd=workspace)
    os.close(terminal)
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert child.wait(30) == 0, child.stderr.read()
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode("utf-8"))
    lines = text.replace("\r", "").splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("│ scheduled │" in line for line in lines), text
    assert "2030-12-01 09:00 EST" in text


def test_import_progress_says_megabytes_rows_and_a_rate():
    assert import_progress_text(131_072, 657_808, 1_200, 0.5) == "0.1/0.7 MB · 1,200 rows · 2,400 rows/s"
    assert import_progress_text(0, 10, 0, 0.0) == "0.0/0.0 MB · 0 rows"


def test_a_send_reports_its_total_before_the_first_batch(workspace, cli, tmp_path):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.dispatch import Watch

    populate(cli, tmp_path, 7)
    settings = load_settings(workspace)
    store = open_store(settings)
    try:
        plan = use.plan_send(store, settings, "articles/welcome.md", "readers")
        seen: list[tuple[int, int]] = []
        report = use.send_now(store, settings, plan, Watch(on_progress=lambda done, total: seen.append((done, total))))
    finally:
        store.close()
    assert report.sent == 7
    assert seen[0] == (0, 7)  # "0/7" at once, never "0/?"
    assert seen[-1] == (7, 7)
