"""SMTP throughput: our transport against the ready-made limit and against mailmerge.

An aiosmtpd counting sink runs in its own process (tests/smtp_server.py) so
it does not share the client's interpreter lock. Three figures, same ~30 KB
HTML newsletter:

(a) the ready-made limit: one composed message (bytes) sent N times over one
    reused smtplib connection;
(b) SmtpTransport sending N personalised messages (batches of 100), as a
    percentage of (a) -- target >= 80%;
(c) the ``mailmerge`` CLI sending the same HTML to the same sink (one
    connection per message, as it does); our rate / its rate -- target >= 1.8x.

Usage: python benchmarks/bench_smtp.py [N] [MAILMERGE_N]
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from newsletter.delivery.mime import as_smtp_bytes, build_mime  # noqa: E402
from newsletter.delivery.smtp import SmtpTransport  # noqa: E402

from support.delivery import make_message, make_recipients, realistic_html  # noqa: E402

TEXT = "Dear %%name:raw%%,\n\nKetamine clinics: what the evidence says.\n\nUnsubscribe: %%unsubscribe_url:raw%%\n"


class Sink:
    """The counting sink in a child process."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "smtp_server.py"), "--sink"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self.process.stdout.readline())

    def count(self) -> int:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self):
        self.process.kill()
        self.process.wait()


def report(label: str, count: int, seconds: float) -> float:
    rate = count / seconds
    print(f"{label:<44} {count:>7} msgs {seconds:8.2f} s {rate:9.1f} msg/s")
    return rate


def ready_made(port: int, message, n: int) -> float:
    data = as_smtp_bytes(build_mime(message, make_recipients(1)[0]))
    print(f"message size: {len(data):,} bytes")
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.ehlo()
    start = time.perf_counter()
    for _ in range(n):
        conn.sendmail("news@clinic.example", ["reader0@example.org"], data)
    seconds = time.perf_counter() - start
    conn.quit()
    return report("(a) ready-made bytes, one reused connection", n, seconds)


def send_all(port: int, message, recipients, connections: int) -> None:
    with SmtpTransport("127.0.0.1", port, tls="none", connections=connections) as transport:
        for i in range(0, len(recipients), transport.max_batch):
            results = transport.send_batch(message, recipients[i:i + transport.max_batch])
            assert all(r.outcome.value == "sent" for r in results), results[0]


def ours(port: int, message, n: int, connections: int) -> float:
    recipients = make_recipients(n)
    start = time.perf_counter()
    send_all(port, message, recipients, connections)
    return report(f"(b) SmtpTransport, {connections} connection(s), personalised", n, time.perf_counter() - start)


def peak_memory(port: int, message, connections: int) -> None:
    """Peak Python allocations while sending 500 messages (tracemalloc: not timed, it slows allocation)."""
    recipients = make_recipients(500)
    tracemalloc.start()
    send_all(port, message, recipients, connections)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"    peak traced memory while sending (500 messages, {connections} connections): {peak / 1e6:.1f} MB")


def mailmerge(port: int, html: str, n: int) -> float | None:
    exe = shutil.which("mailmerge") or str(Path(sys.executable).with_name("mailmerge"))
    if not os.path.exists(exe):
        print("(c) mailmerge is not installed (pip install mailmerge): skipped")
        return None
    folder = Path(tempfile.mkdtemp(prefix="bench-mailmerge-"))
    boundary = "newsletter-boundary"
    # mailmerge sends the HTML as it is: lines over SMTP's 998-byte limit are refused
    # (aiosmtpd: "500 Line too long"), so it gets the same HTML with a line break between tags.
    mm_html = html.replace("%%name%%", "{{name}}").replace("%%unsubscribe_url%%", "{{unsubscribe_url}}")
    mm_html = mm_html.replace("><", ">\n<")
    (folder / "template.txt").write_text(
        "TO: {{email}}\nSUBJECT: News for {{name}}\nFROM: Clinic News <news@clinic.example>\n"
        f'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
        "Dear {{name}},\n\nKetamine clinics: what the evidence says.\n\nUnsubscribe: {{unsubscribe_url}}\n\n"
        f"--{boundary}\nContent-Type: text/html; charset=us-ascii\n\n{mm_html}\n\n--{boundary}--\n"
    )
    with open(folder / "database.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "unsubscribe_url"])
        for r in make_recipients(n):
            writer.writerow([r.email, r.name, r.merge_data["unsubscribe_url"]])
    (folder / "server.conf").write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\n")
    args = [exe, "--template", "template.txt", "--database", "database.csv", "--config", "server.conf",
            "--output-format", "raw"]
    start = time.perf_counter()
    subprocess.run(args + ["--dry-run", "--limit", "0"], cwd=folder, stdout=subprocess.DEVNULL, check=True)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(args + ["--no-dry-run", "--no-limit"], cwd=folder, stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder)
    print(f"    (mailmerge start-up {startup:.2f} s, subtracted)")
    return report("(c) mailmerge CLI, same HTML", n, max(seconds - startup, 1e-9))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    mm_n = int(sys.argv[2]) if len(sys.argv) > 2 else min(n, 2000)
    html = realistic_html()
    message = make_message(html=html, text=TEXT)
    print(f"HTML {len(html):,} bytes; N={n}, mailmerge N={mm_n}")
    sink = Sink()
    try:
        limit = ready_made(sink.port, message, n)
        before = sink.count()
        rates = {c: ours(sink.port, message, n, c) for c in (1, 4)}
        assert sink.count() - before == 2 * n, "the sink did not receive every message"
        peak_memory(sink.port, message, 4)
        theirs = mailmerge(sink.port, html, mm_n)
    finally:
        sink.stop()
    best = max(rates.values())
    share = best / limit
    print(f"\nours / ready-made: {share:.0%}  (target >= 80%: {'PASS' if share >= 0.8 else 'FAIL'})")
    if theirs:
        ratio = best / theirs
        print(f"ours / mailmerge:  {ratio:.1f}x (target >= 1.8x: {'PASS' if ratio >= 1.8 else 'FAIL'})")
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
