"""Running the real CLI in a fresh process and measuring it (shared by the benchmarks)."""

from __future__ import annotations

import os
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
