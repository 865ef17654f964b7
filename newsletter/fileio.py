"""Atomic file writes: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_text_file(path: Path, encoding: str = "utf-8", newline: str | None = "") -> Iterator[IO[str]]:
    """Write to a temporary file beside ``path`` and move it into place on success."""
    with atomic_binary_file(path) as raw:
        import io

        text = io.TextIOWrapper(raw, encoding=encoding, newline=newline)
        yield text
        text.flush()
        text.detach()


@contextmanager
def atomic_binary_file(path: Path) -> Iterator[IO[bytes]]:
    """Binary flavour of :func:`atomic_text_file`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step."""
    with atomic_binary_file(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
