"""A real IMAP (and POP3) server for tests: Dovecot (Debian's dovecot-imapd, dovecot-pop3d) started in a
temporary folder.

``dovecot_server()`` starts ``dovecot -F`` with its own configuration, one
static password, mail stored as Maildir under a folder of its own, listening
on 127.0.0.1 at a free port; it yields ``(port, user, password)`` once the
port answers, and stops the server it started (by its process id). Without
the ``dovecot`` binary the test skips (fails under NEWSLETTER_REQUIRE_SERVICES=1).
``dovecot_with_pop3()`` serves the same mailbox over POP3 too, and yields
``(imap_port, pop3_port, user, password)`` (messages are put in over IMAP).
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
protocols = {protocols}
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

POP3_CONFIG = """\
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
POP3_LOGIN = "/usr/lib/dovecot/pop3-login"


@contextmanager
def dovecot_server() -> Iterator[tuple[int, str, str]]:
    with _dovecot(pop3=False) as (port, _pop3_port, user, password):
        yield port, user, password


@contextmanager
def dovecot_with_pop3() -> Iterator[tuple[int, int, str, str]]:
    if not Path(POP3_LOGIN).exists():
        need_service("Dovecot's POP3 server is not installed (apt-get install dovecot-pop3d)")
    with _dovecot(pop3=True) as ports:
        yield ports


@contextmanager
def _dovecot(pop3: bool) -> Iterator[tuple[int, int, str, str]]:
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
    port, pop3_port = free_port(), free_port() if pop3 else 0
    config = CONFIG.format(root=root, port=port, password=PASSWORD, uid=mail_user.pw_uid, gid=mail_user.pw_gid,
                           protocols="imap pop3" if pop3 else "imap")
    (root / "dovecot.conf").write_text(config + (POP3_CONFIG.format(pop3_port=pop3_port) if pop3 else ""))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        for listening in (port, pop3_port) if pop3 else (port,):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                        raise RuntimeError(f"dovecot did not start: {output[-500:]}") from None
                    time.sleep(0.05)  # polling the port: the event is the socket answering
        yield port, pop3_port, USER, PASSWORD
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
