"""Writes each message as ``<message-id>.eml`` into an outbox folder (development).

Messages are built as for SMTP (``newsletter.delivery.mime``): an address
with a non-ASCII local part gives an internationalised message (raw UTF-8
headers, RFC 6532), which reads back with the address as written. A
recipient whose message cannot be built is REJECTED alone.

A file appears complete or not at all: it is written under a temporary name
in the same folder, flushed, and renamed. Files use LF line endings (the
platform's); SMTP would get CRLF.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.delivery.base import BUILD_ERRORS, PermanentTransportError, Transport, unbuildable
from newsletter.delivery.merge import MergeTemplate
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.mime import as_file_bytes, build_mime

if TYPE_CHECKING:
    from newsletter.config import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


class FileTransport(Transport):
    """One ``.eml`` file per recipient in ``folder`` (created on open)."""

    name = "file"
    max_batch = 1000

    def __init__(self, folder: str | os.PathLike[str], *, fsync: bool = False):
        super().__init__()
        self.folder = Path(folder)
        self.fsync = fsync

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FileTransport:
        return cls(overrides.pop("folder", settings.outbox_dir), **overrides)

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentTransportError(
                f"cannot create the outbox folder {self.folder}: {exc.strerror}",
                hint="check the folder's permissions, or choose another transport with NEWSLETTER_TRANSPORT",
            ) from None
        super().open()

    def path_for(self, message_id: str) -> Path:
        """Where the message with ``message_id`` is written."""
        return self.folder / f"{_UNSAFE.sub('_', message_id)}.eml"

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        templates = MergeTemplate(message.html), MergeTemplate(message.text), MergeTemplate(message.subject)
        results = []
        for recipient in recipients:
            try:
                data = as_file_bytes(build_mime(message, recipient, *templates))
            except BUILD_ERRORS as exc:
                results.append(unbuildable(recipient, exc))
                continue
            path = self.path_for(recipient.message_id)
            try:
                self._write_atomically(path, data)
            except OSError as exc:
                results.append(SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                          error=f"{path}: {exc.strerror}"))
                continue
            results.append(SendResult(recipient.message_id, Outcome.SENT, provider_id=str(path)))
        return results

    def _write_atomically(self, path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
