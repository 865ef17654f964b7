"""The daemon's webhook job: a delivery pass every sync interval (see :mod:`newsletter.engine.webhooks`).

The job is the daemon's own (the "internal" job store), one pass at a time.
A disabled endpoint is logged as a warning (and shown by ``webhooks list``);
events older than a week that every endpoint received are pruned once an hour.
"""

from __future__ import annotations

import time

from newsletter.scheduler import jobs

JOB_ID = "webhooks"
PRUNE_EVERY_SECONDS = 3600.0


class WebhookJob:
    """The callable APScheduler runs; remembers when it last pruned the outbox."""

    def __init__(self) -> None:
        self.pruned_at: float | None = None

    def __call__(self) -> None:
        rt = jobs.current()
        if rt.stop.is_set():
            return
        from newsletter.usecases.webhooks import deliver, prune

        with rt.running(JOB_ID) as mine:
            if not mine:
                return
            try:
                report = deliver(rt.store, stop=rt.stop)
                if self.pruned_at is None or time.monotonic() - self.pruned_at >= PRUNE_EVERY_SECONDS:
                    prune(rt.store)
                    self.pruned_at = time.monotonic()
            except Exception:  # noqa: BLE001 - a failed pass (database restarting) is retried next time
                jobs.log.exception("webhooks: the delivery pass failed; retrying at the next one")
                return
        for url in report.disabled:
            jobs.log.warning("webhooks: disabled %s after repeated failures (newsletter webhooks list; "
                             "newsletter webhooks enable ID when it is fixed)", url)
        if report.busy:
            jobs.log.info("webhooks: delivered %s, retrying %s, given up %s, released %s", report.delivered,
                          report.retrying, report.given_up, report.released)


def add_job(scheduler, seconds: float) -> None:
    """Run delivery passes every ``seconds`` (the daemon's sync interval), starting now."""
    from newsletter.store.models import utcnow

    scheduler.add_job(WebhookJob(), "interval", seconds=seconds, next_run_time=utcnow(), id=JOB_ID,
                      jobstore="internal", misfire_grace_time=None, coalesce=True, max_instances=2)
