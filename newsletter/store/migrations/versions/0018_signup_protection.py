"""Signup protection (spent proof-of-work challenges, the quarantine, network rate limits) and signup forms.

``signup_challenges_used`` keeps each spent challenge's hash until it
expires (replays refused); ``signup_quarantine`` holds suspicious signups
until approved or rejected; ``signup_attempts.network_hash`` (nullable:
adding it rewrites nothing) counts signups per /24 or /48. See
``newsletter/store/signups.py``. ``signup_forms``: the embeddable forms of
``newsletter forms`` (``newsletter/store/forms.py``).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signup_attempts") as batch:
        batch.add_column(sa.Column("network_hash", sa.String(64), nullable=True))
    op.create_index("ix_signup_attempts_network_time", "signup_attempts", ["network_hash", "created_at"])
    op.create_table(
        "signup_challenges_used",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_signup_challenges_used_expires", "signup_challenges_used", ["expires_at"])
    op.create_table(
        "signup_quarantine",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reasons", sa.String(200), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("source_url", sa.String(2000), nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("email_key", "list_id", name="uq_signup_quarantine_key_list"),
        sqlite_autoincrement=True,
    )


    op.create_table(
        "signup_forms",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("redirect_url", sa.String(2000), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("signup_forms")
    op.drop_table("signup_quarantine")
    op.drop_table("signup_challenges_used")
    op.drop_index("ix_signup_attempts_network_time", "signup_attempts")
    with op.batch_alter_table("signup_attempts") as batch:
        batch.drop_column("network_hash")
