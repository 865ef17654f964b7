"""Protections in front of every public endpoint: body size caps, private error logs, same-origin forms.

- :class:`BodyLimit` refuses a request body over its path's cap with 413:
  at once when ``Content-Length`` says so, else as soon as the streamed
  bytes pass the cap (nothing more is read; the handler never sees it).
- :class:`PrivateErrors` turns an unexpected exception into a plain 500 and
  logs where it happened without the exception's message or arguments
  (they can hold addresses, names and tokens).
- :func:`cross_site_refusal` tells whether a browser posted a form from a
  site that is not ours.
"""

from __future__ import annotations

import logging
import traceback
from urllib.parse import urlsplit

log = logging.getLogger("newsletter.web")

FORM_BODY_BYTES = 64 * 1024  # a signup or unsubscribe form is a few hundred bytes


class BodyTooLarge(Exception):
    """The request body passed its cap while being read."""


class BodyLimit:
    """ASGI middleware: ``limits`` maps a path prefix to its cap in bytes; other paths get ``default``.

    Under ``problem_paths`` (the HTTP API) the 413 is an RFC 9457 problem document.
    """

    def __init__(self, app, limits: dict[str, int], default: int = FORM_BODY_BYTES,
                 problem_paths: tuple[str, ...] = ()):
        self.app, self.limits, self.default, self.problem_paths = app, limits, default, problem_paths

    def cap(self, path: str) -> int:
        return next((cap for prefix, cap in self.limits.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope["path"])
        problem = scope["path"].startswith(self.problem_paths) if self.problem_paths else False
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _too_large(send, problem, cap)
            return
        seen = 0
        started = refused = False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    # Answer now: a framework that catches the error below (FastAPI turns any error while
                    # reading a body into a 400) must not answer in our place.
                    if not started and not refused:
                        refused = True
                        await _too_large(send, problem, cap)
                    raise BodyTooLarge()
            return message

        async def watched_send(message):
            nonlocal started
            if refused:
                return  # the 413 went out already; what the app says after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if refused:
                return
            if started:
                raise
            await _too_large(send, problem, cap)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send, problem: bool = False, cap: int = 0) -> None:
    content_type = b"application/json"
    body = b'{"error": "request body too large"}'
    if problem:
        import json

        content_type = b"application/problem+json"
        body = json.dumps({"type": "urn:newsletter:problem:content-too-large", "title": "Content too large",
                           "status": 413, "detail": f"the request body is larger than {cap} bytes",
                           "hint": "send less at once (split a large import into several files)"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class PrivateErrors:
    """ASGI middleware: an unexpected exception becomes a 500 and one log record free of personal data.

    The record names the method, the route (not the URL: it may hold a
    token), the exception's type and the code locations of its traceback;
    never the exception's message, which for a database error quotes the
    statement and, for a validation error, the value.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: log safely, answer 500
            where = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-6:]))
            first_segment = "/" + scope["path"].split("/", 2)[1][:40]  # never the token after it
            log.error("internal error on %s %s: %s\n%s", scope.get("method"), first_segment, type(exc).__name__,
                      where)
            if not started:
                body = b"Internal Server Error"
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL (lower case), or None when it has none."""
    try:
        parts = urlsplit(url.strip())
        if not parts.scheme or not parts.netloc:
            return None
        return f"{parts.scheme}://{parts.netloc}".lower()
    except ValueError:
        return None


def cross_site_refusal(headers, allowed: set[str]) -> str | None:
    """Why a form post must be refused as cross-site, or None when it may go on.

    Browsers tell where a form was posted from: ``Sec-Fetch-Site`` (modern
    browsers; ``same-origin`` means one of our own pages) and ``Origin`` (or
    ``Referer``). A post from a site outside ``allowed`` is refused, and so
    is an opaque ``Origin: null`` (a sandboxed frame). A request with none of
    these headers is not from a browser page and goes on (the per-address
    and per-IP limits still hold it).
    """
    fetch_site = (headers.get("sec-fetch-site") or "").strip().lower()
    if fetch_site == "same-origin":
        return None
    origin = (headers.get("origin") or "").strip()
    if origin == "null":
        return "the form was posted from a page that hides its origin"
    claimed = origin_of(origin) if origin else origin_of(headers.get("referer") or "")
    if claimed is not None:
        return None if claimed in allowed else "the form was posted from another website"
    if fetch_site in ("cross-site", "same-site"):
        return "the form was posted from another website"
    return None
