"""Claims read a bounded window of ids after the previous claim (``store.ledger.CLAIM_WINDOW``).

Without ``status`` in the claim index (migration 0025), the read is bounded
so that a planner with stale statistics cannot read and sort every row after
the last claim at each batch. These tests hold what the window must not
change, on SQLite and PostgreSQL: rows beyond a window of done rows (a
resumed campaign) are still found, in id order, and every pending row is
claimed exactly once; ``up_to`` still bounds a claim.
"""

from __future__ import annotations

import pytest
from newsletter.store import ledger
from newsletter.store.db import Store
from newsletter.store.models import Campaign, Delivery, MailingList
from newsletter.vocabulary import LedgerStatus
from sqlalchemy import select, update

from support.imports import import_file

READERS = [f"r{i}@example.org" for i in range(40)]


@pytest.fixture
def campaign(database_url, tmp_path):
    """A store with 40 readers and a campaign being sent, snapshotted: (store, campaign id, list id, row ids)."""
    store = Store(database_url)
    import_file(store, tmp_path, "r.csv", "email\n" + "".join(f"{a}\n" for a in READERS), list_name="readers")
    with store.session() as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.name == "readers"))
        edition = ledger.save_edition(session, slug="s", subject="S", html="<p>x</p>", text="x")
        row = Campaign(edition_id=edition.id, list_id=list_id, list_name="readers", status="sending",
                       transport="file", sender="host:1:a")
        session.add(row)
        session.flush()
        assert ledger.snapshot_audience(session, row.id, list_id) == len(READERS)
        ids = list(session.scalars(select(Delivery.id).where(Delivery.campaign_id == row.id).order_by(Delivery.id)))
    yield store, row.id, list_id, ids
    store.close()


def _set_status(store, ids: list[int], status: str) -> None:
    with store.session() as session:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(status=status))


def _claim_all(store, campaign_id: int, list_id: int, limit: int, up_to: int | None = None) -> list[list[int]]:
    batches, after = [], 0
    while True:
        with store.session() as session:
            claim = ledger.claim_pending(session, campaign_id, list_id, after, limit, up_to)
        if claim is None:
            return batches
        batches.append([c.delivery_id for c in claim.rows])
        after = claim.last_id


def test_a_claim_finds_the_pending_rows_beyond_a_window_of_done_rows(campaign):
    store, c, list_id, ids = campaign
    limit = 2  # a window of CLAIM_WINDOW * 2 = 8 ids: the first 30 rows are done, far beyond it
    assert ids[30] - ids[0] > ledger.CLAIM_WINDOW * limit
    _set_status(store, ids[:30], LedgerStatus.SENT)
    _set_status(store, ids[33:35], LedgerStatus.SENT)  # and a gap among the rest
    batches = _claim_all(store, c, list_id, limit)
    claimed = [i for batch in batches for i in batch]
    assert claimed == ids[30:33] + ids[35:]  # every pending row once, in id order
    assert all(0 < len(batch) <= limit for batch in batches)
    with store.session() as session:
        assert ledger.counts(session, c)[LedgerStatus.PENDING] == 0


def test_a_claim_stops_at_up_to_even_when_its_window_is_empty(campaign):
    store, c, list_id, ids = campaign
    _set_status(store, ids[:20], LedgerStatus.SENT)
    batches = _claim_all(store, c, list_id, 1, up_to=ids[9])  # nothing pending up to there
    assert batches == []
    batches = _claim_all(store, c, list_id, 3, up_to=ids[24])
    assert [i for batch in batches for i in batch] == ids[20:25]
    with store.session() as session:
        assert ledger.counts(session, c)[LedgerStatus.PENDING] == len(READERS) - 25


def test_the_claim_index_has_no_status_and_postgresql_leaves_room_for_hot_updates(campaign):
    """Migration 0025: no indexed column changes with a row's status (HOT updates on PostgreSQL, whose
    ``deliveries`` pages are filled to 60% so that the new version fits beside the old)."""
    from sqlalchemy import inspect, text

    store = campaign[0]
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(store.engine).get_indexes("deliveries")}
    assert indexes["ix_deliveries_campaign_id"] == ["campaign_id", "id"]
    assert not any("status" in columns for columns in indexes.values())
    if store.dialect == "postgresql":
        with store.engine.connect() as connection:
            options = connection.execute(text("SELECT reloptions FROM pg_class WHERE oid = 'deliveries'::regclass"))
            assert "fillfactor=60" in (options.scalar() or [])
