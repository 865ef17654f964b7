"""The transport contract (in the manner of Django's mail backends).

A transport is a small class: ``open()``, ``close()``, usable as a context
manager, and one method, :meth:`Transport.send_batch`, that sends one
:class:`Message` to at most ``max_batch`` recipients and answers one
:class:`SendResult` per recipient, in the same order.

What a result means, and what the engine should do with it:

- ``SENT`` / ``QUEUED``: accepted (by the receiving server, or by an API for
  later delivery). Record ``provider_id``; never send again.
- ``REJECTED`` (``retryable=False``): refused for good (SMTP 5xx, HTTP 400,
  403, 413, an address or merge data the provider cannot take). Record the
  error; sending again would fail the same way.
- ``FAILED`` with ``retryable=True``: certainly not accepted (429, a 5xx the
  provider answered, a refused connection, SMTP 4xx), and the transport's own
  retries ran out. Safe to send again later.
- ``UNKNOWN``: the request (or the SMTP DATA) went out in full but no answer
  came back: a timeout or dropped connection *after* sending, or a gateway
  5xx (502/504) where the provider behind it may have acted. The message may
  have been delivered; sending again could deliver it twice. The engine keeps
  these rows ``unknown`` and resends only on purpose
  (``campaigns retry ID --unknown``).

A transport never reports ``FAILED``/retryable when a resend could
duplicate: when in doubt it answers ``UNKNOWN``.

One recipient never takes down a batch: an address or name that cannot be
written (:data:`BUILD_ERRORS`, see ``newsletter.delivery.wire``) is that
recipient's ``REJECTED`` result with the reason (:func:`unbuildable`), and
the others go on. Only failures that concern the whole batch raise.

A problem that will fail *every* batch (a 401 for a bad API key, SMTP
authentication refused) raises :class:`PermanentTransportError` instead: a
:class:`~newsletter.errors.DeliveryError` whose ``hint`` names the setting
to fix. Nothing of that batch was accepted; the engine leaves the batch's
rows ``pending`` (or ``failed``/retryable) and stops the campaign, or pauses
it when the error says ``login_refused`` (fix the credentials, then resume).
"""

from __future__ import annotations

from collections.abc import Iterable
from email.errors import MessageError
from types import TracebackType
from typing import TYPE_CHECKING, Any

from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.errors import DeliveryError

if TYPE_CHECKING:
    from newsletter.config import Settings


class PermanentTransportError(DeliveryError):
    """Every send through this transport will fail until the configuration is fixed.

    Raised from ``open()`` or ``send_batch()``; nothing of the batch in hand
    was accepted. ``hint`` names the setting (``SENDGRID_API_KEY``,
    ``NEWSLETTER_SMTP_URL``); neither message nor hint ever holds a secret.
    """

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 login_refused: bool = False):
        super().__init__(message, hint=hint)
        self.status = status
        #: The relay or API refused our credentials (SMTP 530/535, HTTP 401 or a provider's key error):
        #: the engine pauses the campaign for a person to fix them and resume it, rather than stopping it.
        self.login_refused = login_refused
        #: Set when part of the batch was already handled (SMTP sends in
        #: parallel): one result per recipient, in order; record them before
        #: stopping. Recipients not attempted are FAILED and retryable.
        self.results: list[SendResult] | None = None


class Transport:
    """Base class: subclasses implement :meth:`_send` (and may extend open/close)."""

    name = "base"
    #: The most recipients one call of :meth:`send_batch` accepts.
    max_batch = 100

    def __init__(self) -> None:
        self.opened = False

    def open(self) -> None:
        """Acquire what sending needs (connections, folders). Idempotent."""
        self.opened = True

    def close(self) -> None:
        """Release it. Idempotent; safe to call after a failed ``open()``."""
        self.opened = False

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Transport:
        """The transport as the workspace's settings configure it (``overrides`` win)."""
        raise NotImplementedError

    def send_batch(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        """Send ``message`` to each recipient; one result per recipient, same order.

        Raises :class:`PermanentTransportError` when nothing can be sent with
        this configuration, and ``ValueError`` for more than ``max_batch``
        recipients. Opens the transport if needed.
        """
        if len(recipients) > self.max_batch:
            raise ValueError(f"{self.name}: {len(recipients)} recipients in one batch (at most {self.max_batch})")
        if not recipients:
            return []
        if not self.opened:
            self.open()
        results = self._send(message, list(recipients))
        assert len(results) == len(recipients), "a transport answers once per recipient"
        return results

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        raise NotImplementedError

    def __repr__(self) -> str:
        # Subclasses hold credentials: never show attributes here.
        return f"<{type(self).__name__} {self.name}>"


def results_for(
    recipients: Iterable[Recipient],
    outcome: Outcome,
    *,
    provider_id: str | None = None,
    retryable: bool = False,
    error: str | None = None,
    cause: str | None = None,
) -> list[SendResult]:
    """The same result for every recipient (a whole-request answer)."""
    return [SendResult(r.message_id, outcome, provider_id, retryable, error, cause) for r in recipients]


#: What building one recipient's message may raise because of that recipient's
#: data (UnsendableAddress, a header the email package refuses, a bad encoding).
BUILD_ERRORS = (ValueError, TypeError, MessageError)


def unbuildable(recipient: Recipient, exc: BaseException) -> SendResult:
    """The REJECTED result for a recipient whose message cannot be written.

    The reason names the problem, never the address (it is stored and shown).
    """
    reason = str(exc).strip() or type(exc).__name__
    return SendResult(recipient.message_id, Outcome.REJECTED,
                      error=f"cannot write this recipient's message: {reason}"[:500])
