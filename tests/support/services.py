"""The machine's services for tests: PostgreSQL schemas, and skipping (or failing) without a service.

``need_service`` skips a test with the reason, or fails it when
``NEWSLETTER_REQUIRE_SERVICES=1`` (CI), so a missing service never passes
silently there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REQUIRE_SERVICES = os.environ.get("NEWSLETTER_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")


def need_service(reason: str) -> None:
    """Skip the test for a missing service, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema; yields it and drops the schema after."""
    if not POSTGRES_URL:
        need_service("NEWSLETTER_TEST_POSTGRES_URL is not set (PostgreSQL tests)")
    from newsletter.store.db import normalise_url
    from sqlalchemy import create_engine, text

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
