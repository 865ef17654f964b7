"""The adapters between the scale-out code and Dramatiq: they fail here, loudly, when the library changes."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("dramatiq")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _backends():
    from dramatiq.rate_limits.backends import StubBackend

    yield "stub", StubBackend()
    try:
        import redis
        from dramatiq.rate_limits.backends import RedisBackend

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1)
        client.ping()
    except Exception:  # noqa: BLE001 - no Redis here: the stub still checks the contract
        return
    yield "redis", RedisBackend(client=client)


@pytest.mark.parametrize("name", ["stub", "redis"])
def test_batch_window_limiter_takes_a_batch_or_nothing(name):
    from newsletter.distributed.limits import BatchWindowLimiter

    backend = dict(_backends()).get(name)
    if backend is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    clock = Clock()
    limiter = BatchWindowLimiter(backend, f"test-limits-{uuid.uuid4().hex}", limit=10, window=2, clock=clock)
    assert limiter.take(6) is True
    assert limiter.take(5) is False  # 11 > 10: nothing taken
    assert limiter.take(4) is True
    assert limiter.take(1) is False
    clock.now += 1  # the window still holds the previous second's 10
    assert limiter.take(1) is False
    clock.now += 1  # that second has left the 2-second window
    assert limiter.take(10) is True


def test_window_limiter_for_slow_rates_holds_whole_messages():
    from dramatiq.rate_limits.backends import StubBackend
    from newsletter.distributed.limits import _window_limiter

    slow = _window_limiter(StubBackend(), "k", 0.25)
    assert (slow.window, slow.limit) == (4, 1)
    fast = _window_limiter(StubBackend(), "k", 1500)
    assert (fast.window, fast.limit) == (1, 1500)


def test_an_unreachable_redis_broker_raises_a_broker_error():
    from newsletter.distributed.actors import send_chunk_actor
    from newsletter.distributed.broker import broker_errors, make_broker

    broker = make_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(Exception) as raised:
        send_chunk_actor(broker).send_with_options(args=(1, 1, 2))
    assert isinstance(raised.value, broker_errors()), type(raised.value)
    assert not isinstance(ValueError("a bug"), broker_errors())
