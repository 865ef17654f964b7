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


def open_input(path: Path, *, missing: str, missing_hint: str, folder: str, folder_hint: str) -> IO[bytes]:
    """Open a file the user named, in binary; an InputError saying what is wrong otherwise.

    ``missing``/``folder`` are the messages for a path that does not exist or
    is a folder (``{path}`` is filled in), each with its hint.
    """
    from newsletter.errors import InputError

    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise InputError(missing.format(path=path), hint=missing_hint) from None
    except IsADirectoryError:
        raise InputError(folder.format(path=path), hint=folder_hint) from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step."""
    with atomic_binary_file(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
