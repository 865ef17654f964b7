"""Prints each message to a stream (stdout by default), for development.

Only the message is printed, as the recipient would get it; the transport
holds no credentials, so none can appear.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.delivery.base import BUILD_ERRORS, Transport, unbuildable
from newsletter.delivery.merge import MergeTemplate
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.mime import as_file_bytes, build_mime

if TYPE_CHECKING:
    from newsletter.config import Settings

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
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> ConsoleTransport:
        return cls(**overrides)

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        stream = self.stream or sys.stdout
        templates = MergeTemplate(message.html), MergeTemplate(message.text), MergeTemplate(message.subject)
        results = []
        with self._lock:
            for recipient in recipients:
                try:
                    text = as_file_bytes(build_mime(message, recipient, *templates)).decode("utf-8", "replace")
                except BUILD_ERRORS as exc:
                    results.append(unbuildable(recipient, exc))
                    continue
                stream.write(_printable(f"{text.rstrip()}\n{SEPARATOR}\n", stream))
                results.append(SendResult(recipient.message_id, Outcome.SENT))
            stream.flush()
        return results


def _printable(text: str, stream: TextIO) -> str:
    """``text`` as ``stream`` can encode it: an internationalised message has raw
    UTF-8 headers, and a console may be ASCII (LANG=C)."""
    if text.isascii():
        return text
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)
