"""Amazon SES end to end: `newsletter send --transport ses` against moto, paced to the account's rate.

moto's SES v2 server (``python -m moto.server``) runs in one child process and
tests/support/ses.py's proxy in another: the proxy answers ``GetAccount`` with
``MaxSendRate`` = ``--rate`` (so the transport reads its limit the way it
does from SES) and records when each message was accepted. Target (issue
14): the achieved rate, measured at the proxy from the first to the last
accepted request's arrival, within 5% of the limit; the busiest one-second
window is printed too (the transport may catch up a quarter second of
messages after the engine pauses between batches).

The reference, in the same run: the same number of recipients through
`newsletter send --transport sendgrid` to the SendGrid stand-in
(benchmarks/bench_send.py's pieces). SES is bound by its rate limit, so
its time is ``rows / rate`` plus start-up; the SendGrid figure shows what
the engine does without a limit.

At 200 messages a second 100,000 recipients take over 8 minutes, so the
default is 20,000 (about 100 s); pass ``--rows 100000`` for the full count.

Usage: python benchmarks/bench_ses.py [--rows N] [--rate MSGS_PER_S] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from bench_send import bench_sendgrid, run, workspace  # noqa: E402

ACCESS_KEY = "AKIATESTNEWSLETTER01"  # tests/support/ses.py's: the proxy refuses any other
SECRET_KEY = "test-secret-key-not-real"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/data.json", timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # polling a child's start-up, not a test


def start_ses(rate: float) -> tuple[list[subprocess.Popen], str]:
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    moto_url = f"http://127.0.0.1:{port}"
    wait_for(moto_url)
    proxy = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "ses.py"), "--upstream", moto_url,
                              "--rate", str(rate)], stdout=subprocess.PIPE, text=True)
    url = proxy.stdout.readline().strip()
    import boto3

    client = boto3.session.Session().client("sesv2", region_name="us-east-1", endpoint_url=url,
                                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_email_identity(EmailIdentity="example.org")  # `newsletter init`'s sender domain below
    return [moto, proxy], url


def bench_ses(scratch: Path, rows: int, rate: float, concurrency: int, env: dict) -> None:
    folder = workspace(scratch, rows, env)
    children, url = start_ses(rate)
    try:
        send_env = dict(env, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                        AWS_DEFAULT_REGION="us-east-1", NEWSLETTER_SES_ENDPOINT_URL=url,
                        NEWSLETTER_SES_CONCURRENCY=str(concurrency))
        seconds, peak, last = run(["send", "articles/welcome.md", "--list", "readers", "--yes",
                                   "--transport", "ses"], folder, send_env)
        with urllib.request.urlopen(url + "/bench/stats", timeout=10) as answer:
            stats = json.load(answer)
    finally:
        for child in children:
            child.kill()
            child.wait()
    achieved = (stats["accepted"] - 1) / stats["seconds"] if stats["seconds"] else 0.0
    within = abs(achieved - rate) <= 0.05 * rate
    print(f"ses, {rows:,} recipients end to end (SQLite, moto): {seconds:.1f} s, {rows / seconds:,.0f}/s "
          f"with start-up, peak {peak:.0f} MB")
    print(f"  accepted by SES (moto) {stats['accepted']:,}; achieved rate {achieved:.1f}/s against the limit "
          f"{rate:g}/s = {100 * achieved / rate:.1f}% [target within 5%: {'PASS' if within else 'FAIL'}]; "
          f"busiest second {stats['max_per_second']} messages")
    print(f"  {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="the account's MaxSendRate (GetAccount)")
    parser.add_argument("--concurrency", type=int, default=0, help="0: the transport's automatic choice")
    options = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEWSLETTER_", "AWS_")) and k != "SENDGRID_API_KEY"}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    scratch = Path(tempfile.mkdtemp(prefix="bench-ses-"))
    try:
        (scratch / "ses").mkdir()
        (scratch / "sendgrid").mkdir()
        bench_ses(scratch / "ses", options.rows, options.rate, options.concurrency, env)
        print("reference, same run:")
        bench_sendgrid(scratch / "sendgrid", options.rows, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
