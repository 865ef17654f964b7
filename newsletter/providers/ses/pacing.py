"""Keeping many sending threads under one rate: :class:`RatePacer`.

SES limits an account to ``MaxSendRate`` messages a second and answers
throttling errors past it. The transport's threads each take a slot from
one pacer before each request, so together they keep the rate however
many are in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RatePacer:
    """A token bucket: ``rate`` slots a second, at most ``burst`` seconds of them saved up.

    ``take()`` blocks until the caller may send (thread-safe). Over any
    span the slots handed out are at most ``rate * span + rate * burst + 1``:
    the small saving lets the sender catch up after a short pause (the
    engine recording a batch between two) without ever running ahead of
    the rate for long. ``rate <= 0`` means no limit.
    """

    def __init__(self, rate: float, burst: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock, self.sleep = clock, sleep
        self._saved = max(1.0 / rate, burst) if rate > 0 else 0.0  # seconds of slots that may be saved
        self._next: float | None = None  # the time of the next free slot (none saved before the first)
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait for the next slot."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            slot = now if self._next is None else max(self._next, now - self._saved)
            self._next = slot + 1.0 / self.rate
        if slot > now:
            self.sleep(slot - now)
