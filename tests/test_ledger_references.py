"""The ledger's references kept by the store (migration 0017), on SQLite and PostgreSQL.

``deliveries`` has no foreign keys to campaigns and subscribers any more
(they cost a send's snapshot two checks and a lock per row). What the
database's cascades did, the store does: erasing a subscriber deletes their
ledger rows, deleting a campaign deletes its rows, and a row whose
subscriber vanished while the snapshot was taken is deleted by the claim
that meets it (never sent, never left pending).
"""

from __future__ import annotations

import pytest
from newsletter.audience import manage
from newsletter.store import ledger
from newsletter.store.db import Store
from newsletter.store.models import Campaign, Delivery, MailingList, Subscriber
from newsletter.vocabulary import LedgerStatus
from sqlalchemy import func, inspect, select, text

from support.imports import import_file

READERS = [f"r{i}@example.org" for i in range(6)]


@pytest.fixture
def ledger_store(database_url, tmp_path):
    """A store with six readers on ``readers`` and two campaigns, both snapshotted (12 ledger rows)."""
    store = Store(database_url)
    import_file(store, tmp_path, "r.csv", "email\n" + "".join(f"{a}\n" for a in READERS), list_name="readers")
    ids = []
    with store.session() as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.name == "readers"))
        edition = ledger.save_edition(session, slug="s", subject="S", html="<p>x</p>", text="x")
        for _ in range(2):
            row = Campaign(edition_id=edition.id, list_id=list_id, list_name="readers", status="sending",
                           transport="file", sender="host:1:a")
            session.add(row)
            session.flush()
            assert ledger.snapshot_audience(session, row.id, list_id) == len(READERS)
            ids.append(row.id)
    yield store, ids, list_id
    store.close()


def _rows(store, **where) -> list[tuple[int, str]]:
    with store.session() as session:
        query = select(Delivery.campaign_id, Delivery.email).order_by(Delivery.campaign_id, Delivery.id)
        for name, value in where.items():
            query = query.where(getattr(Delivery, name) == value)
        return [tuple(row) for row in session.execute(query)]


def _subscriber_id(store, email: str) -> int:
    with store.session() as session:
        return session.scalar(select(Subscriber.id).where(Subscriber.email == email))


def test_deliveries_carry_no_foreign_keys(ledger_store):
    store, _, _ = ledger_store
    assert inspect(store.engine).get_foreign_keys("deliveries") == []


def test_erasing_a_subscriber_deletes_their_ledger_rows_and_only_theirs(ledger_store):
    store, (first, second), _ = ledger_store
    gone = _subscriber_id(store, READERS[2])
    manage.erase(store, READERS[2])
    assert _rows(store, subscriber_id=gone) == []
    remaining = _rows(store)
    assert len(remaining) == 2 * (len(READERS) - 1)
    assert READERS[2] not in {email for _, email in remaining}
    assert {campaign for campaign, _ in remaining} == {first, second}


def test_deleting_a_campaign_deletes_its_ledger_rows_and_only_its(ledger_store):
    store, (first, second), _ = ledger_store
    with store.session() as session:
        ledger.delete_campaign(session, first)
    with store.session() as session:
        assert session.get(Campaign, first) is None
        assert session.get(Campaign, second) is not None
    assert _rows(store, campaign_id=first) == []
    assert [email for _, email in _rows(store, campaign_id=second)] == READERS


def _vanish(store, email: str) -> int:
    """Remove a subscriber behind the store's back, as an erase committing during a snapshot leaves it."""
    subscriber_id = _subscriber_id(store, email)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM memberships WHERE subscriber_id = :i"), {"i": subscriber_id})
        connection.execute(text("DELETE FROM subscribers WHERE id = :i"), {"i": subscriber_id})
    return subscriber_id


def test_a_claim_deletes_a_row_whose_subscriber_vanished_and_sends_the_rest(ledger_store):
    store, (first, _), list_id = ledger_store
    vanished = _vanish(store, READERS[1])
    with store.session() as session:
        claim = ledger.claim_pending(session, first, list_id, 0, 100)
    assert claim is not None
    assert [c.email for c in claim.rows] == [a for a in READERS if a != READERS[1]]
    assert claim.skipped == 0
    assert claim.seen == len(READERS)
    assert _rows(store, campaign_id=first, subscriber_id=vanished) == []
    with store.session() as session:
        counts = ledger.counts(session, first)
        assert counts[LedgerStatus.SENDING] == len(READERS) - 1
        assert counts[LedgerStatus.PENDING] == 0
        assert ledger.claim_pending(session, first, list_id, claim.last_id, 100) is None


