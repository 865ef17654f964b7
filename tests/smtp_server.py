"""A real SMTP server for tests and benchmarks: aiosmtpd on 127.0.0.1.

``SmtpServer`` records every message it accepts (envelope and raw bytes), or
in ``sink`` mode only counts them (benchmarks). It counts connections, can
ask for AUTH and offer STARTTLS or implicit TLS, and injects faults:

- ``rcpt_faults[address] = (code, text)``: RCPT TO for that address answers it;
- ``mail_faults``: a list of ``(code, text)`` answered to the next MAIL FROM commands;
- ``data_faults``: a list of ``(code, text)`` answered to the next DATA
  commands, one each, before normal service resumes;
- ``ehlo_names``: every EHLO name clients greeted with (and each message's ``ehlo``);
- ``drop_after_data``: the next N DATA commands are read in full, then the
  connection is cut without an answer (the client cannot know the outcome).

Run as a script (``python tests/smtp_server.py --sink``) it prints its port
and serves a counting sink until killed: the benchmarks use it so the server
does not share the client's interpreter lock.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM parameters (SMTPUTF8, BODY=8BITMIME)
    ehlo: str | None = None  # the name the client greeted with on this message's connection

    def parsed(self):
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class Handler:
    """The aiosmtpd handler: records (or counts) and injects faults."""

    sink: bool = False
    messages: list[Received] = field(default_factory=list)
    count: int = 0
    rcpt_faults: dict[str, tuple[int, str]] = field(default_factory=dict)
    data_faults: list[tuple[int, str]] = field(default_factory=list)
    drop_after_data: int = 0
    mail_faults: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ehlo_names: list[str] = field(default_factory=list)  # every EHLO name, in order

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.ehlo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_faults:
            code, text = self.mail_faults.pop(0)
            return f"{code} {text}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        fault = self.rcpt_faults.get(address.lower())
        if fault:
            return f"{fault[0]} {fault[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.drop_after_data > 0:
                self.drop_after_data -= 1
                server.transport.abort()
                return "250 OK"  # never reaches the client: the socket is gone
            if self.data_faults:
                code, text = self.data_faults.pop(0)
                return f"{code} {text}"
            self.count += len(envelope.rcpt_tos)
            if not self.sink:
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                              list(envelope.mail_options), session.host_name))
        return "250 Message accepted"


class _CountingSMTP(SMTP):
    def __init__(self, *args, on_connect, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect

    def connection_made(self, transport):
        self._on_connect()
        super().connection_made(transport)


class SmtpServer:
    """An aiosmtpd server in a thread; use as a context manager.

    ``credentials``: (user, password) turns on AUTH (PLAIN/LOGIN) and requires it.
    ``tls``: None, ``"starttls"`` or ``"ssl"``, with ``certfile``/``keyfile``.
    ``smtputf8``: whether the server offers SMTPUTF8 (RFC 6531); without it,
    aiosmtpd refuses non-ASCII addresses, as most servers do.
    """

    def __init__(self, *, sink=False, credentials=None, tls=None, certfile=None, keyfile=None, port=None,
                 smtputf8=True):
        self.handler = Handler(sink=sink)
        self.port = port or free_port()
        self.connections = 0
        self.credentials = credentials
        self._conn_lock = threading.Lock()
        kwargs = {"data_size_limit": 0, "enable_SMTPUTF8": smtputf8}
        server_context = None
        if tls:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(certfile, keyfile)
        if tls == "starttls":
            kwargs.update(tls_context=server_context, require_starttls=True)
        if credentials:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=bool(tls))
        self.controller = _Controller(
            self,
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=server_context if tls == "ssl" else None,
            **kwargs,
        )

    def _count_connection(self):
        with self._conn_lock:
            self.connections += 1

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()
        ) == tuple(self.credentials)
        # handled=False: aiosmtpd answers a refusal with 535, as real servers do (handled=True sends nothing)
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def start(self) -> SmtpServer:
        self.controller.start()
        self.connections = 0  # the controller's own readiness probe is not a client
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Controller(Controller):
    def __init__(self, owner: SmtpServer, *args, **kwargs):
        self._owner = owner
        super().__init__(*args, **kwargs)

    def factory(self):
        return _CountingSMTP(self.handler, on_connect=self._owner._count_connection, **self.SMTP_kwargs)


def make_self_signed_cert(folder, days: int = 1) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1/localhost, valid for ``days``, written into ``folder``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(certfile, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
    return certfile, keyfile


def main() -> None:
    """Serve a counting sink until killed; print the port, then a count on each line of stdin."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", action="store_true", help="count messages instead of recording them")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = SmtpServer(sink=True, port=args.port or None).start()
    print(server.port, flush=True)
    # Each line read on stdin asks for the count so far (the benchmark checks delivery).
    for _line in sys.stdin:
        print(server.handler.count, flush=True)
    server.stop()


if __name__ == "__main__":
    main()
