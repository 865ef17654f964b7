"""What every public endpoint shares: the app's context, form reading, client address, error pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from newsletter.errors import ConfigError, Conflict, DeliveryError, InputError, NewsletterError, NotFound

log = logging.getLogger("newsletter.web")

_STATUS = ((NotFound, 404), (Conflict, 409), (ConfigError, 503), (DeliveryError, 503), (InputError, 400))


class Context:
    """Settings, store, pages, the transport factory and the clock of one app.

    ``clock`` returns seconds since the epoch (``time.time``); tests pass
    their own to age webhook timestamps and rate-limit windows.
    """

    def __init__(self, settings, store, pages, transport_factory: Callable, clock: Callable[[], float] | None):
        self.settings, self.store, self.pages = settings, store, pages
        self.transport_factory = transport_factory
        self.clock = clock or time.time

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def run(self, function: Callable, *args, **kwargs):
        """Run blocking work (the database, a transport) in the thread pool."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(function, *args, **kwargs)

    @staticmethod
    def error_status(exc: NewsletterError) -> int:
        """The HTTP status of an expected error: its ``http_status``, else 400, 404, 409 or 503 by its kind."""
        explicit = getattr(exc, "http_status", None)
        return explicit or next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)

    def error_page(self, exc: NewsletterError):
        """A friendly page for an expected error, with :meth:`error_status`."""
        status = self.error_status(exc)
        if status == 503:
            log.warning("refused a request: %s", exc.message)
        paragraphs = [exc.message[:1].upper() + exc.message[1:] + "."]
        if exc.hint:
            paragraphs.append(exc.hint[:1].upper() + exc.hint[1:] + ".")
        heading = {400: "This did not work", 403: "This did not work", 404: "This link does not work",
                   410: "This link has expired", 429: "Please wait a little"}.get(status, "Something is not right")
        return self.pages.message(heading, *paragraphs, status=status)


async def read_form(request) -> dict[str, str]:
    """The posted form (urlencoded or multipart) as plain strings; InputError when unreadable or holding NUL."""
    from newsletter.web.guards import BodyTooLarge

    try:
        form = await request.form()
    except BodyTooLarge:
        raise  # answered 413 by guards.BodyLimit
    except Exception:  # noqa: BLE001 - python-multipart raises several types for broken bodies
        raise InputError("the form could not be read", hint="post it as application/x-www-form-urlencoded") from None
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if any("\x00" in key or "\x00" in value for key, value in fields.items()):
        # No field of ours may hold a NUL (and PostgreSQL text cannot store one).
        raise InputError("the form holds a character that is not allowed", hint="remove control characters")
    return fields


def client_ip(request) -> str | None:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else None
