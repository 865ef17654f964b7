"""OpenDKIM's verifier for tests: Debian's ``opendkim`` run in its test mode (``opendkim -t``).

``opendkim-testmsg`` (opendkim-tools) verifies only through DNS and has no
option to read a key from a file; the ``opendkim`` program's test mode reads
public keys from the file named by ``TestPublicKeys`` (opendkim.conf(5)), so
the verification runs against the test's own key with no DNS. Both run the
same library, libopendkim.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.services import need_service

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    output: str


def opendkim_verify(message: bytes, records: dict[str, str], folder: Path) -> Verdict:
    """OpenDKIM's verdict on ``message`` with ``records`` (``name -> TXT value``) as the only public keys.

    ``passed`` only when every signature verifies (OpenDKIM's own
    Authentication-Results say ``dkim=pass`` for each, none anything else).
    """
    if not Path(OPENDKIM).exists():
        need_service("Debian's opendkim is not installed (apt-get install opendkim)")
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "public-keys"
    keys.write_text("".join(f"{name} {value}\n" for name, value in records.items()))
    conf = folder / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestPublicKeys {keys}\nAlwaysAddARHeader yes\n")
    sample = folder / "message.eml"
    sample.write_bytes(message)
    done = subprocess.run([OPENDKIM, "-x", str(conf), "-vvv", "-t", str(sample)], capture_output=True, timeout=30,
                          check=False)
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    results = [part.split()[0] for part in output.split("dkim=")[1:]]
    passed = done.returncode == 0 and bool(results) and all(result == "pass" for result in results)
    return Verdict(passed, output)
