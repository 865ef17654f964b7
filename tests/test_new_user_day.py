"""Issue #22's "done means": a new user's day, from the README's quick start, with the seed article as shipped.

Each quick-start line runs as typed, in a shell, in a fresh home: the first
compose fails with the hint, ``--save-link`` fixes the article (a backup
beside it), and every later command works without ``--recent-url``. Every
command the tool prints in a hint (``... with: newsletter ...``) is then
copied out of the output and run as printed (placeholders such as
``https://...`` or ``TIME`` filled in, as a person would); it must work too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from newsletter.cli import COMMANDS

from browser import artefact_path
from support.articles import RECENT, SEED
from support.readme import quick_start_steps

pytestmark = pytest.mark.slow

# "cd FOLDER && newsletter ..." or "newsletter ...", up to the end of the command: ; ( ) ` or the line's end.
HINT = re.compile(r"((?:cd \S+ && )?newsletter (?:" + "|".join(COMMANDS) + r")\b[^;()`\n]*)")
PLACEHOLDERS = {"https://...": RECENT, "TIME": '"2030-12-03 10:00"', "FILE": "~/Downloads/mailchimp-export.csv"}
SERVERS = ("newsletter run",)  # daemons: the README's own line is skipped (tests/test_daemon.py covers it)


@dataclass
class Day:
    home: Path
    environment: dict[str, str]
    cwd: Path = None  # type: ignore[assignment]
    log: list[str] = field(default_factory=list)

    def run(self, command: str, expect: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.environment, capture_output=True,
                                text=True, timeout=300)
        self.log.append(f"$ {command}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
        assert result.returncode == expect, "\n".join(self.log[-3:])
        assert "Traceback" not in result.stderr, result.stderr
        return result


def hints(output: str) -> list[str]:
    """The commands printed in ``output``, as a person would paste them (placeholders filled)."""
    found = []
    for command in HINT.findall(output):
        command = command.strip().rstrip(".,")
        for placeholder, value in PLACEHOLDERS.items():
            command = re.sub(rf"(?<![\w.]){re.escape(placeholder)}(?![\w.])", value, command)
        if command not in found:
            found.append(command)
    return found


def preview(day: Day, command: str) -> None:
    """Run a ``newsletter preview`` line headless; the page it prints must answer and show the article."""
    words = command.split() + ["--no-open", "--port", "0"]
    child = subprocess.Popen(words, cwd=day.cwd, env=day.environment, stderr=subprocess.PIPE, text=True)
    try:
        deadline, url = time.monotonic() + 60, None
        while url is None and time.monotonic() < deadline:
            line = child.stderr.readline()
            if not line:
                break
            match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        assert url, "the preview never said where it listens"
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "Ketamine Therapy Explained" in page.text
        state = httpx.get(url + "api/state", timeout=10).json()
        assert state["missing_link"] is None and state["error"] is None
        day.log.append(f"$ {command}  (served {url})")
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(30)


def test_a_new_users_day_from_the_readme(tmp_path):
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    (home / "Downloads" / "mailchimp-export.csv").write_text(
        "Email Address,First Name,Last Name\npatricia@example.org,Patricia,Dubois\ngrace@example.org,Grace,Hopper\n")
    (home / "Downloads" / "ketamine.txt").write_bytes(SEED.read_bytes())  # exactly as shipped: no URL
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("NEWSLETTER_") and name != "SENDGRID_API_KEY"}
    environment.update(HOME=str(home), COLUMNS="80",
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}")
    day = Day(home, environment, cwd=home)
    steps = quick_start_steps()
    steps = steps[next(i for i, step in enumerate(steps) if step.command.startswith("newsletter init ")):]
    assert not any(step.command.startswith("make ") for step in steps)  # make demo/test: test_docs says why
    readme_commands = {step.command for step in steps}
    pasted: list[str] = []
    article = home / "my-letter" / "articles" / "ketamine.txt"

    for step in steps:
        command = step.command
        if command.startswith("cd "):
            day.cwd = (day.cwd / command[3:].strip()).resolve()
            continue
        if command in SERVERS:
            continue
        if command.startswith("newsletter preview "):
            preview(day, command)
            continue
        result = day.run(command, expect=step.exit_code)
        output = result.stdout + result.stderr

        if command == "newsletter compose articles/ketamine.txt":  # the first compose of the seed
            assert "has no URL" in result.stderr
            assert ("newsletter compose articles/ketamine.txt --recent-url https://... --save-link"
                    in result.stderr)
        if "--save-link" in command:
            assert RECENT in article.read_text(encoding="utf-8").splitlines()
            assert (article.parent / "ketamine.txt.bak").read_bytes() == SEED.read_bytes()
        if command.endswith("--dry-run"):
            assert "Send it with: newsletter send articles/ketamine.txt --list patients --yes" in result.stderr
        if command.startswith("newsletter send") and step.exit_code == 1:  # the same article again
            assert "was already sent to patients: campaign 1 sent it to 2 subscriber(s) on " in result.stderr
            assert "newsletter campaigns show 1" in result.stderr

        for hint in hints(output):
            if hint in readme_commands or hint in SERVERS:
                continue  # the README runs it, in its place
            if hint.startswith("newsletter preview "):
                preview(day, hint)
            else:
                day.run(hint)
            pasted.append(hint)

    assert len(list((home / "my-letter" / "outbox").glob("*.eml"))) == 2  # Patricia and Grace, once each
    assert "newsletter campaigns cancel 2" in pasted  # the schedule's own hints were followed
    assert any(hint.startswith("cd ") for hint in pasted)  # init's "Next:" line, cd included
    assert len(pasted) >= 3, pasted
    artefact_path("new-user-day.log").write_text("\n".join(day.log), encoding="utf-8")  # what the user saw
