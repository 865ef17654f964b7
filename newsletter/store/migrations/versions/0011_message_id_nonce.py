"""A random part for each campaign's Message-IDs.

``campaigns.id_nonce`` holds the random part drawn when a campaign is
created (``newsletter.delivery.message_id``): campaign and delivery numbers
start again at 1 in a rebuilt database, and with the same secret key the
Message-IDs would repeat, which Gmail answers by silently dropping the
"duplicates". Nullable: campaigns created before keep ids of the old form,
so a paused one resumes with the ids it started with (SQLite ``ALTER TABLE
ADD COLUMN``, nothing rewritten).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("id_nonce", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("id_nonce")
