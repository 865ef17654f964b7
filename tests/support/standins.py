"""Stand-in servers as fixtures: a local SMTP server (with and without
SMTPUTF8), the fake SendGrid, Postmark and Mailgun APIs, and moto's SES v2
server, one of each per test module.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``, so a
test module takes them by name instead of defining its own copy. Tests that
need a server with other options (credentials, TLS, refused addresses) still
start their own ``SmtpServer(...)`` or ``FakeSendGrid(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fake_mailgun import FakeMailgun
from fake_postmark import FakePostmark
from fake_sendgrid import FakeSendGrid
from smtp_server import SmtpServer

if TYPE_CHECKING:
    from support.ses import SesProxy

# The API key (Postmark: server token) every provider stand-in of this module accepts.
STANDIN_KEY = "SG.standin-tests.secret-value"
# The sending domain :func:`fake_mailgun` serves.
MAILGUN_DOMAIN = "mg.clinic.example"


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
    """The fake SendGrid Mail Send API, taking :data:`STANDIN_KEY`; call ``reset()`` between uses."""
    with FakeSendGrid(api_key=STANDIN_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_postmark() -> Iterator[FakePostmark]:
    """The fake Postmark batch API, taking :data:`STANDIN_KEY` as the server token; ``reset()`` between uses."""
    with FakePostmark(token=STANDIN_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_mailgun() -> Iterator[FakeMailgun]:
    """The fake Mailgun messages API for :data:`MAILGUN_DOMAIN`, taking :data:`STANDIN_KEY`; ``reset()`` between
    uses."""
    with FakeMailgun(api_key=STANDIN_KEY, domain=MAILGUN_DOMAIN) as server:
        yield server


@pytest.fixture(scope="module")
def moto_ses() -> Iterator[tuple[str, SesProxy]]:
    """moto's SES v2 server (its URL) behind ``tests/support/ses.py``'s proxy (GetAccount, credentials, faults)."""
    from support.ses import SesProxy, start_moto

    server, url = start_moto()
    with SesProxy(url, max_send_rate=1000) as proxy:
        yield url, proxy
    server.stop()
