"""Accessibility lint speed: what it adds to composing the seed, in CPU time.

Composes the seed article in-process (read, render, compile, text part and
checks) with and without the accessibility lint, in the same process, and
times the lint alone on the seed's HTML three ways:

- warm: the theme's styles already read and the seed's markup seen before
  (every edition after the first, in a process that composes more than one);
- new article, warm theme: the first time this markup is linted, after
  another article of the same theme (what ``newsletter compose`` of a new
  article pays after the theme's first edition);
- cold: every cache emptied (the first edition of a process).

CPU time (``time.process_time``), median of N: the machine may be loaded by
other jobs, and CPU time is what a run costs whatever else is running.

Run: ``python benchmarks/bench_accessibility.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compose import RECENT, SEED, workspace  # noqa: E402 - the folder is put on the path above

OTHER = SEED.parent / "front-matter-budget.md"


def median_cpu_ms(function, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.process_time()
        function()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def forget() -> None:
    """Empty the lint's caches: the tag and element tables and the read stylesheets (with their styled paths)."""
    from newsletter.compose import accessibility

    accessibility._TAGS.clear()
    accessibility._ELEMENTS.clear()
    accessibility._read_styles.cache_clear()
    accessibility._SHEETS.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    from newsletter.compose import checks
    from newsletter.compose.accessibility import accessibility_findings
    from newsletter.compose.edition import compose_edition

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "letter"
        settings = workspace(folder)
        os.chdir(folder)
        seed = compose_edition(SEED, settings, recent_url=RECENT)
        other = compose_edition(OTHER, settings)
        compose = lambda: compose_edition(SEED, settings, recent_url=RECENT)  # noqa: E731
        with_lint = median_cpu_ms(compose, args.runs)
        lint = checks._accessibility
        checks._accessibility = lambda edition, settings: []
        try:
            without = median_cpu_ms(compose, args.runs)
        finally:
            checks._accessibility = lint
        warm = median_cpu_ms(lambda: accessibility_findings(seed.html), args.runs)

        def theme_only() -> None:
            forget()
            accessibility_findings(other.html)

        new_article = median_cpu_ms(lambda: accessibility_findings(seed.html), args.runs, before=theme_only)
        cold = median_cpu_ms(lambda: accessibility_findings(seed.html), args.runs, before=forget)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"seed article: {SEED.name}, HTML {len(seed.html) / 1024:.1f} KB; CPU medians of {args.runs}; "
          f"load average {load} on {os.cpu_count()} cores")
    print(f"compose in-process with the accessibility lint:    {with_lint:6.2f} ms  (target <= 3 ms)")
    print(f"compose in-process without it:                     {without:6.2f} ms  "
          f"(the lint adds {with_lint - without:.2f} ms)")
    print(f"the lint alone, warm:                              {warm:6.2f} ms")
    print(f"the lint alone, new article of a read theme:       {new_article:6.2f} ms")
    print(f"the lint alone, cold (every cache empty):          {cold:6.2f} ms")


if __name__ == "__main__":
    main()
