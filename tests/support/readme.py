"""The README's quick start, read as the steps a new user types (shared by test_docs and test_new_user_day)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Step:
    """One command line of a ```sh block and its comment; ``exit_code`` is 1 when the comment says "exits 1"."""

    command: str
    comment: str

    @property
    def exit_code(self) -> int:
        return 1 if self.comment.startswith("exits 1") else 0


def quick_start_steps() -> list[Step]:
    """The commands of the quick start's ```sh blocks, continuation lines joined, in order."""
    section = README.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            match = re.match(r"^(?P<command>.*?)(?:\s+#\s*(?P<comment>.*))?$", line.strip())
            command = " ".join(match.group("command").split())
            if command and not command.startswith("#"):
                steps.append(Step(command, (match.group("comment") or "").strip()))
    return steps
