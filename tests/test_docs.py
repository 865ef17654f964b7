"""The README stays true: every command and setting is documented, the quick start runs.

In the style of sqlite-utils' documentation tests: the command tree is walked
with click, the settings are found by reading the package's source, and the
quick start's shell blocks are run as written in a temporary home.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from newsletter.cli import cli as newsletter_cli

from support.articles import SEED
from support.readme import quick_start_steps

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()

# Quick-start lines that are not run here, and why.
NOT_RUN = {
    "make demo": "builds a virtual environment (network); the demo's commands are the ones run below",
    "make test": "runs this very test suite",
    "newsletter preview": "serves a live page for a browser until stopped (tests/test_preview*.py cover it)",
    "newsletter run": "the scheduler daemon runs until stopped (tests/test_daemon.py covers it)",
}


def command_paths(command: click.Command = newsletter_cli, path: tuple[str, ...] = ()):
    """Every command's words after ``newsletter`` (``("campaigns", "show")``), groups included."""
    context = click.Context(command, info_name=" ".join(path) or "newsletter")
    if path:
        yield path
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            yield from command_paths(command.get_command(context, name), (*path, name))


def test_the_command_tree_is_walked():
    paths = set(command_paths())
    assert {("send",), ("subscribers",), ("subscribers", "import"), ("campaigns", "show")} <= paths


@pytest.mark.parametrize("path", sorted(command_paths()), ids=" ".join)
def test_every_command_is_in_the_readme(path):
    words = re.escape(" ".join(path))
    # as `newsletter campaigns show ...` or, in running text, as `campaigns show ...`
    assert re.search(rf"(newsletter |`){words}(?![\w-])", README), f"README never mentions newsletter {' '.join(path)}"


def environment_variables() -> list[str]:
    """Every ``NEWSLETTER_*`` name the package's source reads."""
    names = set()
    for source in (ROOT / "newsletter").rglob("*.py"):
        names.update(re.findall(r"\bNEWSLETTER_[A-Z][A-Z0-9_]*\b", source.read_text()))
    return sorted(names)


def test_the_package_reads_environment_variables():
    assert {"NEWSLETTER_DATABASE_URL", "NEWSLETTER_HOME"} <= set(environment_variables())


@pytest.mark.parametrize("name", environment_variables())
def test_every_environment_variable_is_in_the_configuration_table(name):
    configuration = README.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    assert f"`{name}`" in configuration, f"{name} is read by the code but not documented under Configuration"


def quick_start_lines() -> list[str]:
    """The commands of the quick start's ```sh blocks, continuation lines joined, comments dropped."""
    return [step.command for step in quick_start_steps()]


def test_the_quick_start_has_commands_and_every_skip_is_one_of_them():
    lines = quick_start_lines()
    assert any(line.startswith("newsletter init ") for line in lines)
    for prefix in NOT_RUN:  # a skip for a line the README no longer has is stale
        assert any(line == prefix or line.startswith(prefix + " ") for line in lines), prefix


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path):
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    (home / "Downloads" / "mailchimp-export.csv").write_text(
        "Email Address,First Name,Last Name\nada@example.org,Ada,Lovelace\ngrace@example.org,Grace,Hopper\n")
    (home / "Downloads" / "ketamine.txt").write_bytes(SEED.read_bytes())  # the seed article as shipped, no URL
    to_run = [step for step in quick_start_steps()
              if not any(step.command == prefix or step.command.startswith(prefix + " ") for prefix in NOT_RUN)]
    script = "set -e\n" + "".join(
        f"echo '$ {step.command}'\n{step.command}\n" if step.exit_code == 0 else  # "# exits 1": it must
        f"echo '$ {step.command}'\nset +e\n{step.command}\ncode=$?\nset -e\n"
        f"[ $code -eq 1 ] || {{ echo 'expected exit 1, got '$code; exit 1; }}\n"
        for step in to_run)
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("NEWSLETTER_") and name != "SENDGRID_API_KEY"}
    environment.update(HOME=str(home), NEWSLETTER_TRANSPORT="file",
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}")
    result = subprocess.run(["bash", "-c", script], cwd=home, env=environment, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    letter = home / "my-letter"
    assert (letter / "newsletter.toml").is_file() and list((letter / "build").glob("*.eml"))
    assert "$ newsletter campaigns list" in result.stdout  # the script got to its last line
