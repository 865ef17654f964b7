"""The Dramatiq actor of scale-out sending: ``send_chunk(campaign_id, first_id, last_id)``.

Messages carry only ids; everything else (the edition, the recipients, the
transport settings) is read by the worker from the database and its own
settings. The actor is declared on a given broker by :func:`declare`
(called by :func:`newsletter.distributed.broker.get_broker`), not at import
time, so importing this module connects to nothing.

Retries: a chunk whose owner is alive raises ``dramatiq.Retry`` (quietly,
with backoff); other errors (a database restart) are retried by Dramatiq's
Retries middleware. Whatever happens, the ledger decides what is sent: a
retried or redelivered message sends only rows still pending.
"""

from __future__ import annotations

import logging
import threading

from newsletter.distributed.broker import QUEUE
from newsletter.distributed.dispatch import MIN_TIME_LIMIT_MS

log = logging.getLogger("newsletter.worker")

ACTOR_NAME = "newsletter_send_chunk"
MAX_RETRIES = 30
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 60_000

_context = None
_lock = threading.Lock()
_declared: dict[int, object] = {}


def set_context(context) -> None:
    """The :class:`~newsletter.distributed.chunks.WorkerContext` of this worker process."""
    global _context
    _context = context


def send_chunk(campaign_id: int, first_id: int, last_id: int) -> None:
    """Send the pending rows of one chunk (see :func:`newsletter.distributed.chunks.run_chunk`)."""
    import dramatiq

    from newsletter.distributed.chunks import ChunkBusy, run_chunk

    if _context is None:
        raise RuntimeError("send_chunk runs only inside 'newsletter worker'")
    try:
        report = run_chunk(_context, campaign_id, first_id, last_id)
    except ChunkBusy as exc:
        log.info("campaign %s: %s; trying later", campaign_id, exc)
        raise dramatiq.Retry(str(exc)) from None
    log.info("%s", report.line())


def declare(broker):
    """Declare :func:`send_chunk` on ``broker`` (once per broker); returns the actor."""
    with _lock:
        actor = _declared.get(id(broker))
        if actor is None:
            import dramatiq

            actor = dramatiq.actor(send_chunk, broker=broker, actor_name=ACTOR_NAME, queue_name=QUEUE,
                                   max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS,
                                   max_backoff=MAX_BACKOFF_MS, time_limit=MIN_TIME_LIMIT_MS)
            _declared[id(broker)] = actor
        return actor


def send_chunk_actor(broker):
    """The actor declared on ``broker`` (declaring it if needed)."""
    return declare(broker)
