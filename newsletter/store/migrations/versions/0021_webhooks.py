"""Outgoing webhooks: endpoints, their event types, the outbox, each delivery's state and every attempt.

See ``newsletter/store/webhooks.py``. New tables only: nothing existing is rewritten.

Revision ID: 0021
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("failing_since", UTCDateTime, nullable=True),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("event_type", sa.String(64), primary_key=True),
    )
    op.create_index("ix_webhook_subscriptions_type", "webhook_subscriptions", ["event_type"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("endpoint_id", sa.Integer, nullable=False),
        sa.Column("event_pk", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_attempt_at", UTCDateTime, nullable=True),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("claim", sa.String(40), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("endpoint_id", "event_pk", name="uq_webhook_deliveries_endpoint_event"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_deliveries_subject", "webhook_deliveries", ["endpoint_id", "subject", "event_pk"])
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("endpoint_id", sa.Integer, nullable=False),
        sa.Column("event_pk", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_attempts_endpoint", "webhook_attempts", ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_subscriptions")
    op.drop_table("webhook_endpoints")
