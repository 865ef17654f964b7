"""Tags, saved segments, dormant subscribers, and campaigns sent to a filtered audience.

- ``tags`` and ``subscriber_tags``: a tag is a name; a subscriber carries
  any number of them (``subscribers tag``, import columns such as
  Mailchimp's ``TAGS``).
- ``segments``: a saved, named filter (``newsletter.vocabulary.filters``)
  over one or more lists. Never a copy of people: consent stays with the
  base list.
- ``subscribers.dormant_at``: set by the sunset policy when someone stopped
  opening and clicking; a dormant subscriber is skipped unless a send asks
  for them (``--to-dormant``), and engaging clears it.
- ``campaigns.audience_filter`` / ``segment_name`` / ``to_dormant``: what a
  campaign's audience snapshot applies, recorded as text so the campaign
  shows what it was sent to.
- ``ix_provider_events_subscriber``: the engagement predicates
  (``opened_within(90d)``) look up one subscriber's events.
- ``ix_memberships_list_status_subscribed``: ``joined > DATE`` within a
  list's confirmed members.

All new columns are nullable or have a server default: adding them rewrites
nothing (SQLite ``ALTER TABLE ADD COLUMN``).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "subscriber_tags",
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_subscriber_tags_tag", "subscriber_tags", ["tag_id", "subscriber_id"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("lists", sa.JSON, nullable=False),
        sa.Column("filter_text", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    # Plain ADD COLUMN, not a batch: a batch rebuild of these tables on SQLite would lose AUTOINCREMENT.
    op.add_column("subscribers", sa.Column("dormant_at", UTCDateTime, nullable=True))
    op.add_column("campaigns", sa.Column("audience_filter", sa.Text, nullable=True))
    op.add_column("campaigns", sa.Column("segment_name", sa.String(100), nullable=True))
    op.add_column("campaigns", sa.Column("to_dormant", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_provider_events_subscriber", "provider_events", ["subscriber_id", "kind", "occurred_at"])
    op.create_index("ix_memberships_list_status_subscribed", "memberships", ["list_id", "status", "subscribed_at"])


def downgrade() -> None:
    op.drop_index("ix_memberships_list_status_subscribed", table_name="memberships")
    op.drop_index("ix_provider_events_subscriber", table_name="provider_events")
    # SQLite 3.35+ drops a column in place (a batch rebuild would lose AUTOINCREMENT).
    for table, column in (("campaigns", "to_dormant"), ("campaigns", "segment_name"),
                          ("campaigns", "audience_filter"), ("subscribers", "dormant_at")):
        op.drop_column(table, column)
    op.drop_table("segments")
    op.drop_index("ix_subscriber_tags_tag", table_name="subscriber_tags")
    op.drop_table("subscriber_tags")
    op.drop_table("tags")
