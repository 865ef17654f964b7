"""Run OpenDKIM's ``opendkim-testmsg`` (verify mode) with DNS answered from a zone file, no real DNS.

``opendkim-testmsg`` has no option to read public keys from a file: it asks
the system's resolver (/etc/resolv.conf). This script is run by
``support.opendkim.testmsg_verify`` inside private mount and network
namespaces (``unshare -mn``), where /etc/resolv.conf is bind-mounted to name
127.0.0.1 and this script serves the zone there on port 53 (dnslib) before
running the verifier. Nothing outside the namespaces sees either.

Usage: python testmsg_in_namespace.py ZONE_FILE MESSAGE_FILE; exits with
opendkim-testmsg's status (0: every signature it checked verified), its
stderr passed through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.dns import ZoneServer  # noqa: E402


def main(zone_file: str, message_file: str) -> int:
    with ZoneServer(Path(zone_file).read_text(), port=53), open(message_file, "rb") as message:
        done = subprocess.run(["opendkim-testmsg"], stdin=message, capture_output=True, timeout=30, check=False)
    sys.stderr.write(done.stderr.decode("utf-8", "replace"))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
