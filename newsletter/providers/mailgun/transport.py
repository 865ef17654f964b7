"""Mailgun's Messages API through the official ``mailgun`` SDK.

One request carries one edition to up to 1,000 recipients (batch sending
with recipient-variables, :mod:`newsletter.providers.mailgun.body`): the
HTML and text go once, each recipient's merge values, List-Unsubscribe
headers, our Message-ID (``h:Message-Id``) and our ids (``v:message_id``,
``v:campaign_id``, ``v:subscriber_id``: webhook events carry them back in
``user-variables``) travel as recipient variables.

Answers (outcomes as in ``newsletter.delivery.base``):

- 200 ``{"id": ..., "message": "Queued. Thank you."}``: QUEUED, provider id
  the ``id`` (one for the whole request);
- 429: wait for ``Retry-After`` (seconds) or ``X-RateLimit-Reset`` plus
  jitter, try again;
- 500, 503 and other 5xx Mailgun answered itself, or a connection that
  failed before the request went out: backoff and try again; when attempts
  run out, FAILED and retryable;
- 502, 504: a gateway answered; Mailgun behind it may have accepted: UNKNOWN;
- a timeout or dropped connection after the body went out: UNKNOWN;
- 400 and other 4xx: REJECTED, not retryable;
- 401, 403: :class:`PermanentTransportError` naming MAILGUN_API_KEY;
  404 (the domain is not in this region's account): the same, naming the
  domain and region settings.

Mailgun refuses a whole request with a 400 (``... is not a valid
address``) when one address fails its syntax check, without saying which.
Our own check (``body._address``) refuses most such addresses before the
request; for the rest, :meth:`MailgunTransport._isolate` splits the request
in halves until the culprits stand alone (a 400 means nothing of it was
sent, so sending parts again cannot duplicate).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from newsletter.delivery.base import PermanentTransportError, Transport, results_for
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.wire import UnsendableAddress
from newsletter.errors import ConfigError
from newsletter.providers.mailgun.body import MAX_RECIPIENTS, Shared, build_form, shared_parts
from newsletter.providers.mailgun.client import MessagesClient

log = logging.getLogger(__name__)

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
DEFAULT_TIMEOUT = 30.0
KEY_HINT = (
    "check MAILGUN_API_KEY: it must be a current Mailgun API key (Mailgun console > API Security) "
    "with access to the sending domain"
)
DOMAIN_HINT = ("check [mailgun] domain (NEWSLETTER_MAILGUN_DOMAIN) and region (NEWSLETTER_MAILGUN_REGION): "
               "a domain made in the EU region is only found at api.eu.mailgun.net")
_UNKNOWN_5XX = (502, 504)  # a gateway answered; Mailgun behind it may have taken the request
_BAD_ADDRESS = re.compile(r"\b(to|cc|bcc)\b.*not a valid address", re.IGNORECASE)
_MAX_CULPRITS = 4  # culprits found by halving before the rest keep the 400
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class MailgunTransport(Transport):
    """Sends through Mailgun's Messages API, up to 1,000 recipients a request.

    ``domain`` is the sending domain as Mailgun knows it; ``host`` the API
    base URL (``https://api.mailgun.net``, ``https://api.eu.mailgun.net``,
    or a local server in tests); ``test_mode`` asks Mailgun to accept
    without delivering (``o:testmode``); ``timeout`` bounds each request
    (seconds); ``retry`` is the :class:`RetryPolicy` applied inside
    :meth:`send_batch`.
    """

    name = "mailgun"
    max_batch = MAX_RECIPIENTS

    def __init__(self, api_key: str, domain: str, *, host: str = REGIONS["us"], test_mode: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None):
        super().__init__()
        if not api_key:
            raise ConfigError("MAILGUN_API_KEY is not set", hint=KEY_HINT)
        if domain and not _DOMAIN.fullmatch(domain):
            raise ConfigError(f"the Mailgun domain {domain!r} is not a domain name",
                              hint='set [mailgun] domain to the sending domain as Mailgun lists it: "mg.example.org"')
        if not domain:
            raise ConfigError("the mailgun transport needs the sending domain",
                              hint='set domain = "mg.example.org" in [mailgun] of newsletter.toml '
                                   "(or NEWSLETTER_MAILGUN_DOMAIN)")
        self._api_key = api_key
        self.domain = domain
        self.host = (host or REGIONS["us"]).rstrip("/")
        self.test_mode = test_mode
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client: MessagesClient | None = None
        self._shared: tuple[Message, Shared] | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> MailgunTransport:
        """A transport from :class:`~newsletter.config.Settings` (``overrides`` win)."""
        if not settings.mailgun_api_key and "api_key" not in overrides:
            raise ConfigError(
                "the mailgun transport needs MAILGUN_API_KEY",
                hint="export MAILGUN_API_KEY=<a Mailgun API key>, or pick another transport with NEWSLETTER_TRANSPORT",
            )
        options = {"api_key": settings.mailgun_api_key, "domain": settings.mailgun_domain,
                   "host": settings.mailgun_base_url, "test_mode": settings.mailgun_test_mode, **overrides}
        return cls(options.pop("api_key"), options.pop("domain"), **options)

    def open(self) -> None:
        if self._client is None:
            try:
                self._client = MessagesClient(self._api_key, self.host, self.domain, self.timeout)
            except ValueError as exc:  # the SDK refuses plain http:// to another host than localhost
                raise ConfigError(f"the Mailgun host {self.host!r} is refused: {exc}",
                                  hint="set [mailgun] host to an https:// URL, or remove it and set region") from None
        super().open()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        super().close()

    def _shared_parts(self, message: Message) -> Shared:
        """The edition's shared form fields, built once for all its batches."""
        if self._shared is None or self._shared[0] is not message:
            self._shared = (message, shared_parts(message, test_mode=self.test_mode))
        return self._shared[1]

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        try:
            shared = self._shared_parts(message)
        except UnsendableAddress as exc:
            raise PermanentTransportError(f"Mailgun cannot send from this address: {exc}",
                                          hint="check NEWSLETTER_FROM (and the reply-to address)") from None
        fields, included, results = build_form(shared, recipients)
        if included:
            chosen = [recipients[i] for i in included]
            answers, bad_address = self._post_with_retries(fields, chosen)
            if bad_address and len(chosen) > 1:
                try:
                    answers = self._isolate(shared, chosen, answers)
                except PermanentTransportError as exc:
                    # Parts already accepted must be recorded, or a resume would send them twice.
                    for index, answer in zip(included, exc.results or (), strict=False):
                        results[index] = answer
                    exc.results = [r or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                   error="not attempted: the send stopped")
                                   for recipient, r in zip(recipients, results, strict=True)]
                    raise
            for index, answer in zip(included, answers, strict=True):
                results[index] = answer
        return results  # type: ignore[return-value]

    def _post_with_retries(self, fields: list[tuple[str, str]],
                           recipients: list[Recipient]) -> tuple[list[SendResult], bool]:
        """Post ``fields``; retry where it is safe.

        Returns ``(results, bad_address)``: one result per recipient, and
        whether Mailgun refused the request with a 400 that blames an address.
        """
        attempt = 0
        while True:
            attempt += 1
            wait, results, bad_address = self._attempt(fields, recipients, attempt)
            if wait is None:
                return results, bad_address
            if not self.retry.can_retry(attempt):
                log.warning("mailgun: giving up after %d attempts (%s)", attempt, results[0].error)
                return results, False
            log.info("mailgun: %s; retrying in %.1f s", results[0].error, wait)
            self.retry.sleep(wait)

    def _isolate(self, shared: Shared, recipients: list[Recipient], results: list[SendResult]) -> list[SendResult]:
        """After a 400 that blames an address: find the culprits by halving, send everyone else.

        Finding one culprit costs two requests a level, so at most
        ``2 * ceil(log2(n)) * 4 + 2`` extra requests: beyond four culprits,
        those not yet isolated keep the 400 as their result.
        """
        final: list[SendResult | None] = [None] * len(recipients)
        budget = 2 * max(1, (len(recipients) - 1).bit_length()) * _MAX_CULPRITS + 2
        pending = [(list(range(len(recipients))), results)]
        while pending:
            part, answers = pending.pop()
            if len(part) == 1 or budget <= 0:
                for position, index in enumerate(part):
                    final[index] = answers[position]
                continue
            middle = len(part) // 2
            for piece in (part[:middle], part[middle:]):
                budget -= 1
                people = [recipients[i] for i in piece]
                fields, included, built = build_form(shared, people)
                assert len(included) == len(people), "these recipients were built once already"
                try:
                    sub_results, bad_address = self._post_with_retries(fields, people)
                except PermanentTransportError as exc:  # a 401 between two parts: keep what is known
                    exc.results = [result or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                        error="not attempted: the send stopped")
                                   for recipient, result in zip(recipients, final, strict=True)]
                    raise
                if bad_address:
                    pending.append((piece, sub_results))
                else:
                    for index, result in zip(piece, sub_results, strict=True):
                        final[index] = result
        log.info("mailgun: a 400 blamed an address; %d of %d recipients refused, the others went again",
                 sum(1 for r in final if r is not None and r.outcome is Outcome.REJECTED), len(recipients))
        return final  # type: ignore[return-value]

    def _attempt(self, fields: list[tuple[str, str]], recipients: list[Recipient],
                 attempt: int) -> tuple[float | None, list[SendResult], bool]:
        """One request. Returns ``(wait, results, bad_address)``: ``wait`` is None when final."""
        from mailgun.handlers.error_handler import ApiError

        assert self._client is not None
        try:
            response = self._client.post(fields)
        except ApiError as exc:
            if _before_sending(exc.__cause__):
                error = f"connection failed before sending: {_reason(exc.__cause__)}"
                return (self.retry.backoff(attempt),
                        results_for(recipients, Outcome.FAILED, retryable=True, error=error), False)
            error = f"no answer after the request was sent ({_reason(exc.__cause__)}): it may have been accepted"
            return None, results_for(recipients, Outcome.UNKNOWN, error=error), False
        status = response.status_code
        if status == 200:
            return None, results_for(recipients, Outcome.QUEUED, provider_id=_message_id(response)), False
        return self._http_error(response, recipients, attempt)

    def _http_error(self, response: Any, recipients: list[Recipient],
                    attempt: int) -> tuple[float | None, list[SendResult], bool]:
        status = int(response.status_code)
        detail = f"{status} {_error_text(response)}".strip()
        if status in (401, 403):
            raise PermanentTransportError(
                f"Mailgun refused the API key for domain {self.domain!r} ({status}) at {self.host}",
                hint=KEY_HINT, status=status, login_refused=True) from None
        if status == 404:
            raise PermanentTransportError(
                f"Mailgun does not know the domain {self.domain!r} at {self.host} (404: {_error_text(response)})",
                hint=DOMAIN_HINT, status=404) from None
        if status == 429:
            wait = self.retry.rate_limit_wait(self._reset(response.headers), attempt)
            return (wait, results_for(recipients, Outcome.FAILED, retryable=True, error=f"rate limited ({detail})"),
                    False)
        if status in _UNKNOWN_5XX:
            return None, results_for(recipients, Outcome.UNKNOWN,
                                     error=f"gateway error, may have been accepted ({detail})"), False
        if status >= 500:
            return (self.retry.backoff(attempt),
                    results_for(recipients, Outcome.FAILED, retryable=True, error=detail), False)
        bad_address = status == 400 and bool(_BAD_ADDRESS.search(detail))
        return None, results_for(recipients, Outcome.REJECTED, error=detail[:500]), bad_address

    def _reset(self, headers: Any) -> str | None:
        """The epoch second a 429 says to wait for: ``Retry-After`` (seconds) first, then ``X-RateLimit-Reset``."""
        if not headers:
            return None
        try:
            return str(self.retry.clock() + float(str(headers.get("Retry-After"))))
        except ValueError:
            reset = headers.get("X-RateLimit-Reset")
            return str(reset) if reset is not None else None

    def __repr__(self) -> str:
        return f"<MailgunTransport host={self.host!r} domain={self.domain!r} test_mode={self.test_mode}>"


def _before_sending(cause: BaseException | None) -> bool:
    """Whether a ``requests`` exception means the request never went out (connect refused, DNS, connect timeout)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(cause, requests.ConnectTimeout):
        return True
    if isinstance(cause, requests.ConnectionError) and not isinstance(cause, requests.exceptions.SSLError):
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        return isinstance(reason, NewConnectionError)
    return False


def _message_id(response: Any) -> str | None:
    try:
        value = response.json().get("id")
    except (ValueError, AttributeError):
        return None
    return str(value).strip("<>")[:200] if value else None


def _error_text(response: Any) -> str:
    """Mailgun's ``message`` from an error answer (or its text), short and without secrets."""
    try:
        text = str(response.json().get("message") or "")
    except (ValueError, AttributeError):
        text = response.text or ""
    return " ".join(text.split())[:300]


def _reason(exc: BaseException | None) -> str:
    return "connection error" if exc is None else type(exc).__name__
