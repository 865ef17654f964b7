"""Scale-out throughput: 1, 2 and 4 `newsletter worker` processes against a local SendGrid v3 server.

Real parts: PostgreSQL (the store), Redis (the Dramatiq broker), the fake
SendGrid server in its own process with validation and recording off
(``tests/fake_sendgrid.py --fast``), the real CLI in fresh processes. For
each worker count a new campaign of ``--recipients`` goes out through
``newsletter send`` (chunks of 1,000, batches of 1,000); the figure is
recipients over the campaign's own started_at -> finished_at.

    python benchmarks/bench_workers.py --recipients 100000 --workers 1,2,4

Prints one line per worker count and the speed-up over one worker, and
(issue 15) one worker against the single-machine loop: the same campaign
sent again by ``newsletter send`` without a broker, in one process
(``NEWSLETTER_SEND_PROCESSES=1``: per process, as a worker is), just before
each worker run, so every ratio compares figures of the same minutes
(target: one worker >= 0.8 of it; 2 and 4 workers x1.8 and x3.2 of one).
For each run it also prints where the CPU went (the workers, PostgreSQL's
processes serving this benchmark, the stand-in, and the rest of the
machine, in cores, from /proc): when the machine's cores are all busy, that
is the bottleneck and more workers cannot scale. And, independent of the
load, the CPU seconds per 1,000 recipients of our processes and of their
PostgreSQL backends (found by their ``application_name``), for one worker
against the single-machine loop.

Uses a schema of its own in the PostgreSQL database and Redis database 14
(flushed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEWSLETTER = [sys.executable, "-m", "newsletter"]
API_KEY = "SG.bench-workers.secret"
APPLICATION = f"bench-workers-{os.getpid()}"  # names our PostgreSQL backends in pg_stat_activity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--postgres", default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    POSTGRES_URL.append(args.postgres)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_sendgrid.py"), "--fast",
                               "--api-key", API_KEY],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            env = setup(Path(tmp), args, schema, url)
            print(f"{args.recipients:,} recipients; {os.cpu_count()} CPUs; PostgreSQL, Redis broker, "
                  f"local SendGrid v3 server (no validation)")
            base, singles, costs = None, [], []
            for count in counts:
                single, _, single_cost = measured(lambda: send_here(Path(tmp), env), args.recipients)
                singles.append(single)
                rate, cpu, cost = run(Path(tmp), env, count, args.redis, args.recipients)
                costs.append((single_cost, cost))
                base = base or rate / count
                print(f"{count} worker process(es): {rate:>9,.0f} recipients/s   x{rate / base:.2f} of one; "
                      f"single-machine loop (one process) just before: {single:,.0f}/s -> {rate / single:.2f}; "
                      f"CPU in cores: {cpu}")
                print(f"    CPU seconds per 1,000 recipients (ours + our PostgreSQL backends): workers "
                      f"{cost[0]:.3f} + {cost[1]:.3f} = {sum(cost):.3f}; single-machine loop {single_cost[0]:.3f} + "
                      f"{single_cost[1]:.3f} = {sum(single_cost):.3f}")
            if counts[0] == 1:
                share = base / singles[0]
                single_cost, cost = costs[0]
                print(f"one worker / the single-machine loop sent just before it: {share:.2f} "
                      f"[target >= 0.8: {'met' if share >= 0.8 else 'NOT MET'}]; in CPU per recipient (load-"
                      f"independent): {sum(single_cost) / sum(cost):.2f} (ours alone {single_cost[0] / cost[0]:.2f})")
    finally:
        server.terminate()
        drop_schema(args.postgres, schema)


def setup(folder: Path, args, schema: str, sendgrid_url: str) -> dict:
    """A workspace on its own schema with ``args.recipients`` confirmed readers."""
    from sqlalchemy import create_engine, text

    engine = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in args.postgres else "?"
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
                                                     f"&application_name={APPLICATION}",
           "SENDGRID_API_KEY": API_KEY, "NEWSLETTER_SENDGRID_HOST": sendgrid_url, "NEWSLETTER_TRANSPORT": "sendgrid",
           "NEWSLETTER_HOME": str(folder / "letter")}
    subprocess.run(NEWSLETTER + ["init", str(folder / "letter"), "--from", "News <news@example.org>",
                                 "--postal-address", "1 Main St", "--base-url", "https://news.example.org"],
                   env=env, check=True, capture_output=True)
    people = folder / "people.csv"
    people.write_text("email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(args.recipients)))
    subprocess.run(NEWSLETTER + ["subscribers", "import", str(people), "--list", "readers"], env=env, check=True,
                   capture_output=True)
    return env


def send_here(folder: Path, env: dict) -> float:
    """The same campaign again through the single-machine loop in one process; recipients per second."""
    subprocess.run(NEWSLETTER + ["send", "articles/welcome.md", "--list", "readers", "--yes", "--json", "--again"],
                   env={**env, "NEWSLETTER_SEND_PROCESSES": "1"}, cwd=folder / "letter", check=True,
                   capture_output=True)
    return campaign_rate(env)


TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("newsletter", "postgres", "stand-in", "ours")


def our_backends(url: str | None) -> set[int]:
    """The PostgreSQL backends serving this benchmark's processes now (by application_name)."""
    if url is None:
        return set()
    from sqlalchemy import create_engine, text

    engine = _ADMIN.get(url)
    if engine is None:
        engine = _ADMIN[url] = create_engine(url, pool_size=1)
    with engine.connect() as connection:
        return set(connection.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                                      {"name": APPLICATION}).scalars())


