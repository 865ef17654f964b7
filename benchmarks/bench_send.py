"""End-to-end send speed: `newsletter send` through the whole engine and ledger.

Targets (issue 5):
- 1,000,000 subscribers through the sendgrid transport to a local v3 server
  (validation off) in at most 30 s end to end on SQLite, at most 200 MB peak;
- the same send as a fraction of the stand-in's ready-made limit (issue 15,
  target >= 0.8; benchmarks/_ready_made.py): ready-made v3 bodies (1,000
  personalizations with substitutions and headers, the composed HTML once,
  built beforehand and JSON-encoded per request) posted one after another
  over one keep-alive connection to the same stand-in, as many recipients as
  the send; taken just before and just after the send and averaged (the
  shared machine's load moves between them);
- SMTP to a counting aiosmtpd sink through the engine, shown beside the
  ready-made limit measured in the same run (benchmarks/bench_smtp.py has the
  transport-level comparison with mailmerge).

Each measurement runs the real CLI in a fresh process (peak memory is that
process's max RSS); the servers run in their own processes.

Also printed: the CPU seconds of the send's processes (steadier than the
wall time on a loaded machine), and the fixed cost: a send to 10
recipients, start-up included.

Usage: python benchmarks/bench_send.py [--rows N] [--smtp-rows N (0: no SMTP part)]
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _cli import NEWSLETTER, run_cli, run_cli_cpu  # noqa: E402
from _ready_made import API_KEY, composed_html, ready_made_seconds  # noqa: E402

SEND = ["send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "sendgrid"]
SMALL = 10  # recipients of the send that shows the fixed cost


def run(args: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    return run_cli(args, cwd, env, ok=(0, 2))


def server(script: str, *args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / script), *args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def workspace(scratch: Path, rows: int, env: dict) -> Path:
    folder = scratch / f"letter-{rows}"
    subprocess.run(NEWSLETTER + ["init", str(folder), "--postal-address", "1 Bench Street",
                                 "--base-url", "https://news.example.org"], check=True, capture_output=True, env=env)
    data = folder / "subscribers" / "all.csv"
    with data.open("w") as handle:
        handle.write("email,name\n")
        for i in range(rows):
            handle.write(f"reader.{i}@example.org,Reader {i}\n")
    seconds, _peak, _ = run(["subscribers", "import", str(data), "--list", "readers"], folder, env)
    print(f"  (set-up: imported {rows:,} subscribers in {seconds:.1f} s)")
    return folder


def bench_sendgrid(scratch: Path, rows: int, env: dict) -> None:
    folder = workspace(scratch, rows, env)
    small = workspace(scratch, SMALL, env)
    html = composed_html(folder)
    process, url = server("fake_sendgrid.py", "--fast", "--api-key", API_KEY)
    try:
        send_env = dict(env, SENDGRID_API_KEY=API_KEY, NEWSLETTER_SENDGRID_HOST=url)
        before = ready_made_seconds(url, rows, html)
        seconds, peak, last, cpu = run_cli_cpu(SEND, folder, send_env, ok=(0, 2))
        after = ready_made_seconds(url, rows, html)
        fixed = [run_cli_cpu(SEND + (["--again"] if number else []), small, send_env, ok=(0, 2))
                 for number in range(3)]
    finally:
        process.kill()
        process.wait()
    verdict = "ok" if seconds <= 30 and peak <= 200 else "OVER TARGET"
    print(f"sendgrid, {rows:,} recipients end to end (SQLite): {seconds:.1f} s, {rows / seconds:,.0f}/s, "
          f"peak {peak:.0f} MB [target <= 30 s and <= 200 MB for 1,000,000: {verdict}]")
    limit = (before + after) / 2
    share = limit / seconds
    print(f"  ready-made v3 bodies over one keep-alive connection to the same stand-in: {limit:.1f} s "
          f"({before:.1f} before, {after:.1f} after), {rows / limit:,.0f}/s -> ours is {share:.2f} of that limit "
          f"[target >= 0.8: {'met' if share >= 0.8 else 'NOT MET'}]")
    print(f"  CPU of the send (its processes, user + system): {cpu:.1f} s, {1e6 * cpu / rows:.1f} us a recipient; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  {last}")
    wall, _peak, _last, fixed_cpu = sorted(fixed)[1]
    print(f"  fixed cost: a send to {SMALL} recipients end to end, median of 3: {wall:.2f} s, CPU {fixed_cpu:.2f} s "
          f"(start-up, compose, snapshot, one request)")


def ready_made_rate(port: int, message: bytes, count: int) -> float:
    connection = smtplib.SMTP("127.0.0.1", port)
    start = time.perf_counter()
    for i in range(count):
        connection.sendmail("letter@example.org", [f"reader.{i}@example.org"], message)
    seconds = time.perf_counter() - start
    connection.quit()
    return count / seconds


def bench_smtp(scratch: Path, rows: int, env: dict) -> None:
    folder = workspace(scratch, rows, env)
    process, port = server("smtp_server.py", "--sink")
    try:
        smtp_env = dict(env, NEWSLETTER_SMTP_URL=f"smtp://127.0.0.1:{port}?tls=none")
        subprocess.run(NEWSLETTER + ["compose", "articles/welcome.md", "--out", "build"], cwd=folder, env=env,
                       check=True, capture_output=True)
        message = next((folder / "build").glob("*.eml")).read_bytes().replace(b"\n", b"\r\n")
        limit = ready_made_rate(int(port), message, rows)
        seconds, peak, last = run(["send", "articles/welcome.md", "--list", "readers", "--yes",
                                   "--transport", "smtp"], folder, smtp_env)
    finally:
        process.kill()
        process.wait()
    rate = rows / seconds
    print(f"smtp, {rows:,} recipients end to end: {seconds:.1f} s, {rate:,.0f}/s (with start-up and ledger); "
          f"ready-made limit on one connection {limit:,.0f}/s -> {100 * rate / limit:.0f}%; peak {peak:.0f} MB")
    print(f"  {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--smtp-rows", type=int, default=5_000)
    options = parser.parse_args()
    # PYTHONDONTWRITEBYTECODE off: an installed package has its bytecode cached; without it every
    # command compiled the project's modules again (a third of a small send's start-up).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NEWSLETTER_") and k not in ("SENDGRID_API_KEY", "PYTHONDONTWRITEBYTECODE")}
    scratch = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        bench_sendgrid(scratch, options.rows, env)
        if options.smtp_rows:
            bench_smtp(scratch, options.smtp_rows, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
