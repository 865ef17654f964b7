"""The webhook delivery loop: one pass over the outbox (the daemon runs one every few seconds).

Contract of :func:`deliver_pass`:

- with no enabled endpoint, nothing is read or written;
- rows left ``sending`` by a dead sender (past their lease) are pending again first;
- due heads are claimed in batches (:func:`newsletter.store.webhook_outbox.claim_due`:
  a conditional UPDATE, safe with two daemons), oldest events first; each is
  signed and POSTed, and its outcome committed at once, one transaction per
  attempt: a kill loses at most the attempts in flight, which are sent again
  after its lease (the same id and body: receivers deduplicate on ``webhook-id``);
- a failure is retried after :func:`backoff` (30 s doubling to 4 h, with
  jitter) for :data:`RETRY_WINDOW` (24 h) from its first attempt; then it
  is given up (``failed``), and the subject's next event may go (with a
  day of its own: the window of an event that waited starts when it is first tried);
- up to :data:`CONCURRENCY` requests are in flight at once, but an
  endpoint not yet heard from in this pass gets one request first, and one
  that failed rests until the next pass (one timeout per pass, not one per
  queued event); order holds, as only heads of different subjects are
  claimed together; an endpoint failing for
  :data:`DISABLE_AFTER` with at least :data:`DISABLE_MIN_FAILURES` failures
  in a row is disabled, and the report names it;
- the time is ``clock()`` (tests move it); the signature's timestamp is the
  wall clock, as receivers check it against theirs.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter.delivery import webhooks as wire
from newsletter.store import webhook_outbox as outbox
from newsletter.store import webhooks as hooks
from newsletter.store.db import Store
from newsletter.store.models import utcnow

RETRY_WINDOW = timedelta(hours=24)
FIRST_DELAY_SECONDS = 30.0
MAX_DELAY_SECONDS = 4 * 3600.0
JITTER = 0.1  # +-10 %: endpoints that failed together do not come back together
LEASE = timedelta(seconds=wire.TIMEOUT_SECONDS + 50)
DISABLE_AFTER = timedelta(hours=24)
DISABLE_MIN_FAILURES = 5
BATCH = 50
CONCURRENCY = 8  # requests in flight at once in a pass (to endpoints already heard from in it)
PASS_LIMIT = 1000  # attempts per pass: a big backlog is worked through over several passes
KEEP_EVENTS = timedelta(days=7)  # delivered (or given up) events are forgotten after this

Poster = Callable[[str, bytes, dict[str, str]], wire.PostResult]


@dataclass
class PassReport:
    """What one pass did."""

    delivered: int = 0
    retrying: int = 0
    given_up: int = 0
    released: int = 0  # rows a dead sender left in flight, pending again
    disabled: list[str] = field(default_factory=list)  # URLs of endpoints disabled in this pass

    @property
    def busy(self) -> bool:
        return bool(self.delivered or self.retrying or self.given_up or self.released or self.disabled)


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """How long after the ``attempt``-th failed attempt (1, 2, ...) the next one goes."""
    seconds = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** max(0, attempt - 1))
    return timedelta(seconds=seconds * (1 + JITTER * (2 * (rng or random).random() - 1)))


def deliver_pass(store: Store, *, clock: Callable[[], datetime] = utcnow, poster: Poster = wire.post,
                 stop: threading.Event | None = None, limit: int = PASS_LIMIT,
                 concurrency: int = CONCURRENCY) -> PassReport:
    """Deliver what is due now; see the module's contract."""
    run = _Pass(store, clock, poster, stop)
    with store.session() as session:
        if not hooks.wanted_types(session):
            # No enabled endpoint (this process's list, read at most every few seconds): nothing can go,
            # and the daemon's pass every sync interval then costs no transaction at all.
            return run.report
        run.report.released = outbox.release_expired(session, clock())
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="webhooks") as pool:
        while run.attempted < limit and not run.stopped():
            now = clock()
            with store.session() as session:
                batch = outbox.claim_due(session, now, run.claim, now + LEASE, min(BATCH, limit - run.attempted),
                                         run.resting)
            if not batch:
                break
            # An endpoint not yet heard from in this pass gets one request first: a dead one costs one
            # timeout per pass. Then the rest go side by side (heads of different subjects: order holds).
            probes = {item.endpoint_id: item for item in reversed(batch) if item.endpoint_id not in run.proven}
            list(pool.map(run.attempt, probes.values()))
            list(pool.map(run.attempt, [item for item in batch if item not in probes.values()]))
            with store.session() as session:
                outbox.release(session, run.claim)  # what was skipped (a resting endpoint, a stop) waits, unchanged
    return run.report


class _Pass:
    """One pass's state, shared by its sending threads."""

    def __init__(self, store: Store, clock: Callable[[], datetime], poster: Poster,
                 stop: threading.Event | None) -> None:
        self.store, self.clock, self.poster, self.stop = store, clock, poster, stop
        self.report = PassReport()
        self.claim = uuid.uuid4().hex
        self.resting: set[int] = set()  # endpoints that failed in this pass
        self.proven: set[int] = set()  # endpoints that took an event in this pass
        self.attempted = 0
        self.lock = threading.Lock()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def attempt(self, item: outbox.Claimed) -> None:
        with self.lock:
            if self.stopped() or item.endpoint_id in self.resting:
                return
            self.attempted += 1
        ok = _attempt(self.store, item, self.claim, self.clock, self.poster, self.report, self.lock)
        with self.lock:
            (self.proven if ok else self.resting).add(item.endpoint_id)


def _attempt(store: Store, item: outbox.Claimed, claim: str, clock: Callable[[], datetime], poster: Poster,
             report: PassReport, lock: threading.Lock) -> bool:
    """Send one claimed delivery and commit its outcome; True when the receiver took it."""
    body = item.body.encode()
    result = poster(item.url, body, wire.headers(item.secret, item.event_id, int(time.time()), body))
    now = clock()
    next_at: datetime | None = None
    if not result.ok:
        next_at = now + backoff(item.attempts + 1)
        if next_at > (item.first_attempt_at or now) + RETRY_WINDOW:
            next_at = None
    with store.session() as session:
        if not outbox.record_attempt(session, item, claim, now=now, ok=result.ok, status=result.status,
                                     error=result.error, next_attempt_at=next_at):
            return result.ok  # the lease ran out and another sender took the row over: its outcome counts
        if result.ok:
            outbox.endpoint_succeeded(session, item.endpoint_id, now)
            with lock:
                report.delivered += 1
            return True
        disabled = outbox.endpoint_failed(session, item.endpoint_id, now,
                                          disable_after_seconds=DISABLE_AFTER.total_seconds(),
                                          min_failures=DISABLE_MIN_FAILURES, reason=result.error or "no answer")
    with lock:
        if next_at is None:
            report.given_up += 1
        else:
            report.retrying += 1
        if disabled:
            report.disabled.append(item.url)
    return False


def prune(store: Store, now: datetime | None = None) -> int:
    """Forget events every endpoint received (or gave up on) more than :data:`KEEP_EVENTS` ago."""
    with store.session() as session:
        return outbox.prune(session, (now or utcnow()) - KEEP_EVENTS)
