"""A real IMAP server for tests: Dovecot (Debian's dovecot-imapd) started in a temporary folder.

``dovecot_server()`` starts ``dovecot -F`` with its own configuration, one
static password, mail stored as Maildir under a folder of its own, listening
on 127.0.0.1 at a free port; it yields ``(port, user, password)`` once the
port answers, and stops the server it started (by its process id). Without
the ``dovecot`` binary the test skips (fails under NEWSLETTER_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smtp_server import free_port
from support.services import need_service

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-pass"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


@contextmanager
def dovecot_server() -> Iterator[tuple[int, str, str]]:
    if not Path(DOVECOT).exists():
        need_service("Dovecot is not installed (apt-get install dovecot-imapd)")
    try:
        mail_user = pwd.getpwnam("dovenull")
    except KeyError:
        need_service("Dovecot's dovenull user is missing (reinstall dovecot-core)")
    # Not under pytest's tmp_path: its folders are private to root, and Dovecot reads mail as another user.
    root = Path(tempfile.mkdtemp(prefix="newsletter-imap-"))
    os.chmod(root, 0o755)
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir()
    for sub in ("mail", "home"):
        os.chown(root / sub, mail_user.pw_uid, mail_user.pw_gid)
    port = free_port()
    (root / "dovecot.conf").write_text(CONFIG.format(root=root, port=port, password=PASSWORD,
                                                     uid=mail_user.pw_uid, gid=mail_user.pw_gid))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                    raise RuntimeError(f"dovecot did not start: {output[-500:]}") from None
                time.sleep(0.05)  # polling the port: the event is the socket answering
        yield port, USER, PASSWORD
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
