"""The store: migrations match the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from sqlalchemy import text

from newsletter.store.db import HEAD_REVISION, MIGRATIONS, Store
from newsletter.store.schema import metadata


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


def test_sqlite_uses_wal(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()
