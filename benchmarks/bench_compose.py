"""Composer speed: compose in-process, compose from a cold start, personalise.

Targets (issue 3): composing a seed-sized article in-process (read, render,
compile) has a median under 20 ms; ``newsletter compose`` from a cold start
finishes in under 0.8 s; personalising one recipient's HTML and text runs at
least 20,000 times a second on one core.

For comparison it also compiles the same MJML with mjml-python without the
composer's lifting of raw HTML, and with the JavaScript MJML (npm ``mjml``,
installed once into benchmarks/.data/node, git-ignored) when node and npm
are present; without them that comparison is skipped with a message.

Run: ``python benchmarks/bench_compose.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "articles" / "seed-ketamine.txt"
RECENT = "https://clinic.example/blog/which-type"
DATA = ROOT / "benchmarks" / ".data"
NODE_DIR = DATA / "node"


def workspace(folder: Path):
    from newsletter.config import load_settings
    from newsletter.workspace import init_workspace

    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street, Springfield",
                   base_url="https://news.clinic.example")
    return load_settings(folder)


def median_ms(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_in_process(settings, runs: int):
    from newsletter.compose.edition import compose_edition

    edition = compose_edition(SEED, settings, recent_url=RECENT)  # warm imports and the template cache
    ms = median_ms(lambda: compose_edition(SEED, settings, recent_url=RECENT), runs)
    print(f"compose in-process (read, render, compile), median of {runs}: {ms:.1f} ms  (target < 20 ms)")
    return edition


def bench_cold_start(folder: Path, runs: int) -> None:
    command = [sys.executable, "-m", "newsletter", "compose", str(SEED), "--recent-url", RECENT, "--out", str(folder / "build")]
    env = {**os.environ, "NEWSLETTER_HOME": str(folder)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"newsletter compose, cold start, median of {runs}: {statistics.median(times):.2f} s  (target < 0.8 s)")


def bench_personalise(edition, settings, seconds: float = 2.0) -> None:
    from newsletter.compose.edition import merge_values
    from newsletter.compose.merge import MergeTemplate

    html, text = MergeTemplate(edition.html), MergeTemplate(edition.text)
    values = [merge_values(settings, edition.slug, email=f"r{i}@example.org", name=f"Reader {i}", token=f"tok{i:08d}") for i in range(1000)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for value in values:
            html.render(value)
            text.render(value)
        done += len(values)
    rate = done / (time.perf_counter() - start)
    print(f"personalise one recipient (HTML {len(edition.html) / 1024:.0f} KB + text): {rate:,.0f}/s on one core  (target >= 20,000/s)")


def full_mjml(settings) -> str:
    """The seed's complete MJML, as the theme renders it (nothing lifted)."""
    from newsletter.compose.edition import build_edition
    from newsletter.compose import render
    from newsletter.compose.readers import read_article

    captured: dict[str, str] = {}
    original = render.compile_mjml

    def capture(source, env=None, theme=""):
        captured["mjml"] = source
        return original(source, env, theme)

    render.compile_mjml = capture
    try:
        article = read_article(SEED)
        article.recently_published.url = RECENT
        build_edition(article, settings, theme="default", workspace_templates=None)
    finally:
        render.compile_mjml = original
    return captured["mjml"]


def bench_mjml_python_unlifted(source: str, runs: int) -> None:
    from mjml import mjml_to_html

    ms = median_ms(lambda: mjml_to_html(source), runs)
    print(f"mjml-python on the whole MJML (no lifting), median of {runs}: {ms:.1f} ms")


def bench_mjml_js(source: str, runs: int) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("JavaScript MJML: skipped (node and npm are not installed)")
        return
    if not (NODE_DIR / "node_modules" / "mjml").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        print("installing npm mjml into benchmarks/.data/node (once) ...", file=sys.stderr)
        done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), "mjml@4"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"JavaScript MJML: skipped (npm install mjml failed: {done.stderr.strip()[:200]})")
            return
    (NODE_DIR / "email.mjml").write_text(source)
    script = """
const mjml = require('mjml'); const fs = require('fs');
const src = fs.readFileSync(process.argv[2], 'utf8'); const runs = +process.argv[3];
const out = (async () => {
  await mjml(src, {validationLevel: 'skip'});
  const t = [];
  for (let i = 0; i < runs; i++) { const s = process.hrtime.bigint(); await mjml(src, {validationLevel: 'skip'}); t.push(Number(process.hrtime.bigint() - s) / 1e6); }
  t.sort((a, b) => a - b); console.log(JSON.stringify({median: t[Math.floor(t.length / 2)]}));
})();
"""
    (NODE_DIR / "bench.js").write_text(script)
    start = time.perf_counter()
    done = subprocess.run([node, str(NODE_DIR / "bench.js"), str(NODE_DIR / "email.mjml"), str(runs)], capture_output=True, text=True, cwd=NODE_DIR)
    if done.returncode != 0:
        print(f"JavaScript MJML: failed ({done.stderr.strip()[:200]})")
        return
    median = json.loads(done.stdout.strip().splitlines()[-1])["median"]
    print(f"JavaScript MJML (npm mjml 4, in a warm node process) on the whole MJML, median of {runs}: {median:.1f} ms")
    cold = time.perf_counter()
    subprocess.run([node, "-e", f"require('mjml')(require('fs').readFileSync({json.dumps(str(NODE_DIR / 'email.mjml'))}, 'utf8'))"], cwd=NODE_DIR, capture_output=True)
    print(f"JavaScript MJML, one compile from a cold node start: {time.perf_counter() - cold:.2f} s")
    del start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "letter"
        settings = workspace(folder)
        os.chdir(folder)
        print(f"seed article: {SEED.name}, {SEED.stat().st_size / 1024:.1f} KB of text")
        edition = bench_in_process(settings, args.runs)
        bench_cold_start(folder, max(3, args.runs // 6))
        bench_personalise(edition, settings)
        source = full_mjml(settings)
        print(f"MJML of the seed edition: {len(source) / 1024:.1f} KB -> HTML {len(edition.html) / 1024:.1f} KB")
        bench_mjml_python_unlifted(source, max(5, args.runs // 3))
        bench_mjml_js(source, args.runs)


if __name__ == "__main__":
    main()
