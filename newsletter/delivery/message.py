"""The provider-neutral message model (in the manner of django-anymail).

A :class:`Message` is one edition as it goes out: subject, sender, and the
HTML and text bodies still holding merge tokens (``newsletter.delivery.merge``).
A :class:`Recipient` carries what differs per person: address, merge values,
headers (List-Unsubscribe), metadata (our ids, sent to SendGrid as
custom_args) and our own Message-ID. A transport sends one Message to a batch
of Recipients and answers one :class:`SendResult` per recipient, in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(str, enum.Enum):  # noqa: UP042 - StrEnum would change str(outcome) from "Outcome.SENT" to "sent"
    """What a transport knows about one recipient after a send."""

    QUEUED = "queued"      # accepted by an API for later delivery (SendGrid 202)
    SENT = "sent"          # accepted by the receiving SMTP server, or written out
    REJECTED = "rejected"  # refused for good (bad address, 5xx, 400/403/413)
    FAILED = "failed"      # not accepted; may be retried (429, 5xx before sending)
    UNKNOWN = "unknown"    # the request may have reached the provider; do not resend blindly


@dataclass
class Message:
    """One edition as sent: the parts every recipient shares."""

    subject: str
    from_email: str                      # "Name <address>"
    html: str                            # with merge tokens
    text: str                            # with merge tokens
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)        # SendGrid categories
    metadata: dict[str, str] = field(default_factory=dict)  # shared custom_args


@dataclass
class Recipient:
    """One person a message goes to, and what is theirs alone."""

    email: str
    message_id: str                      # our Message-ID, without angle brackets
    name: str = ""
    merge_data: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class SendResult:
    """The outcome for one recipient of a batch."""

    message_id: str
    outcome: Outcome
    provider_id: str | None = None
    retryable: bool = False
    error: str | None = None
    #: Why a FAILED result failed when the cause is ours or the network's, not the recipient's
    #: (:data:`TRANSPORT_CAUSES`): the engine's circuit breaker counts these in a row.
    cause: str | None = None


#: The transport-level causes a result may name (``SendResult.cause``).
DNS, CONNECTION, AUTHENTICATION, TIMEOUT = "dns", "connection", "authentication", "timeout"
TRANSPORT_CAUSES = (DNS, CONNECTION, AUTHENTICATION, TIMEOUT)


def cause_of(exc: BaseException | None) -> str:
    """The transport cause of a failure to connect: ``dns``, ``timeout`` or ``connection``."""
    import socket

    if isinstance(exc, socket.gaierror):
        return DNS
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    return CONNECTION
