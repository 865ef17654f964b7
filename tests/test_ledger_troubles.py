"""The circuit breaker's first reading: a campaign's complaints and hard bounces through a partial index.

``store.ledger.troubles`` counts the rows of ``ix_deliveries_troubles``
(migration 0026) so that the breaker, which reads every few seconds in
every sending process, does not scan a whole campaign when nothing went
wrong. These tests hold that it counts one campaign's rows only (the
predicate holds an OR), agrees with the full reading, and that the
planner really uses the index (the query must repeat the index's
predicate word for word).
"""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.store import ledger
from newsletter.store.db import Store
from newsletter.store.models import TROUBLE_PREDICATE, Delivery
from sqlalchemy import insert, text


def _rows(campaign_id: int, count: int, complained: int, hard: int, soft: int) -> list[dict]:
    now = datetime.now(UTC)
    rows = []
    for number in range(count):
        rows.append({"campaign_id": campaign_id, "subscriber_id": number + 1, "email": f"r{number}@example.org",
                     "status": "sent", "attempts": 1,
                     "complained_at": now if number < complained else None,
                     "refused": "hard" if complained <= number < complained + hard
                     else "soft" if complained + hard <= number < complained + hard + soft else None})
    return rows


def test_troubles_count_one_campaigns_complaints_and_hard_bounces(database_url):
    store = Store(database_url)
    try:
        with store.session() as session:
            session.execute(insert(Delivery), _rows(1, 50, complained=2, hard=3, soft=4))
            session.execute(insert(Delivery), _rows(2, 50, complained=5, hard=7, soft=0))
            session.execute(insert(Delivery), _rows(3, 20, complained=0, hard=0, soft=6))
        with store.read_session() as session:
            assert ledger.troubles(session, 1) == (2, 3)
            assert ledger.troubles(session, 2) == (5, 7)
            assert ledger.troubles(session, 3) == (0, 0)
            assert ledger.troubles(session, 4) == (0, 0)
            full = ledger.reception(session, 1)
            assert (full.sent, full.complained, full.hard_bounced) == (50, 2, 3)
    finally:
        store.close()


def test_the_planner_reads_the_partial_index(database_url):
    store = Store(database_url)
    try:
        sql = f"SELECT count(*) FROM deliveries WHERE campaign_id = 1 AND ({TROUBLE_PREDICATE})"
        with store.session() as session:
            if store.dialect == "sqlite":
                plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
            else:
                session.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: a scan would be cheaper
                plan = " ".join(row[0] for row in session.execute(text("EXPLAIN " + sql)))
        assert "ix_deliveries_troubles" in plan, plan
    finally:
        store.close()
