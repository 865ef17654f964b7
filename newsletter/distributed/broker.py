"""The Dramatiq broker of a deployment, built from ``NEWSLETTER_BROKER_URL`` on first use.

``redis://`` (or ``rediss://``) gives a RedisBroker, ``amqp://`` (or
``amqps://``) a RabbitmqBroker. Nothing connects at import time: the broker
is built, registered with ``dramatiq.set_broker`` and given its actors only
when :func:`get_broker` is first called.

The global send rate and the shared 429 pause need Redis: the broker's own
Redis, or ``NEWSLETTER_REDIS_URL`` when the broker is RabbitMQ.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import urlsplit

from newsletter.errors import ConfigError

QUEUE = "newsletter"
REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps")
BROKER_HINT = "set NEWSLETTER_BROKER_URL to redis://host:6379/0 or amqp://user:pass@host:5672/"
# A Redis broker takes a worker for dead (and requeues its unacknowledged
# messages) after this long without a heartbeat. Our own chunk owners make a
# takeover safe either way; a shorter timeout only makes it quicker.
HEARTBEAT_TIMEOUT_MS = 30_000

_lock = threading.Lock()
_brokers: dict[str, object] = {}


def require_broker_url(settings) -> str:
    """The broker URL, or ConfigError with a hint when scale-out is not configured."""
    url = getattr(settings, "broker_url", None)
    if not url:
        raise ConfigError("no broker configured: NEWSLETTER_BROKER_URL is not set", hint=BROKER_HINT)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in REDIS_SCHEMES + AMQP_SCHEMES:
        raise ConfigError(f"NEWSLETTER_BROKER_URL has an unsupported scheme {scheme!r}", hint=BROKER_HINT)
    return url


def make_broker(url: str):
    """A new Dramatiq broker for ``url`` (not registered globally, actors not declared)."""
    scheme = urlsplit(url).scheme.lower()
    try:
        if scheme in REDIS_SCHEMES:
            from dramatiq.brokers.redis import RedisBroker

            return RedisBroker(url=url, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS)
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    except ImportError as exc:
        raise ConfigError(f"scale-out needs Dramatiq and its broker client ({exc.name} is missing)",
                          hint="pip install 'newsletter[scale]'") from None


def get_broker(settings):
    """The broker of ``settings``, built once per URL, set as Dramatiq's global broker,
    with :func:`newsletter.distributed.actors.declare` run on it."""
    url = require_broker_url(settings)
    with _lock:
        broker = _brokers.get(url)
        if broker is None:
            import dramatiq

            from newsletter.distributed.actors import declare

            broker = make_broker(url)
            dramatiq.set_broker(broker)
            declare(broker)
            _brokers[url] = broker
        return broker


def broker_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which Dramatiq and its broker clients say a message could not be handed over.

    Named by class (Dramatiq's base error, redis-py's, pika's), for the
    clients that are installed; ``tests/test_distributed_limits.py`` fails if an
    unreachable broker stops raising one of them.
    """
    import dramatiq.errors

    errors: list[type[BaseException]] = [dramatiq.errors.DramatiqError]
    try:
        import redis.exceptions

        errors.append(redis.exceptions.RedisError)
    except ImportError:
        pass
    try:
        import pika.exceptions

        errors += [pika.exceptions.AMQPError, pika.exceptions.ChannelError]
    except ImportError:
        pass
    return tuple(errors)


def redis_url(settings) -> str | None:
    """Where the rate limiter and the shared pause live: NEWSLETTER_REDIS_URL, else a Redis broker.

    (Read here rather than in config.py so that the single-machine path never
    looks at it; see the deployment guide.)
    """
    explicit = os.environ.get("NEWSLETTER_REDIS_URL")
    if explicit:
        return explicit
    url = getattr(settings, "broker_url", None) or ""
    return url if urlsplit(url).scheme.lower() in REDIS_SCHEMES else None


def safe_url(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url
