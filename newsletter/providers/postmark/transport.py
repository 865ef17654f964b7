"""Postmark's batch email API: up to 500 messages a request, one result per message.

Each recipient gets a complete message (``newsletter.providers.postmark.body``)
on the broadcast message stream (setting ``message_stream``, default
``broadcast``), with our List-Unsubscribe, List-Unsubscribe-Post and
Message-ID in ``Headers`` and our Message-ID in ``Metadata`` (events map
back through it). A batch of more than 50 MB is split into several requests.

Answers (outcomes as in ``newsletter.delivery.base``). A 200 carries one
result per message, in order, ``{ErrorCode, Message, MessageID, To}``:

- ErrorCode 0: QUEUED, provider id Postmark's MessageID;
- 406 (inactive recipient: Postmark suppressed the address after a hard
  bounce, a spam complaint or an unsubscribe): REJECTED, not retryable;
- 300 (invalid email request: a bad address...) and other codes: REJECTED
  for that recipient alone;
- 429 or 100 (rate limit, maintenance) for a message: only those messages
  go again (Postmark took none of them), after a backoff;
- 10 (bad token): stop, as a 401.

Whole-request answers:

- 401 (ErrorCode 10): :class:`PermanentTransportError` naming POSTMARK_SERVER_TOKEN;
- 422 whose ErrorCode says every request will fail (400/401 sender
  signature, 405 not allowed to send, 412/413 account pending or may not
  send): :class:`PermanentTransportError` with the hint; other 422s and 4xx:
  REJECTED for the request's recipients;
- 429, 500, 503 and other 5xx Postmark answered itself, or a connection that
  failed before the request went out: backoff (``Retry-After`` when given)
  and try again; FAILED and retryable when attempts run out;
- 502, 504: a gateway answered; Postmark behind it may have accepted: UNKNOWN;
- a timeout, dropped connection or unreadable answer after the body went
  out: UNKNOWN.

The token is never logged or shown: errors quote Postmark's messages only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from newsletter.delivery.base import PermanentTransportError, Transport, results_for
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.wire import UnsendableAddress
from newsletter.errors import ConfigError
from newsletter.providers.postmark.body import MAX_MESSAGES, BatchBuilder, chunks, parts
from newsletter.providers.postmark.client import Answer, BatchClient

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.postmarkapp.com"
DEFAULT_STREAM = "broadcast"
DEFAULT_TIMEOUT = 60.0  # a 50 MB batch takes a while to upload
TOKEN_HINT = ("check POSTMARK_SERVER_TOKEN: it must be the Server API token of the Postmark server that owns "
              "the message stream (Servers > your server > API Tokens)")
SENDER_HINT = ("check NEWSLETTER_FROM: Postmark sends only from a confirmed sender signature or a verified domain "
               "(Sender Signatures in the Postmark console)")
ACCOUNT_HINT = "check the Postmark account: it is pending approval, out of credits or not allowed to send"
OK = 0
BAD_TOKEN = 10
INVALID_EMAIL = 300
INACTIVE_RECIPIENT = 406
RETRY_CODES = frozenset({429, 100})  # rate limit exceeded, maintenance: not accepted, safe to send again
SENDER_CODES = frozenset({400, 401})  # sender signature not found / not confirmed
ACCOUNT_CODES = frozenset({405, 412, 413})  # not allowed to send, account pending, account may not send
_UNKNOWN_5XX = (502, 504)


class PostmarkTransport(Transport):
    """Sends through Postmark's ``POST /email/batch``, up to 500 recipients a request.

    ``host`` is the API base URL (a local server in tests); ``stream`` the
    message stream (a Broadcast stream for newsletters); ``timeout`` bounds
    each request (seconds); ``retry`` is the :class:`RetryPolicy` applied
    inside :meth:`send_batch`.
    """

    name = "postmark"
    max_batch = MAX_MESSAGES

    def __init__(self, token: str, *, host: str = DEFAULT_HOST, stream: str = DEFAULT_STREAM,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None):
        super().__init__()
        if not token:
            raise ConfigError("POSTMARK_SERVER_TOKEN is not set", hint=TOKEN_HINT)
        self._token = token
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.stream = stream or DEFAULT_STREAM
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client: BatchClient | None = None
        self._builder: tuple[int, BatchBuilder] | None = None
        self._last_error = ""  # why the last attempt left messages to send again (for logs and results)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> PostmarkTransport:
        """A transport from :class:`~newsletter.config.Settings` (``overrides`` win)."""
        if not settings.postmark_server_token and "token" not in overrides:
            raise ConfigError(
                "the postmark transport needs POSTMARK_SERVER_TOKEN",
                hint="export POSTMARK_SERVER_TOKEN=<the server's API token>, or pick another transport "
                "with NEWSLETTER_TRANSPORT",
            )
        options = {"token": settings.postmark_server_token, "host": settings.postmark_host,
                   "stream": settings.postmark_message_stream, **overrides}
        return cls(options.pop("token"), **options)

    def open(self) -> None:
        if self._client is None:
            self._client = BatchClient(self._token, self.host, self.timeout)
        super().open()

    def close(self) -> None:
        self._client = None  # urllib keeps no connection open between requests
        self._builder = None
        super().close()

    def _builder_for(self, message: Message) -> BatchBuilder:
        """The edition's builder, made once per Message (a send passes the same one for every batch)."""
        if self._builder is None or self._builder[0] != id(message) or self._builder[1].message is not message:
            try:
                self._builder = (id(message), BatchBuilder(message, self.stream))
            except UnsendableAddress as exc:
                raise PermanentTransportError(f"Postmark cannot send from this address: {exc}",
                                              hint="check NEWSLETTER_FROM (and the reply-to address)") from None
        return self._builder[1]

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        entries, results = self._builder_for(message).entries(recipients)
        for group in chunks(entries):
            indexes = [index for index, _ in group]
            try:
                answers = self._post_with_retries(group, [recipients[i] for i in indexes])
            except PermanentTransportError as exc:
                # Groups already accepted must be recorded, or a resume would send them twice.
                for index, answer in zip(indexes, exc.results or (), strict=False):
                    results[index] = answer
                exc.results = [result or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                    error="not attempted: the send stopped")
                               for recipient, result in zip(recipients, results, strict=True)]
                raise
            for index, answer in zip(indexes, answers, strict=True):
                results[index] = answer
        return results  # type: ignore[return-value]

    def _post_with_retries(self, group: list[tuple[int, bytes]], recipients: list[Recipient]) -> list[SendResult]:
        """Send one request-sized group; retry what is safe. One result per recipient."""
        final: list[SendResult | None] = [None] * len(recipients)
        pending = list(range(len(recipients)))  # positions still to send
        attempt = 0
        while pending:
            attempt += 1
            body = parts([group[p] for p in pending])
            try:
                wait, answers = self._attempt(body, [recipients[p] for p in pending], attempt)
            except PermanentTransportError as exc:
                # Messages accepted by an earlier attempt (or in this answer) must be recorded, or a
                # resume would send them twice; the others were not accepted.
                for position, known in zip(pending, exc.results or (), strict=False):
                    final[position] = known
                exc.results = [result or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                    error="not sent: the send stopped")
                               for recipient, result in zip(recipients, final, strict=True)]
                raise
            retry: list[int] = []
            for position, answer in zip(pending, answers, strict=True):
                if answer is None:
                    retry.append(position)
                else:
                    final[position] = answer
            if not retry:
                break
            if wait is None or not self.retry.can_retry(attempt):  # wait is set whenever a message is left
                for position in retry:
                    final[position] = SendResult(recipients[position].message_id, Outcome.FAILED, retryable=True,
                                                 error=self._last_error[:500])
                log.warning("postmark: giving up after %d attempts (%s)", attempt, self._last_error)
                break
            log.info("postmark: %s; retrying %d messages in %.1f s", self._last_error, len(retry), wait)
            self.retry.sleep(wait)
            pending = retry
        return final  # type: ignore[return-value]

    def _attempt(self, body: list[bytes], recipients: list[Recipient], attempt: int) -> tuple[float | None,
                                                                                         list[SendResult | None]]:
        """One request. Returns ``(wait, answers)``: an answer of None means "send this one again"
        (after ``wait`` seconds); raises PermanentTransportError when no send can succeed."""
        from http.client import HTTPException
        from urllib.error import URLError

        assert self._client is not None
        try:
            answer = self._client.post(body)
        except URLError as exc:
            # urllib wraps only errors raised while connecting and sending: the
            # request never went out in full, so Postmark cannot have accepted it.
            self._last_error = f"connection failed before sending: {_reason(exc.reason)}"
            return self.retry.backoff(attempt), [None] * len(recipients)
        except (OSError, HTTPException) as exc:  # timeout, reset, broken answer: after the body went out
            error = f"no answer after the request was sent ({_reason(exc)}): it may have been accepted"
            return None, list(results_for(recipients, Outcome.UNKNOWN, error=error))
        if answer.status == 200:
            return self._per_message(answer, recipients, attempt)
        return self._whole_request(answer, recipients, attempt)

    def _per_message(self, answer: Answer, recipients: list[Recipient],
                     attempt: int) -> tuple[float | None, list[SendResult | None]]:
        try:
            items = json.loads(answer.body)
            if not isinstance(items, list) or len(items) != len(recipients) or not all(
                    isinstance(item, dict) for item in items):
                raise ValueError("not one result per message")
        except ValueError:
            error = "unreadable answer to a request Postmark accepted: the messages may have been sent"
            return None, list(results_for(recipients, Outcome.UNKNOWN, error=error))
        answers: list[SendResult | None] = []
        wait: float | None = None
        bad_token = False
        for recipient, item in zip(recipients, items, strict=True):
            code = _code(item)
            text = _text(item.get("Message"))
            if code == OK:
                provider_id = item.get("MessageID")
                answers.append(SendResult(recipient.message_id, Outcome.QUEUED,
                                          provider_id=str(provider_id) if provider_id else None))
            elif code in RETRY_CODES:
                answers.append(None)
                self._last_error = f"Postmark ErrorCode {code} ({text})"
                # A rate limit goes through the policy's rate-limit wait, which scale-out workers share.
                wait = self.retry.rate_limit_wait(None, attempt) if code == 429 else self.retry.backoff(attempt)
            elif code == BAD_TOKEN:
                bad_token = True
                answers.append(SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                          error="not sent: Postmark refused the server token"))
            elif code == INACTIVE_RECIPIENT:
                answers.append(SendResult(recipient.message_id, Outcome.REJECTED, error=(
                    f"406 inactive recipient: Postmark suppresses this address (hard bounce, spam complaint or "
                    f"unsubscribe) ({text})")[:500]))
            else:
                answers.append(SendResult(recipient.message_id, Outcome.REJECTED,
                                          error=f"Postmark ErrorCode {code}: {text}"[:500]))
        if bad_token:
            exc = PermanentTransportError(f"Postmark refused the server token (ErrorCode 10) at {self.host}",
                                          hint=TOKEN_HINT, status=401,
                                          login_refused=True)
            exc.results = [a or SendResult(r.message_id, Outcome.FAILED, retryable=True,
                                           error="not sent: the send stopped")
                           for r, a in zip(recipients, answers, strict=True)]
            raise exc
        return wait, answers

    def _whole_request(self, answer: Answer, recipients: list[Recipient],
                       attempt: int) -> tuple[float | None, list[SendResult | None]]:
        status = answer.status
        code, text = _error(answer.body)
        detail = f"{status} {text}".strip() if code is None else f"{status} ErrorCode {code}: {text}"
        if status == 401 or code == BAD_TOKEN:
            raise PermanentTransportError(f"Postmark refused the server token (401 Unauthorized) at {self.host}",
                                          hint=TOKEN_HINT, status=401,
                                          login_refused=True)
        if status == 422 and code in SENDER_CODES:
            raise PermanentTransportError(f"Postmark refused the sender ({detail})", hint=SENDER_HINT, status=422)
        if status == 422 and code in ACCOUNT_CODES:
            raise PermanentTransportError(f"Postmark refused to send ({detail})", hint=ACCOUNT_HINT, status=422)
        if status == 429 or (status >= 500 and status not in _UNKNOWN_5XX):
            self._last_error = f"rate limited ({detail})" if status == 429 else detail
            return self._wait(answer, attempt), [None] * len(recipients)
        if status in _UNKNOWN_5XX:
            return None, list(results_for(recipients, Outcome.UNKNOWN,
                                          error=f"gateway error, may have been accepted ({detail})"))
        return None, list(results_for(recipients, Outcome.REJECTED, error=detail[:500]))

    def _wait(self, answer: Answer, attempt: int) -> float:
        """Seconds before the next attempt: after a 429, the policy's rate-limit wait (``Retry-After``
        seconds when given: scale-out workers share the pause), else its backoff."""
        if answer.status != 429:
            return self.retry.backoff(attempt)
        after = answer.headers.get("Retry-After") if answer.headers else None
        try:
            reset = str(self.retry.clock() + float(after)) if after is not None else None
        except ValueError:
            reset = None
        return self.retry.rate_limit_wait(reset, attempt)

    def __repr__(self) -> str:
        return f"<PostmarkTransport host={self.host!r} stream={self.stream!r}>"


def _code(item: dict[str, Any]) -> int:
    try:
        return int(item.get("ErrorCode", -1))
    except (TypeError, ValueError):
        return -1


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())[:300]


def _error(body: bytes) -> tuple[int | None, str]:
    """Postmark's ``{ErrorCode, Message}`` from an error body (None and the text when it is not that)."""
    try:
        data = json.loads(body)
        return int(data["ErrorCode"]), _text(data.get("Message"))
    except (ValueError, KeyError, TypeError):
        return None, _text(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)


def _reason(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"

