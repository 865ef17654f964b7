"""Import and listing speed: a 1,000,000-row CSV into SQLite.

Targets (issue 2): import <= 15 s and <= 250 MB peak memory on 2 cores;
listing a million subscribers streams (flat memory); ``newsletter --help``
starts in under 0.3 s.

Issue 15 measures the import against SQLite's own: the ``sqlite3`` command's
``.import`` of the same file into equivalent tables (subscribers with a
unique ``lower(email)`` index, memberships inserted from them), in WAL mode
with ``synchronous=NORMAL`` as the store runs; target at most 2x. The limit
is taken just before and just after the import and averaged (the shared
machine's load moves between measurements; the ratio is what matters).

Run: ``python benchmarks/bench_import.py [--rows N]``. Each measurement runs
the real CLI in a fresh process, so peak memory is that process's max RSS.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _cli import NEWSLETTER, run_cli  # noqa: E402

DOMAINS = ["example.org", "example.com", "mail.example.net", "clinic.example"]
CITIES = ["London", "Paris", "Lagos", "Lima", "Osaka", "Denver"]


def write_csv(path: Path, rows: int) -> None:
    """A realistic export: email, name, a city attribute; a few bad rows and odd cases."""
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "city"])
        for i in range(rows):
            if i % 50_000 == 49_999:
                writer.writerow([f"broken-{i}@@example.org", "Bad Row", ""])
            elif i % 10_000 == 9_999:
                writer.writerow([f"Zoë.{i}@bücher.example", f"Zoë {i}", "Berlin"])  # takes the slow path
            else:
                writer.writerow([f"Reader.{i}@{rng.choice(DOMAINS)}", f"Reader {i}", rng.choice(CITIES)])


SQLITE_LIMIT_SCRIPT = """\
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT, city TEXT);
CREATE UNIQUE INDEX subscribers_key ON subscribers (lower(email));
CREATE TABLE memberships (subscriber_id INTEGER, list_id INTEGER, PRIMARY KEY (subscriber_id, list_id))
  WITHOUT ROWID;
CREATE TEMP VIEW incoming AS SELECT email, name, city FROM subscribers;
CREATE TEMP TRIGGER incoming_row INSTEAD OF INSERT ON incoming
  BEGIN INSERT INTO subscribers (email, name, city) VALUES (NEW.email, NEW.name, NEW.city); END;
BEGIN;
.import --csv --skip 1 {data} incoming
INSERT INTO memberships SELECT id, 1 FROM subscribers;
COMMIT;
"""


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sqlite_limit(data: Path, scratch: Path) -> tuple[float, float]:
    """Seconds and CPU seconds for the sqlite3 command's own ``.import`` of ``data`` into equivalent
    tables, memberships included (the limit issue 15 compares the import with)."""
    sqlite3 = shutil.which("sqlite3")
    if sqlite3 is None:
        raise SystemExit("the sqlite3 command is needed for the limit (Debian: apt-get install sqlite3)")
    database = scratch / f"limit-{time.monotonic_ns()}.db"
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run([sqlite3, str(database)], input=SQLITE_LIMIT_SCRIPT.format(data=data), text=True, check=True,
                   capture_output=True)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return seconds, cpu


def peak_of(args: list[str], cwd: Path) -> tuple[float, float, str]:
    return run_cli(args, cwd)


def timed_import(args: list[str], cwd: Path) -> tuple[float, float, float]:
    """Seconds, CPU seconds (the command and its reader process) and peak MB of one CLI run."""
    cpu = children_cpu()
    seconds, peak, _ = run_cli(args, cwd)
    return seconds, children_cpu() - cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        workspace = scratch / "letter"
        subprocess.run(NEWSLETTER + ["init", str(workspace)], check=True, capture_output=True)
        data = scratch / "subscribers.csv"
        write_csv(data, options.rows)
        print(f"rows: {options.rows:,} ({data.stat().st_size / 1e6:.1f} MB CSV)")

        print(f"load average before: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)")
        before, before_cpu = sqlite_limit(data, scratch)
        seconds, cpu, peak = timed_import(["subscribers", "import", str(data), "--list", "readers", "--json"],
                                          workspace)
        after, after_cpu = sqlite_limit(data, scratch)
        verdict = "ok" if seconds <= 15 and peak <= 250 else "OVER TARGET"
        print(f"import (SQLite): {seconds:.2f} s, {options.rows / seconds:,.0f} rows/s, peak {peak:.0f} MB "
              f"[target <= 15 s, <= 250 MB: {verdict}]")
        limit = (before + after) / 2
        ratio = seconds / limit
        print(f"  against sqlite3's own .import of the same file (+ memberships): {limit:.2f} s ({before:.2f} "
              f"before, {after:.2f} after) -> {ratio:.1f}x [target <= 2x: {'met' if ratio <= 2 else 'NOT MET'}]")
        limit_cpu = (before_cpu + after_cpu) / 2
        print(f"  CPU seconds (user + system): import {cpu:.2f} (the command and its reader process), "
              f"sqlite3 {limit_cpu:.2f} -> {cpu / limit_cpu:.1f}x; load average after: {os.getloadavg()[0]:.1f}")

        seconds, peak, _ = peak_of(["subscribers", "import", str(data), "--list", "readers", "--json"], workspace)
        print(f"re-import, nothing changes: {seconds:.2f} s, peak {peak:.0f} MB")

        seconds, peak, size = peak_of(["subscribers", "list", "--json"], workspace)
        print(f"list --json of every subscriber: {seconds:.2f} s, peak {peak:.0f} MB ({size}; streamed)")

        seconds, peak, size = peak_of(["subscribers", "export", "--format", "csv"], workspace)
        print(f"export csv: {seconds:.2f} s, peak {peak:.0f} MB ({size})")

        starts = [peak_of(["--help"], workspace)[0] for _ in range(7)]
        median = statistics.median(starts)
        print(f"newsletter --help start-up: median {median * 1000:.0f} ms of 7 "
              f"[target < 300 ms: {'ok' if median < 0.3 else 'OVER TARGET'}]")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
