"""Our Message-IDs carry a random part: a rebuilt database with the same secret never repeats them.

Real parts: the CLI in-process sending through the file transport (one
``.eml`` per message), on SQLite and PostgreSQL, and the parsers that read
our ids back (events, VERP, SES tags).
"""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given
from hypothesis import strategies as st
from newsletter.config import load_settings
from newsletter.delivery import message_id
from newsletter.providers.ses.tags import message_id_from_tag, message_tags

from support.cli import populate
from support.stores import another_database

SECRET = "message-id-test-secret"


def sent_ids(workspace) -> set[str]:
    """The Message-IDs (without angle brackets) of every message in the workspace's outbox."""
    ids = set()
    for path in (workspace / "outbox").glob("*.eml"):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        ids.add(str(parsed["Message-ID"]).strip("<>"))
    return ids


def send_once(cli, tmp_path, workspace) -> set[str]:
    for path in (workspace / "outbox").glob("*.eml"):
        path.unlink()
    populate(cli, tmp_path, 3)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    ids = sent_ids(workspace)
    assert len(ids) == 3
    return ids


def test_two_fresh_databases_with_the_same_secret_give_different_ids(workspace, database_url, cli, tmp_path,
                                                                     monkeypatch):
    """The workspace (and its secret key file) stays; its database is replaced by an empty one."""
    keys = load_settings(workspace).secret_keys
    first = send_once(cli, tmp_path, workspace)
    with another_database(database_url, tmp_path) as rebuilt:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", rebuilt)
        second = send_once(cli, tmp_path, workspace)
    # The same campaign and delivery numbers in both databases...
    assert load_settings(workspace).secret_keys == keys
    parsed = [message_id.parse(i, message_id.tags(keys)) for i in first | second]
    assert all(parsed) and len({(p.campaign_id, p.delivery_id) for p in parsed}) == 3
    # ...and still no id in common.
    assert first.isdisjoint(second)


def test_a_campaigns_ids_are_stable_and_carry_its_nonce():
    nonce = message_id.new_nonce()
    made = message_id.id_template(SECRET, 42, "news@clinic.example", nonce=nonce)
    assert made == message_id.id_template(SECRET, 42, "news@clinic.example", nonce=nonce)
    assert made.format(7) == f"nl.{message_id.tag(SECRET)}.42.7.{nonce}@clinic.example"
    assert message_id.parse(made.format(7), message_id.tags([SECRET])) == message_id.OurMessageId(42, 7)


def test_each_campaign_draws_a_fresh_nonce():
    assert len({message_id.new_nonce() for _ in range(100)}) == 100


def test_a_campaign_stored_before_nonces_keeps_the_old_form_and_it_still_parses():
    old = message_id.id_template(SECRET, 3, "a@b.example").format(9)
    assert old == f"nl.{message_id.tag(SECRET)}.3.9@b.example"
    assert message_id.parse(old, message_id.tags([SECRET])) == message_id.OurMessageId(3, 9)


@pytest.mark.parametrize("nonce", ["XYZ", "abc", "0123456789abcdef0123456789abcdef0", "{}"])
def test_a_nonce_that_is_not_8_to_32_hex_characters_is_refused(nonce):
    with pytest.raises(ValueError, match="nonce"):
        message_id.id_template(SECRET, 1, "a@b.example", nonce=nonce)


@given(campaign=st.integers(1, message_id.MAX_ID), delivery=st.integers(1, message_id.MAX_ID))
def test_ids_with_a_nonce_read_back_through_events_verp_and_ses_tags(campaign, delivery):
    made = message_id.id_template(SECRET, campaign, "news@clinic.example", nonce=message_id.new_nonce())
    ours = made.format(delivery)
    ids = message_id.OurMessageId(campaign, delivery)
    assert message_id.parse(ours, message_id.tags([SECRET])) == ids
    verp = message_id.verp_tag(SECRET, ours)
    assert verp is not None and message_id.parse_verp_tag(verp, [SECRET]) == ids
    back = message_id.message_id_for(SECRET, ids, "clinic.example")
    assert message_id.parse(back, message_id.tags([SECRET])) == ids
    tag, = [t for t in message_tags(ours, str(campaign)) if t["Name"] == "newsletter_message"]
    assert message_id_from_tag(tag["Value"], "clinic.example") == ours


# -- events for mail of another database -----------------------------------------------------------

def test_an_event_whose_nonce_is_not_its_campaigns_matches_nothing(workspace):
    """After a rebuild with the same secret, campaign 1 delivery 1 is someone else: an event for the old
    mail (its id carries the old campaign's nonce) must not touch the new row or its subscriber."""
    from datetime import UTC, datetime

    from newsletter.events.pipeline import record_events
    from newsletter.store.db import open_store
    from newsletter.store.models import Campaign
    from newsletter.tracking import EventKind

    from support.events import SECRET as EVENTS_SECRET
    from support.events import event, seed_campaign, state

    store = open_store(load_settings())
    try:
        seeded = seed_campaign(store, ["ann@example.org"], secret=EVENTS_SECRET)
        ours, theirs = message_id.new_nonce(), message_id.new_nonce()
        with store.session() as session:
            session.get(Campaign, seeded.campaign_id).id_nonce = ours
        delivery = seeded.delivery_ids["ann@example.org"]
        made = {nonce: message_id.id_template(EVENTS_SECRET, seeded.campaign_id, "news@clinic.example",
                                              nonce=nonce).format(delivery) for nonce in (ours, theirs)}
        now = datetime.now(UTC)
        before = state(store, ["ann@example.org"])
        old = record_events(store, [event(EventKind.UNSUBSCRIBED, "ann@example.org", "ev-old",
                                          message_id=made[theirs])], [EVENTS_SECRET], now)
        assert (old["matched"], old["unmatched"]) == (0, 1)
        assert state(store, ["ann@example.org"]) == before  # still on the list, the ledger row untouched
        new = record_events(store, [event(EventKind.DELIVERED, "ann@example.org", "ev-new",
                                          message_id=made[ours])], [EVENTS_SECRET], now)
        assert (new["matched"], new["unmatched"]) == (1, 0)
        legacy = message_id.id_template(EVENTS_SECRET, seeded.campaign_id, "news@clinic.example",
                                        nonce="").format(delivery)  # no nonce (old form, or rebuilt from VERP)
        assert record_events(store, [event(EventKind.OPENED, "ann@example.org", "ev-legacy", message_id=legacy)],
                             [EVENTS_SECRET], now)["matched"] == 1
    finally:
        store.close()
