"""Sending to a segment, end to end through the CLI on SQLite and PostgreSQL.

A segment narrows its base list and copies nobody: the campaign is the
list's, its snapshot applies the filter, the unsubscribe link (and the page
it opens) name the base list, unsubscribing leaves that list, suppression
always applies, and dormant subscribers are left out unless --to-dormant.
"""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from newsletter.audience import manage
from newsletter.store import audience as q
from newsletter.vocabulary import address_hash

from support.web import open_site, path_of

PEOPLE = {
    # email: (city, tags)
    "ada@example.org": ("London", "vip"),
    "bob@example.org": ("London", ""),
    "cy@example.org": ("Paris", "vip"),
    "dee@example.org": ("London", "vip"),   # suppressed (a hard bounce elsewhere): never mailed
    "eve@example.org": ("London", "vip"),   # dormant: only with --to-dormant
}
WHERE = 'city = "London" and tag:vip'


@pytest.fixture
def audience(workspace, cli):
    assert cli("lists", "create", "readers", "--display-name", "Clinic Readers").exit_code == 0
    for email, (city, tags) in PEOPLE.items():
        added = cli("subscribers", "add", email, "--list", "readers", "--attr", f"city={city}")
        assert added.exit_code == 0, added.stderr
        if tags:
            assert cli("subscribers", "tag", email, "--add", tags).exit_code == 0
    assert cli("subscribers", "add", "ada@example.org", "--list", "other").exit_code == 0
    with open_site(None) as site, site.store.session() as session:
        q.suppress(session, address_hash("dee@example.org"), "bounced")
        from newsletter.store.models import Subscriber, utcnow
        from sqlalchemy import update
        session.execute(update(Subscriber).where(Subscriber.email_key == "eve@example.org")
                        .values(dormant_at=utcnow()))
    return workspace


def _outbox(workspace) -> dict[str, object]:
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in (workspace / "outbox").glob("*.eml")]
    return {m["To"].addresses[0].addr_spec: m for m in messages}


def test_a_segment_send_reaches_only_its_members_and_unsubscribing_leaves_the_base_list(audience, cli):
    created = cli("segments", "create", "london-vips", "--list", "readers", "--where", WHERE, "--json")
    assert created.exit_code == 0, created.stderr
    assert created.json()["count"] == 1  # ada; dee is suppressed, eve dormant
    shown = cli("segments", "show", "london-vips", "--json").json()
    assert (shown["count"], shown["dormant_left_out"]) == (1, 1)

    sent = cli("send", "articles/welcome.md", "--segment", "london-vips", "--yes", "--json")
    assert sent.exit_code == 0, sent.stderr
    report = sent.json()
    assert report["sent"] == 1
    outbox = _outbox(audience)
    assert set(outbox) == {"ada@example.org"}

    campaign = cli("campaigns", "show", str(report["campaign_id"]), "--json").json()
    assert (campaign["list"], campaign["segment"], campaign["where"]) == ("readers", "london-vips", WHERE)
    table = cli("campaigns", "show", str(report["campaign_id"]))
    assert "Audience: segment london-vips: " + WHERE in table.stdout

    # the one-click link is the base list's: the page names it, the POST leaves it (and only it)
    link = outbox["ada@example.org"]["List-Unsubscribe"].strip("<>").split(">")[0]
    with open_site(None) as site:
        page = site.client.get(path_of(link))
        assert "Unsubscribe from Clinic Readers" in page.text
        assert site.client.post(path_of(link), data={"List-Unsubscribe": "One-Click"}).status_code == 200
        lists = {entry["name"]: entry["status"] for entry in manage.describe(site.store, "ada@example.org")["lists"]}
    assert lists == {"readers": "unsubscribed", "other": "confirmed"}
    assert cli("segments", "count", "london-vips", "--json").json()["count"] == 0


