"""OpenDKIM's verifiers for tests, with the test's own public keys and no real DNS.

- :func:`opendkim_verify`: Debian's ``opendkim`` in its test mode
  (``opendkim -t``), reading the public keys from the file named by
  ``TestPublicKeys`` (opendkim.conf(5)); it reports each signature.
- :func:`verify_with_testmsg`: ``opendkim-testmsg`` (opendkim-tools), which has no
  key-file option and asks the system's resolver: it runs in private mount
  and network namespaces (``unshare -mn``) where /etc/resolv.conf names
  127.0.0.1 and a dnslib server answers from the test's zone
  (tests/support/testmsg_in_namespace.py).

Both run the same library, libopendkim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"
IN_NAMESPACE = Path(__file__).resolve().parent / "testmsg_in_namespace.py"


def verify_with_testmsg(message: bytes, records: dict[str, str], folder: Path) -> Verdict:
    """``opendkim-testmsg``'s verdict on ``message`` with DNS answering ``records`` (``name -> TXT value``)
    only; ``passed`` when it exits 0 (every signature it checked verified)."""
    for program, package in ((TESTMSG, "opendkim-tools"), (shutil.which("unshare"), "util-linux"),
                             (shutil.which("ip"), "iproute2")):
        if not program or not Path(program).exists():
            need_service(f"opendkim-testmsg needs {package} (apt-get install {package})")
    folder.mkdir(parents=True, exist_ok=True)
    zone = folder / "zone"
    zone.write_text("".join(f"{name}. 300 IN TXT "
                            + " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255)) + "\n"
                            for name, value in records.items()))
    sample = folder / "testmsg.eml"
    sample.write_bytes(message)
    resolv = folder / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    script = 'ip link set lo up && mount --bind "$0" /etc/resolv.conf && exec "$1" "$2" "$3" "$4"'
    command = ["unshare", "-mn", *([] if os.geteuid() == 0 else ["-r"]), "--", "sh", "-c", script,
               str(resolv), sys.executable, str(IN_NAMESPACE), str(zone), str(sample)]
    probe = subprocess.run(["unshare", "-mn", *([] if os.geteuid() == 0 else ["-r"]), "true"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        need_service(f"no private namespaces for opendkim-testmsg's DNS: {probe.stderr.decode(errors='replace')}")
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    return Verdict(done.returncode == 0, output)
