"""Shared fixtures: workspaces on real databases, and running the CLI.

Backends: every test that takes ``workspace`` (or ``database_url``) runs on a
SQLite file and, when ``NEWSLETTER_TEST_POSTGRES_URL`` is set, on PostgreSQL
in a schema of its own. A test that needs a service calls
``support.services.need_service``: it skips with the reason, or fails when
NEWSLETTER_REQUIRE_SERVICES=1. Helpers live in ``tests/support/``; this file
holds fixtures and the markers given by what a test needs.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings as hypothesis_settings

from support.articles import RECENT, SEED
from support.cli import Result
from support.services import postgres_schema_url

# CI (`.ci/run` sets HYPOTHESIS_PROFILE=ci) draws the same examples for a test in every run, so a
# green main stays green; a plain `make test` draws new ones each run, and what they find becomes a
# test of its own (as test_cli_tables and test_save_link show).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Fixtures shared as a plugin (tests/support/standins.py): the stand-in SMTP and SendGrid servers.
pytest_plugins = ["support.standins"]

# The markers (registered in pyproject.toml; `make test-fast` skips all three),
# given here by module so each test file stays about what it tests.
SLOW = {  # real daemons and child processes, real waits for time to pass
    "test_daemon", "test_engine_kill", "test_two_senders", "test_distributed_services",
    "test_preview_browser", "test_serve", "test_web_concurrency", "test_sequences_daemon",
    "test_sequences_readme", "test_webhooks_daemon", "test_api_readme", "test_api_schema",
}
SLOW_TESTS = {"test_add_import_export_import_over_hostile_data"}  # many Hypothesis examples on a real store
SERVICES = {  # beyond SQLite: PostgreSQL (the postgres parameter), Redis, RabbitMQ, unshare
    "test_distributed_services", "test_two_senders",
}
BROWSER = {"test_preview_browser"}  # Chromium through Playwright (tests/browser.py); elsewhere the `browser` fixture


def pytest_collection_modifyitems(items):
    """Mark each test slow, services or browser by its module and, for PostgreSQL, its parameter."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        callspec = getattr(item, "callspec", None)
        if module in SERVICES or (callspec is not None and callspec.params.get("database_url") == "postgres"):
            item.add_marker(pytest.mark.services)
        if module in BROWSER or "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)

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
    monkeypatch.delenv("POSTMARK_SERVER_TOKEN", raising=False)
    monkeypatch.delenv("MAILGUN_API_KEY", raising=False)
    monkeypatch.delenv("MAILGUN_WEBHOOK_SIGNING_KEY", raising=False)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'newsletter.db'}"
    else:
        yield from postgres_schema_url()


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
