"""Scale-out sending: the chunks of a distributed campaign (newsletter.store.distributed).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_chunks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first_id", sa.Integer, nullable=False),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(300), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime, nullable=True),
        sa.Column("claims", sa.Integer, nullable=False),
        sa.Column("enqueued_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.UniqueConstraint("campaign_id", "first_id", name="uq_send_chunks_campaign_first"),
    )
    op.create_index("ix_send_chunks_status", "send_chunks", ["status"])


def downgrade() -> None:
    op.drop_index("ix_send_chunks_status", table_name="send_chunks")
    op.drop_table("send_chunks")
