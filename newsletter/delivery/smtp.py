"""SMTP delivery: a few reused connections working in parallel.

``NEWSLETTER_SMTP_URL`` is ``smtp://user:pass@host:port?tls=starttls|ssl|none``
(``smtps://`` means ``tls=ssl``). Without ``tls``, ``smtp://`` uses STARTTLS,
except to a loopback host (a development server), where it sends in clear.
``?connections=N`` sets the pool size (default 4), ``?timeout=S`` the socket
timeout. User and password are percent-decoded and never shown.

Each recipient gets their own message (one SMTP transaction), rendered by
:class:`~newsletter.delivery.mime.MimeRenderer`, optionally DKIM-signed.
Domains go out IDNA-encoded (``newsletter.delivery.wire``); an address with
a non-ASCII local part goes out with ``SMTPUTF8`` (RFC 6531) when the server
offers it, and is REJECTED alone, with the reason, when it does not.
Outcomes per recipient:

- 250 after DATA: SENT;
- a 4xx answer to MAIL, RCPT or DATA: FAILED, retryable (the server said no);
- a 5xx answer: REJECTED;
- the connection drops before the message went out in full: reconnect and
  try once more (nothing can have been accepted); if that fails too, FAILED
  and retryable;
- the connection drops or times out after the message went out but before
  the server's answer: UNKNOWN (it may have been accepted).

The envelope: the EHLO name is ``local_hostname`` ([smtp] ehlo_name), else
the domain of the message's From address (``from_settings``: of the
workspace's sender; a connection ``open`` made to check the login before
the From was known greets again before the first message); never the
machine's own name (smtplib's default, ``[127.0.0.1]`` on a host without a
dotted name), which receiving servers hold against the sender. The
envelope sender (Return-Path) is ``envelope_from`` ([smtp] return_path), else
the From address; with ``verp_secret`` ([smtp] verp = true) each message goes
out from ``<local>+<verp tag>@<domain>``, the tag naming its delivery
(``newsletter.delivery.message_id.verp_tag``), so a bounce that comes back
by mail is matched to it (``newsletter.delivery.bounces``).

Problems that fail every message (authentication refused, the sender
refused with 5xx, a TLS certificate that does not verify) raise
:class:`PermanentTransportError`; when some recipients of the batch were
already handled, the error's ``results`` hold one result per recipient
(those not attempted are FAILED and retryable).
"""

from __future__ import annotations

import queue
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.delivery import message_id
from newsletter.delivery.base import BUILD_ERRORS, PermanentTransportError, Transport, unbuildable
from newsletter.delivery.dkimsign import DkimKey, load_key, read_key, sign_all
from newsletter.delivery.message import CONNECTION, Message, Outcome, Recipient, SendResult, cause_of
from newsletter.delivery.mime import MimeRenderer
from newsletter.delivery.wire import UnsendableAddress, parse_mailbox, wire_address
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Settings

# One pooled connection, in a one-item list so a worker can replace or drop it in place.
_Slot = list[smtplib.SMTP | None]

URL_HINT = "write it as smtp://user:password@host:587?tls=starttls (or smtps://...:465, or ?tls=none)"
DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
_LEADING_DOT = re.compile(rb"(?m)^\.")
VERP_TAG_CHARS = 38  # the longest tag message_id.verp_tag makes


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect, as parsed from an SMTP URL."""

    host: str
    port: int
    tls: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    connections: int = 4
    timeout: float = 30.0


def parse_smtp_url(url: str) -> SmtpConfig:
    """Parse ``smtp[s]://[user[:pass]@]host[:port][?tls=...&connections=N&timeout=S]``."""
    parts = urlsplit(url or "")
    shown = _safe_url(url or "")
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"NEWSLETTER_SMTP_URL {shown!r} is not an smtp:// or smtps:// URL", hint=URL_HINT)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    from newsletter.config import is_loopback_host

    default_tls = "ssl" if parts.scheme == "smtps" else ("none" if is_loopback_host(parts.hostname) else "starttls")
    tls = query.get("tls", default_tls).lower()
    if tls not in DEFAULT_PORTS or (parts.scheme == "smtps" and tls != "ssl"):
        raise ConfigError(f"NEWSLETTER_SMTP_URL: tls={tls!r} is not valid here",
                          hint="use tls=starttls, tls=ssl or tls=none")
    try:
        port = parts.port or DEFAULT_PORTS[tls]
        connections = int(query.get("connections", 4))
        timeout = float(query.get("timeout", 30))
    except ValueError as exc:
        raise ConfigError(f"NEWSLETTER_SMTP_URL {shown!r}: {exc}", hint=URL_HINT) from None
    return SmtpConfig(
        host=parts.hostname, port=port, tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        connections=max(1, connections), timeout=timeout,
    )


