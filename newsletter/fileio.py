"""Atomic file writes: a reader (or a crash, or a full disk) never sees half a file.

A full disk (ENOSPC, or a quota: EDQUOT) is reported as one line
(:class:`~newsletter.errors.DiskFull`), and the file keeps its old content.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeGuard


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # nothing written yet: say why in one line
        from newsletter.errors import InputError

        raise _disk_full(exc, path) or InputError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="choose a folder you may write to") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        full = _disk_full(exc, path) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from None
        raise


def is_disk_full(exc: BaseException) -> TypeGuard[OSError]:
    """True for the errors of a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _disk_full(exc: OSError, path: Path):
    """A one-line DiskFull for a full disk, else None (other errors stay as they are)."""
    from newsletter.errors import DiskFull

    if not is_disk_full(exc):
        return None
    return DiskFull(f"no space left on the device to write {path}",
                    hint=f"free some disk space and run the command again; {path.name} was left as it was")


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


def create_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path``, readable by its owner only (mode 0600), in one step.

    For secrets (a private key): the content is written and synced under a
    temporary name, then linked into place, which fails when ``path``
    exists, so an existing key is never replaced, and a reader (or a crash)
    never sees half a key. InputError when ``path`` exists or cannot be made.
    """
    from newsletter.errors import InputError

    path = Path(path)
    with atomic_binary_file(path.with_name(f".{path.name}.new")) as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)
    staged = path.with_name(f".{path.name}.new")
    try:
        os.link(staged, path)
    except FileExistsError:
        raise InputError(f"{path} already exists: it was left as it is",
                         hint="choose another --out file (or move the old key away first)") from None
    except OSError as exc:
        raise _disk_full(exc, path) or InputError(f"cannot write {path}: {exc.strerror or exc}",
                                                  hint="choose a folder you may write to") from None
    finally:
        staged.unlink(missing_ok=True)
