"""Running the real CLI in a fresh process and measuring it (shared by the benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEWSLETTER = [sys.executable, "-m", "newsletter"]


def run_cli(args: list[str], cwd: Path, env: dict | None = None, ok=(0,)) -> tuple[float, float, str]:
    """Run ``newsletter ARGS``; returns (seconds, the child's own peak RSS in MB, its output).

    Output goes through temporary files (never held in a pipe), so a command
    that prints a million lines is measured as it streams.
    """
    seconds, peak, tail, _cpu = run_cli_cpu(args, cwd, env, ok)
    return seconds, peak, tail


def run_cli_cpu(args: list[str], cwd: Path, env: dict | None = None, ok=(0,)) -> tuple[float, float, str, float]:
    """:func:`run_cli`, and the CPU seconds (user + system) the command used, its own processes'
    included (those it waited for, as a send waits for its sending processes): on a loaded machine
    the wall time swings with the other jobs, the CPU seconds much less."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        process = subprocess.Popen(NEWSLETTER + args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        size = out.tell()
        out.seek(max(0, size - 4000))
        tail = out.read().decode("utf-8", "replace")
    if process.returncode not in ok:
        sys.exit(f"failed ({process.returncode}): newsletter {' '.join(args)}\n{tail}")
    return (seconds, usage.ru_maxrss / 1024,
            f"{size:,} bytes of output; last: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
            usage.ru_utime + usage.ru_stime)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a `newsletter serve` the benchmark starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait for `newsletter serve` on ``port`` to answer /healthz; exit the benchmark if it died or never did."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"newsletter serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    sys.exit("newsletter serve did not start")
