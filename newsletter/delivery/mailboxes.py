r"""Read messages out of a local mailbox: an mbox file or a Maildir folder, a capped size each.

:func:`open_mailbox` picks the format from what ``source`` is (a folder
with ``new/`` and ``cur/``: Maildir; a file: mbox) and gives a
:class:`Mailbox` whose :meth:`~Mailbox.messages` yields
:class:`MailboxMessage`\\ s (at most ``max_bytes`` of each is kept: a huge
message is read no further, so memory stays bounded).

Maildir: the messages in ``new/``, and those in ``cur/`` without the
``S`` (seen) flag. :meth:`Mailbox.mark_done` moves a message to ``cur/``
with ``S`` added to its flags (the Maildir convention: ``name:2,S``); the
caller calls it only after what it learned is committed, so a crash in
between means the message is read again (harmless when the consumer
deduplicates). ``include_seen`` reads the seen ones too.

IMAP (``imap://user:password@host:port/FOLDER``, ``imaps://`` for TLS;
STARTTLS is required to a host that is not loopback): the messages without
``\Seen`` (all with ``include_seen``), the first ``max_bytes`` of each
fetched with ``BODY.PEEK`` (reading marks nothing); :meth:`Mailbox.mark_done`
sets ``\Seen``. The password is percent-decoded, or read from
``NEWSLETTER_IMAP_PASSWORD`` when the URL has none, and never shown.

POP3 (``pop3://user:password@host:port``, ``pop3s://`` for TLS; STLS is
required to a host that is not loopback): every message in the maildrop
(POP3 has no seen flag), the first ``max_bytes`` of each (``TOP`` when the
server's ``LIST`` size is larger, ``RETR`` otherwise).
:meth:`Mailbox.mark_done` marks a bounce report deleted (a message that is
no bounce report stays, for people to read); the server removes
it at :meth:`Mailbox.close` (``QUIT``), so a connection lost before then
deletes nothing and the messages are read again (harmless: their events
are stored once). The password is percent-decoded, or read from
``NEWSLETTER_POP3_PASSWORD``, and never shown.

mbox (mboxrd / mboxo): read only, never changed; split on ``From `` lines
after a blank line, ``>From `` unquoted. Reading it twice yields the same
messages again.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from newsletter.errors import NewsletterError

DEFAULT_MAX_BYTES = 1_000_000
_QUOTED_FROM = re.compile(rb"^>(>*From )")


class MailboxError(NewsletterError):
    """The mailbox cannot be read."""


@dataclass(frozen=True)
class MailboxMessage:
    """One message: ``key`` names it within its mailbox (a Maildir file name, or an mbox ordinal)."""

    key: str
    data: bytes
    truncated: bool = False


class Mailbox:
    """A source of messages; ``kind`` is ``maildir`` or ``mbox``."""

    kind = ""

    def messages(self) -> Iterator[MailboxMessage]:
        raise NotImplementedError

    def mark_done(self, message: MailboxMessage) -> None:
        """Record that ``message`` was processed (a no-op where the mailbox is read only)."""

    def mark_not_bounce(self, message: MailboxMessage) -> None:
        """Record that ``message`` was read and is no bounce report (an auto-reply): as :meth:`mark_done`,
        except where that would delete it (POP3 keeps it for people to read)."""
        self.mark_done(message)

    def close(self) -> None:
        """Let go of the mailbox (an IMAP connection)."""

    @property
    def shown(self) -> str:
        """Where the mailbox is, for people (no password)."""
        return ""


def open_mailbox(source: str | os.PathLike[str], *, include_seen: bool = False,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> Mailbox:
    """The mailbox at ``source``; :class:`MailboxError` (with a hint) when it is neither format."""
    text = os.fspath(source)
    if isinstance(text, str) and text.lower().startswith(("imap://", "imaps://")):
        return Imap(text, include_seen=include_seen, max_bytes=max_bytes)
    if isinstance(text, str) and text.lower().startswith(("pop3://", "pop3s://")):
        return Pop3(text, max_bytes=max_bytes)
    path = Path(source)
    if path.is_dir():
        if (path / "new").is_dir() and (path / "cur").is_dir():
            return Maildir(path, include_seen=include_seen, max_bytes=max_bytes)
        raise MailboxError(f"{path} is a folder but not a Maildir (no new/ and cur/ in it)",
                           hint="give a Maildir folder (with new/, cur/, tmp/) or an mbox file")
    if path.is_file():
        return Mbox(path, max_bytes=max_bytes)
    raise MailboxError(f"{path}: no such file or folder",
                       hint="give an mbox file, a Maildir folder, imap://user@host/FOLDER or pop3://user@host")


class Maildir(Mailbox):
    kind = "maildir"

    def __init__(self, path: Path, *, include_seen: bool, max_bytes: int):
        self.path, self.include_seen, self.max_bytes = path, include_seen, max_bytes

    def messages(self) -> Iterator[MailboxMessage]:
        for folder in ("new", "cur"):
            try:
                names = sorted(os.listdir(self.path / folder))
            except OSError as exc:
                raise MailboxError(f"cannot list {self.path / folder}: {exc.strerror}",
                                   hint="check the folder's permissions") from None
            for name in names:
                if name.startswith("."):
                    continue
                if folder == "cur" and not self.include_seen and "S" in _flags(name):
                    continue
                file = self.path / folder / name
                try:
                    with file.open("rb") as handle:
                        data = handle.read(self.max_bytes + 1)
                except FileNotFoundError:
                    continue  # taken by another reader meanwhile
                except IsADirectoryError:
                    continue
                except OSError as exc:
                    raise MailboxError(f"cannot read {file}: {exc.strerror}",
                                       hint="check the file's permissions") from None
                yield MailboxMessage(f"{folder}/{name}", data[:self.max_bytes], len(data) > self.max_bytes)

    def mark_done(self, message: MailboxMessage) -> None:
        folder, _, name = message.key.partition("/")
        base, _, info = name.partition(":")
        flags = _flags(name) | {"S"}
        target = self.path / "cur" / f"{base}:2,{''.join(sorted(flags))}"
        source = self.path / folder / name
        if source == target:
            return
        try:
            os.replace(source, target)
        except FileNotFoundError:
            pass  # moved by another reader: it was processed there
        except OSError as exc:
            raise MailboxError(f"cannot move {source} to cur/: {exc.strerror}",
                               hint="check the Maildir's permissions; what was applied is stored") from None


def _flags(name: str) -> set[str]:
    """The Maildir flags in a file name's ``:2,FLAGS`` info."""
    _, sep, info = name.partition(":2,")
    return set(info) if sep else set()


