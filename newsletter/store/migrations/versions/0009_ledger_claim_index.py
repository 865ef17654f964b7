"""The ledger's claim index carries the row id: (campaign_id, status, id).

Claims read "the next pending rows of a campaign after id N, in id order"
(``store.ledger.claim_pending``, ``claim_range``, ``pending_ranges``). On
PostgreSQL an index on (campaign_id, status) alone answered that by reading
every pending row of the campaign, filtering on the id and sorting: each
1,000-row claim cost time in proportion to the rows still pending (EXPLAIN
ANALYZE in benchmarks/bench_postgres.py). With the id in the index the next
rows are one range scan, already in order, stopping after the limit.
SQLite's index already ended with the rowid (= id); the new one is the same
shape there.

Revision ID: 0009
Revises: 0006
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_campaign_status_id", "deliveries", ["campaign_id", "status", "id"])
    op.drop_index("ix_deliveries_campaign_status", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_campaign_status", "deliveries", ["campaign_id", "status"])
    op.drop_index("ix_deliveries_campaign_status_id", table_name="deliveries")
