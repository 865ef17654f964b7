"""The HTTP API: 10,000 subscriber creations against `newsletter serve` on SQLite (goal: 1,000/s, p99 < 50 ms).

A temporary workspace (SQLite) with one API token; `newsletter serve` runs
as its own process under uvicorn; ``--clients`` threads (default 4), each
with a kept-alive connection, POST /api/subscribers with a new address on
the list ``readers`` (consent recorded as api:bench) and an
Idempotency-Key, as a website's signups would. Figures: requests a second,
latency percentiles, the server's CPU time per request (what one free core could do,
whatever else the machine runs), its peak memory (VmHWM), the check that every
request made exactly one subscriber, and the load average.

Usage: python benchmarks/bench_api.py [--requests 10000] [--clients 4] [--no-key]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from _cli import free_port, wait_until_up  # noqa: E402


def setup(folder: Path) -> tuple[str, str]:
    """A workspace with a token of scope subscribers:write; returns the token and the database URL."""
    from newsletter.config import load_settings
    from newsletter.workspace import init_workspace

    init_workspace(folder, sender="Bench <news@bench.example>", postal_address="1 Main St",
                   base_url="https://news.bench.example", transport="memory")
    env = {**os.environ, "NEWSLETTER_HOME": str(folder)}
    created = subprocess.run([sys.executable, "-m", "newsletter", "tokens", "create", "bench", "--scope",
                              "subscribers:write", "--rate", "100000", "--json"], cwd=folder, env=env, check=True,
                             capture_output=True, text=True)
    return json.loads(created.stdout)["token"], load_settings(folder).database_url



def fire(port: int, token: str, numbers: list[int], keyed: bool, latencies: list[float], answers: list[int]) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    # TCP_NODELAY: httpx writes a POST's headers and body apart; without it Nagle's algorithm holds the body
    # until the server's delayed ACK (40 ms) - a cost of this client, not of the server (curl sends both at once).
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, transport=transport) as client:
        for n in numbers:
            body = {"email": f"reader{n}@example.org", "name": f"Reader {n}", "list": "readers",
                    "attributes": {"source": "bench"}}
            extra = {"Idempotency-Key": f"signup-{n}"} if keyed else {}
            start = time.perf_counter()
            response = client.post("/api/subscribers", json=body, headers={**headers, **extra})
            latencies.append(time.perf_counter() - start)
            answers.append(response.status_code)


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_subscribers(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT COUNT(*) FROM subscribers")).scalar()
    engine.dispose()
    return int(count or 0)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="parallel clients, each with its own connection")
    parser.add_argument("--no-key", action="store_true", help="send no Idempotency-Key (one write less a request)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        token, url = setup(folder)
        port = free_port()
        env = {**os.environ, "NEWSLETTER_HOME": str(folder)}
        process = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=folder,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_up(port, process)
            fire(port, token, list(range(-50, 0)), not options.no_key, [], [])  # warm-up, not measured
            latencies: list[float] = []
            answers: list[int] = []
            numbers = list(range(options.requests))
            shares = [numbers[i::options.clients] for i in range(options.clients)]
            threads = [threading.Thread(target=fire, args=(port, token, share, not options.no_key, latencies,
                                                           answers)) for share in shares]
            cpu_before = cpu_seconds(process.pid)
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
            cpu = cpu_seconds(process.pid) - cpu_before
            memory = peak_memory_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=10)
        made = count_subscribers(url) - 50
        rate = len(latencies) / seconds
        p50, p95, p99 = (percentile(latencies, s) * 1000 for s in (0.50, 0.95, 0.99))
        key = "without" if options.no_key else "with"
        print(f"{len(latencies):,} POST /api/subscribers ({key} Idempotency-Key) from {options.clients} client(s) "
              f"in {seconds:.2f} s: {rate:,.0f} requests/s (goal 1,000: {'PASS' if rate >= 1000 else 'UNDER'})")
        print(f"latency: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {max(latencies) * 1000:.1f} ms, "
              f"mean {statistics.mean(latencies) * 1000:.2f} ms (goal p99 < 50 ms: {'PASS' if p99 < 50 else 'OVER'})")
        print(f"server CPU per request {cpu / len(latencies) * 1000:.2f} ms (at most "
              f"{len(latencies) / cpu:,.0f} requests/s on one free core); peak memory (VmHWM) {memory:.0f} MB; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"answers: {answers.count(201):,} created, {len(answers) - answers.count(201)} other; subscribers "
              f"made {made:,} ({'PASS' if made == options.requests == answers.count(201) else 'FAIL'})")


if __name__ == "__main__":
    main()
