"""Composer speed: compose in-process, compose from a cold start, personalise.

Targets (issue 13): composing the seed article in-process (read, render,
compile, text part and checks) has a median of at most 3 ms; ``newsletter
compose`` from a cold start finishes in at most 0.4 s; personalising one
recipient's HTML and text runs at least 20,000 times a second on one core.

Then the seed's complete MJML (the theme's output) is compiled by three
compilers side by side: mjml-python (MRML, what the composer uses), the old
pure-Python ``mjml`` package (installed once with ``pip --target`` into
benchmarks/.data/oldmjml: both install the import name ``mjml``, so it runs
in a subprocess of its own) and the JavaScript MJML (npm ``mjml``, installed
once into benchmarks/.data/node). Both folders are git-ignored; a compiler
that cannot be installed is skipped with a message.

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


def median_cpu_ms(function, runs: int) -> float:
    """Median CPU time of this process: what a run costs, whatever else the machine is doing."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        function()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def bench_in_process(settings, runs: int):
    from newsletter.compose.edition import compose_edition

    edition = compose_edition(SEED, settings, recent_url=RECENT)  # warm imports and the template cache
    ms = median_ms(lambda: compose_edition(SEED, settings, recent_url=RECENT), runs)
    cpu = median_cpu_ms(lambda: compose_edition(SEED, settings, recent_url=RECENT), runs)
    print(f"compose in-process (read, render, compile, text, checks), median of {runs}: {ms:.2f} ms, "
          f"CPU {cpu:.2f} ms  (target <= 3 ms)")
    return edition


def bench_cold_start(folder: Path, runs: int) -> None:
    command = [sys.executable, "-m", "newsletter", "compose", str(SEED), "--recent-url", RECENT,
               "--out", str(folder / "build")]
    env = {**os.environ, "NEWSLETTER_HOME": str(folder)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"newsletter compose, cold start, median of {runs}: {statistics.median(times):.2f} s  (target <= 0.4 s)")


def bench_personalise(edition, settings, seconds: float = 2.0) -> None:
    from newsletter.compose.edition import merge_values
    from newsletter.delivery.merge import MergeTemplate

    html, text = MergeTemplate(edition.html), MergeTemplate(edition.text)
    values = [merge_values(settings, edition.slug, email=f"r{i}@example.org", name=f"Reader {i}", token=f"tok{i:08d}")
              for i in range(1000)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for value in values:
            html.render(value)
            text.render(value)
        done += len(values)
    rate = done / (time.perf_counter() - start)
    print(f"personalise one recipient (HTML {len(edition.html) / 1024:.0f} KB + text): {rate:,.0f}/s on one core"
          "  (target >= 20,000/s)")


def full_mjml(settings) -> str:
    """The seed's complete MJML, as the default theme renders it."""
    from newsletter.compose import render
    from newsletter.compose.edition import build_edition
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


def bench_mrml(source: str, runs: int) -> None:
    from mjml import mjml2html

    html = mjml2html(source, fonts={})
    ms = median_ms(lambda: mjml2html(source, fonts={}), runs)
    print(f"  mjml-python (MRML):          {ms:8.2f} ms   HTML {len(html.encode()) / 1024:5.1f} KB")


def bench_old_mjml(source: str, runs: int) -> None:
    """The pure-Python ``mjml`` package, from its own folder, in a subprocess."""
    folder = DATA / "oldmjml"
    if not (folder / "mjml").is_dir():
        print("installing the old pure-Python mjml 0.12 into benchmarks/.data/oldmjml (once) ...", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), "mjml==0.12.0"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  old mjml package:            skipped (pip install failed: {done.stderr.strip()[:200]})")
            return
    (DATA / "email.mjml").write_text(source)
    script = (
        "import json, statistics, sys, time\n"
        "from mjml import mjml_to_html\n"
        "source = open(sys.argv[1]).read(); runs = int(sys.argv[2])\n"
        "html = mjml_to_html(source).html; times = []\n"
        "for _ in range(runs):\n"
        "    start = time.perf_counter(); mjml_to_html(source); times.append((time.perf_counter() - start) * 1000)\n"
        "print(json.dumps({'median': statistics.median(times), 'size': len(html.encode())}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(folder)}
    done = subprocess.run([sys.executable, "-c", script, str(DATA / "email.mjml"), str(runs)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print("  old mjml package:            failed"
              f" ({done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else '?'})")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  old mjml package (0.12):     {result['median']:8.2f} ms   HTML {result['size'] / 1024:5.1f} KB")


def bench_mjml_js(source: str, runs: int) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("  JavaScript MJML:             skipped (node and npm are not installed)")
        return
    if not (NODE_DIR / "node_modules" / "mjml").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        print("installing npm mjml into benchmarks/.data/node (once) ...", file=sys.stderr)
        done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
                               "mjml@4"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  JavaScript MJML:             skipped (npm install mjml failed: {done.stderr.strip()[:200]})")
            return
    (NODE_DIR / "email.mjml").write_text(source)
    script = """
const mjml = require('mjml'); const fs = require('fs');
const src = fs.readFileSync(process.argv[2], 'utf8'); const runs = +process.argv[3];
const out = (async () => {
  const html = (await mjml(src, {validationLevel: 'skip'})).html;
  const t = [];
  for (let i = 0; i < runs; i++) { const s = process.hrtime.bigint(); await mjml(src, {validationLevel: 'skip'}); t.push(Number(process.hrtime.bigint() - s) / 1e6); }
  t.sort((a, b) => a - b); console.log(JSON.stringify({median: t[Math.floor(t.length / 2)], size: Buffer.byteLength(html)}));
})();
"""  # noqa: E501 - JavaScript source, one statement per line
    (NODE_DIR / "bench.js").write_text(script)
    start = time.perf_counter()
    done = subprocess.run([node, str(NODE_DIR / "bench.js"), str(NODE_DIR / "email.mjml"), str(runs)],
                          capture_output=True, text=True, cwd=NODE_DIR)
    if done.returncode != 0:
        print(f"  JavaScript MJML:             failed ({done.stderr.strip()[:200]})")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  JavaScript MJML (npm mjml 4): {result['median']:7.2f} ms   HTML {result['size'] / 1024:5.1f} KB"
          "  (warm node process)")
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
        print(f"compiling the seed's MJML ({len(source) / 1024:.1f} KB), median of {args.runs}:")
        bench_mrml(source, args.runs)
        bench_old_mjml(source, max(5, args.runs // 3))
        bench_mjml_js(source, args.runs)


if __name__ == "__main__":
    main()
