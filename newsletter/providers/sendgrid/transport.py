"""SendGrid v3 Mail Send through the official ``sendgrid`` library.

One request carries one edition to up to 1,000 recipients: the HTML and text
go once, each recipient is a personalization holding their merge values as
substitutions (both token forms, see ``newsletter.delivery.merge``), their
List-Unsubscribe headers and our ids as ``custom_args`` (so webhook events
find their ledger row; SendGrid sets its own Message-ID header, ours travels
in ``custom_args.message_id`` and ``X-Newsletter-Message-ID``).

The body is built by :func:`~newsletter.providers.sendgrid.body.build_body`.
Requests go through :class:`~newsletter.providers.sendgrid.client.MailSendClient`
(public parts of the library only, with a timeout: the library sets none).

Answers (README, "Sending"; outcomes as in ``newsletter.delivery.base``):

- 202 (200 in sandbox mode): QUEUED, provider id from ``X-Message-Id``;
- 429: wait for ``X-RateLimit-Reset`` plus jitter, try again;
- 500, 503 and other 5xx SendGrid answered itself, or a connection that
  failed before the request went out: backoff and try again; when attempts
  run out, FAILED and retryable;
- 502, 504: a gateway answered; SendGrid behind it may have accepted: UNKNOWN;
- a timeout or dropped connection after the body went out: UNKNOWN;
- 400, 403, 413 (other 4xx too): REJECTED, not retryable;
- 401: :class:`PermanentTransportError` naming SENDGRID_API_KEY.

One invalid recipient makes SendGrid refuse the whole request with a 400
(nothing of it is sent). When the 400 blames personalizations, the
transport isolates the culprits (:meth:`SendGridTransport._isolate`): the
personalizations the errors name are rejected with SendGrid's reason and
the rest is sent again; when the errors name none, the request is split in
halves, and so on. The all-good path stays one request; the extra requests
are bounded (two per halving, 2 * log2(recipients) per culprit, for a few culprits).

The API key is never logged: the library logs its request headers at debug
level, so a filter redacts ``Bearer`` values and drops request payloads.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from newsletter.delivery.base import PermanentTransportError, Transport, results_for
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult, cause_of
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.wire import UnsendableAddress
from newsletter.errors import ConfigError
from newsletter.providers.sendgrid.body import build_body
from newsletter.providers.sendgrid.client import MailSendClient

if TYPE_CHECKING:
    from newsletter.config import Settings

# SendGrid's error objects ({"message", "field", "help"}) from a refused request's body.
Errors = list[dict[str, Any]]
# One request's outcome: (seconds to wait before retrying, or None when final; a result per recipient;
# the errors of a 400 that blames personalizations, else None).
Attempt = tuple[float | None, list[SendResult], Errors | None]

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT = 30.0
MAX_PERSONALIZATIONS = 1000
KEY_HINT = (
    "check SENDGRID_API_KEY: it must be a current SendGrid API key with the Mail Send permission "
    "(Settings > API Keys in the SendGrid console)"
)
_UNKNOWN_5XX = (502, 504)  # a gateway answered; SendGrid behind it may have taken the request


class SendGridTransport(Transport):
    """Sends through SendGrid's v3 Mail Send API, up to 1,000 recipients a request.

    ``host`` is the API base URL (``https://api.eu.sendgrid.com`` for EU data
    residency, a local server in tests); ``sandbox`` asks SendGrid to
    validate without delivering; ``timeout`` bounds each request (seconds);
    ``retry`` is the :class:`RetryPolicy` applied inside :meth:`send_batch`.
    """

    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, api_key: str, *, host: str = DEFAULT_HOST, sandbox: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None):
        super().__init__()
        if not api_key:
            raise ConfigError("SENDGRID_API_KEY is not set", hint=KEY_HINT)
        self._api_key = api_key
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.sandbox = sandbox
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client: MailSendClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SendGridTransport:
        """A transport from :class:`~newsletter.config.Settings` (``overrides`` win)."""
        if not settings.sendgrid_api_key and "api_key" not in overrides:
            raise ConfigError(
                "the sendgrid transport needs SENDGRID_API_KEY",
                hint="export SENDGRID_API_KEY=<a key with Mail Send permission>, or pick another transport "
                "with NEWSLETTER_TRANSPORT",
            )
        options = {"api_key": settings.sendgrid_api_key, "host": settings.sendgrid_host,
                   "sandbox": settings.sendgrid_sandbox, **overrides}
        return cls(options.pop("api_key"), **options)

    def open(self) -> None:
        self._mail_client()
        super().open()

    def _mail_client(self) -> MailSendClient:
        if self._client is None:
            install_redaction(self._api_key)
            # The library's default is no timeout at all: a stalled request would hang the send.
            self._client = MailSendClient(self._api_key, self.host, self.timeout)
        return self._client

    def close(self) -> None:
        self._client = None  # the library keeps no connection open between requests
        super().close()

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        try:
            body, included, results = build_body(message, recipients, sandbox=self.sandbox)
        except UnsendableAddress as exc:
            raise PermanentTransportError(f"SendGrid cannot send from this address: {exc}",
                                          hint="check NEWSLETTER_FROM (and the reply-to address)") from None
        if included:
            chosen = [recipients[i] for i in included]
            answers, errors = self._post_with_retries(body, chosen)
            if errors is not None and len(chosen) > 1:
                try:
                    answers = self._isolate(body, chosen, answers, errors)
                except PermanentTransportError as exc:
                    # Parts already accepted must be recorded, or a resume would send them twice.
                    for index, answer in zip(included, exc.results or (), strict=False):
                        results[index] = answer
                    exc.results = _complete(results, recipients)
                    raise
            for index, answer in zip(included, answers, strict=False):
                results[index] = answer
        return _complete(results, recipients)

    def _post_with_retries(self, body: dict[str, Any],
                           recipients: list[Recipient]) -> tuple[list[SendResult], Errors | None]:
        """Post ``body``; retry where it is safe.

        Returns ``(results, errors)``: one result per recipient, and
        SendGrid's error list when it refused the request with a 400 that
        blames personalizations (None otherwise).
        """
        attempt = 0
        while True:
            attempt += 1
            wait, results, errors = self._attempt(body, recipients, attempt)
            if wait is None:
                return results, errors
            if not self.retry.can_retry(attempt):
                log.warning("sendgrid: giving up after %d attempts (%s)", attempt, results[0].error)
                return results, None
            log.info("sendgrid: %s; retrying in %.1f s", results[0].error, wait)
            self.retry.sleep(wait)

    def _isolate(self, body: dict[str, Any], recipients: list[Recipient], results: list[SendResult],
                 errors: Errors) -> list[SendResult]:
        """After a 400 that blames personalizations: find the culprits, send everyone else.

        A 400 means SendGrid took none of the request, so sending parts of it
        again cannot duplicate. The personalizations the errors name are
        REJECTED with SendGrid's reason and the others go again in one
        request; a 400 that names none splits the request in halves. Finding
        one culprit by halving costs two requests a level, so at most
        ``2 * ceil(log2(n)) * k + 2`` extra requests, ``k`` being the number
        of errors SendGrid listed (one per bad address), 4 at most: beyond
        that, those not yet isolated keep the 400 as their result.
        """
        final: list[SendResult | None] = [None] * len(recipients)
        culprits = min(4, max(1, len(errors)))
        budget = 2 * max(1, (len(recipients) - 1).bit_length()) * culprits + 2
        pending = [(list(range(len(recipients))), results, errors)]
        while pending:
            part, answers, part_errors = pending.pop()
            named = _blamed(part_errors, len(part))
            if len(part) == 1 or (named and len(named) == len(part)):
                for position, index in enumerate(part):
                    final[index] = _rejected(recipients[index], part_errors, position, answers[position])
                continue
            if budget <= 0:
                for position, index in enumerate(part):
                    final[index] = answers[position]
                continue
            if named:
                for position in named:
                    final[part[position]] = _rejected(recipients[part[position]], part_errors, position,
                                                      answers[position])
                pieces = [[index for position, index in enumerate(part) if position not in named]]
            else:
                middle = len(part) // 2
                pieces = [part[:middle], part[middle:]]
            for piece in pieces:
                budget -= 1
                sub_body = {**body, "personalizations": [body["personalizations"][i] for i in piece]}
                try:
                    sub_results, sub_errors = self._post_with_retries(sub_body, [recipients[i] for i in piece])
                except PermanentTransportError as exc:  # a 401 between two parts: keep what is known
                    exc.results = [result or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                        error="not attempted: the send stopped")
                                   for recipient, result in zip(recipients, final, strict=False)]
                    raise
                if sub_errors is not None:
                    pending.append((piece, sub_results, sub_errors))
                else:
                    for index, result in zip(piece, sub_results, strict=False):
                        final[index] = result
        log.info("sendgrid: a 400 blamed %d of %d recipients; the others went again",
                 sum(1 for r in final if r is not None and r.outcome is Outcome.REJECTED), len(recipients))
        return _complete(final, recipients)

    def _attempt(self, body: dict[str, Any], recipients: list[Recipient], attempt: int) -> Attempt:
        """One request. Returns ``(wait, results, errors)``: ``wait`` is None when
        final; ``errors`` as for :meth:`_post_with_retries`."""
        from urllib.error import URLError

        from python_http_client.exceptions import HTTPError

        try:
            response = self._mail_client().post(body)
        except HTTPError as exc:
            return self._http_error(exc, recipients, attempt)
        except URLError as exc:
            # urllib wraps only errors raised while connecting and sending: the
            # request never went out in full, so SendGrid cannot have accepted it.
            error = f"connection failed before sending: {_reason(exc.reason)}"
            return (self.retry.backoff(attempt),
                    results_for(recipients, Outcome.FAILED, retryable=True, error=error,
                                cause=cause_of(exc.reason if isinstance(exc.reason, BaseException) else None)), None)
        except OSError as exc:  # timeout, reset, RemoteDisconnected, after the body went out
            error = f"no answer after the request was sent ({_reason(exc)}): it may have been accepted"
            return None, results_for(recipients, Outcome.UNKNOWN, error=error), None
        except Exception as exc:  # http.client.HTTPException and kin: a broken answer
            from http.client import HTTPException

            if not isinstance(exc, HTTPException):
                raise
            error = f"unreadable answer after the request was sent ({type(exc).__name__})"
            return None, results_for(recipients, Outcome.UNKNOWN, error=error), None
        provider_id = response.headers.get("X-Message-Id") if response.headers else None
        return None, results_for(recipients, Outcome.QUEUED, provider_id=provider_id), None

    def _http_error(self, exc: Any, recipients: list[Recipient], attempt: int) -> Attempt:
        status = int(exc.status_code)
        errors = _errors(exc.body)
        detail = f"{status} {_error_text(exc.body, errors)}".strip()
        if status == 401:
            raise PermanentTransportError(
                f"SendGrid refused the API key (401 Unauthorized) at {self.host}", hint=KEY_HINT, status=401,
                login_refused=True) from None
        if status == 429:
            reset = exc.headers.get("X-RateLimit-Reset") if exc.headers else None
            wait = self.retry.rate_limit_wait(reset, attempt)
            return wait, results_for(recipients, Outcome.FAILED, retryable=True, error=f"rate limited ({detail})"), None
        if status in _UNKNOWN_5XX:
            return None, results_for(recipients, Outcome.UNKNOWN,
                                     error=f"gateway error, may have been accepted ({detail})"), None
        if status >= 500:
            return (self.retry.backoff(attempt),
                    results_for(recipients, Outcome.FAILED, retryable=True, error=detail), None)
        blames = status == 400 and any(str(e.get("field") or "").startswith("personalizations") for e in errors)
        return None, results_for(recipients, Outcome.REJECTED, error=detail), (errors if blames else None)

    def __repr__(self) -> str:
        return f"<SendGridTransport host={self.host!r} sandbox={self.sandbox}>"


def _complete(results: list[SendResult | None], recipients: list[Recipient]) -> list[SendResult]:
    """One result per recipient: a slot left empty (never expected) is UNKNOWN, so it is never resent blindly."""
    return [result or SendResult(recipient.message_id, Outcome.UNKNOWN, error="no result was recorded")
            for recipient, result in zip(recipients, results, strict=True)]


_INDEX = re.compile(r"personalizations\.(\d+)(?:\.|$)")


def _errors(body: Any) -> Errors:
    """SendGrid's ``errors`` list from a response body ([] when it has none)."""
    try:
        errors = json.loads(body)["errors"]
    except (ValueError, KeyError, TypeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _blamed(errors: Errors, count: int) -> set[int]:
    """The personalization indexes (below ``count``) the errors name."""
    named = set()
    for error in errors:
        match = _INDEX.match(str(error.get("field") or ""))
        if match and int(match.group(1)) < count:
            named.add(int(match.group(1)))
    return named


def _rejected(recipient: Recipient, errors: Errors, position: int, fallback: SendResult) -> SendResult:
    """REJECTED with SendGrid's reason for the personalization at ``position``."""
    reasons = []
    for error in errors:
        match = _INDEX.match(str(error.get("field") or ""))
        if match and int(match.group(1)) == position:
            where = str(error["field"])[match.end():]  # "to.0.email", without the request's index
            reasons.append(f"{error.get('message')} ({where})" if where else str(error.get("message")))
    text = f"400 {'; '.join(reasons)}" if reasons else fallback.error
    return SendResult(recipient.message_id, Outcome.REJECTED, error=redact(text or "400")[:500])


def _error_text(body: Any, errors: Errors | None = None) -> str:
    """SendGrid's error messages from a response body, short."""
    errors = _errors(body) if errors is None else errors
    if errors:
        text = "; ".join(f"{e.get('field') or ''}: {e.get('message')}".lstrip(": ") for e in errors)
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return redact(text)[:500]


def _reason(exc: object) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {redact(str(exc))}"


_BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)
_SG_KEY = re.compile(r"SG\.[\w-]{8,}\.[\w-]{8,}")


_SECRETS: set[str] = set()  # the keys of transports opened in this process


def redact(text: str) -> str:
    """``text`` with known keys, bearer tokens and SendGrid-shaped API keys replaced."""
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    return _SG_KEY.sub("[redacted]", _BEARER.sub(r"\1[redacted]", text))


class _RedactFilter(logging.Filter):
    """Keeps the API key (request headers) and recipients' data (payloads) out of logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("PAYLOAD:"):
            text = "PAYLOAD: [omitted]"
        record.msg, record.args = redact(text), None
        return True


def install_redaction(secret: str | None = None) -> None:
    """Attach the redacting filter to the library's logger (once); remember ``secret``."""
    if secret:
        _SECRETS.add(secret)
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())
