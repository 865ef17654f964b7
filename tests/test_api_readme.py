"""The README's HTTP API example runs as written: its curl commands against a started server (real HTTP)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from newsletter.audience import manage
from newsletter.config import load_settings
from newsletter.store.db import Store

from support.readme import README
from support.services import need_service
from support.web_server import running

EXAMPLE_BASE = "http://127.0.0.1:8000"


def example_steps() -> list[str]:
    """The commands of the section's ```sh block, continuation lines joined, comments dropped."""
    section = README.split("\n## HTTP API", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    steps = []
    for line in block.replace("\\\n", " ").splitlines():
        command = line.strip()
        if command and not command.startswith("#"):
            steps.append(re.sub(r"\s+#\s[^'\"]*$", "", command))
    return steps


def test_the_example_is_the_one_described():
    steps = example_steps()
    assert steps[0].startswith("newsletter tokens create clinic-website ")
    assert steps[1].startswith("export TOKEN=")
    assert [s.split()[0] for s in steps[2:]] == ["curl", "curl", "curl"]
    assert "/api/subscribers" in steps[2] and "/api/campaigns" in steps[3] and "/api/campaigns/1" in steps[4]


def test_the_readme_curl_commands_run_against_serve(workspace, cli):
    if shutil.which("curl") is None:
        need_service("curl is not installed (.ci/run installs it)")
    steps = example_steps()
    created = cli(*steps[0].split()[1:], "--json")
    assert created.exit_code == 0, created.stderr
    token = created.json()["token"]
    settings = load_settings(workspace)
    store = Store(settings.database_url)
    from newsletter.web.app import create_app

    try:
        with running(create_app(settings, store)) as base:
            answers = []
            for step in steps[2:]:
                done = subprocess.run(["bash", "-c", step.replace(EXAMPLE_BASE, base)], capture_output=True,
                                      text=True, timeout=60, env={**os.environ, "TOKEN": token})
                assert done.returncode == 0, f"{step}\n{done.stderr}"
                answers.append(done.stdout)
        import json

        added, scheduled, status = (json.loads(answer) for answer in answers)
        assert (added["email"], added["created"]) == ("ada@example.org", True)
        consent = manage.describe(store, "ada@example.org")["consent"]
        assert [(c["action"], c["source"], c["ip"]) for c in consent] == [("subscribe", "api:clinic-website",
                                                                           "127.0.0.1")]
        assert (scheduled["campaign_id"], scheduled["status"], scheduled["subject"], scheduled["audience"]) == (
            1, "scheduled", "Flu shots are here", 1)
        assert scheduled["scheduled_at"].startswith("2030-01-15T08:00:00")
        assert (status["campaign_id"], status["status"]) == (1, "scheduled")
    finally:
        store.close()
