"""What the ``cli`` fixture returns, and filling a list through it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    """One in-process run of ``newsletter``: exit code, stdout and stderr."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def populate(cli, tmp_path: Path, count: int, list_name: str = "readers") -> list[str]:
    """Import ``count`` subscribers (reader0@example.org, ...) onto ``list_name``; returns their addresses."""
    emails = [f"reader{i}@example.org" for i in range(count)]
    data = tmp_path / f"people-{count}.csv"
    data.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
    result = cli("subscribers", "import", str(data), "--list", list_name, "--json")
    assert result.json()["added"] == count, result.stderr
    return emails
