"""Fetching a blog's feed over HTTP(S): a conditional GET with a timeout and a size cap.

Contract of :func:`fetch`:

- only ``http``/``https`` URLs, redirects included (a redirect elsewhere is an error);
- ``If-None-Match`` / ``If-Modified-Since`` from the validators of the last
  fetch whose items were recorded; a ``304`` answers ``Fetched(status=304)``
  with no body;
- every socket operation times out after ``timeout`` seconds and the whole
  body must arrive within ``deadline`` seconds (a server trickling bytes
  cannot hold a poll for ever);
- the body (after gzip) is at most ``max_bytes``; more is an error, never a
  truncated feed;
- every failure (DNS, refused, timeout, HTTP 4xx/5xx, too large) is a
  :class:`FeedFetchError` with one line for people and the HTTP status when
  there was one. Nothing is retried here: the next poll is the retry.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from newsletter.errors import NewsletterError

TIMEOUT_SECONDS = 20.0  # per connect/read
DEADLINE_SECONDS = 60.0  # for the whole body
MAX_BYTES = 5 * 1024 * 1024  # a blog's feed is tens or hundreds of KB; 5 MB is far beyond any real one
ACCEPT = ("application/feed+json, application/atom+xml, application/rss+xml, application/json;q=0.9, "
          "application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1")


class FeedFetchError(NewsletterError):
    """The feed could not be fetched; ``status`` is the HTTP status when the server answered."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None):
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Fetched:
    status: int  # 200 (or another 2xx) or 304
    body: bytes = b""
    content_type: str = ""
    url: str = ""  # after redirects
    etag: str | None = None
    last_modified: str | None = None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (urllib would follow one to ftp:)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FeedFetchError(f"the feed redirects to a non-web address ({newurl[:80]})", status=code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, *, etag: str | None = None, last_modified: str | None = None,
          timeout: float = TIMEOUT_SECONDS, deadline: float = DEADLINE_SECONDS,
          max_bytes: int = MAX_BYTES, user_agent: str = "newsletter feed reader") -> Fetched:
    """GET ``url`` conditionally; see the module docstring."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise FeedFetchError(f"not a web address: {url[:80]}")
    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers, method="GET")
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    started = time.monotonic()
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_capped(response, max_bytes, started + deadline)
            encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
            if encoding == "gzip":
                body = _gunzip(body, max_bytes)
            elif encoding not in ("", "identity"):
                raise FeedFetchError(f"the server sent the feed in an encoding this reader does not know "
                                     f"({encoding[:20]})", status=response.status)
            return Fetched(status=response.status, body=body,
                           content_type=response.headers.get("Content-Type") or "", url=response.geturl(),
                           etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified"))
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(status=304, url=url, etag=etag, last_modified=last_modified)
        reason = " ".join(str(exc.reason or "").split())[:80]
        raise FeedFetchError(f"HTTP {exc.code} {reason}".rstrip(), status=exc.code) from None
    except FeedFetchError:
        raise
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):  # socket.timeout is TimeoutError
            raise FeedFetchError(f"no answer within {timeout:g} s") from None
        raise FeedFetchError(f"cannot reach the feed: {_one_line(exc.reason)}") from None
    except TimeoutError:
        raise FeedFetchError(f"no answer within {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise FeedFetchError(f"TLS error: {_one_line(exc)}") from None
    except (OSError, ValueError) as exc:  # a connection reset mid-body, an unreadable URL
        raise FeedFetchError(f"cannot fetch the feed: {_one_line(exc)}") from None


def _read_capped(response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FeedFetchError(f"the feed is {int(declared):,} bytes, more than the limit of {max_bytes:,}",
                             status=response.status)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FeedFetchError(f"the feed is more than the limit of {max_bytes:,} bytes", status=response.status)
        if time.monotonic() > deadline:
            raise FeedFetchError("the feed took too long to arrive", status=response.status)
        chunks.append(chunk)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, max_bytes + 1)
    except zlib.error:
        raise FeedFetchError("the server's gzip data is corrupt") from None
    if len(data) > max_bytes or decompressor.unconsumed_tail:
        raise FeedFetchError(f"the feed is more than the limit of {max_bytes:,} bytes once unzipped")
    return data


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:160]
