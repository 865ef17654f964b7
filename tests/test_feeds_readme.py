"""The README's feeds example runs as written: a blog's feed to a weekly digest, against a local blog."""

from __future__ import annotations

import email
import re
import shlex
from email import policy

import pytest

from support.feeds import FeedServer, posts
from support.readme import README

EXAMPLE_URL = "https://blog.example/feed.xml"


def example_steps() -> list[str]:
    """The commands of the section's first ```sh block, continuation lines joined, comments dropped."""
    section = README.split("\n## A blog's feed as newsletters", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def test_the_example_is_the_one_described():
    steps = example_steps()
    assert steps[0].startswith(f"newsletter feeds add {EXAMPLE_URL} ") and "--mode digest" in steps[0]
    assert [s.split()[2] for s in steps] == ["add", "show", "poll", "poll"]


@pytest.fixture
def blog():
    with FeedServer() as server:
        yield server


def test_the_readme_weekly_digest_runs(workspace, cli, blog):
    for n in range(2):
        assert cli("subscribers", "add", f"reader{n}@example.org", "--list", "readers").exit_code == 0
    url = blog.publish("/feed.xml", "rss", posts(1, 2))
    outputs = []
    polls = 0
    for step in example_steps():
        words = shlex.split(step.replace(EXAMPLE_URL, url))
        assert words[0] == "newsletter"
        if words[1:3] == ["feeds", "poll"] and polls == 0:
            blog.publish("/feed.xml", "rss", posts(1, 2, 3, 4))  # "during the week the blog publishes two posts"
        if words[1:3] == ["feeds", "poll"]:
            polls += 1
        result = cli(*words[1:])
        assert result.exit_code == 0, f"{step}\n{result.stderr}"
        outputs.append(result)
    assert "First poll: 2 item(s) recorded as already published; nothing sent" in outputs[0].stderr
    assert "Feed blog" in outputs[1].stdout and "mon 09:00 (Europe/London)" in outputs[1].stdout
    assert "2 new item(s) became campaigns" in outputs[2].stderr
    assert "not modified" in outputs[3].stderr
    mails = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
             for p in sorted((workspace / "outbox").glob("*.eml"))]
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == ["reader0@example.org", "reader1@example.org"]
    assert {m["Subject"] for m in mails} == {"New on Clinic Notes: 2 posts"}
