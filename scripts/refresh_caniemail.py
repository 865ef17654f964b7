"""Refresh the vendored caniemail data: newsletter/compose/data/caniemail.json and its licence.

Installs the npm package ``caniemail`` (MIT) into a temporary folder with npm,
copies its ``data/caniemail.json`` (compacted) and ``LICENSE`` into the
package, and prints the data's date. Run it from the repository, then run
the tests and commit both files:

    python scripts/refresh_caniemail.py [--version 1.0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "newsletter" / "compose" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="latest", help="the npm version of caniemail (default: latest)")
    args = parser.parse_args()
    npm = shutil.which("npm")
    if not npm:
        print("refresh_caniemail: npm is not installed (apt-get install npm)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", scratch,
                               f"caniemail@{args.version}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"refresh_caniemail: npm install failed: {done.stderr.strip()[:300]}", file=sys.stderr)
            return 1
        package = Path(scratch) / "node_modules" / "caniemail"
        data = json.loads((package / "data" / "caniemail.json").read_text(encoding="utf-8"))
        if not isinstance(data.get("data"), list) or not data["data"]:
            print("refresh_caniemail: the package's data has no features; nothing changed", file=sys.stderr)
            return 1
        TARGET.mkdir(parents=True, exist_ok=True)
        (TARGET / "caniemail.json").write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n",
                                               encoding="utf-8")
        shutil.copyfile(package / "LICENSE", TARGET / "LICENSE.caniemail")
        version = json.loads((package / "package.json").read_text())["version"]
    print(f"caniemail {version}: {len(data['data'])} features, data of {data.get('last_update_date', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