def _safe_url(url: str) -> str:
    """The URL with any password replaced, for messages."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


class RelayRefused(PermanentTransportError):
    """The server refused us at connection time (login, TLS, STARTTLS or AUTH missing): every message
    through it would fail, though another server may take them (newsletter.delivery.relays)."""


class _Stale(Exception):
    """The connection failed before the message went out in full: safe to try again."""


class _ConnectFailed(Exception):
    """No connection could be made (refused, timed out, DNS): nothing was sent."""

    def __init__(self, text: str, cause: str = CONNECTION):
        super().__init__(text)
        self.cause = cause  # SendResult.cause: what the engine's circuit breaker counts


class SmtpTransport(Transport):
    """Sends through an SMTP server over ``connections`` reused connections.

    DKIM signing is on when ``dkim_selector``, ``dkim_domain`` and
    ``dkim_key`` (PEM bytes, or a path to a PEM file; RSA or Ed25519) are
    all given; ``dkim_extra`` adds more signatures (an Ed25519 one beside
    the RSA one), each made by ``newsletter.delivery.dkimsign``.
    ``ssl_context`` replaces the default (verifying) TLS context.
    """

    name = "smtp"
    max_batch = 100

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, tls: str = "starttls",
                 username: str | None = None, password: str | None = None, connections: int = 4,
                 timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 envelope_from: str | None = None, local_hostname: str | None = None,
                 dkim_selector: str | None = None, dkim_domain: str | None = None,
                 dkim_key: bytes | str | Path | None = None, verp_secret: str | None = None,
                 dkim_extra: tuple[DkimKey, ...] = ()):
        super().__init__()
        self.config = SmtpConfig(host, port or DEFAULT_PORTS[tls], tls, username, password, max(1, connections),
                                 timeout)
        self.ssl_context = ssl_context
        self.envelope_from = envelope_from
        self.local_hostname = local_hostname
        self.verp_secret = verp_secret
        self._from_host: str | None = None  # the From domain, learned from the first message when needed
        self._dkim = _dkim_options(dkim_selector, dkim_domain, dkim_key) + tuple(dkim_extra)
        self._slots: queue.Queue[_Slot] = queue.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        #: Called before each message (a relay's own rate, newsletter.delivery.relays); None: no pacing.
        self.pacer: Callable[[], None] | None = None
        #: Connections that could not be made or logged into, in all (a relay's health).
        self.connect_failures = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SmtpTransport:
        config = parse_smtp_url(url)
        return cls(config.host, config.port, tls=config.tls, username=config.username, password=config.password,
                   connections=config.connections, timeout=config.timeout, **options)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Transport:
        """The transport of ``[smtp]``: several relays (:mod:`newsletter.delivery.relays`) when
        ``[[smtp.relays]]`` lists them, else the server of ``url``."""
        url = overrides.pop("url", None) or settings.smtp_url
        if getattr(settings, "smtp_relays", ()) and not url:
            from newsletter.delivery.relays import RelayTransport

            return RelayTransport.from_settings(settings, **overrides)
        return cls.from_url(cls._require_url(url), **cls.options_from(settings, overrides))

    @staticmethod
    def _require_url(url: str | None) -> str:
        if not url:
            raise ConfigError(
                "the smtp transport needs NEWSLETTER_SMTP_URL",
                hint="set NEWSLETTER_SMTP_URL=smtp://user:password@host:587?tls=starttls"
                     " (or [smtp] url in newsletter.toml)",
            )
        return url

    @staticmethod
    def options_from(settings: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
        """The constructor options ``settings`` give (EHLO name, return path, VERP, DKIM); ``overrides`` win."""
        overrides = dict(overrides)
        for option in ("dkim_selector", "dkim_domain"):
            if getattr(settings, option, None) and option not in overrides:
                overrides[option] = getattr(settings, option)
        if getattr(settings, "smtp_ehlo_name", None) and "local_hostname" not in overrides:
            overrides["local_hostname"] = settings.smtp_ehlo_name
        if "local_hostname" not in overrides and settings.sender_address:
            try:
                overrides["local_hostname"] = _host_of(wire_address(settings.sender_address))
            except UnsendableAddress:
                pass  # _send reports the sender address; EHLO then uses the From domain
        if getattr(settings, "smtp_return_path", None) and "envelope_from" not in overrides:
            overrides["envelope_from"] = settings.smtp_return_path
        if getattr(settings, "smtp_verp", False) and "verp_secret" not in overrides:
            overrides["verp_secret"] = settings.secret_key
        key_file = getattr(settings, "dkim_key_file", None)
        if key_file and "dkim_key" not in overrides:
            overrides["dkim_key"] = _read_dkim_key(key_file)
        extra_file = getattr(settings, "dkim_ed25519_key_file", None)
        if extra_file and "dkim_extra" not in overrides:
            overrides["dkim_extra"] = (_extra_key(settings, extra_file),)
        return overrides

    def open(self) -> None:
        """Start the workers and make one connection now, so bad credentials fail before any send."""
        with self._lock:
            if self._executor is not None:
                return
            self._executor = ThreadPoolExecutor(self.config.connections, thread_name_prefix="smtp")
            slots: list[_Slot] = [[None] for _ in range(self.config.connections)]
        try:
            slots[0][0] = self._connect()
        except _ConnectFailed:
            pass  # the server may come back; each recipient will report it
        except BaseException:
            self.close()
            raise
        for slot in slots:
            self._slots.put(slot)
        super().open()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        while True:
            try:
                slot = self._slots.get_nowait()
            except queue.Empty:
                break
            _quit(slot)
        super().close()

    @property
    def connections_open(self) -> int:
        """Connections held right now (idle ones only: call between batches)."""
        return sum(1 for slot in list(self._slots.queue) if slot[0] is not None)

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        try:
            renderer = MimeRenderer(message)
            sender = wire_address(self.envelope_from) if self.envelope_from else parse_mailbox(message.from_email)[1]
            if self._from_host is None:
                self._from_host = _host_of(parse_mailbox(message.from_email)[1])
        except UnsendableAddress as exc:
            raise PermanentTransportError(f"the sender address cannot be sent: {exc}",
                                          hint="check NEWSLETTER_FROM (the sender address)") from None
        if self.verp_secret and len(sender.rpartition("@")[0]) + 1 + VERP_TAG_CHARS > 64:
            raise PermanentTransportError(
                f"the return path {sender!r} is too long for VERP: its local part and the tag must fit 64 characters",
                hint="use a short return path such as bounces@your-domain ([smtp] return_path)")
        workers = min(self.config.connections, len(recipients))
        size = -(-len(recipients) // workers)
        chunks = [recipients[i:i + size] for i in range(0, len(recipients), size)]
        stop = threading.Event()
        if len(chunks) == 1:
            outcomes = [self._send_chunk(renderer, sender, chunks[0], stop)]
        else:
            executor = self._executor
            if executor is None:  # closed by another thread since send_batch opened it
                raise RuntimeError("the SMTP transport was closed during a send")
            futures = [executor.submit(self._send_chunk, renderer, sender, chunk, stop) for chunk in chunks]
            outcomes = [future.result() for future in futures]
        results = [result for chunk_results, _ in outcomes for result in chunk_results]
        errors = [error for _, error in outcomes if error is not None]
        if errors:
            errors[0].results = results
            raise errors[0]
        return results

    def _send_chunk(self, renderer: MimeRenderer, sender: str, chunk: list[Recipient],
                    stop: threading.Event) -> tuple[list[SendResult], PermanentTransportError | None]:
        """Send ``chunk`` over one pooled connection: ``(results, permanent error or None)``."""
        slot = self._slots.get()
        results: list[SendResult] = []
        error: PermanentTransportError | None = None
        cause: str | None = None
        try:
            for recipient in chunk:
                if stop.is_set():
                    break
                try:
                    results.append(self._deliver(slot, renderer, sender, recipient))
                except _ConnectFailed as exc:
                    results.append(_failed(recipient,
                                           f"cannot connect to {self.config.host}:{self.config.port}: {exc}",
                                           cause=exc.cause))
                    cause = exc.cause
                    break  # the rest of the chunk would wait for the same timeout
                except PermanentTransportError as exc:
                    error = exc
                    stop.set()
                    break
        finally:
            self._slots.put(slot)
        for recipient in chunk[len(results):]:
            stopped = bool(error or stop.is_set())
            results.append(_failed(recipient, "not attempted: " + ("the send stopped" if stopped else "no connection"),
                                   cause=None if stopped else cause))
        return results, error

    def _deliver(self, slot: _Slot, renderer: MimeRenderer, sender: str, recipient: Recipient) -> SendResult:
        """One message to one recipient; reconnects once when the connection went stale."""
        try:
            address = wire_address(recipient.email)
            data = renderer.render(recipient, address)
            if self._dkim:
                data = self._sign(data)
        except BUILD_ERRORS as exc:
            return unbuildable(recipient, exc)
        utf8 = renderer.needs_smtputf8(address)
        envelope_sender = self._verp(sender, recipient)
        if self.pacer is not None:
            self.pacer()
        for attempt in (1, 2):
            if slot[0] is not None and slot[0].local_hostname != self.ehlo_name:
                self._greet_again(slot)  # greeted before the From domain was known (open's early check)
            if slot[0] is None:
                slot[0] = self._connect()
            try:
                return self._transaction(slot, envelope_sender, recipient, address, data, utf8)
            except _Stale as exc:
                _quit(slot)
                if attempt == 2:
                    return _failed(recipient, f"connection lost before the message went out: {exc}")
        raise AssertionError("unreachable")

    @property
    def ehlo_name(self) -> str:
        """The name we greet with: ``local_hostname``, else the From domain (never this machine's)."""
        if self.local_hostname:
            return self.local_hostname
        return self._from_host or "localhost"  # only until the first message names its From domain

    def _greet_again(self, slot: _Slot) -> None:
        """Greet the connection in ``slot`` again with :attr:`ehlo_name` (RFC 5321 allows a second EHLO).

        After AUTH a second EHLO may cost the login on some servers: such a
        connection is closed instead, and the next one greets right.
        """
        conn = slot[0]
        if conn is None or self.config.username:
            _quit(slot)
            return
        conn.local_hostname = self.ehlo_name
        try:
            code, _ = conn.ehlo()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            _quit(slot)

    def _verp(self, sender: str, recipient: Recipient) -> str:
        """The envelope sender of ``recipient``'s message: ``local+tag@domain`` under VERP, else ``sender``."""
        if not self.verp_secret:
            return sender
        tag = message_id.verp_tag(self.verp_secret, recipient.message_id)
        if tag is None:  # not one of our ledger's ids (a test message): nothing to name
            return sender
        local, _, domain = sender.rpartition("@")
        return f"{local}+{tag}@{domain}"

    def _transaction(self, slot: _Slot, sender: str, recipient: Recipient, address: str, data: bytes,
                     utf8: bool) -> SendResult:
        """MAIL, RCPT, DATA on the open connection ``slot[0]`` (``address``: the wire form)."""
        conn = slot[0]
        if conn is None:  # _deliver connects first; a dropped connection is stale
            raise _Stale("not connected")
        options: tuple[str, ...] = ()
        if utf8:
            if not conn.has_extn("smtputf8"):
                if not sender.isascii():  # every message would fail the same way
                    raise PermanentTransportError(
                        f"the SMTP server {self.config.host} does not offer SMTPUTF8, which the sender address needs",
                        hint="use an ASCII sender address in NEWSLETTER_FROM, or a server that offers SMTPUTF8")
                return SendResult(recipient.message_id, Outcome.REJECTED, error=(
                    f"the SMTP server {self.config.host} does not offer SMTPUTF8, which an address with "
                    "non-ASCII characters before the @ needs"))
            # RFC 6531: SMTPUTF8 on MAIL (smtplib then writes commands in UTF-8); the headers are 8-bit.
            options = ("SMTPUTF8", "BODY=8BITMIME") if conn.has_extn("8bitmime") else ("SMTPUTF8",)
        stage = "MAIL"
        try:
            code, reply = conn.mail(sender, options)
            if code == 250:
                stage = "RCPT"
                # The address as it is (smtplib's rcpt re-parses it, which can mangle a quoted local part).
                code, reply = conn.docmd("rcpt", f"TO:<{address}>")
                if code in (250, 251):
                    stage = "DATA"
                    conn.putcmd("data")
                    code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Stale(str(exc) or type(exc).__name__) from None
        if code != 354:
            return self._refused(slot, recipient, code, reply, stage)
        # Dot-stuffing; the search is skipped when no line starts with a dot (the usual case).
        payload = _LEADING_DOT.sub(b"..", data) if b"\n." in data else data
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        try:
            conn.send(payload + b".\r\n")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The final "." never went out whole: the server cannot have accepted it.
            raise _Stale(str(exc) or type(exc).__name__) from None
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            _quit(slot)
            return SendResult(recipient.message_id, Outcome.UNKNOWN,
                              error=f"no answer after the message was sent ({exc or type(exc).__name__}):"
                                    " it may have been delivered")
        if code == 250:
            return SendResult(recipient.message_id, Outcome.SENT, provider_id=_queue_id(reply))
        return _by_code(recipient, code, reply, "DATA")

    def _refused(self, slot: _Slot, recipient: Recipient, code: int, reply: bytes, stage: str) -> SendResult:
        """A refusal before DATA: reset the transaction, classify, stop on sender refusals."""
        conn = slot[0]
        try:
            if conn is not None:
                conn.rset()
        except (smtplib.SMTPException, OSError):
            _quit(slot)
        if code == 421:
            _quit(slot)  # the server is closing this connection
        text = reply.decode("utf-8", "replace")
        # Authentication demanded, or the sender refused for good: every message would fail.
        if code in (530, 535) or (stage == "MAIL" and code >= 500):
            raise PermanentTransportError(
                f"the SMTP server refused to send for us: {code} {text}",
                hint="check the user, password and sender allowed by NEWSLETTER_SMTP_URL's server, and NEWSLETTER_FROM",
                status=code, login_refused=code in (530, 535),
            )
        return _by_code(recipient, code, reply, stage)

    def _connect(self) -> smtplib.SMTP:
        """A new, greeted, secured and authenticated connection."""
        config = self.config
        context = self.ssl_context or ssl.create_default_context()
        conn: smtplib.SMTP
        try:
            if config.tls == "ssl":
                conn = smtplib.SMTP_SSL(config.host, config.port, local_hostname=self.ehlo_name,
                                        timeout=config.timeout, context=context)
            else:
                conn = smtplib.SMTP(config.host, config.port, local_hostname=self.ehlo_name,
                                    timeout=config.timeout)
        except ssl.SSLError as exc:
            self.connect_failures += 1
            raise _tls_error(exc, config) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.connect_failures += 1
            raise _ConnectFailed(str(exc) or type(exc).__name__, cause_of(exc)) from None
        try:
            conn.ehlo()
            if config.tls == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if config.username:
                conn.login(config.username, config.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            self.connect_failures += 1
            raise RelayRefused(
                f"the SMTP server at {config.host}:{config.port} refused our login ({exc.smtp_code})",
                hint="check the user and password in NEWSLETTER_SMTP_URL", status=exc.smtp_code,
                login_refused=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            conn.close()
            self.connect_failures += 1
            raise RelayRefused(
                f"the SMTP server at {config.host}:{config.port}"
                f" does not offer {'STARTTLS' if 'STARTTLS' in str(exc) else 'AUTH'}",
                hint="change ?tls= (starttls, ssl, none) or the credentials in NEWSLETTER_SMTP_URL") from None
        except ssl.SSLError as exc:
            conn.close()
            self.connect_failures += 1
            raise _tls_error(exc, config) from None
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            self.connect_failures += 1
            raise _ConnectFailed(str(exc) or type(exc).__name__, cause_of(exc)) from None
        return conn

    def _sign(self, data: bytes) -> bytes:
        return sign_all(data, self._dkim)

    def __repr__(self) -> str:
        return f"<SmtpTransport {self.config.host}:{self.config.port} tls={self.config.tls}>"


def _host_of(address: str) -> str:
    """The domain of ``address`` in its wire form (IDNA), for EHLO."""
    return address.rpartition("@")[2].strip("[]").lower() or "localhost"


def _read_dkim_key(path: str) -> bytes:
    """The DKIM private key (PEM) named by [smtp] dkim_key_file."""
    try:
        return open(path, "rb").read()
    except OSError as exc:
        raise ConfigError(f"[smtp] dkim_key_file {path}: cannot read it ({exc.strerror})",
                          hint="point dkim_key_file at the PEM private key of your DKIM selector") from None


def _extra_key(settings: Settings, path: str) -> DkimKey:
    """The Ed25519 key signed with beside the main one ([smtp] dkim_ed25519_key_file)."""
    selector, domain = getattr(settings, "dkim_ed25519_selector", None), settings.dkim_domain
    if not (selector and domain):
        raise ConfigError("[smtp] dkim_ed25519_key_file needs dkim_ed25519_selector and dkim_domain",
                          hint="give the selector its record is published under, e.g. dkim_ed25519_selector = "
                               '"news-ed"')
    key = read_key(selector, domain, path)
    if key.key_type != "ed25519":
        raise ConfigError(f"[smtp] dkim_ed25519_key_file {path} holds an RSA key",
                          hint="point it at an Ed25519 key: newsletter dkim keygen --type ed25519")
    return key


def _dkim_options(selector: str | None, domain: str | None, key: bytes | str | Path | None) -> tuple[DkimKey, ...]:
    if not (selector or domain or key):
        return ()
    if not (selector and domain and key):
        raise ConfigError("DKIM signing needs a selector, a domain and a private key", hint="give all three, or none")
    if isinstance(key, bytes):
        pem = key
    elif str(key).lstrip().startswith("-----BEGIN"):  # the PEM text itself
        pem = str(key).encode()
    else:  # a path to the PEM file
        try:
            pem = Path(key).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the DKIM key {key}: {exc.strerror}",
                              hint="check the path and its permissions") from None
    return (load_key(selector, domain, pem),)


def _tls_error(exc: ssl.SSLError, config: SmtpConfig) -> PermanentTransportError:
    return RelayRefused(
        f"TLS with {config.host}:{config.port} failed: {exc.reason or exc}",
        hint="check the server's certificate and name, or the tls= option of NEWSLETTER_SMTP_URL",
    )


def _by_code(recipient: Recipient, code: int, reply: bytes, stage: str) -> SendResult:
    error = f"{code} {reply.decode('utf-8', 'replace')} ({stage})"
    if 400 <= code < 500:
        return SendResult(recipient.message_id, Outcome.FAILED, retryable=True, error=error)
    if code >= 500:
        return SendResult(recipient.message_id, Outcome.REJECTED, error=error)
    return SendResult(recipient.message_id, Outcome.FAILED, retryable=True, error=f"unexpected answer {error}")


def _failed(recipient: Recipient, error: str, cause: str | None = None) -> SendResult:
    return SendResult(recipient.message_id, Outcome.FAILED, retryable=True, error=error, cause=cause)


def _queue_id(reply: bytes) -> str | None:
    """The server's queue id when its 250 answer names one ("queued as ABC123")."""
    match = re.search(rb"queued as ([\w.-]+)", reply, re.IGNORECASE)
    return match.group(1).decode() if match else None


def _quit(slot: _Slot) -> None:
    conn, slot[0] = slot[0], None
    if conn is None:
        return
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
