"""Keeping many sending threads under one rate: :class:`RatePacer`.

SES limits an account to ``MaxSendRate`` messages a second and answers
throttling errors past it; an SMTP relay has its own rate
(``[[smtp.relays]] rate``). The transport's threads each take a slot from
one pacer before each request, so together they keep the rate however
many are in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RatePacer:
    """Slots ``rate`` a second, one after another, never saved up.

    ``take()`` blocks until the caller may send (thread-safe). Each slot
    comes ``1 / rate`` seconds after the previous one, or now when the
    previous one is older: time spent idle (a throttling pause, the engine
    recording a batch) is never credited, so over any span the slots handed
    out are at most ``rate * span + 1`` and a sender resumes at the rate,
    never in a burst. ``rate <= 0`` means no limit.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock, self.sleep = clock, sleep
        self._next: float | None = None  # the time of the next free slot
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait for the next slot."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            slot = now if self._next is None else max(self._next, now)
            self._next = slot + 1.0 / self.rate
        if slot > now:
            self.sleep(slot - now)
