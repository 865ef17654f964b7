"""The store: migrations match the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from newsletter.store.db import HEAD_REVISION, MIGRATIONS, Store
from newsletter.store.schema import metadata
from sqlalchemy import text


def test_head_revision_constant_matches_scripts():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_migrations_create_the_models_schema(database_url):
    store = Store(database_url)
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = [d for d in compare_metadata(context, metadata)
                           if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
            assert differences == []
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
    finally:
        store.close()


def test_second_open_does_not_migrate_again(database_url, monkeypatch):
    Store(database_url).close()
    from alembic import command

    def refuse(*_args, **_kwargs):
        raise AssertionError("Alembic ran on a database already at the newest revision")

    monkeypatch.setattr(command, "upgrade", refuse)
    store = Store(database_url)  # at HEAD_REVISION: Alembic is not even called
    store.close()


def test_a_database_from_a_newer_release_is_a_one_line_error_and_is_left_alone(database_url):
    """An older newsletter opening a database a newer release migrated says so (no Alembic traceback)."""
    import pytest
    from newsletter.errors import ConfigError

    Store(database_url).close()
    store = Store(database_url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(ConfigError, match="the database is newer than this newsletter") as raised:
        Store(database_url)
    assert "upgrade newsletter" in raised.value.hint
    from newsletter.store.db import create_db_engine, normalise_url

    engine = create_db_engine(normalise_url(database_url), 1)  # a look without migrating
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
        connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD_REVISION})
        connection.commit()
    engine.dispose()


def test_sqlite_uses_wal(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


# -- ids are never reused (migration 0006) -------------------------------------------------------

LINKED_TABLES = ("subscribers", "lists", "campaigns", "deliveries")


def test_sqlite_tables_named_in_links_are_autoincrement(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with store.engine.connect() as connection:
            for table in LINKED_TABLES:
                sql = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar()
                assert "AUTOINCREMENT" in sql, table
    finally:
        store.close()


def test_a_removed_subscribers_id_is_never_given_to_the_next(database_url):
    from newsletter.audience import manage

    store = Store(database_url)
    try:
        first = manage.add_subscriber(store, "first@example.org", list_name="readers")
        second = manage.add_subscriber(store, "second@example.org", list_name="readers")
        manage.erase(store, "second@example.org")
        with store.session() as session:
            from newsletter.store.audience import delete_list

            delete_list(session, "readers")
        third = manage.add_subscriber(store, "third@example.org", list_name="readers")
        assert third.subscriber_id > second.subscriber_id > first.subscriber_id
        assert third.list_id > first.list_id
    finally:
        store.close()


def _upgrade_to(url: str, revision: str, *, down: bool = False) -> None:
    """Run Alembic to ``revision`` on ``url`` (``down``: downgrade), without Store's migrate-on-open."""
    from alembic import command
    from newsletter.store.db import _outside_transaction, create_db_engine

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_db_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # as Store's migrate does: SQLite rebuilds a table to change it, and with foreign keys on,
            # dropping the old table would cascade-delete the rows that refer to it (the ledger's).
            _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        with connection.begin():
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_upgrade_to_0006_keeps_every_row_and_skips_ids_freed_before_it(database_url):
    """Rebuilding tables on SQLite must not cascade-delete memberships or ledger rows."""
    from newsletter.store.db import create_db_engine

    _upgrade_to(database_url, "0005")
    engine = create_db_engine(database_url)
    now = "2026-01-01 00:00:00"
    with engine.begin() as connection:
        for i in (1, 2, 3):
            connection.execute(text(
                "INSERT INTO subscribers (id, email, email_key, email_hash, name, attributes, status, created_at,"
                " updated_at) VALUES (:i, :e, :e, :h, 'Zoë', '{}', 'active', :t, :t)"),
                {"i": i, "e": f"r{i}@example.org", "h": f"{i:064d}", "t": now})
        connection.execute(text("INSERT INTO lists (id, name, double_opt_in, created_at) VALUES (1, 'patients', "
                                "false, :t)"), {"t": now})
        for i in (1, 2, 3):
            connection.execute(text("INSERT INTO memberships (subscriber_id, list_id, status, subscribed_at, "
                                    "consent_source) VALUES (:i, 1, 'confirmed', :t, 'cli')"), {"i": i, "t": now})
        connection.execute(text("INSERT INTO editions (id, slug, subject, preheader, html, text, theme, "
                                "article_path, tags, created_at) VALUES (1, 's', 'S', '', 'h', 't', 'default', '',"
                                " '[]', :t)"), {"t": now})
        connection.execute(text("INSERT INTO campaigns (id, edition_id, list_id, list_name, status, transport, "
                                "created_at, error) VALUES (1, 1, 1, 'patients', 'sent', 'file', :t, '')"),
                           {"t": now})
        for i in (1, 2, 3):
            connection.execute(text("INSERT INTO deliveries (id, campaign_id, subscriber_id, email, status, attempts)"
                                    " VALUES (:i, 1, :i, :e, 'sent', 1)"), {"i": i, "e": f"r{i}@example.org"})
        # Subscriber 3 was erased before the upgrade; a stored webhook event still names them.
        connection.execute(text("INSERT INTO provider_events (provider, event_id, kind, subscriber_id, email, "
                                "detail, occurred_at, received_at, raw) VALUES ('sendgrid', 'e1', 'opened', 3, '',"
                                " '', :t, :t, '{}')"), {"t": now})
        connection.execute(text("DELETE FROM subscribers WHERE id = 3"))
    engine.dispose()

    store = Store(database_url)  # upgrades to the newest revision
    try:
        with store.engine.connect() as connection:
            def rows(sql):
                return connection.execute(text(sql)).all()

            assert rows("SELECT id, name FROM subscribers ORDER BY id") == [(1, "Zoë"), (2, "Zoë")]
            assert rows("SELECT subscriber_id FROM memberships ORDER BY subscriber_id") == [(1,), (2,)]
            assert rows("SELECT id FROM deliveries ORDER BY id") == [(1,), (2,)]
            assert rows("SELECT name, public, display_name FROM lists") == [("patients", False, "")]
        from newsletter.audience import manage

        assert manage.add_subscriber(store, "new@example.org").subscriber_id > 3
    finally:
        store.close()


# -- the scheduler's job table goes (migration 0007) --------------------------------------------

def test_0007_drops_the_unused_job_table_and_its_downgrade_recreates_it(database_url):
    from sqlalchemy import inspect

    _upgrade_to(database_url, "0006")
    store = Store(database_url)  # upgrades to the newest revision
    try:
        assert not inspect(store.engine).has_table("apscheduler_jobs")
    finally:
        store.close()
    _upgrade_to(database_url, "0006", down=True)
    from newsletter.store.db import create_db_engine

    engine = create_db_engine(database_url)  # not Store: that would upgrade again
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("apscheduler_jobs")}
        assert columns == {"id", "next_run_time", "job_state"}
    finally:
        engine.dispose()
