"""Helpers for the child processes the project starts (multi-process sends, import parsing)."""

from __future__ import annotations

import os
import signal


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has.

    A killed command must never leave a child behind that goes on working
    (sending mail the ledger cannot see).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the callers' other guards (heartbeats) remain
    if os.getppid() != parent_pid:
        os._exit(1)
