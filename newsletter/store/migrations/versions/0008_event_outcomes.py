"""What provider events say about each ledger row, and soft bounces counted per address.

``deliveries`` gains the provider whose events describe the row and when
they said it was delivered, deferred, opened, clicked or reported as spam,
and ``refused`` (``hard`` or ``soft`` bounce, or ``rejected`` by the
provider): the campaign report counts them per provider, and a row left
``unknown`` by a crash is settled from them. All nullable: adding them
rewrites nothing (SQLite ``ALTER TABLE ADD COLUMN``).

``soft_bounces`` keeps one row per soft bounce (the address as a hash):
three within thirty days (configurable) suppress the address.

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OUTCOME_COLUMNS = ("delivered_at", "deferred_at", "opened_at", "clicked_at", "complained_at")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("event_provider", sa.String(20), nullable=True))
        for name in OUTCOME_COLUMNS:
            batch.add_column(sa.Column(name, UTCDateTime, nullable=True))
        batch.add_column(sa.Column("refused", sa.String(8), nullable=True))
    op.create_table(
        "soft_bounces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_soft_bounces_hash_time", "soft_bounces", ["email_hash", "occurred_at"])


def downgrade() -> None:
    op.drop_table("soft_bounces")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("refused")
        for name in reversed(OUTCOME_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("event_provider")
