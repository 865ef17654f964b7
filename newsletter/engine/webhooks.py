"""The webhook delivery loop: one pass over the outbox (the daemon runs one every few seconds).

Contract of :func:`deliver_pass`:

- rows left ``sending`` by a dead sender (past their lease) are pending again first;
- due heads are claimed in batches (:func:`newsletter.store.webhook_outbox.claim_due`:
  a conditional UPDATE, safe with two daemons), oldest events first; each is
  signed and POSTed, and its outcome committed at once, one transaction per
  attempt: a kill loses at most the attempt in flight, which is sent again
  after its lease (the same id and body: receivers deduplicate on ``webhook-id``);
- a failure is retried after :func:`backoff` (30 s doubling to 4 h, with
  jitter) for :data:`RETRY_WINDOW` (24 h) from its first attempt; then it
  is given up (``failed``), and the subject's next event may go (with a
  day of its own: the window of an event that waited starts when it is first tried);
- an endpoint that failed in this pass rests until the next one (one
  timeout per pass, not one per queued event); an endpoint failing for
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter.delivery import webhooks as wire
from newsletter.store import webhook_outbox as outbox
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
                 stop: threading.Event | None = None, limit: int = PASS_LIMIT) -> PassReport:
    """Deliver what is due now; see the module's contract."""
    report = PassReport()
    claim = uuid.uuid4().hex
    resting: set[int] = set()
    with store.session() as session:
        report.released = outbox.release_expired(session, clock())
    attempted = 0
    while attempted < limit and not (stop and stop.is_set()):
        now = clock()
        with store.session() as session:
            batch = outbox.claim_due(session, now, claim, now + LEASE, min(BATCH, limit - attempted), resting)
        if not batch:
            break
        for item in batch:
            if (stop and stop.is_set()) or item.endpoint_id in resting:
                continue
            attempted += 1
            if not _attempt(store, item, claim, clock, poster, report):
                resting.add(item.endpoint_id)
        with store.session() as session:
            outbox.release(session, claim)  # what was skipped (a resting endpoint, a stop) waits, unchanged
    return report


def _attempt(store: Store, item: outbox.Claimed, claim: str, clock: Callable[[], datetime], poster: Poster,
             report: PassReport) -> bool:
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
            report.delivered += 1
            return True
        if next_at is None:
            report.given_up += 1
        else:
            report.retrying += 1
        if outbox.endpoint_failed(session, item.endpoint_id, now, disable_after_seconds=DISABLE_AFTER.total_seconds(),
                                  min_failures=DISABLE_MIN_FAILURES, reason=result.error or "no answer"):
            report.disabled.append(item.url)
    return False


def prune(store: Store, now: datetime | None = None) -> int:
    """Forget events every endpoint received (or gave up on) more than :data:`KEEP_EVENTS` ago."""
    with store.session() as session:
        return outbox.prune(session, (now or utcnow()) - KEEP_EVENTS)
