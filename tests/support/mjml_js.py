"""The reference JavaScript MJML (npm ``mjml``), for comparisons with the composer's mjml-python.

It lives in ``benchmarks/.data/node`` (git-ignored): ``.ci/run`` and
``benchmarks/bench_compose.py`` install it there with npm; nothing is
downloaded at test time. :func:`compile_js` calls ``need_service`` when node
or the package is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from support.services import need_service

NODE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / ".data" / "node"
_SCRIPT = """
const mjml = require('mjml'); let source = '';
process.stdin.on('data', (chunk) => { source += chunk; });
process.stdin.on('end', async () => {
  const result = await mjml(source, { validationLevel: 'strict', fonts: {} });
  process.stdout.write(JSON.stringify({ html: result.html }));
});
"""


def compile_js(source: str) -> str:
    """``source`` compiled by npm mjml 4 (validation strict: an invalid MJML fails the test)."""
    node = shutil.which("node")
    if not node or not (NODE_DIR / "node_modules" / "mjml").is_dir():
        need_service("the JavaScript MJML is not installed (npm install --prefix benchmarks/.data/node mjml@4)")
    done = subprocess.run([node, "-e", _SCRIPT], input=source, capture_output=True, text=True, cwd=NODE_DIR,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["html"]