def test_a_range_claim_deletes_a_row_whose_subscriber_vanished(ledger_store):
    store, (_, second), list_id = ledger_store
    vanished = _vanish(store, READERS[4])
    with store.session() as session:
        low, high = session.execute(select(func.min(Delivery.id), func.max(Delivery.id))
                                    .where(Delivery.campaign_id == second)).one()
        batch = ledger.claim_range(session, second, list_id, low, high, 100)
    assert [c.email for c in batch if c.eligible] == [a for a in READERS if a != READERS[4]]
    assert [c.gone for c in batch].count(True) == 1
    assert _rows(store, campaign_id=second, subscriber_id=vanished) == []
    with store.session() as session:
        assert ledger.settle_if_done(session, second, "sending", "sending") is False  # rows are in flight
        assert ledger.pending_in_range(session, second, low, high) == 0


def test_a_suppressed_reader_is_still_skipped_not_deleted(ledger_store):
    store, (first, _), list_id = ledger_store
    manage.unsubscribe(store, READERS[0], list_name="readers")
    with store.session() as session:
        claim = ledger.claim_pending(session, first, list_id, 0, 100)
        assert claim is not None
        assert claim.skipped == 1
        assert ledger.counts(session, first)[LedgerStatus.SKIPPED] == 1
    assert len(_rows(store, campaign_id=first)) == len(READERS)


def test_upgrade_keeps_the_ledger_and_a_downgrade_restores_the_keys(database_url):
    """0009 -> 0017 keeps every row (SQLite rebuilds the table); back to 0009 the keys return, without
    the rows whose subscriber is gone (they would break them)."""
    from newsletter.store.db import create_db_engine

    from test_store import _upgrade_to

    store = Store(database_url)  # at the newest revision: build a ledger the store's way
    store.close()
    _upgrade_to(database_url, "0009", down=True)
    engine = create_db_engine(database_url)
    try:
        assert {key["referred_table"] for key in inspect(engine).get_foreign_keys("deliveries")} == {
            "campaigns", "subscribers"}
        now = "2026-01-01 00:00:00"
        with engine.begin() as connection:
            for i in (1, 2):
                connection.execute(text(
                    "INSERT INTO subscribers (id, email, email_key, email_hash, name, attributes, status, "
                    "created_at, updated_at) VALUES (:i, :e, :e, :h, '', '{}', 'active', :t, :t)"),
                    {"i": i, "e": f"r{i}@example.org", "h": f"{i:064d}", "t": now})
            connection.execute(text("INSERT INTO editions (id, slug, subject, preheader, html, text, theme, "
                                    "article_path, tags, created_at) VALUES (1, 's', 'S', '', 'h', 't', 'default',"
                                    " '', '[]', :t)"), {"t": now})
            connection.execute(text("INSERT INTO campaigns (id, edition_id, list_name, status, transport, "
                                    "created_at, error) VALUES (1, 1, 'readers', 'sent', 'file', :t, '')"),
                               {"t": now})
            for i in (1, 2):
                connection.execute(text("INSERT INTO deliveries (id, campaign_id, subscriber_id, email, status, "
                                        "attempts) VALUES (:i, 1, :i, :e, 'sent', 1)"), {"i": i, "e": f"r{i}@x.org"})
    finally:
        engine.dispose()

    store = Store(database_url)  # upgrades to the newest revision
    try:
        assert inspect(store.engine).get_foreign_keys("deliveries") == []
        assert [email for _, email in _rows(store)] == ["r1@x.org", "r2@x.org"]
        with store.engine.begin() as connection:  # gone behind the store's back: the row stays
            connection.execute(text("DELETE FROM subscribers WHERE id = 2"))
        assert len(_rows(store)) == 2
    finally:
        store.close()

    _upgrade_to(database_url, "0009", down=True)
    engine = create_db_engine(database_url)
    try:
        assert {key["referred_table"] for key in inspect(engine).get_foreign_keys("deliveries")} == {
            "campaigns", "subscribers"}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT email FROM deliveries ORDER BY id")).scalars().all() == [
                "r1@x.org"]
    finally:
        engine.dispose()
