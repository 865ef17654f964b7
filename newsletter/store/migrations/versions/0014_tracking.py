"""First-party tracking: each campaign's tracking mode and links, and click and open counts per hour.

``campaign_tracking`` (one row per campaign: mode, clicks, opens),
``tracked_links`` (a campaign's article links by position: the click
redirect reads its target here) and ``engagement_counts`` (human and
machine requests per campaign, kind, link and UTC hour). New tables only:
nothing existing is rewritten.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_tracking",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("clicks", sa.Boolean, nullable=False),
        sa.Column("opens", sa.Boolean, nullable=False),
    )
    op.create_table(
        "tracked_links",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
    )
    op.create_table(
        "engagement_counts",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("hour", UTCDateTime, primary_key=True),
        sa.Column("human", sa.Integer, nullable=False),
        sa.Column("machine", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engagement_counts")
    op.drop_table("tracked_links")
    op.drop_table("campaign_tracking")
