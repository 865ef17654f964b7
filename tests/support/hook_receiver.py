"""A real HTTP receiver of webhooks on 127.0.0.1 (a threading ``http.server``), for the webhook tests.

It records every POST (headers and raw body) and answers the statuses of
``plan`` in turn (then ``default``). ``hold()`` makes it keep the next
requests waiting, unanswered, until ``release()`` (a sender killed while it
waits never hears back). ``wait_for(n)`` waits, bounded, until ``n``
requests arrived: no sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered (or was going to, for a held request)

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    @property
    def event_time(self):
        from datetime import datetime

        return datetime.fromisoformat(self.event["timestamp"])

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.plan: list[int] = []
        self.default = 200
        self._arrived = threading.Condition()
        self._go = threading.Event()
        self._go.set()
        self._hold_from = 0
        self.url = ""

    def hold(self, after: int = 0) -> None:
        """Keep requests unanswered from the ``after``-th on (0: all), until :meth:`release`."""
        self._hold_from = after
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def answer(self, *statuses: int, then: int = 200) -> None:
        """Answer ``statuses`` to the next requests, then ``then``."""
        self.plan, self.default = list(statuses), then

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")
            return list(self.requests)

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.requests]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        with self._arrived:
            status = self.plan.pop(0) if self.plan else self.default
            self.requests.append(Received({k.lower(): v for k, v in handler.headers.items()}, body, status))
            held = len(self.requests) > self._hold_from
            self._arrived.notify_all()
        if held:
            self._go.wait(60)
        handler.send_response(status)
        if 300 <= status < 400:
            handler.send_header("location", "/moved")  # a sender that followed it would be seen here
        handler.send_header("content-length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")


@contextmanager
def receiver(path: str = "/hooks/newsletter") -> Iterator[Receiver]:
    """A :class:`Receiver` listening on a free port of 127.0.0.1; ``.url`` ends with ``path``."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            state._handle(self)

        do_GET = do_POST  # recorded too: a followed redirect would arrive as a GET

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, name="hook-receiver", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release()
        server.shutdown()
        server.server_close()
        thread.join(10)
