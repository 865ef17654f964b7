"""SendGrid transport throughput: 1,000-recipient batches to a local v3 server.

The fake server (tests/fake_sendgrid.py --fast: no validation, no recording)
runs in a child process. Figures: the time to build one 1,000-personalization
body (target ~2 ms), to JSON-encode it, one POST of that body through the
library's public ``client.mail.send.post`` and through our
``MailSendClient`` (public library parts; the figures show why it exists),
and the end-to-end rate of ``send_batch`` (build + encode + POST).
The whole product's target is 1,000,000 recipients in <= 30 s end to end,
so the transport alone should stay well under 30 ms per batch.

Usage: python benchmarks/bench_sendgrid_transport.py [RECIPIENTS]   (default 200,000)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from newsletter.delivery.message import Outcome  # noqa: E402
from newsletter.delivery.retry import RetryPolicy  # noqa: E402
from newsletter.providers.sendgrid.body import build_body  # noqa: E402
from newsletter.providers.sendgrid.transport import SendGridTransport  # noqa: E402

from support.delivery import make_message, make_recipients, realistic_html  # noqa: E402

KEY = "SG.bench-key.bench-secret"
BATCH = 1000


def per_call(function, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    message = make_message(html=realistic_html())
    batch = make_recipients(BATCH)
    body = build_body(message, batch)[0]
    build_ms = per_call(lambda: build_body(message, batch), 50) * 1000
    encode_ms = per_call(lambda: json.dumps(body), 50) * 1000
    size = len(json.dumps(body))
    print(f"body of {BATCH} personalizations: {size / 1e3:.0f} kB; build {build_ms:.2f} ms (target ~2 ms: "
          f"{'PASS' if build_ms <= 2.5 else 'OVER'}), json.dumps {encode_ms:.2f} ms")

    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_sendgrid.py"), "--fast", "--api-key", KEY],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    try:
        compare_request_paths(url, body)
        batches = [make_recipients(BATCH, start) for start in range(0, BATCH * 10, BATCH)]
        sent = 0
        start = time.perf_counter()
        with SendGridTransport(KEY, host=url, timeout=30, retry=RetryPolicy(max_attempts=1)) as transport:
            while sent < total:
                results = transport.send_batch(message, batches[(sent // BATCH) % len(batches)])
                assert results[-1].outcome is Outcome.QUEUED, results[-1]
                sent += len(results)
        seconds = time.perf_counter() - start
    finally:
        server.kill()
        server.wait()
    rate = sent / seconds
    per_batch = seconds / (sent / BATCH) * 1000
    projected = 1_000_000 / rate
    print(f"send_batch: {sent:,} recipients in {seconds:.2f} s = {rate:,.0f} recipients/s,"
          f" {per_batch:.1f} ms per batch")
    print(f"projected 1,000,000 recipients (transport alone): {projected:.1f} s "
          f"(budget 30 s end to end: {'PASS' if projected <= 30 else 'FAIL'})")
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def compare_request_paths(url: str, body: dict, repeat: int = 30) -> None:
    """One POST of a 1,000-recipient body: the library's public ``post`` vs our MailSendClient."""
    import sendgrid
    from newsletter.providers.sendgrid.client import MailSendClient

    library = sendgrid.SendGridAPIClient(api_key=KEY, host=url)
    ours = MailSendClient(KEY, url, timeout=30)
    library_ms = per_call(lambda: library.client.mail.send.post(request_body=body), repeat) * 1000
    ours_ms = per_call(lambda: ours.post(body), repeat) * 1000
    print(f"one POST of that body: library client.mail.send.post {library_ms:.2f} ms, MailSendClient "
          f"{ours_ms:.2f} ms (saves {library_ms - ours_ms:.2f} ms a batch, "
          f"{(library_ms - ours_ms):.1f} s per 1,000,000 recipients)")


if __name__ == "__main__":
    main()
