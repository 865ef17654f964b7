"""Stand-in servers as fixtures: a local SMTP server (with and without
SMTPUTF8) and the fake SendGrid API, one of each per test module.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``, so a
test module takes them by name instead of defining its own copy. Tests that
need a server with other options (credentials, TLS, refused addresses) still
start their own ``SmtpServer(...)`` or ``FakeSendGrid(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fake_sendgrid import FakeSendGrid
from smtp_server import SmtpServer

# The API key the fake SendGrid of :func:`fake_sendgrid` accepts.
SENDGRID_KEY = "SG.standin-tests.secret-value"


@pytest.fixture(scope="module")
def smtp_utf8() -> Iterator[SmtpServer]:
    """An SMTP server that offers SMTPUTF8."""
    with SmtpServer(smtputf8=True) as server:
        yield server


@pytest.fixture(scope="module")
def smtp_ascii() -> Iterator[SmtpServer]:
    """An SMTP server without SMTPUTF8 (an address with non-ASCII before the @ must be refused)."""
    with SmtpServer(smtputf8=False) as server:
        yield server


@pytest.fixture(scope="module")
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    """The fake SendGrid Mail Send API, taking :data:`SENDGRID_KEY`; call ``reset()`` between uses."""
    with FakeSendGrid(api_key=SENDGRID_KEY) as server:
        yield server
