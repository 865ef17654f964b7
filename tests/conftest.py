"""Shared fixtures: workspaces on real databases, and running the CLI.

Backends: every test that takes ``workspace`` (or ``database_url``) runs on a
SQLite file and, when ``NEWSLETTER_TEST_POSTGRES_URL`` is set, on PostgreSQL
in a schema of its own. A test that needs a service calls ``need_service``:
it skips with the reason, or fails when NEWSLETTER_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("NEWSLETTER_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
TESTS = Path(__file__).parent


def need_service(reason: str) -> None:
    """Skip the test for a missing service, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests never see the developer's own newsletter settings."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name not in (
            "NEWSLETTER_REQUIRE_SERVICES",
            "NEWSLETTER_TEST_POSTGRES_URL",
        ):
            monkeypatch.delenv(name)
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)


def _postgres_schema_url():
    """A URL whose search_path is a fresh schema; yields it and drops the schema after."""
    if not POSTGRES_URL:
        need_service("NEWSLETTER_TEST_POSTGRES_URL is not set (PostgreSQL tests)")
    from sqlalchemy import create_engine, text

    from newsletter.store.db import normalise_url

    base = normalise_url(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server
        admin.dispose()
        need_service(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'newsletter.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def workspace(tmp_path, database_url, monkeypatch):
    """An initialised workspace (cwd) whose database is ``database_url``."""
    from newsletter.workspace import init_workspace

    folder = tmp_path / "letter"
    init_workspace(
        folder,
        sender="Clinic News <news@clinic.example>",
        postal_address="1 Main Street, Springfield",
        base_url="https://news.clinic.example",
        transport="file",
    )
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.chdir(folder)
    return folder


ARTICLES = TESTS / "articles"
SEED = ARTICLES / "seed-ketamine.txt"
RECENT = "https://clinic.example/blog/which-type"  # the seed names its recent article without a URL


@pytest.fixture
def plain_workspace(tmp_path, monkeypatch):
    """A workspace (cwd) for work that needs no database (composing, previews)."""
    from newsletter.workspace import init_workspace

    folder = tmp_path / "letter"
    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street, Springfield",
                   base_url="https://news.clinic.example")
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def settings(plain_workspace):
    from newsletter.config import load_settings

    return load_settings(plain_workspace)


@pytest.fixture
def seed(settings):
    """The seed article composed, with the URL its recently-published link lacks."""
    from newsletter.compose.edition import compose_edition

    return compose_edition(SEED, settings, recent_url=RECENT)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys):
    """Run ``newsletter ARGS...`` in-process; returns exit code, stdout and stderr."""
    from newsletter.cli import main

    def run(*args: str, input: str | None = None) -> Result:
        capsys.readouterr()
        old_stdin = sys.stdin
        if input is not None:
            import io

            sys.stdin = io.StringIO(input)
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdin = old_stdin
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def populate(cli, tmp_path: Path, count: int, list_name: str = "readers") -> list[str]:
    """Import ``count`` subscribers (reader0@example.org, ...) onto ``list_name``; returns their addresses."""
    emails = [f"reader{i}@example.org" for i in range(count)]
    data = tmp_path / f"people-{count}.csv"
    data.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
    result = cli("subscribers", "import", str(data), "--list", list_name, "--json")
    assert result.json()["added"] == count, result.stderr
    return emails
