"""The public app under a real uvicorn server in a thread, for tests that need real HTTP and real parallelism.

``running(app)`` binds 127.0.0.1 on a free port, starts uvicorn in a
thread, waits until it accepts requests (bounded), yields the base URL and
stops it after. ``in_parallel(count, request)`` runs ``request(i)`` in
``count`` threads released together by a barrier, each with its own
connection, and returns the answers in order.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx


@contextmanager
def running(app, *, timeout: float = 30.0, **options) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL.

    ``options`` go to ``uvicorn.Config`` (the defaults suit the concurrency
    tests: no lifespan, uvicorn leaves logging alone so its error records reach
    pytest's caplog, a deep backlog). ``timeout`` bounds the start and the stop.
    """
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, **{"log_config": None, "access_log": False, "lifespan": "off", "backlog": 512,
                                    "timeout_graceful_shutdown": 5, **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()


def in_parallel(count: int, request: Callable[[httpx.Client, int], httpx.Response]) -> list[httpx.Response]:
    """``request(client, i)`` for i in range(count), all released at once; the responses in order."""
    barrier = threading.Barrier(count, timeout=60)

    def one(index: int) -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            barrier.wait()
            return request(client, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))
