"""One send rate across every worker, and a provider's 429 felt by all of them.

Both live in Redis, so that they hold across processes and machines:

- the rate: a sliding window (:class:`BatchWindowLimiter`) over Dramatiq's
  Redis rate-limit backend, keyed per transport, taking a batch's worth of
  slots at a time (``settings.send_rate`` messages a second, all workers together).
  It counts what went out in the current window only, so time spent idle
  (a shared 429 pause) is never saved up: after a pause the workers get one
  window's worth again, not a burst;
- the caps: a transport's hourly and daily caps and the warm-up plan
  (:mod:`newsletter.engine.quotas`), counted per UTC window under keys
  that expire after it (:meth:`SendGate.take_quota`, one Lua script: all
  windows checked and counted at once, so two workers never both take the
  last slots). A worker counts before it claims the rows and gives back
  what the claim did not use: a worker that dies after counting
  over-counts, never under-counts. When nothing fits, it pauses the campaign
  with the reason and the time the window opens, as on one machine;
- the pause: when SendGrid answers 429, the worker that got it records
  "paused until T" (the ``X-RateLimit-Reset`` time) under a shared key;
  every worker waits for it before its next batch. It is hooked into the
  SendGrid transport through its :class:`RetryPolicy`, unchanged.

Waiting happens *before* a batch is claimed from the ledger, never while
rows are ``sending``: a worker killed while it waits leaves nothing unknown.
If Redis is unreachable (a broker restart) the gate waits for it rather
than send over the provider's limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from newsletter.delivery.retry import RetryPolicy

if TYPE_CHECKING:
    from newsletter.config import Limits, Warmup
    from newsletter.store.quotas import Window

log = logging.getLogger(__name__)

# KEYS: one counter per window; ARGV: want, then each window's cap, then each key's time to live (ms).
# Returns {granted, the 1-based index of the window with the least room (of full ones, the last)}.
_TAKE_SCRIPT = """
local want = tonumber(ARGV[1])
local n = #KEYS
local tight, tight_room = 1, nil
for i = 1, n do
  local room = tonumber(ARGV[1 + i]) - tonumber(redis.call('GET', KEYS[i]) or '0')
  if room < 0 then room = 0 end
  if tight_room == nil or room <= tight_room then tight, tight_room = i, room end
end
local granted = math.min(want, tight_room)
if granted > 0 then
  for i = 1, n do
    redis.call('INCRBY', KEYS[i], granted)
    redis.call('PEXPIRE', KEYS[i], ARGV[1 + n + i])
  end
