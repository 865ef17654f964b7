"""Feeds under the real ``newsletter run`` process, on SQLite and PostgreSQL.

The clock is shortened, not faked: the feed is polled every second (``--every "* * * * * *"``, a cron
expression with seconds) and the daemon syncs every 0.2 s. The blog is a local web server in this test
process; the ``file`` transport writes each message to outbox/.
"""

from __future__ import annotations

import email
import re
import signal
from collections import Counter
from email import policy
from pathlib import Path

import pytest

from support.feeds import FeedServer, posts
from test_daemon import started_daemons, wait_until

pytestmark = pytest.mark.slow
EVERY_SECOND = "* * * * * *"


@pytest.fixture
def blog():
    with FeedServer() as server:
        yield server


@pytest.fixture
def daemons(workspace):
    with started_daemons(workspace) as start:
        yield start


def subscribe(cli, count: int) -> None:
    for n in range(count):
        assert cli("subscribers", "add", f"reader{n}@example.org", "--list", "readers").exit_code == 0


def recipients(folder: Path) -> Counter:
    """How many messages each address received (the file transport writes ``.tmp-*`` then renames: a
    message is there once renamed)."""
    return Counter(email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
                   for p in (folder / "outbox").glob("*.eml") if not p.name.startswith("."))


def add_feed(cli, url: str) -> None:
    result = cli("feeds", "add", url, "--list", "readers", "--every", EVERY_SECOND, "--name", "blog", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["first_poll"]["outcome"] == "baseline"


def editions(cli) -> list[dict]:
    return cli("feeds", "show", "blog", "--json").json()["editions"]


def test_the_daemon_sends_a_new_post_once_and_nothing_when_nothing_is_new(workspace, cli, blog, daemons):
    subscribe(cli, 3)
    url = blog.publish("/feed", "rss", posts(1))
    add_feed(cli, url)
    daemon = daemons()
    daemon.wait_for("feed blog: polled")
    daemon.wait_for("feed blog: not modified since the last poll")
    assert recipients(workspace) == Counter()
    blog.publish("/feed", "rss", posts(1, 2))
    wait_until(lambda: sum(recipients(workspace).values()) == 3)
    [edition] = editions(cli)
    wait_until(lambda: cli("campaigns", "show", edition["campaign_id"], "--json").json()["status"] == "sent")
    polls = len(blog.hits("/feed"))
    wait_until(lambda: len(blog.hits("/feed")) >= polls + 2)  # two more polls after the send: nothing new
    assert daemon.stop() == 0
    assert recipients(workspace) == Counter({f"reader{n}@example.org": 1 for n in range(3)})
    assert len(editions(cli)) == 1
    assert f"campaign {edition['campaign_id']}: sent" in daemon.text()


def test_a_poll_committed_before_a_kill_is_sent_once_by_the_next_daemon(workspace, cli, blog, daemons):
    """The state a daemon killed right after a poll's commit leaves: items recorded, a campaign scheduled."""
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.store.feeds import get_feed
    from newsletter.usecases.feeds import poll_feed

    subscribe(cli, 3)
    url = blog.publish("/feed", "atom", posts(1))
    add_feed(cli, url)
    blog.publish("/feed", "atom", posts(1, 2))
    settings = load_settings(workspace)
    store = open_store(settings)
    try:
        with store.session() as session:
            feed_id = get_feed(session, "blog").id
        [campaign_id] = poll_feed(store, settings, feed_id).campaigns  # committed; its sender "died" here
    finally:
        store.close()
    assert cli("campaigns", "show", campaign_id, "--json").json()["status"] == "scheduled"
    daemon = daemons()
    wait_until(lambda: cli("campaigns", "show", campaign_id, "--json").json()["status"] == "sent")
    daemon.wait_for("feed blog: not modified since the last poll")
    assert daemon.stop() == 0
    assert recipients(workspace) == Counter({f"reader{n}@example.org": 1 for n in range(3)})
    assert [e["campaign_id"] for e in editions(cli)] == [campaign_id]


def test_killed_mid_send_and_restarted_nobody_gets_the_post_twice(workspace, cli, blog, daemons):
    readers = 20
    subscribe(cli, readers)
    config = workspace / "newsletter.toml"
    # one batch of 5 a second: the kill lands while later batches are still due
    text = re.sub(r"(?m)^rate = .*$", "rate = 5", config.read_text())
    config.write_text(re.sub(r"(?m)^batch_size = .*$", "batch_size = 5", text))
    url = blog.publish("/feed", "json", posts(1))
    add_feed(cli, url)
    first = daemons()
    first.wait_for("feed blog: polled")
    blog.publish("/feed", "json", posts(1, 2))
    wait_until(lambda: sum(recipients(workspace).values()) > 0)  # mid-send: the first batch is out
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    [edition] = editions(cli)
    campaign_id = edition["campaign_id"]
    assert cli("campaigns", "show", campaign_id, "--json").json()["status"] == "sending"
    second = daemons()
    wait_until(lambda: cli("campaigns", "show", campaign_id, "--json").json()["status"] == "sent", timeout=120)
    polls = len(blog.hits("/feed"))
    wait_until(lambda: len(blog.hits("/feed")) >= polls + 2)  # the restarted daemon polls on: nothing new
    assert second.stop() == 0
    counts = cli("campaigns", "show", campaign_id, "--json").json()["counts"]
    # a row the kill caught between the provider call and its record is "unknown", never resent blindly
    assert counts["pending"] == 0 and counts["sending"] == 0 and counts["sent"] + counts["unknown"] == readers
    got = recipients(workspace)
    assert max(got.values()) == 1 and len(got) >= counts["sent"]
    assert [e["campaign_id"] for e in editions(cli)] == [campaign_id]  # the post became one campaign only
    assert "resuming" in second.text()
