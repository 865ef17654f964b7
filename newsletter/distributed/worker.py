"""A worker process: a Dramatiq Worker in-process, with the project's broker and actors.

``run_worker`` consumes chunk messages with ``threads`` threads until SIGTERM
or Ctrl-C, then lets the chunk in flight finish, gives prefetched messages
back to the broker and returns 0. Beside the Dramatiq threads, one
maintenance thread:

- refreshes the heartbeat of the chunks (and campaigns) this process sends,
  so other machines do not take it for dead during a long chunk;
- when the process has been idle for ``idle_requeue`` seconds, queues again
  the chunks nobody alive owns whose messages were lost (see
  :func:`newsletter.distributed.dispatch.requeue_stalled`).

``run_processes`` starts N such processes (``newsletter worker --processes N``)
and passes signals on to them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("newsletter.worker")

SHUTDOWN_TIMEOUT_MS = 24 * 3600 * 1000  # "after its chunk": as long as the chunk takes
# A chunk of 1,000 rows takes a worker about 0.1 s. Dramatiq's consumer fetches
# only while fewer than its prefetch count are unfinished (two per thread by
# default), and each fetch that finds nothing to do (the thread is busy) backs
# off, doubling up to the worker timeout (1 s by default): the thread then
# finished its chunks and sat idle waiting for the next fetch, 40% of the time
# in a py-spy profile of one worker. Four chunks per thread in hand and fetches
# at most 0.1 s apart keep it busy; a stopping worker gives its prefetched
# messages back to the broker, so the larger prefetch loses nothing.
PREFETCH_PER_THREAD = 4
CONSUMER_POLL_MS = 100


def run_worker(settings, *, threads: int = 1, queues: tuple[str, ...] = (), idle_requeue: float = 60.0,
               stop: threading.Event | None = None) -> int:
    """Consume until ``stop`` is set (by SIGTERM/SIGINT when None); returns the exit code."""
    import dramatiq

    from newsletter.distributed import actors
    from newsletter.distributed.broker import QUEUE, get_broker, safe_url
    from newsletter.distributed.chunks import WorkerContext
    from newsletter.distributed.limits import open_gate
    from newsletter.store.db import open_store

    store = open_store(settings)
    broker = get_broker(settings)
    open_gate(settings, settings.transport)  # a rate with no Redis to share it fails now, not mid-send
    context = WorkerContext(store, settings, gate_for=lambda name: open_gate(settings, name))
    actors.set_context(context)
    _warm_up(context, settings)
    broker.emit_after("process_boot")  # what the dramatiq CLI does: starts the time-limit watchdog
    # Dramatiq's own variables (dramatiq_worker_timeout, dramatiq_queue_prefetch), when set, win.
    worker = dramatiq.Worker(broker, worker_threads=threads, queues=set(queues or (QUEUE,)),
                             worker_timeout=int(os.environ.get("dramatiq_worker_timeout") or CONSUMER_POLL_MS))
    # The prefetch count has no constructor parameter: Dramatiq reads its variable when imported and
    # keeps the count in this public attribute until start().
    if not os.environ.get("dramatiq_queue_prefetch"):
        worker.queue_prefetch = max(worker.queue_prefetch, PREFETCH_PER_THREAD * threads)
    stop = stop or _signal_stop()
    worker.start()
    log.info("worker %s: %d thread(s) on queue(s) %s, broker %s, database %s", context.identity, threads,
             ",".join(sorted(queues or (QUEUE,))), safe_url(settings.broker_url), store.dialect)
    maintenance = _Maintenance(context, settings, broker, idle_requeue)
    maintenance.start()
    try:
        while not stop.wait(0.5):
            pass
        log.info("worker %s: stopping after the chunk in flight", context.identity)
        worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    finally:
        maintenance.halt()
        broker.close()
        store.close()
    log.info("worker %s: stopped", context.identity)
    return 0


def _warm_up(context, settings) -> None:
    """Pay before the first message what its chunk would (the sending modules and the provider's library
    imported, a database connection opened: about a second on a busy 2-core machine), so that a worker's
    first chunk goes as fast as the rest. Nothing is sent; a failure here is left to the first chunk."""
    from newsletter.distributed import chunks  # noqa: F401 - the imports a chunk needs
    from newsletter.store import distributed as chunks_db

    try:
        with context.store.session() as session:
            chunks_db.campaign_status(session, 0)
        context.transport(settings.transport)  # built, not opened: no connection to the provider yet
    except Exception as exc:  # noqa: BLE001 - the first chunk reports it properly, with its retries
        log.warning("worker warm-up: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")


def _signal_stop() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; a second one exits at once."""
    event = threading.Event()

    def handle(signum, _frame):
        if event.is_set():
            log.warning("second signal: exiting now; rows in flight become unknown")
            os._exit(130)
        event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
    return event


class _Maintenance(threading.Thread):
    """Heartbeats for owned chunks, and the idle sweep for lost messages."""

    def __init__(self, context, settings, broker, idle_requeue: float):
        super().__init__(name="newsletter-maintenance", daemon=True)
        self.context, self.settings, self.broker, self.idle = context, settings, broker, idle_requeue
        self._halt = threading.Event()
        self._last_sweep = time.monotonic()

    def halt(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        from newsletter.engine.fencing import beat_interval

        # Several beats within the staleness limit, so a chunk in a long wait never looks abandoned.
        tick = min(beat_interval(self.context.stale), max(0.5, self.idle / 2))
        while not self._halt.wait(tick):
            try:
                self._beat()
                self._sweep()
            except Exception as exc:  # noqa: BLE001 - a database or broker outage: try again next tick
                log.warning("maintenance: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:200])

    def _beat(self) -> None:
        from newsletter.store import distributed as chunks_db

        active = sorted(self.context.active)
        if active:
            with self.context.store.session() as session:
                chunks_db.heartbeat(session, self.context.identity, active)

    def _sweep(self) -> None:
        from newsletter.distributed.dispatch import requeue_stalled

        now = time.monotonic()
        idle_for = now - self.context.last_activity
        if self.context.active or idle_for < self.idle or now - self._last_sweep < self.idle:
            return
        self._last_sweep = now
        requeue_stalled(self.context.store, self.settings, self.broker, idle_seconds=self.idle,
                        is_alive=self.context.owner_alive)


def run_processes(count: int, argv: list[str]) -> int:
    """Run ``count`` worker processes (``argv`` each) and pass SIGTERM/SIGINT on; returns the worst exit code."""
    children = [subprocess.Popen([sys.executable, "-m", "newsletter", *argv]) for _ in range(count)]

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    return max(child.wait() for child in children)
