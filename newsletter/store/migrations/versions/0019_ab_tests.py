"""A/B tests: each test's variants, split and decision, and the variant of each ledger row.

``ab_counts`` (human and machine requests on each variant's aggregate
links), ``ab_tests`` (one row per A/B campaign: the subjects of variants B and C,
the test share, the wait, the measure, the seed of the split, when the
winner is due, and the decision) and ``deliveries.variant`` (``A``/``B``/``C``
on the rows of the test phase; NULL on the rest, which wait ``held`` until
the winner is picked). A new table and a nullable column: nothing existing
is rewritten.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ab_tests",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subjects", sa.JSON, nullable=False),
        sa.Column("editions", sa.JSON, nullable=True),
        sa.Column("share", sa.Integer, nullable=False),
        sa.Column("decide_after", sa.Integer, nullable=False),
        sa.Column("measure", sa.String(8), nullable=False),
        sa.Column("min_sample", sa.Integer, nullable=False),
        sa.Column("seed", sa.String(32), nullable=False),
        sa.Column("decide_at", UTCDateTime, nullable=True),
        sa.Column("winner", sa.String(1), nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("numbers", sa.JSON, nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "ab_counts",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("variant", sa.String(1), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("human", sa.Integer, nullable=False),
        sa.Column("machine", sa.Integer, nullable=False),
    )
    op.add_column("deliveries", sa.Column("variant", sa.String(1), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("variant")
    op.drop_table("ab_counts")
    op.drop_table("ab_tests")
