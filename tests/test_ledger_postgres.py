"""The ledger's PostgreSQL statements: the batch fence's share lock, and outcomes recorded per batch.

The send loop's batches fence with ``ledger.fence(..., beat=False)``: on
PostgreSQL a ``FOR SHARE`` lock of the campaign row instead of an update, so
the processes of one send do not queue on the row. These tests hold the
fencing rule with it: a takeover waits for an open batch and fences it out
after; and ``mark_each`` (one ``UPDATE ... FROM unnest``) moves only rows
still in the claimant's status.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from newsletter.store import ledger
from newsletter.store.db import Store
from sqlalchemy import text

from support.imports import import_file
from support.senders import wait_until
from support.services import postgres_schema_url

SENDER, TAKER = "host:1:old", "host:2:new"


@pytest.fixture
def pg_url():
    yield from postgres_schema_url()


@pytest.fixture
def campaign(pg_url, tmp_path):
    """A store with 20 readers and a campaign being sent by SENDER, its ledger snapshotted."""
    from newsletter.store.models import Campaign, MailingList
    from sqlalchemy import select

    store = Store(pg_url)
    rows = "".join(f"r{i}@example.org,R{i}\n" for i in range(20))
    import_file(store, tmp_path, "r.csv", "email,name\n" + rows, list_name="readers")
    with store.session() as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.name == "readers"))
        edition = ledger.save_edition(session, slug="s", subject="S", html="<p>x</p>", text="x")
        row = Campaign(edition_id=edition.id, list_id=list_id, list_name="readers", status="sending",
                       transport="file", sender=SENDER)
        session.add(row)
        session.flush()
        campaign_id = row.id
        ledger.snapshot_audience(session, campaign_id, list_id)
    yield store, campaign_id, list_id
    store.close()


def test_batches_of_one_sender_hold_the_fence_side_by_side(campaign):
    store, campaign_id, _ = campaign
    with store.session() as first, store.session() as second:
        assert ledger.fence(first, campaign_id, SENDER, beat=False)
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting would fail, not hang
        assert ledger.fence(second, campaign_id, SENDER, beat=False)


def test_a_takeover_waits_for_an_open_batch_then_fences_it_out(campaign, pg_url):
    store, campaign_id, list_id = campaign
    name = f"taker-{uuid.uuid4().hex[:8]}"
    other = Store(f"{pg_url}&application_name={name}")
    holding, release = threading.Event(), threading.Event()
    claimed: list[int] = []
    took: list[bool] = []

    def batch():
        with store.session() as session:
            assert ledger.fence(session, campaign_id, SENDER, beat=False)
            claimed.extend(c.delivery_id for c in ledger.claim_pending(session, campaign_id, list_id, 0, 5).rows)
            holding.set()
            release.wait(30)

    def take_over():
        with other.session() as session:
            took.append(ledger.claim_campaign(session, campaign_id, ("sending",), "sending",
                                              expected_sender=SENDER, sender=TAKER))

    holder = threading.Thread(target=batch)
    holder.start()
    assert holding.wait(30)
    taker = threading.Thread(target=take_over)
    taker.start()
    try:
        def takeover_waits():
            with store.session() as session:
                return session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
                                            "AND wait_event_type = 'Lock'"), {"n": name}).scalar() == 1
        wait_until(takeover_waits, what="the takeover to wait for the open batch")
        assert not took  # still waiting while the batch is open
    finally:
        release.set()
        holder.join(30)
        taker.join(30)
        other.close()
    assert len(claimed) == 5 and took == [True]
    with store.session() as session:
        assert not ledger.fence(session, campaign_id, SENDER, beat=False)
        assert ledger.fence(session, campaign_id, TAKER, beat=False)


def test_per_row_outcomes_move_only_rows_still_sending(campaign):
    store, campaign_id, list_id = campaign
    with store.session() as session:
        ids = [c.delivery_id for c in ledger.claim_pending(session, campaign_id, list_id, 0, 4).rows]
    with store.session() as session:  # another writer already settled one of them
        assert ledger.mark(session, [ids[0]], "unknown", "sending") == 1
    with store.session() as session:
        ledger.mark_each(session, [{"b_id": i, "status": "failed" if i == ids[1] else "sent",
                                    "provider_id": f"p-{i}", "error": "refused" if i == ids[1] else None}
                                   for i in ids], "sending")
    with store.session() as session:
        rows = dict(session.execute(text("SELECT id, status || ':' || coalesce(provider_id, '') || ':' || "
                                         "coalesce(error, '') FROM deliveries WHERE id = ANY(:ids)"),
                                    {"ids": ids}).all())
    assert rows == {ids[0]: "unknown::", ids[1]: f"failed:p-{ids[1]}:refused",
                    ids[2]: f"sent:p-{ids[2]}:", ids[3]: f"sent:p-{ids[3]}:"}