class Mbox(Mailbox):
    kind = "mbox"

    def __init__(self, path: Path, *, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes

    def messages(self) -> Iterator[MailboxMessage]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise MailboxError(f"cannot read {self.path}: {exc.strerror}",
                               hint="check the file's permissions") from None
        with handle:
            index = 0
            lines: list[bytes] = []
            size = 0
            truncated = False
            started = False
            previous_blank = True
            # readline with a limit: a huge line without a break is read in pieces, never whole.
            for line in iter(lambda: handle.readline(65536), b""):
                if line.startswith(b"From ") and previous_blank:
                    if started:
                        yield self._message(index, lines, truncated)
                        index += 1
                    started, lines, size, truncated = True, [], 0, False
                    previous_blank = False
                    continue
                previous_blank = line in (b"\n", b"\r\n")
                if not started:
                    continue  # text before the first From line is no message
                if size >= self.max_bytes:
                    truncated = True
                    continue
                line = _QUOTED_FROM.sub(rb"\1", line)
                lines.append(line)
                size += len(line)
            if started:
                yield self._message(index, lines, truncated)

    def _message(self, index: int, lines: list[bytes], truncated: bool) -> MailboxMessage:
        data = b"".join(lines)
        if data.endswith(b"\n\n"):  # the blank line before the next From line belongs to the mbox
            data = data[:-1]
        return MailboxMessage(str(index), data[:self.max_bytes], truncated)


class Imap(Mailbox):
    kind = "imap"

    def __init__(self, url: str, *, include_seen: bool, max_bytes: int):
        parts = urlsplit(url)
        if not parts.hostname or not parts.username:
            raise MailboxError(f"{_safe(url)} is not an IMAP URL with a user and a host",
                               hint="write it as imap://user@host:143/INBOX (password in NEWSLETTER_IMAP_PASSWORD)")
        self.implicit_tls = parts.scheme.lower() == "imaps"
        self.host = parts.hostname
        try:
            self.port = parts.port or (993 if self.implicit_tls else 143)
        except ValueError:
            raise MailboxError(f"{_safe(url)}: the port is not a number",
                               hint="e.g. imap://user@host:143/INBOX") from None
        self.user = unquote(parts.username)
        self._password = unquote(parts.password) if parts.password else os.environ.get("NEWSLETTER_IMAP_PASSWORD", "")
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        if not self.folder.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in self.folder):
            raise MailboxError(f"the IMAP folder {self.folder[:80]!r} must be printable ASCII",
                               hint="name the folder as the server lists it, e.g. INBOX or INBOX.bounces")
        self.include_seen, self.max_bytes = include_seen, max_bytes
        self._conn: imaplib.IMAP4 | None = None
        self._shown = _safe(url)

    @property
    def shown(self) -> str:
        return self._shown

    def _connect(self) -> imaplib.IMAP4:
        from newsletter.config import is_loopback_host

        try:
            conn: imaplib.IMAP4
            if self.implicit_tls:
                conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ssl.create_default_context(), timeout=30)
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=30)
                if not is_loopback_host(self.host):
                    conn.starttls(ssl.create_default_context())
            conn.login(self.user, self._password)
            code, _ = conn.select(_quoted(self.folder))
            if code != "OK":
                raise MailboxError(f"the IMAP folder {self.folder!r} cannot be opened on {self.host}",
                                   hint="check the folder name in the URL's path (e.g. /INBOX)")
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"the IMAP server {self.host}:{self.port} refused: {_one_line(exc)}",
                               hint="check the user and NEWSLETTER_IMAP_PASSWORD") from None
        except (OSError, ssl.SSLError) as exc:
            raise MailboxError(f"cannot reach the IMAP server {self.host}:{self.port}: {exc.strerror or exc}",
                               hint="check the host and port, or use imaps:// for TLS on 993") from None
        return conn

    def messages(self) -> Iterator[MailboxMessage]:
        self._conn = conn = self._connect()
        try:
            _, found = conn.uid("SEARCH", None, "ALL" if self.include_seen else "UNSEEN")  # type: ignore[arg-type]
            uids = (found[0] or b"").split() if found and isinstance(found[0], bytes) else []
            for uid in uids:
                _, fetched = conn.uid("FETCH", uid.decode(), f"(BODY.PEEK[]<0.{self.max_bytes + 1}>)")
                data = b"".join(item[1] for item in fetched if isinstance(item, tuple) and len(item) > 1)
                yield MailboxMessage(uid.decode(), data[:self.max_bytes], len(data) > self.max_bytes)
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"reading {self.folder!r} on {self.host} failed: {_one_line(exc)}",
                               hint="run the command again: messages already applied are marked seen") from None

    def mark_done(self, message: MailboxMessage) -> None:
        if self._conn is None:
            return
        try:
            self._conn.uid("STORE", message.key, "+FLAGS", "(\\Seen)")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"marking a message seen on {self.host} failed: {_one_line(exc)}",
                               hint="run the command again: what was applied is stored, repeats change nothing"
                               ) from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass


