"""Outgoing webhooks: how fast the outbox is written and delivered, on SQLite (or --database-url).

Writes ``--events`` events to the outbox (one transaction each, as a change
would: ``emit`` in its own session), then delivers them with one
``newsletter webhooks deliver``-style pass to a local receiver (a threading
``http.server`` in this process, answering 200 over a new connection per
request, as the delivery does). Figures: events written per second, events
delivered per second, the check that every event arrived exactly once, and
the peak memory (max RSS). Half the events share a subject with another
(ordering per subject is exercised).

Usage: python benchmarks/bench_webhooks_out.py [--events 2000] [--database-url URL] [--latency-ms 0]
       [--concurrency N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the receiver's think time per request")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the engine's)")
    args = parser.parse_args()

    from newsletter.delivery.webhooks import new_secret
    from newsletter.engine.webhooks import deliver_pass
    from newsletter.store import webhooks as hooks
    from newsletter.store.db import Store

    received: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            if args.latency_ms:
                time.sleep(args.latency_ms / 1000)  # a receiver that takes its time (a real CRM's API)
            with lock:
                received.append(self.headers["webhook-id"])
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    with tempfile.TemporaryDirectory() as folder:
        store = Store(args.database_url or f"sqlite:///{folder}/bench.db")
        with store.session() as session:
            hooks.add_endpoint(session, url, new_secret(), ["subscriber.updated"])
        started = time.perf_counter()
        ids = []
        for n in range(args.events):
            with store.session() as session:
                ids.append(hooks.emit(session, "subscriber.updated", f"subscriber:{n // 2}",
                                      {"id": n // 2, "email": f"reader{n}@example.org", "name": f"Reader {n}"}))
        written = time.perf_counter() - started
        started = time.perf_counter()
        options = {} if args.concurrency is None else {"concurrency": args.concurrency}
        report = deliver_pass(store, limit=args.events * 2, **options)
        delivered = time.perf_counter() - started
        store.close()
    server.shutdown()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exactly_once = sorted(received) == sorted(ids)
    print(f"events:            {args.events}")
    print(f"written:           {args.events / written:,.0f} events/s ({written * 1000 / args.events:.2f} ms each, "
          "one transaction per event)")
    print(f"delivered:         {report.delivered / delivered:,.0f} events/s ({delivered:.2f} s for "
          f"{report.delivered}, one pass)")
    print(f"each exactly once: {exactly_once}")
    print(f"peak memory:       {peak_mb:,.0f} MB (max RSS)")
    if not exactly_once or report.delivered != args.events:
        sys.exit(1)


if __name__ == "__main__":
    main()