end
return {granted, tight}
"""

_PAUSE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class BatchWindowLimiter:
    """At most ``limit`` slots per sliding ``window`` seconds, taking a batch's worth at once.

    The same scheme as Dramatiq's :class:`~dramatiq.rate_limits.WindowRateLimiter`
    (one counter per second, summed over the window), which only takes one
    slot per call: a 1,000-recipient batch would cost 1,000 Redis round
    trips. Built on the backend's public ``incr_and_sum`` (no private
    Dramatiq API); ``tests/test_distributed_limits.py`` fails if its contract changes.
    """

    def __init__(self, backend, key: str, *, limit: int, window: int, clock: Callable[[], float] = time.time):
        self.backend, self.key, self.limit, self.window, self.clock = backend, key, limit, window, clock

    def _keys(self) -> list[str]:
        now = int(self.clock())
        return [f"{self.key}@{now - i}" for i in range(self.window)]

    def take(self, amount: int) -> bool:
        """Take ``amount`` slots if the window has room for all of them; False (nothing taken) if not."""
        return self.backend.incr_and_sum(self._keys()[0], self._keys, amount, maximum=self.limit,
                                         ttl=self.window * 1000)


def _window_limiter(backend, key: str, rate: float) -> BatchWindowLimiter:
    """A limiter for ``rate`` a second (under 1 a second: a wider window holds whole messages)."""
    window = max(1, math.ceil(1 / rate))
    return BatchWindowLimiter(backend, key, limit=max(1, int(rate * window)), window=window)


class SendGate:
    """Waits, before each batch, for the shared pause and for the global rate.

    ``client`` is a ``redis.Redis``; ``rate`` is messages a second over all
    workers (0: no limit, the pause still applies); ``name`` keys both per
    provider.
    """

    def __init__(self, client, rate: float, name: str = "sendgrid", *, prefix: str = "newsletter",
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 limits: Limits | None = None, warmup: Warmup | None = None, scope: str | None = None,
                 utc_clock: Callable[[], datetime] | None = None):
        from dramatiq.rate_limits.backends import RedisBackend

        self.client, self.rate, self.sleep, self.clock = client, rate, sleep, clock
        self.name, self.prefix = name, prefix
        self.pause_key = f"{prefix}:{name}:paused-until"
        self.limiter = _window_limiter(RedisBackend(client=client), f"{prefix}:{name}:rate", rate) if rate > 0 else None
        self._pause = client.register_script(_PAUSE_SCRIPT)
        # the caps (newsletter.engine.quotas), counted under the transport's scope (its account)
        self.limits, self.warmup, self.scope = limits, warmup, scope or name
        self.utc_clock = utc_clock or (lambda: datetime.now(UTC))
        self._take = client.register_script(_TAKE_SCRIPT)

    @property
    def capped(self) -> bool:
        return self.limits is not None and bool(self.limits.hourly_cap or self.limits.daily_cap or self.warmup)

    def _cap_key(self, window: Window) -> str:
        return f"{self.prefix}:{self.scope}:cap:{window.kind}:{window.starts_at:%Y%m%dT%H}"

    def take_quota(self, want: int) -> tuple[int, list[Window]]:
        """Count up to ``want`` messages against the caps; returns (granted, the windows counted in).

        Raises :class:`~newsletter.engine.quotas.QuotaReached` when nothing
        fits. Give back what was not sent after all with :meth:`give_back`.
        """
        from newsletter.engine.quotas import reached, windows

        if not self.capped or want <= 0 or self.limits is None:
            return want, []
        now = self.utc_clock()
        current = windows(self.limits, self.warmup, now)
        if not current:
            return want, []
        # each counter outlives its window by a day, so a late give_back still finds it
        ttls = [int(((w.ends_at - now).total_seconds() + 86400) * 1000) for w in current]
        granted, tight = self._with_redis(lambda: self._take(
            keys=[self._cap_key(w) for w in current], args=[want, *(w.cap for w in current), *ttls]))
        if int(granted) == 0:
            raise reached(self.name, current[int(tight) - 1], self.limits, self.warmup, now)
        return int(granted), current

    def give_back(self, current: list[Window], count: int) -> None:
        """Uncount ``count`` messages taken and not sent (rows skipped or already done at the claim)."""
        if not current or count <= 0:
            return

        def uncount() -> None:
            pipe = self.client.pipeline()
            for window in current:
                pipe.decrby(self._cap_key(window), count)
            pipe.execute()

        self._with_redis(uncount)

    def wait(self, count: int) -> float:
        """Block until ``count`` messages may go out; returns the seconds waited."""
        started = time.monotonic()
        self._with_redis(self._wait_pause)
        limiter = self.limiter
        remaining = count if limiter is not None else 0
        while limiter is not None and remaining > 0:
            piece = min(remaining, limiter.limit)
            if self._with_redis(lambda piece=piece: limiter.take(piece)):
                remaining -= piece
            else:  # the window is full: try again at the next second
                self.sleep(1.0 - self.clock() % 1.0 + 0.01)
        return time.monotonic() - started

    def pause_for(self, seconds: float) -> None:
        """Make every worker wait ``seconds`` (from now) before its next batch."""
        until = self.clock() + seconds
        try:
            self._pause(keys=[self.pause_key], args=[f"{until:.3f}", int(seconds * 1000) + 1000])
            log.warning("provider rate limit: all workers pause for %.1f s", seconds)
        except Exception as exc:  # noqa: BLE001 - the 429 is still honoured by this worker
            log.warning("could not share a rate-limit pause (%s)", type(exc).__name__)

    def _wait_pause(self) -> None:
        while True:
            until = float(self.client.get(self.pause_key) or 0)
            left = until - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, 5.0))

    def _with_redis(self, action):
        """Run ``action``; while Redis is unreachable, wait and try again."""
        import redis

        delay, warned = 0.5, 0.0
        while True:
            try:
                return action()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() - warned > 30:
                    log.warning("rate limiter unreachable (%s); waiting for Redis", type(exc).__name__)
                    warned = time.monotonic()
                self.sleep(delay)
                delay = min(delay * 2, 5.0)


@dataclass
class SharedPausePolicy(RetryPolicy):
    """SendGrid's retry policy, also telling every other worker to pause after a 429."""

    gate: SendGate | None = None

    def rate_limit_wait(self, reset: str | None, attempt: int) -> float:
        wait = super().rate_limit_wait(reset, attempt)
        if self.gate is not None:
            self.gate.pause_for(wait)
        return wait


def open_gate(settings, name: str) -> SendGate | None:
    """The gate for transport ``name``, or None without a Redis to share it through.

    A RabbitMQ deployment with a send rate and no NEWSLETTER_REDIS_URL is a
    configuration error: a per-worker rate would multiply by the workers.
    """
    from newsletter.distributed.broker import redis_url
    from newsletter.engine.quotas import scope_of
    from newsletter.errors import ConfigError

    limits = settings.limits_for(name)
    url = redis_url(settings)
    if url is None:
        if limits.rate > 0 or limits.hourly_cap or limits.daily_cap or settings.warmup:
            raise ConfigError("a global send rate or cap needs Redis, and the broker is RabbitMQ",
                              hint="set NEWSLETTER_REDIS_URL=redis://host:6379/0 for the rate limiter")
        log.warning("no Redis for the rate limiter: a 429 pauses only the worker that got it")
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
    return SendGate(client, limits.rate, name, limits=limits, warmup=settings.warmup, scope=scope_of(settings, name))
