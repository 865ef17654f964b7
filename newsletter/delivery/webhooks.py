"""Sending one webhook: Standard Webhooks signing and one HTTP POST (no store, no retries).

Signing (https://www.standardwebhooks.com): the secret is ``whsec_`` and the
base64 of 24 random bytes; the signed content is ``{id}.{timestamp}.{body}``
(the timestamp in whole seconds since the epoch); the ``webhook-signature``
header is ``v1,`` and the base64 of its HMAC-SHA256. Receivers verify with
any Standard Webhooks library (tests/test_webhooks_delivery.py checks ours
against the ``standardwebhooks`` package).

:func:`post` sends the exact bytes given, follows no redirect (a receiver
that moved answers 3xx: a failure that names the status), reads at most
:data:`MAX_ANSWER_BYTES` of the answer, and never raises for network
errors: it answers a :class:`PostResult`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from newsletter.errors import InputError

PREFIX = "whsec_"
TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 4096
USER_AGENT = "newsletter-webhooks/1"


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and the base64 of 24 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; InputError when it is not one."""
    if not secret.startswith(PREFIX):
        raise InputError("a webhook secret starts with whsec_", hint="leave --secret out to get a fresh one")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except ValueError:
        raise InputError("a webhook secret is whsec_ and base64", hint="leave --secret out to get a fresh one") \
            from None
    if not 24 <= len(key) <= 64:
        raise InputError("a webhook secret holds 24 to 64 bytes", hint="leave --secret out to get a fresh one")
    return key


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one signed delivery."""
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": event_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, event_id, timestamp, body)}


def check_url(url: str) -> str:
    """``url`` as sent on the wire when it is an absolute http(s) URL with a host and no credentials
    (an IDN host in its ``xn--`` form, other non-ASCII characters percent-encoded); InputError otherwise."""
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise InputError("a webhook URL holds no spaces or control characters", hint="quote it as one word")
    if len(url) > 2000:
        raise InputError("a webhook URL is at most 2000 characters", hint="use a shorter path")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"not an http(s) URL: {url[:100]!r}",
                         hint="give the receiver's address, e.g. https://crm.example.org/hooks/newsletter")
    if parts.username or parts.password:
        raise InputError("a webhook URL must not hold a user name or password",
                         hint="the signature authenticates each delivery; the receiver checks it")
    try:
        port = f":{parts.port}" if parts.port else ""  # reading it checks it (urllib raises ValueError)
    except ValueError:
        raise InputError(f"not a valid port in {url[:100]!r}", hint="a port is a number from 1 to 65535") from None
    if url.isascii():
        return url
    try:
        host = idna.encode(parts.hostname, uts46=True).decode()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InputError(f"not a valid host name: {parts.hostname[:100]!r}", hint="check the URL's host") from None
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, host + port, *(quote(part, safe=_SAFE) for part in parts[2:])))


_SAFE = "/%:@!$&'()*+,;=~?#[]"  # characters with a meaning in a URL's path, query and fragment: kept


@dataclass(frozen=True)
class PostResult:
    """What the receiver answered: ``ok`` for any 2xx; ``status`` when it answered; ``error`` in one line."""

    ok: bool
    status: int | None
    error: str | None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str,
                         hdrs: object, newurl: str) -> None:
        return None  # the 3xx then reaches us as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, request_headers: dict[str, str], timeout: float = TIMEOUT_SECONDS) -> PostResult:
    """POST ``body`` to ``url``; any 2xx is a success, anything else (or no answer) a failure."""
    request = urllib.request.Request(url, data=body, headers=request_headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(MAX_ANSWER_BYTES)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read(MAX_ANSWER_BYTES)
        exc.close()
        return PostResult(False, exc.code, f"HTTP {exc.code} {_one_line(exc.reason)}".strip())
    except urllib.error.URLError as exc:
        return PostResult(False, None, _one_line(exc.reason))
    except TimeoutError:
        return PostResult(False, None, f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return PostResult(False, None, _one_line(exc) or type(exc).__name__)
    if 200 <= status < 300:
        return PostResult(True, status, None)
    return PostResult(False, status, f"HTTP {status}")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]
