"""The daemon's sequence job: a round every sync interval (see :mod:`newsletter.engine.sequences`).

The job is the daemon's own (the "internal" job store), one round at a
time. Due steps are handed over and sent every round; new members are
looked for every ``ENROL_ROUNDS`` rounds, at most every
``ENROL_MAX_SECONDS`` (that look reads every member's join time: 10 s
apart with the default 2 s sync, so a welcome mail goes within about ten
seconds of a join or confirmation). Its first round settles what a dead
daemon left in flight, and enrols.
"""

from __future__ import annotations

import time

from newsletter.scheduler import jobs

JOB_ID = "sequences"
ENROL_ROUNDS = 5
ENROL_MAX_SECONDS = 10.0


class SequenceJob:
    """The callable APScheduler runs; remembers whether its first round has run."""

    def __init__(self, seconds: float) -> None:
        self.first = True
        self.enrol_every = min(ENROL_MAX_SECONDS, ENROL_ROUNDS * seconds)
        self.enrolled_at: float | None = None  # time.monotonic() of the last round that enrolled

    def __call__(self) -> None:
        rt = jobs.current()
        if rt.stop.is_set():
            return
        from newsletter.usecases.sequences import run_round

        with rt.running(JOB_ID) as mine:
            if not mine:
                return
            started = time.monotonic()
            enrol = self.enrolled_at is None or started - self.enrolled_at >= self.enrol_every
            try:
                report = run_round(rt.store, rt.settings, rt.holder, first=self.first, enrol=enrol, stop=rt.stop)
            except Exception:  # noqa: BLE001 - a failed round (database restarting) is retried next time
                jobs.log.exception("sequences: the round failed; retrying at the next one")
                return
            self.first = False
            if enrol:
                self.enrolled_at = started
        if report.orphans:
            jobs.log.warning("sequences: %s message(s) left in flight by a stopped scheduler are now unknown "
                             "(never resent blindly)", report.orphans)
        if report.busy:
            jobs.log.info("sequences: enrolled %s, stopped %s, queued %s, missed %s, sent %s, failed %s, "
                          "unknown %s, skipped %s", report.enrolled, report.stopped, report.queued,
                          report.missed + report.stale, report.sent, report.failed, report.unknown, report.skipped)


def add_job(scheduler, seconds: float) -> None:
    """Run sequence rounds every ``seconds`` (the daemon's sync interval), starting now.

    Two instances may be started so that APScheduler never warns when a round outlasts the
    interval; the second finds the round busy (``Runtime.running``) and returns at once.
    """
    from newsletter.store.models import utcnow

    scheduler.add_job(SequenceJob(seconds), "interval", seconds=seconds, next_run_time=utcnow(), id=JOB_ID,
                      jobstore="internal", misfire_grace_time=None, coalesce=True, max_instances=2)
