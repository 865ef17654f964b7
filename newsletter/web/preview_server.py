"""Running the preview app under uvicorn: binding the port, opening the browser.

The socket is bound here, before uvicorn starts, so that a port in use is a
one-line :class:`~newsletter.errors.NewsletterError` with a hint naming the
next port (instead of uvicorn's log and exit), and so that no other process
can take the port between the check and the server starting.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from newsletter.config import is_loopback_host
from newsletter.errors import NewsletterError

# Open event streams would keep a stopping server waiting for ever.
GRACEFUL_SHUTDOWN_SECONDS = 1


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)``; NewsletterError when the port is taken or the host unknown."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise NewsletterError(f"cannot listen on {host!r}: {exc.strerror}", hint="use --host 127.0.0.1") from None
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart after TIME_WAIT
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NewsletterError(f"port {port} is in use on {host}",
                                  hint=f"choose another port: --port {port + 1}") from None
        if exc.errno == errno.EACCES:
            raise NewsletterError(f"not allowed to listen on port {port}",
                                  hint="use a port above 1024, e.g. --port 8025") from None
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="use --host 127.0.0.1") from None
    sock.set_inheritable(True)
    return sock


def page_url(host: str, port: int) -> str:
    """The address to open: a wildcard host is reached at 127.0.0.1."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def local_hosts(host: str) -> list[str] | None:
    """The Host header values to accept: the loopback names for a loopback bind, else any (None)."""
    if not is_loopback_host(host) or ":" in host:
        return None
    return sorted({host, "127.0.0.1", "localhost"})


def make_server(app, sock: socket.socket, *, log_level: str = "warning"):
    """A uvicorn Server for ``app`` on the already bound ``sock`` (call ``server.run(sockets=[sock])``)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


def open_when_started(server, url: str, timeout: float = 10.0) -> threading.Thread:
    """Open ``url`` in the default browser once ``server`` is accepting connections."""
    def wait_and_open():
        deadline = time.monotonic() + timeout
        while not server.started and time.monotonic() < deadline and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            import webbrowser

            webbrowser.open(url)

    thread = threading.Thread(target=wait_and_open, name="preview-open-browser", daemon=True)
    thread.start()
    return thread
