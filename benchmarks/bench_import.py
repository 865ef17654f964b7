"""Import and listing speed: a 1,000,000-row CSV into SQLite.

Targets (issue 2): import <= 15 s and <= 250 MB peak memory on 2 cores;
listing a million subscribers streams (flat memory); ``newsletter --help``
starts in under 0.3 s.

Run: ``python benchmarks/bench_import.py [--rows N]``. Each measurement runs
the real CLI in a fresh process, so peak memory is that process's max RSS.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def peak_of(args: list[str], cwd: Path) -> tuple[float, float, str]:
    return run_cli(args, cwd)


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

        seconds, peak, _ = peak_of(["subscribers", "import", str(data), "--list", "readers", "--json"], workspace)
        verdict = "ok" if seconds <= 15 and peak <= 250 else "OVER TARGET"
        print(f"import (SQLite): {seconds:.2f} s, {options.rows / seconds:,.0f} rows/s, peak {peak:.0f} MB "
              f"[target <= 15 s, <= 250 MB: {verdict}]")

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
