"""``newsletter run``: the one process that runs APScheduler for a database.

- The lease: a row in ``scheduler_lease`` with an expiry the daemon renews
  every third of its length. A second daemon refuses to start while it is
  held (or, with ``wait``, waits); it takes over an expired lease, or at once
  one whose holder is a dead process on this host.
- The sync: the campaigns and schedules tables are the scheduler's only
  input. Its jobs live in memory (no other process writes them; APScheduler's
  job stores must not be shared between processes): at start and every
  ``sync_seconds`` the daemon reconciles them with the tables, adding, moving
  and removing jobs, marking ``missed`` what is past the grace, and resuming
  sends whose sender died.
- Misfires: campaign jobs carry ``misfire_grace_time`` =
  ``settings.misfire_grace_seconds`` (never APScheduler's 1 s) and
  ``coalesce=True``; an APScheduler "missed" event also marks the campaign.
- Stopping: SIGTERM or Ctrl-C sets the stop event (the engine finishes the
  batch in flight), shuts the scheduler down, waits for the sends, releases
  the lease. A send paused this way is continued by the next daemon.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Any

from newsletter.engine.fencing import dead_on_this_host, new_sender_id
from newsletter.errors import Conflict
from newsletter.scheduler import jobs
from newsletter.scheduling.times import show
from newsletter.store import scheduling as q
from newsletter.store.models import utcnow
from newsletter.vocabulary import CampaignStatus

if TYPE_CHECKING:
    from newsletter.store.db import Store
    from newsletter.store.scheduling import SchedulerLease

LEASE_NAME = "scheduler"
SYNC_SECONDS = 2.0  # how often the daemon syncs its jobs from the tables (NEWSLETTER_SCHEDULER_SYNC_SECONDS)
LEASE_SECONDS = 30.0  # how long its lease lasts unless renewed (NEWSLETTER_SCHEDULER_LEASE_SECONDS)
log = jobs.log


def take_lease(store: Store, holder: str, seconds: float) -> tuple[bool, SchedulerLease | None]:
    """Try once to hold the lease; returns (ours, the lease row as it stands)."""
    with store.session() as session:
        current = q.lease_of(session, LEASE_NAME)
        dead = current.holder if current is not None and dead_on_this_host(current.holder) else None
        ours = q.acquire_lease(session, LEASE_NAME, holder, seconds, take_from=dead)
    with store.session() as session:
        return ours, q.lease_of(session, LEASE_NAME)


def acquire(store, holder: str, seconds: float, wait: bool, poll: float) -> None:
    """Hold the lease or raise Conflict (``wait``: poll until it is free)."""
    import time

    announced = False
    while True:
        ours, lease = take_lease(store, holder, seconds)
        if ours:
            return
        if lease is None:  # released between our try and our look: try again now
            continue
        if not wait:
            raise Conflict(
                f"another newsletter run holds the scheduler lease ({lease.holder}, until "
                f"{show(lease.expires_at, 'UTC')})",
                hint="only one daemon may run per database; stop the other one, or start this one with --wait "
                     "to take over when its lease expires")
        if not announced:
            log.info("waiting for the scheduler lease held by %s", lease.holder)
            announced = True
        time.sleep(poll)


class Daemon:
    """A BlockingScheduler owned by the lease holder, synced from the campaigns table."""

    def __init__(self, store, settings, *, sync_seconds: float = SYNC_SECONDS, lease_seconds: float = LEASE_SECONDS):
        self.store, self.settings = store, settings
        self.sync_seconds, self.lease_seconds = sync_seconds, lease_seconds
        self.runtime = jobs.Runtime(store, settings, new_sender_id())  # host:pid:random, like a sender
        self.scheduler: Any = None  # APScheduler's BlockingScheduler (no type hints), built by run()
        self.exit_code = 0
        self.known: dict[int, object] = {}  # campaign id -> the due time last logged

    def run(self, wait: bool = False) -> int:
        """Run until stopped; returns the exit code."""
        from newsletter.engine.fencing import stale_seconds

        stale_seconds(self.settings)  # a bad staleness limit is a one-line error at start, not every sync
        acquire(self.store, self.runtime.holder, self.lease_seconds, wait, poll=min(1.0, self.lease_seconds / 3))
        self.runtime.lease_acquired_at = utcnow()
        jobs.install(self.runtime)
        try:
            self.scheduler = self._build()
            self._resume_orphans()
            previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            log.info("newsletter run: scheduler started as %s (sync every %s s, misfire grace %s s, lease %s s)",
                     self.runtime.holder, self.sync_seconds, self.settings.misfire_grace_seconds, self.lease_seconds)
            try:
                self.scheduler.start()  # blocks until shutdown
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            self.runtime.stop.set()
            if not self.runtime.wait_idle(timeout=0.1):
                log.info("waiting for the batch in flight to finish")
                self.runtime.wait_idle()
        finally:
            jobs.install(None)
            with self.store.session() as session:
                q.release_lease(session, LEASE_NAME, self.runtime.holder)
        log.info("newsletter run: stopped")
        return self.exit_code

    def _build(self):
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        scheduler = BlockingScheduler(
            timezone=UTC,
            # "default": the campaigns' and schedules' jobs (rebuilt by sync); "internal": the daemon's own.
            jobstores={"default": MemoryJobStore(), "internal": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(8)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": self.settings.misfire_grace_seconds})
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        now = utcnow()
        scheduler.add_job(self.sync, "interval", seconds=self.sync_seconds, next_run_time=now, id="sync",
                          jobstore="internal", misfire_grace_time=None)
        scheduler.add_job(self._renew, "interval", seconds=max(0.2, self.lease_seconds / 3), id="lease",
                          jobstore="internal", misfire_grace_time=None)
        from newsletter.scheduler import sequences, webhooks

        sequences.add_job(scheduler, self.sync_seconds)  # welcome mail and drip sequences
        webhooks.add_job(scheduler, self.sync_seconds)  # outgoing webhooks from the outbox
        return scheduler

    def _on_signal(self, signum, _frame):
        if self.runtime.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("%s: stopping after the batch in flight", signal.Signals(signum).name)
        self.runtime.stop.set()
        self.scheduler.shutdown(wait=False)

    def _renew(self) -> None:
        with self.store.session() as session:
            kept = q.renew_lease(session, LEASE_NAME, self.runtime.holder, self.lease_seconds)
        if not kept and not self.runtime.stop.is_set():
            log.error("lost the scheduler lease to another process; stopping")
            self.exit_code = 1
            self.runtime.stop.set()
            self.scheduler.shutdown(wait=False)

    def _on_missed(self, event) -> None:
        if event.job_id.startswith("campaign-"):
            campaign_id = int(event.job_id.split("-", 1)[1])
            jobs.mark_missed(self.runtime, campaign_id, event.scheduled_run_time)

    def _on_error(self, event) -> None:
        log.error("job %s failed: %r", event.job_id, event.exception)

    def _resume_orphans(self) -> None:
        """Campaigns a dead daemon left ``sending`` (or paused when it stopped) resume at once."""
        from newsletter.engine.fencing import same_process

        with self.store.session() as session:
            orphans = q.sends_of_others(session, self.runtime.holder)
            for campaign in q.campaigns_in(session, (CampaignStatus.SENDING, CampaignStatus.PAUSED)):
                if campaign.id not in orphans:
                    continue
                beat = campaign.heartbeat_at
                # Its heartbeat means nothing only if the daemon we took the lease from was the sender,
                # and it has not beaten since. Anyone else (a manual resume elsewhere) is judged as usual.
                by_that_daemon = campaign.sender is None or same_process(campaign.sender, orphans[campaign.id])
                acquired = self.runtime.lease_acquired_at  # set by run() before this
                orphan = beat is None or (by_that_daemon and acquired is not None and beat <= acquired)
                self._submit_resume(campaign.id, orphan)

    def _submit_resume(self, campaign_id: int, orphan: bool) -> None:
        log.info("campaign %s: left unfinished by a stopped sender; resuming", campaign_id)
        self.scheduler.add_job(jobs.resume_orphan, args=[campaign_id, orphan], id=f"resume-{campaign_id}",
                               jobstore="internal", replace_existing=True, misfire_grace_time=None)

    def sync(self) -> None:
        """Reconcile the jobs with the campaigns and schedules tables (see the module docstring)."""
        if self.runtime.stop.is_set():
            return
        from newsletter.scheduler.feeds import sync_feeds
        from newsletter.scheduler.sync import plan_sync

        try:
            plan_sync(self)
            sync_feeds(self)
        except Exception:  # noqa: BLE001 - a failed round (database restarting) is retried next round
            log.exception("sync with the campaigns table failed; retrying in %s s", self.sync_seconds)


def run_daemon(store, settings, *, sync_seconds: float, lease_seconds: float, wait: bool) -> int:
    """Configure logging to stderr and run the daemon until SIGTERM/Ctrl-C."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").addHandler(handler)
    return Daemon(store, settings, sync_seconds=sync_seconds, lease_seconds=lease_seconds).run(wait=wait)