_ADMIN: dict[str, object] = {}
POSTGRES_URL: list[str] = []


def process_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by each process of a role: ``newsletter`` (workers and sends),
    ``postgres`` (the server's processes), ``ours`` (those of them serving this benchmark),
    ``stand-in`` (the SendGrid server), read from /proc."""
    found: dict[int, tuple[str, float]] = {}
    backends = our_backends(POSTGRES_URL[0] if POSTGRES_URL else None)
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        name, fields = stat.split("(", 1)[1].rsplit(")", 1)[0], stat.rsplit(")", 1)[1].split()
        pid, seconds = int(entry.name), (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        parents[pid] = int(fields[1])
        if b"fake_sendgrid" in command:
            found[pid] = ("stand-in", seconds)
        elif name == "postgres":
            found[pid] = ("ours" if pid in backends else "postgres", seconds)
        elif b"newsletter" in command and (b"worker" in command or b"send" in command):
            found[pid] = ("newsletter", seconds)
    # this benchmark's processes only (its children and theirs), not other jobs' sends and stand-ins
    me = os.getpid()

    def ours(pid: int) -> bool:
        for _ in range(10):
            pid = parents.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False

    return {pid: value for pid, value in found.items() if value[0] not in ("newsletter", "stand-in") or ours(pid)}


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (sum(int(v) for v in first) - int(first[3]) - int(first[4])) / TICKS


def measured(action, recipients: int) -> tuple[float, str, tuple[float, float]]:
    """Run ``action`` and say how many cores each role kept busy meanwhile, and the CPU seconds per
    1,000 recipients of our processes and of our PostgreSQL backends.

    /proc is sampled every 0.2 s in a thread, so processes that start and end
    within the run (the workers, PostgreSQL's backends) are counted up to
    their last sample.
    """
    import threading

    baseline, latest, done = process_cpu(), {}, threading.Event()

    def sample() -> None:
        while True:
            latest.update(process_cpu())
            if done.wait(0.2):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    busy, start = machine_busy(), time.monotonic()
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    seconds, busy = time.monotonic() - start, machine_busy() - busy
    cores = dict.fromkeys(ROLES, 0.0)
    spent = dict.fromkeys(ROLES, 0.0)
    for pid, (role, used) in latest.items():
        cpu = used - baseline.get(pid, (role, 0.0))[1]
        if role == "ours":
            spent["ours"] += cpu
            role = "postgres"
        spent[role] += cpu
        cores[role] += cpu / seconds
    machine = busy / seconds
    others = max(0.0, machine - sum(cores.values()))
    text = (f"newsletter {cores['newsletter']:.2f}, PostgreSQL {cores['postgres']:.2f}, stand-in "
            f"{cores['stand-in']:.2f}, everything else {others:.2f}; machine {machine:.2f} of {os.cpu_count()}")
    if machine >= 0.9 * (os.cpu_count() or 1):
        text += " (saturated: the cores are the bottleneck)"
    elif cores["postgres"] >= 0.9:
        text += " (PostgreSQL near a core)"
    elif cores["stand-in"] >= 0.9:
        text += " (the stand-in near a core)"
    return result, text, (spent["newsletter"] / recipients * 1000, spent["ours"] / recipients * 1000)


def run(folder: Path, env: dict, count: int, redis_url: str, recipients: int) -> tuple[float, str, tuple[float, float]]:
    """Send one campaign with ``count`` workers: recipients per second of the campaign, and what
    :func:`measured` says (from the send's start: the workers' start-up is not counted)."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {**env, "NEWSLETTER_BROKER_URL": redis_url}
    log = open(os.environ["BENCH_WORKER_LOG"], "a") if os.environ.get("BENCH_WORKER_LOG") else subprocess.DEVNULL
    workers = [subprocess.Popen(NEWSLETTER + ["worker"], env=env, stdout=log,
                                stderr=log) for _ in range(count)]
    try:
        time.sleep(2)  # let them start and connect

        def send() -> float:
            subprocess.run(NEWSLETTER + ["send", "articles/welcome.md", "--list", "readers", "--yes", "--json",
                                         "--again"], env=env, cwd=folder / "letter", check=True, capture_output=True)
            return campaign_rate(env)

        return measured(send, recipients)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)


def campaign_rate(env: dict) -> float:
    from sqlalchemy import create_engine, text

    engine = create_engine(env["NEWSLETTER_DATABASE_URL"])
    with engine.connect() as connection:
        started, finished, sent = connection.execute(text(
            "SELECT c.started_at, c.finished_at, (SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id "
            "AND d.status = 'sent') FROM campaigns c ORDER BY c.id DESC LIMIT 1")).one()
    engine.dispose()
    return sent / (finished - started).total_seconds()


def drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


if __name__ == "__main__":
    main()
