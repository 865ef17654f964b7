"""Sequences: welcome mail and drip series (store/sequences.py).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sequences",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("transport", sa.String(32), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrol_existing", sa.Boolean, nullable=False),
        sa.Column("restart_on_rejoin", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sequence_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sequence_id", sa.Integer, sa.ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("after_seconds", sa.Integer, nullable=False),
        sa.Column("at_time", sa.String(5), nullable=True),
        sa.Column("article_path", sa.Text, nullable=False),
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), nullable=False),
        sa.UniqueConstraint("sequence_id", "position", name="uq_sequence_steps_position"),
    )
    op.create_table(
        "sequence_campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sequence_id", sa.Integer, sa.ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.UniqueConstraint("sequence_id", "position", "round", name="uq_sequence_campaigns_step_round"),
    )
    op.create_table(
        "sequence_enrolments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sequence_id", sa.Integer, sa.ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("joined_at", UTCDateTime, nullable=False),
        sa.Column("next_position", sa.Integer, nullable=False),
        sa.Column("next_due_at", UTCDateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("sequence_id", "subscriber_id", name="uq_sequence_enrolments_subscriber"),
    )
    op.create_index("ix_sequence_enrolments_due", "sequence_enrolments", ["sequence_id", "status", "next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_sequence_enrolments_due", table_name="sequence_enrolments")
    op.drop_table("sequence_enrolments")
    op.drop_table("sequence_campaigns")
    op.drop_table("sequence_steps")
    op.drop_table("sequences")
