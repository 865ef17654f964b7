"""Ids never reused (SQLite AUTOINCREMENT), public/private lists with display names, per-IP signup limits.

On SQLite the tables whose ids appear in links, tokens and Message-IDs
(subscribers, lists, campaigns, deliveries) are rebuilt as AUTOINCREMENT
tables, keeping every row; ``newsletter.store.db.migrate`` runs migrations
with foreign keys off, so dropping the old table cascades nothing (SQLite's
documented procedure for rebuilding a table). The sequence starts after the
largest id any row still names, so an id freed before this upgrade is not
handed out again either. PostgreSQL sequences never go back; there they
only move forward past any id a row names (a restored dump, rows inserted
with explicit ids).

Unsubscribe links already sent name only an id (no address in their
signature): ``legacy_links`` records the highest subscriber id now, and
only ids up to it (never handed out again) may use such a link.

Existing lists become private (never offered or joinable on the web) until
``newsletter lists update NAME --public``.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Table -> the columns elsewhere that name its ids (to start its sequence after them).
REBUILT = {
    "subscribers": [("deliveries", "subscriber_id"), ("consents", "subscriber_id"),
                    ("provider_events", "subscriber_id")],
    "lists": [("campaigns", "list_id"), ("consents", "list_id")],
    "campaigns": [("deliveries", "campaign_id"), ("provider_events", "campaign_id")],
    "deliveries": [("provider_events", "delivery_id")],
}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("signup_attempts") as batch:
        batch.add_column(sa.Column("ip_hash", sa.String(64), nullable=True))
    op.create_index("ix_signup_attempts_ip_time", "signup_attempts", ["ip_hash", "created_at"])
    op.create_table(
        "legacy_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("max_subscriber_id", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO legacy_links (id, max_subscriber_id) SELECT 1, COALESCE(MAX(id), 0) FROM subscribers")
    for table, references in REBUILT.items():
        if sqlite:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass
        _start_sequence_after(table, references, sqlite)


def _start_sequence_after(table: str, references: list[tuple[str, str]], sqlite: bool) -> None:
    """Move ``table``'s id counter past every id its rows or other tables' rows name (never back)."""
    bind = op.get_bind()
    highest = [f"(SELECT COALESCE(MAX(id), 0) FROM {table})"]
    highest += [f"(SELECT COALESCE(MAX({column}), 0) FROM {other})" for other, column in references]
    greatest = "MAX" if sqlite else "GREATEST"
    top = int(bind.exec_driver_sql(f"SELECT {greatest}({', '.join(highest)})").scalar() or 0)
    if sqlite:
        bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        bind.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, top))
    else:
        # Rows restored or inserted with explicit ids leave a sequence behind them.
        sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
        if sequence and top > int(bind.exec_driver_sql(f"SELECT last_value FROM {sequence}").scalar_one()):
            bind.execute(sa.text("SELECT setval(:s, :top)"), {"s": sequence, "top": top})


def downgrade() -> None:
    op.drop_table("legacy_links")
    op.drop_index("ix_signup_attempts_ip_time", table_name="signup_attempts")
    with op.batch_alter_table("signup_attempts") as batch:
        batch.drop_column("ip_hash")
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("display_name")
        batch.drop_column("public")
