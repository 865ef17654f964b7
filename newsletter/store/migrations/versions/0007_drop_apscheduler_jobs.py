"""Drop ``apscheduler_jobs``: the daemon keeps its jobs in memory (issue 12).

The daemon rebuilds its jobs from the campaigns and schedules tables at every
start (``newsletter.scheduler.sync``); no process has written this table
since, so it holds nothing the scheduler reads. A downgrade recreates it
empty, as APScheduler 3's SQLAlchemyJobStore would.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("apscheduler_jobs")  # its index on next_run_time goes with it


def downgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), nullable=True, index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
