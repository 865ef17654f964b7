"""Opening the database: engine, sessions, and migrations applied on first use.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so the
scheduler, the web app and the CLI can share one file. PostgreSQL is used
through ``postgresql+psycopg://`` URLs.

Engines hide statement parameters from error messages and logs: they hold
addresses and names, and an exception's text ends up in tracebacks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

    from newsletter.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; when the database is at it, Alembic is not even imported
# (tests/test_store.py checks this matches the migration scripts).
HEAD_REVISION = "0026"
# The execution option that makes a SQLite transaction begin DEFERRED (Store.read_session).
READ_ONLY_OPTION = "newsletter_read_only"
# How long SQLite waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 30
# PostgreSQL connections a process keeps open. A send uses two at once (its
# batches and the heartbeat thread); the web app and a worker run blocking
# calls in threads, and those bursts overflow up to twice this, then wait.
POOL_SIZE = 4


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy defaults to psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_db_engine(url: str, pool_size: int = POOL_SIZE) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout.

    PostgreSQL: a pool of ``pool_size`` connections (overflowing to twice
    that), most recently used first: the connection a loop just used is warm,
    and it holds the statements psycopg prepared on it (a statement run five
    times is prepared per connection).
    """
    url = normalise_url(url)
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return create_engine(url, pool_pre_ping=True, hide_parameters=True, pool_size=pool_size,
                             max_overflow=2 * pool_size, pool_use_lifo=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(
            f"database URL is not usable: {exc}",
            hint="set NEWSLETTER_DATABASE_URL to sqlite:///path.db or postgresql+psycopg://user@host/db",
        ) from None


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        # 32 MB of page cache (used only as needed; the default is 2 MB): a send
        # of a million rows joins the ledger with subscribers and memberships.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers wait for each
        # other instead of failing halfway with "database is locked". A read
        # (Store.read_session) takes no lock: in WAL mode it reads the last
        # commit while a writer goes on.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is there)."""
    try:
        with engine.connect() as connection:
            if current_revision(connection) == HEAD_REVISION:
                return
    except OperationalError as exc:
        if "database is locked" in str(exc.orig):
            raise  # busy, not misconfigured: the CLI reports it as such (newsletter.cli.main)
        raise ConfigError(
            f"cannot open the database: {exc.orig}",
            hint="check NEWSLETTER_DATABASE_URL (or [database] url) and that the server is running",
        ) from None
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change it; with foreign keys on, dropping
            # the old table would cascade-delete every row that refers to it.
            # The pragma only takes effect outside a transaction.
            _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                try:
                    command.upgrade(config, "head")
                except CommandError as exc:  # a revision these migrations do not know: a newer release's
                    raise ConfigError(f"the database is newer than this newsletter ({exc})",
                                      hint="upgrade newsletter to the release that last opened it "
                                           "(pip install -U newsletter); nothing was changed") from None
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise ConfigError("the database upgrade left broken references; nothing was changed",
                                      hint="restore a backup, or report this with the output of "
                                           "sqlite3 newsletter.db 'PRAGMA foreign_key_check'")
        finally:
            if sqlite:
                _outside_transaction(connection, "PRAGMA foreign_keys=ON")


def _outside_transaction(connection: Connection, sql: str) -> None:
    """Run ``sql`` on the driver's connection, outside SQLAlchemy's transaction (a PRAGMA that needs it)."""
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # only after the connection was invalidated
        raise RuntimeError("the database connection was closed")
    dbapi_connection.cursor().execute(sql)


class Store:
    """The database of one workspace: an engine and a session factory."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE):
        self.url = normalise_url(url)
        self.engine = create_db_engine(self.url, pool_size)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self.engine.execution_options(**{READ_ONLY_OPTION: True}),
                                   expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads only. On SQLite it takes no write lock (``BEGIN DEFERRED``: it sees the
        last commit, and another process's writes go on meanwhile), so a read between a sender's batches
        (the look before a provider call, the breaker's counts) does not hold up another sender. A write
        in it may fail with "database is locked" at once: write in :meth:`session`. On PostgreSQL it is
        :meth:`session`."""
        with self._reads.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings) -> Store:
    """The store of a workspace's settings."""
    return Store(settings.database_url)
