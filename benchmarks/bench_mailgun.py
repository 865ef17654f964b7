"""Mailgun end to end: `newsletter send --transport mailgun` for 100,000 recipients, beside SendGrid.

Both sends run the real CLI in a fresh process through the whole engine and
ledger (SQLite), each against its local stand-in in its own process with
validation and recording off (``tests/fake_mailgun.py --fast``,
``tests/fake_sendgrid.py --fast``): the SendGrid figure, measured in the
same run on the same machine, is the reference. Target (issue 14): Mailgun
within 1.5x of SendGrid's time for the same count. Also printed: the time
to build one 1,000-recipient request of each (the form with its
recipient-variables, the JSON body).

Usage: python benchmarks/bench_mailgun.py [--rows N]   (default 100,000)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).parent), str(ROOT / "tests"), str(ROOT)]

from bench_send import run, server, workspace  # noqa: E402

SENDGRID_KEY = "SG.bench.key"
MAILGUN_KEY = "key-bench-mailgun"
DOMAIN = "mg.example.org"


def build_times() -> tuple[float, float]:
    """Milliseconds to build one 1,000-recipient request: (Mailgun form, SendGrid body)."""
    from newsletter.providers.mailgun.body import build_form, shared_parts
    from newsletter.providers.sendgrid.body import build_body

    from support.delivery import make_message, make_recipients, realistic_html

    message, batch = make_message(html=realistic_html()), make_recipients(1000)
    shared = shared_parts(message)

    def per_call(function, repeat: int = 30) -> float:
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        return (time.perf_counter() - start) / repeat * 1000

    return per_call(lambda: build_form(shared, batch)), per_call(lambda: build_body(message, batch))


def send(scratch: Path, rows: int, env: dict, name: str) -> tuple[float, float]:
    """(seconds, peak MB) of one end-to-end send of ``rows`` recipients through ``name``."""
    folder = workspace(scratch / name, rows, env)
    if name == "mailgun":
        process, url = server("fake_mailgun.py", "--fast", "--api-key", MAILGUN_KEY, "--domain", DOMAIN)
        send_env = dict(env, MAILGUN_API_KEY=MAILGUN_KEY, NEWSLETTER_MAILGUN_DOMAIN=DOMAIN,
                        NEWSLETTER_MAILGUN_HOST=url)
    else:
        process, url = server("fake_sendgrid.py", "--fast", "--api-key", SENDGRID_KEY)
        send_env = dict(env, SENDGRID_API_KEY=SENDGRID_KEY, NEWSLETTER_SENDGRID_HOST=url)
    try:
        seconds, peak, last = run(["send", "articles/welcome.md", "--list", "readers", "--yes",
                                   "--transport", name], folder, send_env)
    finally:
        process.kill()
        process.wait()
    print(f"{name}, {rows:,} recipients end to end (SQLite): {seconds:.1f} s, {rows / seconds:,.0f} msgs/s, "
          f"peak {peak:.0f} MB")
    print(f"  {last}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    options = parser.parse_args()
    mailgun_ms, sendgrid_ms = build_times()
    print(f"one 1,000-recipient request built: Mailgun form {mailgun_ms:.2f} ms, SendGrid body {sendgrid_ms:.2f} ms")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NEWSLETTER_") and k not in ("SENDGRID_API_KEY", "MAILGUN_API_KEY")}
    scratch = Path(tempfile.mkdtemp(prefix="bench-mailgun-"))
    try:
        reference, _ = send(scratch, options.rows, env, "sendgrid")
        seconds, _ = send(scratch, options.rows, env, "mailgun")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratio = seconds / reference
    print(f"mailgun / sendgrid time: {ratio:.2f}x [target <= 1.5x: {'met' if ratio <= 1.5 else 'OVER'}]")


if __name__ == "__main__":
    main()
