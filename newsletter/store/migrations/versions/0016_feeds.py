"""Blogs' feeds turned into newsletters: feeds, their items, their polls (newsletter.store.feeds).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(60), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("every", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("draft", sa.Boolean, nullable=False),
        sa.Column("transport", sa.String(32), nullable=False),
        sa.Column("max_new", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.Text, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),
        sa.Column("accept_jump", sa.Boolean, nullable=False),
        sa.Column("primed", sa.Boolean, nullable=False),
        sa.Column("etag", sa.Text, nullable=True),
        sa.Column("last_modified", sa.String(100), nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("last_polled_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("errors_in_row", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "feed_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
        sa.Column("guid_hash", sa.String(64), nullable=False),
        sa.Column("guid", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("link", sa.Text, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("feed_id", "guid_hash", name="uq_feed_items_feed_guid"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "feed_polls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
        sa.Column("polled_at", UTCDateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("new_items", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_feed_polls_feed_id", "feed_polls", ["feed_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_feed_polls_feed_id", table_name="feed_polls")
    for table in ("feed_polls", "feed_items", "feeds"):
        op.drop_table(table)
