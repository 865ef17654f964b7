"""The README's sequence example runs as written: the seed article and two follow-ups as onboarding.

Each line of the section's ```sh block runs in a workspace beside a copy of
the repository's examples/; ``newsletter run`` is the real daemon, stopped
once the welcome mail is in outbox/.
"""

from __future__ import annotations

import re
import shlex
import shutil
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

from support.readme import README
from test_daemon import Daemon, wait_until

ROOT = Path(__file__).resolve().parent.parent


def example_lines() -> list[str]:
    section = README.split("\n## Sequences: welcome mail and drip series", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, flags=re.S)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def messages(workspace: Path) -> list:
    return [message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted((workspace / "outbox").glob("*.eml")) if not p.name.startswith(".tmp-")]


def test_the_readme_sequence_example_runs(workspace, cli):
    shutil.copytree(ROOT / "examples", workspace.parent / "examples")
    lines = example_lines()
    assert lines[0] == "newsletter lists create readers" and "newsletter run" in lines
    outputs = {}
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["cp", "-r"]:
            shutil.copytree(workspace / words[2], workspace / words[3])
            continue
        assert words[0] == "newsletter"
        if words[1] == "run":
            daemon = Daemon(workspace)
            try:
                wait_until(lambda: len(messages(workspace)) == 1)
            finally:
                assert daemon.stop() == 0
            continue
        result = cli(*words[1:])
        assert result.exit_code == 0, f"{line}: {result.stderr}"
        outputs[" ".join(words[1:4])] = result.stdout

    welcome, = messages(workspace)
    assert welcome["To"].addresses[0].addr_spec == "ada@example.org"
    assert str(welcome["Subject"]) == "Welcome! Ketamine therapy explained"
    text = welcome.get_body(("plain",)).get_content()
    assert "Ketamine" in text and "https://blog.example.org/which-ketamine-therapy-type" in text
    planned = outputs["sequences show onboarding"]  # the last `show` (after the run)
    assert re.search(r"(?m)^0\t0d\t.*\t1\t0\t0\t0\t0$", planned), planned
    # the dry run (before the run): ada's three steps, the follow-ups at 09:00 her time (Paris)
    dry = cli("sequences", "show", "onboarding", "--dry-run", "--days", "14", "--json").json()
    assert [(r["step"], r["email"]) for r in dry["rows"]] == [(1, "ada@example.org"), (2, "ada@example.org")]
    for row in dry["rows"]:
        local = datetime.fromisoformat(row["when"]).astimezone(ZoneInfo("Europe/Paris"))
        assert local.strftime("%H:%M") == "09:00"
    shown = cli("sequences", "show", "onboarding", "--json").json()
    assert [s["subject"] for s in shown["steps"]] == [
        "Welcome! Ketamine therapy explained", "Which Ketamine Therapy Type Is Right for You?",
        "Questions to Ask Before Your First Session"]
    assert [(s["after"]) for s in shown["steps"]] == ["0d", "3d at 09:00", "1w at 09:00"]
