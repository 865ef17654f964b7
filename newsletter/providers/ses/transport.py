"""Amazon SES API v2 (``sesv2`` ``SendEmail``) through boto3: one raw MIME message per request.

Each recipient's message is written by our :class:`~newsletter.delivery.mime.MimeRenderer`
and sent as ``Content.Raw``, so our headers (List-Unsubscribe and
List-Unsubscribe-Post among them) reach the reader as we wrote them. SES
replaces the Message-ID header with its own: ours also travels in
``X-Newsletter-Message-ID`` and in message tags (``newsletter.providers.ses.tags``),
where the SNS events find it. The configuration set, when set, decides
which events SES publishes.

Requests run on a thread pool (``concurrency`` in flight: a boto3 client is
thread-safe, its session is not, so the session is made once in
:meth:`SesTransport.open`), paced together by one
:class:`~newsletter.delivery.pacing.RatePacer` at the account's
``MaxSendRate`` (read with ``GetAccount`` when the transport opens) or the
configured override. botocore's own retries are off: ours are below.

Answers (outcomes as in ``newsletter.delivery.base``):

- ``MessageId``: QUEUED, provider id SES's message id;
- throttling (``TooManyRequestsException``, ``ThrottlingException``, or
  "Maximum sending rate exceeded"): backoff and try again;
- a 5xx SES answered itself (500, 503), or a connection that failed before
  the request went out: backoff and try again; when attempts run out,
  FAILED and retryable;
- 502, 504 (a gateway), a read timeout or a connection closed after the
  request went out: UNKNOWN;
- ``MessageRejected``, ``BadRequestException`` and other 4xx about the
  message: REJECTED, for this recipient only;
- bad or missing credentials, missing permission, a suspended or paused
  account, an unverified sender, a missing configuration set, the daily
  quota spent: :class:`PermanentTransportError` with a hint; the send stops
  (the messages already accepted keep their results).

SES takes no SMTPUTF8: an address whose local part is not ASCII is
REJECTED for that recipient; IDN domains go out IDNA-encoded.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from newsletter.delivery.base import BUILD_ERRORS, PermanentTransportError, Transport, unbuildable
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.mime import MimeRenderer
from newsletter.delivery.pacing import RatePacer
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.wire import UnsendableAddress, parse_mailbox, wire_address
from newsletter.errors import ConfigError
from newsletter.providers.ses.tags import message_tags

if TYPE_CHECKING:
    from newsletter.config import Settings

log = logging.getLogger(__name__)

MESSAGE_ID_HEADER = "X-Newsletter-Message-ID"
DEFAULT_CONCURRENCY = 0  # automatic: enough in flight for the rate (see SesTransport.in_flight)
MAX_AUTO_CONCURRENCY = 50
ASSUMED_LATENCY = 0.2  # seconds an SES request may take under load, for the automatic concurrency
DEFAULT_TIMEOUT = 30.0
MAX_BATCH = 250  # recipients per send_batch call (each its own request); fewer batch boundaries keep the rate
CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
    "credentials, or AWS_PROFILE): they must belong to an IAM identity allowed ses:SendEmail"
)
_CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "IncompleteSignature",
    "MissingAuthenticationToken", "InvalidSignatureException", "ExpiredToken", "ExpiredTokenException",
    "AuthFailure", "InvalidAccessKeyId",
})
_THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling"})
_STOP_CODES = {
    "AccessDeniedException": "grant the IAM identity ses:SendEmail (and ses:GetAccount) on this identity",
    "AccountSuspendedException": "SES suspended sending for this account: see the SES console's account dashboard",
    "SendingPausedException": "sending is paused for this account or configuration set: resume it in the SES console",
    "MailFromDomainNotVerifiedException": "verify the custom MAIL FROM domain in the SES console",
    "NotFoundException": "check [ses] configuration_set: it must name a configuration set of this region",
}
_UNKNOWN_STATUSES = (502, 504)  # a gateway answered; SES behind it may have taken the message


class SesTransport(Transport):
    """Sends through Amazon SES API v2, one raw message per recipient, several in flight.

    ``region`` and ``endpoint_url`` choose the endpoint (None: boto3's own
    lookup, ``AWS_REGION``/``AWS_ENDPOINT_URL``...); ``configuration_set``
    names the SES configuration set (event publishing); ``max_send_rate``
    overrides the account's rate (messages a second; 0: read it with
    ``GetAccount``); ``concurrency`` is the number of requests in flight
    (0: enough for the rate at 200 ms a request, 4 to 50: ``in_flight``);
    ``timeout`` bounds each request (seconds); ``retry`` is the
    :class:`RetryPolicy` for throttling, 5xx and connection errors.
    Credentials come from boto3's standard chain (the ``AWS_*`` environment
    variables first), never from a file of ours.
    """

    name = "ses"
    max_batch = MAX_BATCH

    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None,
                 configuration_set: str | None = None, max_send_rate: float = 0.0,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None):
        super().__init__()
        if concurrency < 0:
            raise ConfigError("[ses] concurrency must be 0 (automatic) or more", hint="the default is 0")
        self.region, self.endpoint_url = region or None, endpoint_url or None
        self.configuration_set = configuration_set or None
        self.max_send_rate = max_send_rate
        self.concurrency, self.timeout = concurrency, timeout
        self.retry = retry or RetryPolicy()
        self.rate = 0.0  # the rate in force once open
        self.in_flight = concurrency  # the requests in flight once open
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._pacer = RatePacer(0)
        self._renderer: tuple[Message, MimeRenderer] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SesTransport:
        """A transport from :class:`~newsletter.config.Settings` (``overrides`` win)."""
        options: dict[str, Any] = {
            "region": settings.ses_region, "endpoint_url": settings.ses_endpoint_url,
            "configuration_set": settings.ses_configuration_set, "max_send_rate": settings.ses_max_send_rate,
            "concurrency": settings.ses_concurrency, **overrides,
        }
        return cls(**options)

    # -- opening: the client, the account's rate, the thread pool ---------------------------------

    def open(self) -> None:
        if self._client is None:
            self._client = self._make_client()
            self.rate = self.max_send_rate if self.max_send_rate > 0 else self._account_rate()
            self._pacer = RatePacer(self.rate)
            # Little's law: the rate times a request's time is what must be in flight to keep the rate.
            self.in_flight = self.concurrency or max(4, min(MAX_AUTO_CONCURRENCY,
                                                            math.ceil(self.rate * ASSUMED_LATENCY)))
            log.info("ses: sending at up to %.1f messages a second, %d in flight", self.rate, self.in_flight)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="ses-send")
        super().open()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client = None
        super().close()

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError
        except ImportError:
            raise ConfigError("the ses transport needs boto3",
                              hint="pip install 'newsletter[ses]' (or pip install boto3)") from None
        config = Config(
            connect_timeout=min(10.0, self.timeout), read_timeout=self.timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # our RetryPolicy decides
            max_pool_connections=self.concurrency or MAX_AUTO_CONCURRENCY, user_agent_extra="newsletter",
        )
        # botocore logs request parameters (addresses, whole messages) at DEBUG: never let them out.
        if logging.getLogger("botocore").level == logging.NOTSET:
            logging.getLogger("botocore").setLevel(logging.INFO)
        try:
            session = boto3.session.Session()
            return session.client("sesv2", region_name=self.region, endpoint_url=self.endpoint_url, config=config)
        except BotoCoreError as exc:  # NoRegionError, a malformed endpoint
            raise ConfigError(f"cannot set up the SES client: {exc}",
                              hint="set [ses] region in newsletter.toml (or AWS_REGION), e.g. eu-west-1") from None

    def _account_rate(self) -> float:
        """``SendQuota.MaxSendRate`` from ``GetAccount``; stops with a hint when it cannot be read."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            account = self._client.get_account()
        except ClientError as exc:
            code, status, text = _error_parts(exc)
            if code in _CREDENTIAL_CODES or status == 401:
                raise PermanentTransportError(f"SES refused the credentials ({code})", hint=CREDENTIALS_HINT,
                                              status=status, login_refused=True) from None
            raise PermanentTransportError(
                f"cannot read the account's sending rate (GetAccount: {code or status} {text})".strip(),
                hint="grant ses:GetAccount, or set [ses] max_send_rate (messages a second) in newsletter.toml",
                status=status) from None
        except BotoCoreError as exc:
            raise PermanentTransportError(f"cannot reach SES to read the account's sending rate: {exc}",
                                          hint=f"{CREDENTIALS_HINT}; check [ses] region and endpoint_url") from None
        if not account.get("ProductionAccessEnabled", True):
            log.warning("ses: the account is in the SES sandbox: only verified recipients receive mail")
        rate = float((account.get("SendQuota") or {}).get("MaxSendRate") or 0.0)
        if rate <= 0:
            raise PermanentTransportError("SES reported no sending rate for this account",
                                          hint="set [ses] max_send_rate (messages a second) in newsletter.toml")
        return rate

    # -- sending ---------------------------------------------------------------------------------

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        renderer = self._renderer_for(message)
        try:
            sender = wire_address(parse_mailbox(message.from_email)[1])
        except UnsendableAddress as exc:
            raise PermanentTransportError(f"SES cannot send from this address: {exc}",
                                          hint="check NEWSLETTER_FROM (and the reply-to address)") from None
        if renderer.sender_utf8:
            raise PermanentTransportError("SES cannot send from an address whose local part is not ASCII",
                                          hint="use an ASCII sender address in NEWSLETTER_FROM")
        stop = threading.Event()
        campaign_id = message.metadata.get("campaign_id")
        assert self._pool is not None
        futures: list[Future[SendResult]] = [
            self._pool.submit(self._send_one, renderer, sender, recipient, campaign_id, stop)
            for recipient in recipients
        ]
        results: list[SendResult] = []
        stopped: PermanentTransportError | None = None
        for recipient, future in zip(recipients, futures, strict=True):
            try:
                results.append(future.result())
            except PermanentTransportError as exc:
                stopped = stopped or exc
                results.append(_not_attempted(recipient))
        if stopped is not None:
            stopped.results = results  # the accepted ones must be recorded before stopping
            raise stopped
        return results

    def _renderer_for(self, message: Message) -> MimeRenderer:
        if self._renderer is None or self._renderer[0] is not message:
            self._renderer = (message, MimeRenderer(message))
        return self._renderer[1]

    def _send_one(self, renderer: MimeRenderer, sender: str, recipient: Recipient, campaign_id: str | None,
                  stop: threading.Event) -> SendResult:
        """Build and send one recipient's message, retrying where safe (runs on the pool)."""
        if stop.is_set():
            return _not_attempted(recipient)
        try:
            address = wire_address(recipient.email)
            if not address.isascii():
                return SendResult(recipient.message_id, Outcome.REJECTED,
                                  error="SES cannot send to an address whose local part is not ASCII (no SMTPUTF8)")
            tagged = replace(recipient, headers={**recipient.headers, MESSAGE_ID_HEADER: recipient.message_id})
            raw = renderer.render(tagged, address)
        except BUILD_ERRORS as exc:
            return unbuildable(recipient, exc)
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [address]},
            "Content": {"Raw": {"Data": raw}},
        }
        tags = message_tags(recipient.message_id, campaign_id)
        if tags:
            request["EmailTags"] = tags
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        attempt = 0
        while True:
            attempt += 1
            self._pacer.take()
            if stop.is_set():
                return _not_attempted(recipient)
            try:
                wait, result = self._attempt(request, recipient, sender, attempt)
            except PermanentTransportError:
                stop.set()
                raise
            if wait is None:
                return result
            if not self.retry.can_retry(attempt):
                log.warning("ses: giving up on a message after %d attempts (%s)", attempt, result.error)
                return result
            self.retry.sleep(wait)

    def _attempt(self, request: dict[str, Any], recipient: Recipient, sender: str,
                 attempt: int) -> tuple[float | None, SendResult]:
        """One request: ``(wait, result)``, ``wait`` None when the result is final."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        rid = recipient.message_id
        try:
            answer = self._client.send_email(**request)
        except ClientError as exc:
            return self._client_error(exc, recipient, sender, attempt)
        except (NoCredentialsError, PartialCredentialsError):
            raise PermanentTransportError("no AWS credentials for SES", hint=CREDENTIALS_HINT) from None
        except ConnectionError as exc:  # endpoint unreachable, connect timeout: nothing went out
            return (self.retry.backoff(attempt),
                    SendResult(rid, Outcome.FAILED, retryable=True,
                               error=f"connection failed before sending: {type(exc).__name__}"))
        except HTTPClientError as exc:  # read timeout, closed connection: the request may have gone out
            return None, SendResult(rid, Outcome.UNKNOWN,
                                    error=f"no answer after the request was sent ({type(exc).__name__}): "
                                          "it may have been accepted")
        except ParamValidationError as exc:  # boto3 refused the request before sending: this message only
            return None, SendResult(rid, Outcome.REJECTED, error=f"not a valid SES request: {exc}"[:500])
        except BotoCoreError as exc:  # an unreadable answer, after the request went out
            return None, SendResult(rid, Outcome.UNKNOWN,
                                    error=f"unreadable answer after sending ({type(exc).__name__})")
        return None, SendResult(rid, Outcome.QUEUED, provider_id=str(answer.get("MessageId") or "") or None)

    def _client_error(self, exc: Exception, recipient: Recipient, sender: str,
                      attempt: int) -> tuple[float | None, SendResult]:
        code, status, text = _error_parts(exc)
        text = _without(text, (recipient.email, sender))
        detail = f"{status} {code}: {text}".strip()[:500]
        rid, lowered = recipient.message_id, text.lower()
        if "daily message quota exceeded" in lowered:
            raise PermanentTransportError("SES: the account's daily sending quota is spent",
                                          hint="resume tomorrow (newsletter campaigns resume ID), or ask AWS "
                                               "for a higher quota", status=status)
        if code in _CREDENTIAL_CODES or status == 401:
            raise PermanentTransportError(f"SES refused the credentials ({code or status})", hint=CREDENTIALS_HINT,
                                          status=status, login_refused=True)
        if code in _STOP_CODES:
            raise PermanentTransportError(f"SES refused to send: {detail}", hint=_STOP_CODES[code], status=status)
        if code in _THROTTLE_CODES or status == 429 or "maximum sending rate exceeded" in lowered:
            # rate_limit_wait without a reset time is a backoff; a shared policy also pauses the other workers
            wait = max(self.retry.rate_limit_wait(None, attempt), 1.0 / self.rate if self.rate > 0 else 0.0)
            return wait, SendResult(rid, Outcome.FAILED, retryable=True, error=f"throttled ({detail})")
        if code == "MessageRejected" and _sender_refused(lowered, sender):
            raise PermanentTransportError(f"SES refused the sender address: {detail}",
                                          hint="verify the sender's domain (or address) in the SES console, "
                                               "in the region of [ses] region", status=status)
        if status in _UNKNOWN_STATUSES:
            return None, SendResult(rid, Outcome.UNKNOWN, error=f"gateway error, may have been accepted ({detail})")
        if status >= 500:
            return self.retry.backoff(attempt), SendResult(rid, Outcome.FAILED, retryable=True, error=detail)
        return None, SendResult(rid, Outcome.REJECTED, error=detail)

    def __repr__(self) -> str:
        return f"<SesTransport region={self.region!r} endpoint_url={self.endpoint_url!r}>"


def _error_parts(exc: Any) -> tuple[str, int, str]:
    """``(code, HTTP status, message)`` of a botocore ClientError."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or ""), status, " ".join(str(error.get("Message") or "").split())[:400]


def _sender_refused(lowered: str, sender: str) -> bool:
    """Whether a MessageRejected names the sender (an unverified identity fails every message)."""
    if "authority to send from" in lowered:  # "Did not have authority to send from email ..."
        return True
    return "not verified" in lowered and "[sender]" in lowered


def _without(text: str, addresses: tuple[str, str]) -> str:
    """``text`` with the recipient's and the sender's addresses replaced (errors are stored and shown)."""
    recipient, sender = addresses
    for address, label in ((sender, "[sender]"), (recipient, "[recipient]")):
        if address:
            text = text.replace(address, label)
            text = text.replace(address.lower(), label) if address.lower() != address else text
    return text


def _not_attempted(recipient: Recipient) -> SendResult:
    return SendResult(recipient.message_id, Outcome.FAILED, retryable=True, error="not attempted: the send stopped")
