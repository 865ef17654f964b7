"""Writing an edition to disk: ``<slug>.html``, ``<slug>.txt``, ``<slug>.sample.html`` and ``<slug>.eml``.

The .html and .txt files keep the merge tokens (they are the edition's
templates); ``.sample.html`` is the HTML as the sample subscriber sees it
(merge fields filled, for opening in a browser); the .eml is the complete
message that subscriber would receive (tokens filled, compliance headers, quoted-printable bodies so no
line is over SMTP's 998-byte limit). Every file is written to a temporary
file in the same folder and moved into place, so a reader never sees half a
file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from newsletter.errors import InputError


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_edition(edition, settings, out_dir: Path) -> dict[str, Path]:
    """Write the four files into ``out_dir`` (created if needed); return their paths by kind."""
    from newsletter.compose.edition import sample_mime, sample_recipient
    from newsletter.delivery.merge import personalise
    from newsletter.delivery.mime import as_file_bytes

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc.strerror}", hint="choose another --out folder") from None
    contents = {
        "html": edition.html.encode("utf-8"),
        "txt": edition.text.encode("utf-8"),
        "sample.html": personalise(edition.html, sample_recipient(edition, settings).merge_data).encode("utf-8"),
        "eml": as_file_bytes(sample_mime(edition, settings)),
    }
    paths: dict[str, Path] = {}
    for kind, data in contents.items():
        path = out_dir / f"{edition.slug}.{kind}"
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror}", hint="check the folder's permissions") from None
        paths[kind] = path
    return paths
