"""Provider events (SendGrid Event Webhook) and signup attempts (the /subscribe rate limit).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=True),
        sa.Column("delivery_id", sa.Integer, nullable=True),
        sa.Column("subscriber_id", sa.Integer, nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("raw", sa.JSON, nullable=False),
    )
    op.create_index("ix_provider_events_campaign_kind", "provider_events", ["campaign_id", "kind"])
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_signup_attempts_hash_time", "signup_attempts", ["email_hash", "created_at"])


def downgrade() -> None:
    op.drop_table("signup_attempts")
    op.drop_table("provider_events")
