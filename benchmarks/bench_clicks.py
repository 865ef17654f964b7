"""First-party click tracking: 10,000 click requests against `newsletter serve` on SQLite (target: p99 < 20 ms).

A temporary workspace (SQLite, ``[tracking] mode = "personal"``) sends the
budget article to 2,000 subscribers through the memory transport; half of
them recorded tracking consent, so half the messages carry personal links
(each human click also goes through the event pipeline) and half aggregate
ones (link-level counts only). `newsletter serve` runs as its own process
under uvicorn; a client with a kept-alive connection (or ``--clients N`` in
parallel) follows 10,000 tracked links taken from the sent messages, a few
of them as HEAD requests and scanner user agents. Figures: latency
percentiles per request, throughput, and the check that no click was lost
(the link counts in the database add up to the requests answered 303, every
personal human click is on its ledger row).

Usage: python benchmarks/bench_clicks.py [--clicks 10000] [--clients 1]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
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

SUBSCRIBERS = 2000
ARTICLE = ROOT / "tests" / "articles" / "front-matter-budget.md"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def setup(folder: Path) -> tuple[list[str], str]:
    """A workspace whose campaign was sent; returns the tracked link paths of every message and the db URL."""
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign
    from newsletter.store.db import open_store
    from newsletter.workspace import init_workspace

    init_workspace(folder, sender="Bench <news@bench.example>", postal_address="1 Main St",
                   base_url="https://news.bench.example", transport="memory")
    with (folder / "newsletter.toml").open("a") as config:
        # machine_seconds = 0: the benchmark clicks right after sending, and every click should reach the ledger
        config.write('\n[tracking]\nmode = "personal"\nmachine_seconds = 0\n')
    settings = load_settings(folder)
    store = open_store(settings)
    people = folder / "people.csv"
    people.write_text("email,name,tracking_consent\n" + "".join(
        f"reader{i}@example.org,Reader {i},{'yes' if i % 2 == 0 else ''}\n" for i in range(SUBSCRIBERS)))
    subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "import", str(people), "--list", "readers"],
                   cwd=folder, env={**os.environ, "NEWSLETTER_HOME": str(folder)}, check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(ARTICLE, folder / "articles" / "budget.md")
    edition = compose_edition(folder / "articles" / "budget.md", settings)
    campaign_id = create_campaign(store, settings, edition, "readers", "memory")
    transport = MemoryTransport()
    start_campaign(store, settings, campaign_id, transport)
    paths = []
    from newsletter.delivery.merge import personalise

    for message, batch in transport.batches:
        for recipient in batch:
            html = personalise(message.html, recipient.merge_data)
            paths += re.findall(r'href="https://news\.bench\.example(/c/[^"]+)"', html)
    store.close()
    return paths, settings.database_url



def requests_plan(paths: list[str], count: int, seed: int = 17) -> list[tuple[str, str, str]]:
    """(method, path, user agent): mostly people, 2% HEAD checks, 3% scanner agents."""
    rng = random.Random(seed)
    plan = []
    for _ in range(count):
        roll = rng.random()
        method, agent = ("HEAD", BROWSER) if roll < 0.02 else ("GET", "Barracuda Sentinel") if roll < 0.05 \
            else ("GET", BROWSER)
        plan.append((method, rng.choice(paths), agent))
    return plan


def fire(port: int, plan: list[tuple[str, str, str]], latencies: list[float], answers: list[int]) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=10) as client:
        for method, path, agent in plan:
            start = time.perf_counter()
            response = client.request(method, path, headers={"User-Agent": agent})
            latencies.append(time.perf_counter() - start)
            answers.append(response.status_code)


def count_in_database(url: str) -> tuple[int, int, int, int]:
    """(human, machine) link counts, personal click events, ledger rows with a click."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        human, machine = connection.execute(text(
            "SELECT COALESCE(SUM(human), 0), COALESCE(SUM(machine), 0) FROM engagement_counts "
            "WHERE kind = 'click'")).one()
        events = connection.execute(text(
            "SELECT COUNT(*) FROM provider_events WHERE provider = 'newsletter' AND kind = 'clicked'")).scalar()
        clicked = connection.execute(text("SELECT COUNT(*) FROM deliveries WHERE clicked_at IS NOT NULL")).scalar()
    engine.dispose()
    return int(human), int(machine), int(events or 0), int(clicked or 0)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1, help="parallel clients, each with its own connection")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        started = time.perf_counter()
        paths, url = setup(folder)
        personal = sum(1 for p in paths if p.count(".") == 4)
        print(f"set-up: {SUBSCRIBERS} recipients, {len(paths)} tracked links in their messages ({personal} personal)"
              f" in {time.perf_counter() - started:.1f} s")
        port = free_port()
        env = {**os.environ, "NEWSLETTER_HOME": str(folder)}
        process = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=folder,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_up(port, process)
            plan = requests_plan(paths, options.clicks)
            warm: list[float] = []
            fire(port, plan[:50], warm, [])  # connections and caches warm; not measured, but counted below
            latencies: list[float] = []
            answers: list[int] = []
            shares = [plan[50 + i::options.clients] for i in range(options.clients)]
            threads = [threading.Thread(target=fire, args=(port, share, latencies, answers)) for share in shares]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
            # The same server's floor on this machine now: /healthz does no database work.
            floor: list[float] = []
            fire(port, [("GET", "/healthz", BROWSER)] * 2000, floor, [])
        finally:
            process.terminate()
            process.wait(timeout=10)
        human, machine, events, clicked = count_in_database(url)
        redirected = answers.count(303) + 50
        p50, p95, p99 = (percentile(latencies, s) * 1000 for s in (0.50, 0.95, 0.99))
        print(f"{len(latencies):,} requests (+50 warm-up) with {options.clients} client(s) in {seconds:.2f} s: "
              f"{len(latencies) / seconds:,.0f} requests/s")
        print(f"latency: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {max(latencies) * 1000:.1f} ms, "
              f"mean {statistics.mean(latencies) * 1000:.2f} ms (target p99 < 20 ms: {'PASS' if p99 < 20 else 'OVER'})")
        print(f"floor on this machine now (GET /healthz, 2,000 requests): p50 {percentile(floor, 0.5) * 1000:.2f} ms,"
              f" p99 {percentile(floor, 0.99) * 1000:.2f} ms; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        lost = redirected - (human + machine)
        print(f"answers: {answers.count(303):,} redirects, {len(answers) - answers.count(303)} other; counted "
              f"{human:,} human + {machine:,} machine = {human + machine:,}; lost: {lost} "
              f"({'PASS' if lost == 0 and answers.count(303) == len(answers) else 'FAIL'})")
        print(f"personal: {events:,} click events (one per delivery and link), {clicked:,} ledger rows clicked")
        in_process(folder, plan[:2000])


def in_process(folder: Path, plan: list[tuple[str, str, str]]) -> None:
    """The click's own cost without HTTP: the same requests through ``firstparty.record`` (one transaction each)."""
    from datetime import UTC, datetime

    from newsletter.config import load_settings
    from newsletter.events.firstparty import Bursts, Request, record
    from newsletter.store.db import open_store

    settings = load_settings(folder)
    store = open_store(settings)
    bursts, latencies = Bursts(), []
    for method, path, agent in plan:
        start = time.perf_counter()
        record(store, settings.secret_keys, path.rsplit("/", 1)[1], "click", Request(method, agent, "127.0.0.1"),
               datetime.now(UTC), machine_seconds=0, bursts=bursts)
        latencies.append(time.perf_counter() - start)
    store.close()
    print(f"in-process (no HTTP), {len(plan):,} of the same requests: p50 {percentile(latencies, 0.5) * 1000:.2f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
