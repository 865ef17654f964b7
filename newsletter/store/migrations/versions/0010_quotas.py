"""Quotas: the send counters of each transport's hourly and daily windows, its shared pace, and why a
campaign paused.

``send_counters`` holds one row per (scope, window, start): the messages
counted against a transport's (and account's) hourly or daily cap, counted
in the transaction that claims the rows, before the provider is called
(``store.quotas``). A campaign paused by a cap records the reason and the
time its window opens (``pause_reason``, ``resume_at``); the scheduler
daemon resumes it then. ``send_pace`` holds, per scope, when the next
message may go at the transport's rate, so the rate holds across the
processes of this machine (and never credits idle time).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_counters",
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("window", sa.String(8), primary_key=True),
        sa.Column("starts_at", UTCDateTime(), primary_key=True),
        sa.Column("sent", sa.Integer(), nullable=False),
    )
    op.create_table(
        "send_pace",
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("free_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("pause_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("resume_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("resume_at")
        batch.drop_column("pause_reason")
    op.drop_table("send_pace")
    op.drop_table("send_counters")
