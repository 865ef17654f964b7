"""When and how long to wait before trying a send again (README, "Sending").

- 429: wait until ``X-RateLimit-Reset`` (epoch seconds), plus jitter;
- a 5xx the provider answered, or a connection error before the request went
  out: jittered exponential backoff;
- anything else is not retried here.

Sleeping goes through ``sleep`` and time through ``clock`` so tests pass
fakes and run instantly. A policy built without ``sleep`` waits through
:func:`pause`, looked up at each wait, so a test can replace that one name
(``monkeypatch.setattr(retry, "pause", ...)``) for policies it does not build.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def pause(seconds: float) -> None:
    """The real wait between attempts (the default ``RetryPolicy.sleep``)."""
    time.sleep(seconds)


def _pause(seconds: float) -> None:
    pause(seconds)  # the module's name at call time, not at import: see the module docstring


@dataclass
class RetryPolicy:
    """How many attempts, and the wait before each next one.

    ``max_attempts`` counts the first try: 4 means up to 3 retries.
    """

    max_attempts: int = 4
    base_delay: float = 1.0          # seconds before the first retry (before jitter)
    max_delay: float = 30.0          # backoff ceiling
    jitter: float = 1.0              # up to this many seconds added to a rate-limit wait
    max_rate_limit_wait: float = 120.0  # never trust a reset further away than this
    sleep: Callable[[float], None] = _pause
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        "Equal jitter": half the exponential delay, plus a random part of the
        other half, so many senders retrying at once spread out.
        """
        delay = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def rate_limit_wait(self, reset: str | None, attempt: int) -> float:
        """Seconds to wait after a 429 whose ``X-RateLimit-Reset`` is ``reset``.

        Falls back to :meth:`backoff` when the header is missing or unreadable.
        """
        if reset is None:
            return self.backoff(attempt)
        try:
            until = float(reset) - self.clock()
        except ValueError:
            return self.backoff(attempt)
        return min(self.max_rate_limit_wait, max(0.0, until)) + self.rng.uniform(0, self.jitter)

    def can_retry(self, attempt: int) -> bool:
        """Whether another attempt may follow attempt number ``attempt``."""
        return attempt < self.max_attempts

    @classmethod
    def no_wait(cls, max_attempts: int = 4) -> RetryPolicy:
        """A policy that never sleeps (tests)."""
        return cls(max_attempts=max_attempts, sleep=lambda seconds: None)
