"""Prints each message to a stream (stdout by default), for development.

Only the message is printed, as the recipient would get it; the transport
holds no credentials, so none can appear.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from newsletter.compose.merge import MergeTemplate
from newsletter.delivery.base import Transport
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.mime import as_file_bytes, build_mime

SEPARATOR = "-" * 79


class ConsoleTransport(Transport):
    """Writes every message, then a separator line, to ``stream``."""

    name = "console"
    max_batch = 1000

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings=None, **overrides) -> "ConsoleTransport":
        return cls(**overrides)

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        stream = self.stream or sys.stdout
        templates = MergeTemplate(message.html), MergeTemplate(message.text), MergeTemplate(message.subject)
        results = []
        with self._lock:
            for recipient in recipients:
                text = as_file_bytes(build_mime(message, recipient, *templates)).decode("utf-8", "replace")
                stream.write(f"{text.rstrip()}\n{SEPARATOR}\n")
                results.append(SendResult(recipient.message_id, Outcome.SENT))
            stream.flush()
        return results
