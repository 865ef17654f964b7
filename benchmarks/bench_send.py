"""End-to-end send speed: `newsletter send` through the whole engine and ledger.

Targets (issue 5):
- 1,000,000 subscribers through the sendgrid transport to a local v3 server
  (validation off) in at most 30 s end to end on SQLite, at most 200 MB peak;
- the same send as a fraction of the stand-in's ready-made limit (issue 15,
  target >= 0.8): ready-made v3 bodies (1,000 personalizations with
  substitutions and headers, the composed HTML once, built beforehand and
  JSON-encoded per request) posted one after another over one keep-alive connection to the same
  stand-in, as many recipients as the send; taken just before and just after
  the send and averaged (the shared machine's load moves between them);
- SMTP to a counting aiosmtpd sink through the engine, shown beside the
  ready-made limit measured in the same run (benchmarks/bench_smtp.py has the
  transport-level comparison with mailmerge).

Each measurement runs the real CLI in a fresh process (peak memory is that
process's max RSS); the servers run in their own processes.

Usage: python benchmarks/bench_send.py [--rows N] [--smtp-rows N]
"""

from __future__ import annotations

import argparse
import http.client
import json
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

from _cli import NEWSLETTER, run_cli  # noqa: E402

API_KEY = "SG.bench.key"


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


def composed_html(folder: Path) -> str:
    """The HTML the send composes from the workspace's welcome article (the same edition, composed once)."""
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings

    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return compose_edition(folder / "articles" / "welcome.md", load_settings(folder)).html
    finally:
        os.chdir(cwd)


def ready_made_seconds(url: str, rows: int, folder: Path) -> float:
    """Seconds to POST ``rows`` recipients to the stand-in as ready-made v3 bodies of 1,000
    personalizations (built beforehand as dicts, the workspace's composed HTML once per body; each
    JSON-encoded as it is posted, as any client must), one request after another over one
    keep-alive connection: the limit the send is compared with."""
    from newsletter.providers.sendgrid.body import build_body
    from newsletter.providers.sendgrid.client import MAIL_SEND_PATH

    from support.delivery import make_message, make_recipients

    message = make_message(html=composed_html(folder))
    bodies = [build_body(message, make_recipients(1000, start))[0] for start in range(0, 10_000, 1000)]
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    start = time.perf_counter()
    for number in range(max(1, rows // 1000)):
        # Encoded per request, as any client must; the --fast stand-in does not parse it.
        payload = json.dumps(bodies[number % len(bodies)], separators=(",", ":")).encode()
        connection.request("POST", MAIL_SEND_PATH, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            raise SystemExit(f"the stand-in answered {response.status} to a ready-made body")
    seconds = time.perf_counter() - start
    connection.close()
    return seconds


def bench_sendgrid(scratch: Path, rows: int, env: dict) -> None:
    folder = workspace(scratch, rows, env)
    process, url = server("fake_sendgrid.py", "--fast", "--api-key", API_KEY)
    try:
        before = ready_made_seconds(url, rows, folder)
        send_env = dict(env, SENDGRID_API_KEY=API_KEY, NEWSLETTER_SENDGRID_HOST=url)
        seconds, peak, last = run(["send", "articles/welcome.md", "--list", "readers", "--yes",
                                   "--transport", "sendgrid"], folder, send_env)
        after = ready_made_seconds(url, rows, folder)
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
    print(f"  {last}")


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and k != "SENDGRID_API_KEY"}
    scratch = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        bench_sendgrid(scratch, options.rows, env)
        bench_smtp(scratch, options.smtp_rows, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
