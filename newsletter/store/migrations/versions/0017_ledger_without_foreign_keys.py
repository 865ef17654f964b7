"""The ledger's rows no longer carry foreign keys to campaigns and subscribers.

A campaign's snapshot (``store.ledger.snapshot_audience``) inserts one row
per recipient in one statement; on PostgreSQL each row then paid two
foreign-key checks, one of them a ``FOR KEY SHARE`` lock on the subscriber's
row: 2.1 s of an 8.3 s send of 200,000 rows, against 0.77 s without them
(benchmarks/bench_postgres.py). The references are now the store's to keep,
as the cascades were the database's:

- deleting a campaign deletes its ledger rows first
  (``store.ledger.delete_campaign``);
- erasing a subscriber deletes their ledger rows first
  (``store.audience.delete_subscriber``);
- a row whose subscriber vanished while the snapshot was being taken (an
  erase committed during it, which the foreign key's lock used to hold
  back) is deleted by the claim that meets it, never sent
  (``store.ledger.claim_pending`` / ``claim_range``).

Both indexes stay: the unique ``(subscriber_id, campaign_id)`` serves the
subscriber's rows and their deletion; the claim index serves a campaign's.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: name them when reflecting, to drop them by name.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
REFERENCES = (("campaign_id", "campaigns"), ("subscriber_id", "subscribers"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # A rebuild of the table (SQLite cannot drop a constraint in place); migrate() runs with
        # foreign keys off, so the rebuild cascades nothing. AUTOINCREMENT is kept (migration 0006).
        with op.batch_alter_table("deliveries", naming_convention=NAMING, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}) as batch:
            for column, table in REFERENCES:
                batch.drop_constraint(f"fk_deliveries_{column}_{table}", type_="foreignkey")
        return
    for key in sa.inspect(bind).get_foreign_keys("deliveries"):
        if key["name"]:
            op.drop_constraint(key["name"], "deliveries", type_="foreignkey")


def downgrade() -> None:
    # Rows the store left behind (a subscriber erased by hand) would fail the restored keys: remove them.
    for column, table in REFERENCES:
        op.execute(f"DELETE FROM deliveries WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = "
                   f"deliveries.{column})")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("deliveries", naming_convention=NAMING, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}) as batch:
            for column, table in REFERENCES:
                batch.create_foreign_key(f"fk_deliveries_{column}_{table}", table, [column], ["id"],
                                         ondelete="CASCADE")
        return
    for column, table in REFERENCES:
        op.create_foreign_key(f"deliveries_{column}_fkey", "deliveries", table, [column], ["id"], ondelete="CASCADE")
