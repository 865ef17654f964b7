"""An in-memory transport for tests (like Django's locmem backend).

Every message it "sends" is built exactly as the SMTP transport would build
it (``newsletter.delivery.mime.build_mime``) and appended to ``outbox`` as an
``EmailMessage``; all instances also append to the class-level
``MemoryTransport.shared_outbox``, so a test can see what an engine sent
through a transport it never held. ``reject`` and ``fail`` let a test script
per-address outcomes.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from newsletter.delivery.base import BUILD_ERRORS, Transport, unbuildable
from newsletter.delivery.merge import MergeTemplate
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.mime import as_smtp_bytes, build_mime

if TYPE_CHECKING:
    from newsletter.config import Settings


class MemoryTransport(Transport):
    """Keeps messages in ``outbox``; ``reject``/``fail``: addresses answered REJECTED / FAILED."""

    name = "memory"
    max_batch = 1000
    shared_outbox: list[EmailMessage] = []

    def __init__(self, *, reject: set[str] | None = None, fail: set[str] | None = None):
        super().__init__()
        self.outbox: list[EmailMessage] = []
        self.batches: list[tuple[Message, list[Recipient]]] = []
        self.reject = {a.lower() for a in reject or ()}
        self.fail = {a.lower() for a in fail or ()}

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> MemoryTransport:
        return cls(**overrides)

    @classmethod
    def clear_shared(cls) -> None:
        cls.shared_outbox.clear()

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        self.batches.append((message, list(recipients)))
        templates = MergeTemplate(message.html), MergeTemplate(message.text), MergeTemplate(message.subject)
        results = []
        for recipient in recipients:
            address = recipient.email.lower()
            if address in self.reject:
                results.append(SendResult(recipient.message_id, Outcome.REJECTED,
                                          error="550 rejected (memory transport)"))
                continue
            if address in self.fail:
                results.append(SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                          error="451 try later (memory transport)"))
                continue
            try:
                mime = build_mime(message, recipient, *templates)
                as_smtp_bytes(mime)  # what SMTP would refuse to write, this refuses too
            except BUILD_ERRORS as exc:
                results.append(unbuildable(recipient, exc))
                continue
            self.outbox.append(mime)
            MemoryTransport.shared_outbox.append(mime)
            results.append(SendResult(recipient.message_id, Outcome.SENT, provider_id=recipient.message_id))
        return results
