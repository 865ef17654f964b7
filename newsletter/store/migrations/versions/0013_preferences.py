"""Snoozes and proof of consent.

``subscribers.snoozed_until``: a reader paused their mail from the
preference centre; the audience snapshot skips them until then.

``consents`` gains what proves a consent (GDPR art. 7(1), CASL): the form
or command and its version, the consent text shown, the source URL or
file, the user agent, when it was asked for and confirmed, and the
confirmation message's Message-ID (double opt-in). A ``detail`` column
holds what an action changed (a snooze's end, a new time zone). All
nullable: adding them rewrites nothing (SQLite ``ALTER TABLE ADD COLUMN``).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("snoozed_until", UTCDateTime, nullable=True))
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("form", sa.String(100), nullable=True))
        batch.add_column(sa.Column("consent_text", sa.Text, nullable=True))
        batch.add_column(sa.Column("source_url", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("user_agent", sa.String(500), nullable=True))
        batch.add_column(sa.Column("requested_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("confirmed_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("message_id", sa.String(300), nullable=True))
        batch.add_column(sa.Column("detail", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        for name in ("detail", "message_id", "confirmed_at", "requested_at", "user_agent", "source_url",
                     "consent_text", "form"):
            batch.drop_column(name)
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("snoozed_until")
