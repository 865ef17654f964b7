"""Postmark end to end: `newsletter send --transport postmark` against the local stand-in, beside SendGrid.

Both runs go through the whole engine and ledger (the real CLI in a fresh
process, SQLite), each to its own stand-in in its own process with
validation and recording off (tests/fake_postmark.py --fast,
tests/fake_sendgrid.py --fast), for the same number of recipients. Postmark
has no per-recipient substitutions on its batch endpoint: every recipient's
message carries its own merged HTML, so a 500-message request is ~500 times
the edition's size; the target is to stay within 1.5x of SendGrid's time
(issue 14).

Also printed: the time to build one 500-message body with the pre-escaped
templates (``BatchBuilder``) and with ``json.dumps`` of the same messages as
dicts (what a client such as ``postmarker`` does), the reason the builder exists.

Usage: python benchmarks/bench_postmark.py [--rows N] [--rounds R]   (default 100,000 and 2)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench_send import run, server, workspace  # noqa: E402

TOKEN = "pm-bench-token"
SENDGRID_KEY = "SG.bench.key"


def build_figures() -> None:
    from newsletter.delivery.merge import MergeTemplate
    from newsletter.providers.postmark.body import BatchBuilder, payload

    from support.delivery import make_message, make_recipients, realistic_html

    message = make_message(html=realistic_html())
    batch = make_recipients(500)
    builder = BatchBuilder(message, "broadcast")
    start = time.perf_counter()
    for _ in range(5):
        entries, _results = builder.entries(batch)
        body = payload(entries)
    ours = (time.perf_counter() - start) / 5 * 1000
    html, text, subject = MergeTemplate(message.html), MergeTemplate(message.text), MergeTemplate(message.subject)
    start = time.perf_counter()
    for _ in range(5):
        plain = json.dumps([{"From": message.from_email, "To": r.email, "Subject": subject.render(r.merge_data),
                             "HtmlBody": html.render(r.merge_data), "TextBody": text.render(r.merge_data),
                             "MessageStream": "broadcast",
                             "Headers": [{"Name": k, "Value": v} for k, v in r.headers.items()],
                             "Metadata": {"message_id": r.message_id}} for r in batch]).encode()
    dumps = (time.perf_counter() - start) / 5 * 1000
    print(f"one 500-message body ({len(body) / 1e6:.1f} MB; a {len(message.html) / 1e3:.0f} kB edition): "
          f"BatchBuilder {ours:.1f} ms, render + json.dumps {dumps:.1f} ms ({len(plain) / 1e6:.1f} MB)")


def send(folder: Path, transport: str, env: dict, again: bool) -> tuple[float, float, str]:
    args = ["send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", transport]
    return run(args + (["--again"] if again else []), folder, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate sendgrid and postmark this many times; the best time of each counts "
                             "(a shared machine's load changes between runs)")
    options = parser.parse_args()
    rows = options.rows
    build_figures()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NEWSLETTER_") and k not in ("SENDGRID_API_KEY", "POSTMARK_SERVER_TOKEN")}
    scratch = Path(tempfile.mkdtemp(prefix="bench-postmark-"))
    best: dict[str, tuple[float, float]] = {}
    try:
        folders = {name: workspace(scratch / name, rows, env) for name in ("sendgrid", "postmark")}
        for round_ in range(options.rounds):
            for name in ("sendgrid", "postmark"):
                if name == "postmark":
                    process, url = server("fake_postmark.py", "--fast", "--token", TOKEN)
                    run_env = dict(env, POSTMARK_SERVER_TOKEN=TOKEN, NEWSLETTER_POSTMARK_HOST=url)
                else:
                    process, url = server("fake_sendgrid.py", "--fast", "--api-key", SENDGRID_KEY)
                    run_env = dict(env, SENDGRID_API_KEY=SENDGRID_KEY, NEWSLETTER_SENDGRID_HOST=url)
                try:
                    seconds, peak, last = send(folders[name], name, run_env, again=round_ > 0)
                finally:
                    process.kill()
                    process.wait()
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, peak)
                print(f"round {round_ + 1}: {name}, {rows:,} recipients end to end (SQLite): {seconds:.1f} s, "
                      f"{rows / seconds:,.0f}/s, peak {peak:.0f} MB")
                print(f"  {last}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, (seconds, peak) in best.items():
        print(f"best {name}: {seconds:.1f} s, {rows / seconds:,.0f} msgs/s, peak {peak:.0f} MB")
    ratio = best["postmark"][0] / best["sendgrid"][0]
    print(f"postmark / sendgrid time: {ratio:.2f}x [target <= 1.5x: {'ok' if ratio <= 1.5 else 'OVER TARGET'}]")


if __name__ == "__main__":
    main()
