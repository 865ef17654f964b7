"""A partial index of the ledger rows the circuit breaker weighs: complaints and hard bounces.

The breaker reads a running campaign's complaint and hard-bounce rates
every few seconds in every sending process. That was one aggregate over
all the campaign's rows: about 2 s at 1,000,000 rows on SQLite, and on
SQLite every transaction began IMMEDIATE, so the other sending process
waited for it. With this index the breaker first counts the few troubled
rows (``store.ledger.troubles``) and reads the whole campaign only when
there are some.

Revision ID: 0026
Revises: 0025
"""

from alembic import op
from sqlalchemy import text

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

PREDICATE = "complained_at IS NOT NULL OR refused = 'hard'"  # store.models.TROUBLE_PREDICATE, as it was


def upgrade() -> None:
    op.create_index("ix_deliveries_troubles", "deliveries", ["campaign_id"],
                    sqlite_where=text(PREDICATE), postgresql_where=text(PREDICATE))


def downgrade() -> None:
    op.drop_index("ix_deliveries_troubles", table_name="deliveries")