class Pop3(Mailbox):
    kind = "pop3"

    def __init__(self, url: str, *, max_bytes: int):
        parts = urlsplit(url)
        if not parts.hostname or not parts.username:
            raise MailboxError(f"{_safe(url)} is not a POP3 URL with a user and a host",
                               hint="write it as pop3://user@host:110 (password in NEWSLETTER_POP3_PASSWORD), "
                                    "or pop3s://user@host:995")
        if parts.path.strip("/"):
            raise MailboxError(f"{_safe(url)}: POP3 has no folders", hint="drop the path: pop3://user@host")
        self.implicit_tls = parts.scheme.lower() == "pop3s"
        self.host = parts.hostname
        try:
            self.port = parts.port or (995 if self.implicit_tls else 110)
        except ValueError:
            raise MailboxError(f"{_safe(url)}: the port is not a number", hint="e.g. pop3://user@host:110") from None
        self.user = unquote(parts.username)
        self._password = unquote(parts.password) if parts.password else os.environ.get("NEWSLETTER_POP3_PASSWORD", "")
        self.max_bytes = max_bytes
        self._conn: poplib.POP3 | None = None
        self._shown = _safe(url)

    @property
    def shown(self) -> str:
        return self._shown

    def _connect(self) -> poplib.POP3:
        from newsletter.config import is_loopback_host

        conn: poplib.POP3 | None = None
        try:
            if self.implicit_tls:
                conn = poplib.POP3_SSL(self.host, self.port, timeout=30, context=ssl.create_default_context())
            else:
                conn = poplib.POP3(self.host, self.port, timeout=30)
                if not is_loopback_host(self.host):
                    conn.stls(ssl.create_default_context())
            conn.user(self.user)
            conn.pass_(self._password)
        except poplib.error_proto as exc:
            if conn is not None:
                conn.close()
            raise MailboxError(f"the POP3 server {self.host}:{self.port} refused: {_one_line(exc)}",
                               hint="check the user and NEWSLETTER_POP3_PASSWORD (and that it offers STLS)"
                               ) from None
        except (OSError, ssl.SSLError) as exc:
            if conn is not None:
                conn.close()
            raise MailboxError(f"cannot reach the POP3 server {self.host}:{self.port}: {exc.strerror or exc}",
                               hint="check the host and port, or use pop3s:// for TLS on 995") from None
        return conn

    def messages(self) -> Iterator[MailboxMessage]:
        self._conn = conn = self._connect()
        try:
            _, listing, _ = conn.list()
            for line in listing:
                number, _, size = line.decode("ascii", "replace").partition(" ")
                if not number.isdigit():
                    continue
                whole = not size.strip().isdigit() or int(size) <= self.max_bytes
                if whole:
                    _, lines, _ = conn.retr(int(number))
                else:
                    _, lines, _ = conn.top(int(number), max(100, self.max_bytes // 1000))
                data = b"\r\n".join(lines) + b"\r\n"
                yield MailboxMessage(number, data[:self.max_bytes], not whole or len(data) > self.max_bytes)
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"reading the POP3 mailbox on {self.host} failed: {_one_line(exc)}",
                               hint="run the command again: nothing is deleted until all that was read is "
                                    "applied") from None

    def mark_done(self, message: MailboxMessage) -> None:
        if self._conn is None:
            return
        try:
            self._conn.dele(int(message.key))
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"marking a message deleted on {self.host} failed: {_one_line(exc)}",
                               hint="run the command again: what was applied is stored, repeats change nothing"
                               ) from None

    def mark_not_bounce(self, message: MailboxMessage) -> None:
        """Kept: POP3 has no seen flag, and deleting an auto-reply would lose it (it is read again next time,
        counted as not a bounce, and changes nothing)."""

    def close(self) -> None:
        """QUIT: the server deletes the messages marked done (only now, and only on a clean end)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (poplib.error_proto, OSError):
                conn.close()


def _safe(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
