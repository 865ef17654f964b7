"""Two senders of one campaign as real processes, one of them "on another host".

``other_host_argv`` runs a command in a new UTS namespace with another host
name (``unshare --uts``, root only): to that process the sender recorded on
the campaign is a machine it cannot see, judged only by its heartbeat.
``HoldingSendGrid`` is the SendGrid stand-in with requests it holds on
command (a provider that is slow to answer), so a test can freeze a sender
while its batch is in flight.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from fake_sendgrid import FakeSendGrid

OTHER_HOST = "mail-2.clinic.example"


def unshare_available() -> bool:
    """Whether this process may run a command under another host name."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", f"hostname {OTHER_HOST} && hostname"],
                           capture_output=True, text=True, timeout=30)
    return probe.returncode == 0 and probe.stdout.strip() == OTHER_HOST


def other_host_argv(argv: list[str]) -> list[str]:
    command = " ".join(_quote(a) for a in argv)
    return ["unshare", "--uts", "sh", "-c", f"hostname {OTHER_HOST} && exec {command}"]


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def newsletter_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


class Process:
    """A child process with its output in a file."""

    def __init__(self, argv: list[str], folder: Path, name: str, env: dict[str, str]):
        self.log_path = folder / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(argv, cwd=folder, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log.close()


class HoldingSendGrid(FakeSendGrid):
    """FakeSendGrid that holds the requests whose numbers are in ``hold`` until :meth:`let_go`.

    A held request has been read whole; after ``let_go(n)`` it is answered as
    usual (202 and recorded). ``held[n]`` is set once request ``n`` waits.
    """

    def __init__(self, *args, hold: tuple[int, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.hold = set(hold)
        self.held = {n: threading.Event() for n in self.hold}
        self._go = {n: threading.Event() for n in self.hold}
        self._seen = 0
        self._count_lock = threading.Lock()

    def take_fault(self):
        with self._count_lock:
            self._seen += 1
            number = self._seen
        if number in self.hold:
            self.held[number].set()
            self._go[number].wait(120)
        return super().take_fault()

    def let_go(self, number: int) -> None:
        self._go[number].set()

    def stop(self) -> None:
        for event in self._go.values():
            event.set()
        super().stop()

    def recipients(self) -> list[str]:
        with self._lock:
            return [to["email"] for body in self.bodies for p in body["personalizations"] for to in p["to"]]
