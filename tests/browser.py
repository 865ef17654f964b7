"""Browser tests with Playwright for Python driving Debian's Chromium (DESIGN.md section 6).

Shared by every test that needs a real browser:

- :func:`launch_chromium` starts Chromium (``NEWSLETTER_CHROMIUM`` or
  ``/usr/bin/chromium``) headless with the flags the design names; it calls
  ``need_service`` (skip, or fail under NEWSLETTER_REQUIRE_SERVICES=1) when
  Playwright or Chromium is missing.
- :func:`serve_app` runs an ASGI app under a real uvicorn server on
  127.0.0.1 and an ephemeral port, in a thread, for the length of a ``with``.
- :func:`local_only` makes a page refuse every request that is not to the
  test server, so a test proves the page needs no network.
- :func:`artefact_path` is where screenshots go: ``test-artifacts/`` at the
  repository root (git-ignored; CI keeps it).

Typical use, in a module-scoped fixture::

    with launch_chromium() as browser:
        yield browser
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from support.services import need_service
from support.web_server import running

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none."""
    candidate = os.environ.get("NEWSLETTER_CHROMIUM") or "/usr/bin/chromium"
    found = shutil.which(candidate) if not os.path.isabs(candidate) else candidate
    return found if found and os.access(found, os.X_OK) else None


@contextlib.contextmanager
def launch_chromium(**launch_options) -> Iterator:
    """A Playwright ``Browser`` on Debian's Chromium; need_service when it cannot start."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service("the playwright Python package is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        need_service("Chromium not found (apt-get install chromium, or set NEWSLETTER_CHROMIUM)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS, **launch_options
            )
        except PlaywrightError as exc:
            need_service(f"Chromium at {executable} did not start: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serve_app(app, *, timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (ephemeral port) in a thread; yields its base URL.

    The app's lifespan runs, and uvicorn logs warnings its own way (support.web_server.running's
    defaults suit the concurrency tests instead)."""
    from uvicorn.config import LOGGING_CONFIG

    with running(app, timeout=timeout, log_config=LOGGING_CONFIG, log_level="warning", lifespan="on",
                 timeout_graceful_shutdown=1, backlog=2048) as base_url:
        yield base_url


def local_only(page_or_context, base_url: str) -> list[str]:
    """Abort every request not to ``base_url`` (or about:/data:); returns the refused URLs."""
    refused: list[str] = []

    def route(route):
        url = route.request.url
        if url.startswith(base_url) or url.startswith(("data:", "about:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page_or_context.route("**/*", route)
    return refused


def artefact_path(name: str) -> Path:
    """``test-artifacts/<name>`` at the repository root, its folder created."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS / name
