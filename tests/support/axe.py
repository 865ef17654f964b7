"""axe-core in Chromium: the accessibility tests of the public pages and the archive.

axe-core is vendored in ``tests/data/axe-core`` (version and licence in its
README); ``.ci/run`` also installs it into ``benchmarks/.data/node``, used
when the vendored copy is missing. It is evaluated through the DevTools
protocol (Playwright's ``page.evaluate``), so a page's own
Content-Security-Policy (no scripts) stays on.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from support.services import need_service

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCES = (ROOT / "tests" / "data" / "axe-core" / "axe.min.js",
           ROOT / "benchmarks" / ".data" / "node" / "node_modules" / "axe-core" / "axe.min.js")
# WCAG 2.1 A and AA, and axe's best practices (landmarks, one h1, ...)
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@lru_cache(maxsize=1)
def axe_source() -> str:
    """axe-core's script; need_service (skip, or fail under NEWSLETTER_REQUIRE_SERVICES=1) when absent."""
    for path in SOURCES:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    need_service("axe-core is not installed (npm install --prefix benchmarks/.data/node axe-core@4)")
    raise AssertionError("unreachable")


def axe_violations(page, source: str | None = None) -> list[dict]:
    """axe-core's violations on ``page`` (a Playwright page): ``{"id", "nodes"}`` each, [] when clean."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(source or axe_source())
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]]} for v in result["violations"]]