def test_the_footer_names_the_base_list_and_its_one_click_leaves_only_that_list(audience, cli):
    """A segment's mail says whose it is (HTML and text: the base list's name, never the segment's), and its
    one-click POST ends that list alone: later mail to the base list skips the reader, another list still
    reaches them, and a suppressed member of the segment never gets any."""
    assert cli("segments", "create", "london-vips", "--list", "readers", "--where", WHERE).exit_code == 0
    sent = cli("send", "articles/welcome.md", "--segment", "london-vips", "--yes", "--json")
    assert sent.exit_code == 0, sent.stderr
    mail = _outbox(audience)["ada@example.org"]
    html = mail.get_body(("html",)).get_content()
    text = " ".join(mail.get_body(("plain",)).get_content().split())
    assert "You get this as a subscriber of Clinic Readers at ada@example.org." in html
    assert ">Unsubscribe from Clinic Readers</a>" in html
    assert "You get this as a subscriber of Clinic Readers at ada@example.org." in text
    link = mail["List-Unsubscribe"].strip("<>").split(">")[0]
    assert f"Unsubscribe from Clinic Readers: {link}" in text
    assert "london-vips" not in html + text

    with open_site(None) as site:
        assert site.client.post(path_of(link), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for old in (audience / "outbox").glob("*.eml"):
        old.unlink()
    whole = cli("send", "articles/welcome.md", "--list", "readers", "--again", "--yes", "--json")
    assert whole.exit_code == 0, whole.stderr
    assert set(_outbox(audience)) == {"bob@example.org", "cy@example.org"}  # not ada (left), dee (suppressed)
    for old in (audience / "outbox").glob("*.eml"):
        old.unlink()
    other = cli("send", "articles/welcome.md", "--list", "other", "--yes", "--json")
    assert other.exit_code == 0, other.stderr
    assert set(_outbox(audience)) == {"ada@example.org"}
    footer = " ".join(_outbox(audience)["ada@example.org"].get_body(("plain",)).get_content().split())
    assert "You get this as a subscriber of" in footer and "Clinic Readers" not in footer


def test_where_and_to_dormant_reach_the_dormant_and_never_the_suppressed(audience, cli):
    dry = cli("send", "articles/welcome.md", "--list", "readers", "--where", WHERE, "--to-dormant", "--dry-run",
              "--json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["audience"] == 2  # ada and eve; dee stays suppressed
    sent = cli("send", "articles/welcome.md", "--list", "readers", "--where", WHERE, "--to-dormant", "--yes",
               "--json")
    assert sent.exit_code == 0, sent.stderr
    assert set(_outbox(audience)) == {"ada@example.org", "eve@example.org"}
    assert cli("campaigns", "show", str(sent.json()["campaign_id"]), "--json").json()["to_dormant"] is True


def test_a_whole_list_send_skips_the_dormant(audience, cli):
    sent = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert set(_outbox(audience)) == {"ada@example.org", "bob@example.org", "cy@example.org"}


@pytest.mark.parametrize(("args", "words"), [
    (["--list", "readers", "--where", "city = and tag:vip"], "expected a value"),
    (["--segment", "nope"], "no segment named 'nope'"),
    (["--where", "tag:vip"], "say which list"),
    (["--list", "readers", "--where", 'city = "Rome"'], "nobody in readers matches the filter now"),
])
def test_bad_audiences_are_one_line_errors(audience, cli, args, words):
    result = cli("send", "articles/welcome.md", *args, "--yes")
    assert result.exit_code == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not (audience / "outbox").exists() or not list((audience / "outbox").glob("*.eml"))


def test_a_segment_over_two_lists_needs_the_base_list_named(audience, cli):
    created = cli("segments", "create", "both", "--list", "readers", "--list", "other", "--where", "tag:vip")
    assert created.exit_code == 0, created.stderr
    refused = cli("send", "articles/welcome.md", "--segment", "both", "--yes")
    assert refused.exit_code == 1 and "say which one to send to" in refused.stderr
    sent = cli("send", "articles/welcome.md", "--segment", "both", "--list", "other", "--yes", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert set(_outbox(audience)) == {"ada@example.org"}


def test_preview_renders_as_the_segments_members(audience, cli):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases.segments import resolve_audience
    from newsletter.web.preview import create_preview_app
    from starlette.testclient import TestClient

    assert cli("segments", "create", "london-vips", "--list", "readers", "--where", WHERE).exit_code == 0
    settings = load_settings()
    store = open_store(settings)
    try:
        target = resolve_audience(store, None, "london-vips")
        app = create_preview_app(settings, audience / "articles" / "welcome.md", store=store, watch=False,
                                 audience=target)
        with TestClient(app) as client:
            listed = client.get("/api/subscribers").json()
            assert [s["email"] for s in listed["subscribers"]] == ["ada@example.org"]
            assert listed["audience"] == "segment london-vips of readers"
            shown = client.get("/email.html", params={"as": "ada@example.org"})
            assert shown.status_code == 200
            assert "You get this as a subscriber of Clinic Readers at ada@example.org." in shown.text
    finally:
        store.close()
    refused = cli("preview", "articles/welcome.md", "--segment", "nope", "--no-open")
    assert refused.exit_code == 1 and "no segment named 'nope'" in refused.stderr


def test_a_scheduled_segment_send_records_the_filter_and_its_snapshot_applies_it(audience, cli):
    from datetime import UTC, datetime, timedelta

    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases.dispatch import ThisMachine, Watch

    assert cli("segments", "create", "london-vips", "--list", "readers", "--where", WHERE).exit_code == 0
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    scheduled = cli("schedule", "articles/welcome.md", "--segment", "london-vips", "--at", at, "--json")
    assert scheduled.exit_code == 0, scheduled.stderr
    assert scheduled.json()["audience"] == 1
    campaign_id = scheduled.json()["campaign_id"]
    shown = cli("campaigns", "show", str(campaign_id), "--json").json()
    assert (shown["status"], shown["segment"], shown["where"]) == ("scheduled", "london-vips", WHERE)
    listed = {row["id"]: row for row in cli("campaigns", "list", "--json").json()}
    assert listed[campaign_id]["audience"] == 1  # the segment's size, not the list's
    # bob joins the segment after scheduling: the snapshot, taken when sending starts, includes him
    assert cli("subscribers", "tag", "bob@example.org", "--add", "vip").exit_code == 0
    settings = load_settings()
    store = open_store(settings)
    try:
        ThisMachine(store, settings).start(campaign_id, Watch())
    finally:
        store.close()
    assert set(_outbox(audience)) == {"ada@example.org", "bob@example.org"}
    refused = cli("schedule", "articles/", "--segment", "london-vips", "--cron", "0 9 * * MON")
    assert refused.exit_code == 1 and "--cron sends to a whole list" in refused.stderr


def test_tag_counts_only_changes_on_both_databases(workspace, cli):
    """`subscribers tag --json` says how many tags it added and removed (PostgreSQL's driver reports no row
    count for an INSERT ... ON CONFLICT DO NOTHING: counted from RETURNING instead)."""
    for email in ("ada@example.org", "bob@example.org"):
        assert cli("subscribers", "add", email, "--list", "readers").exit_code == 0
    first = cli("subscribers", "tag", "ada@example.org", "bob@example.org", "--add", "vip", "--json")
    assert first.exit_code == 0, first.stderr
    assert (first.json()["added"], first.json()["removed"]) == (2, 0)
    again = cli("subscribers", "tag", "ada@example.org", "bob@example.org", "--add", "vip", "--json").json()
    assert (again["added"], again["removed"]) == (0, 0)
    gone = cli("subscribers", "tag", "ada@example.org", "--remove", "vip", "--json").json()
    assert (gone["added"], gone["removed"]) == (0, 1)
