"""Writing a recently-published link's URL into the article file itself.

The seed article names its "recently published" article without an address;
``newsletter compose ARTICLE --recent-url URL --save-link`` fixes the file
once so that no later command needs the flag. Where the URL goes:

  * front matter holding ``recently_published`` (or ``recent``): its ``url``
    is set (the front matter is written back as YAML: comments in it are not
    kept, the backup has them);
  * otherwise the line naming the link ("Read Our Recently Published Article -
    TITLE", "Read next: TITLE", ...) gets the URL alone on the next line, the
    place the readers look for it (see ``plaintext.py``, "Tail"); a URL
    already alone on that next line is replaced. A URL on the link's own
    line is refused (edit it by hand).

The file is copied first to ``NAME.bak`` beside it (``NAME.bak.1``, ... when
that exists), then replaced in one step. The encoding (UTF-8 with or without
a BOM, or cp1252) and the line ends are kept. The caller re-reads the article
to confirm the link now has the URL (:func:`restore` undoes the change).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from newsletter.errors import InputError

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_MARKUP = " \t*_#>"
_URL_LINE = re.compile(r"https?://\S+")  # Markdown emphasis, heading and quote marks around a line


def save_recent_url(path: Path, url: str) -> Path:
    """Write ``url`` as the address of ``path``'s recently-published link; returns the backup's path.

    Raises InputError when the file has no recently-published link to give
    the URL to, or when that link already has an address in the text.
    """
    data = path.read_bytes()
    text, encoding = _decode(data)
    newline = "\r\n" if "\r\n" in text else "\n"
    normalised = text.replace("\r\n", "\n")
    updated = _into_front_matter(normalised, url)
    if updated is None:
        updated = _after_link_line(normalised, url, path)
    backup = _backup_path(path)
    shutil.copy2(path, backup)
    from newsletter.fileio import write_atomically

    write_atomically(path, _encode(updated.replace("\n", newline), encoding))
    return backup


def restore(path: Path, backup: Path) -> None:
    """Put the backup back in place of ``path`` (the change did not give the link its URL)."""
    from newsletter.fileio import write_atomically

    write_atomically(path, backup.read_bytes())
    backup.unlink()


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252"), "cp1252"


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        raise InputError("the URL has characters this article's encoding (cp1252) cannot hold",
                         hint="save the article as UTF-8, or give the URL in ASCII (punycode, %-escapes)") from None


def _into_front_matter(text: str, url: str) -> str | None:
    """The text with ``url`` set in the front matter's recently_published, or None when it has none."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return None
    import yaml

    meta: Any = yaml.safe_load(match.group(1)) or {}
    if not isinstance(meta, dict):
        return None
    key = next((k for k in ("recently_published", "recent") if meta.get(k)), None)
    if key is None:
        return None
    value = meta[key]
    meta[key] = {"title": value, "url": url} if isinstance(value, str) else {**value, "url": url}
    dumped = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=10_000)
    return f"---\n{dumped}---\n{text[match.end():]}"


def _after_link_line(text: str, url: str, path: Path) -> str:
    """The text with ``url`` on its own line after the line naming the recently-published link."""
    from newsletter.compose.plaintext import _take_recent  # the readers' own rule for that line

    lines = text.split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip(_MARKUP)
        if not stripped:
            continue
        rest, recent = _take_recent([stripped])
        if recent is None or rest:
            continue
        if recent.url:
            raise InputError(f"{path}: the recently-published link already has an address ({recent.url[:80]})",
                             hint="edit the URL in the article itself")
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if _URL_LINE.fullmatch(following):  # saved before: the new address replaces it (the backup keeps it)
            return "\n".join([*lines[: index + 1], url, *lines[index + 2 :]])
        return "\n".join([*lines[: index + 1], url, *lines[index + 1 :]])
    raise InputError(f"{path}: no recently-published link to give the URL to",
                     hint='add a line "Read next: TITLE" with the URL on the next line, or '
                          "recently_published: {title: ..., url: https://...} in front matter")


def _backup_path(path: Path) -> Path:
    candidate = path.with_name(path.name + ".bak")
    number = 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.bak.{number}")
    return candidate
