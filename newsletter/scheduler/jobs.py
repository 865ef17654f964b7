"""What the daemon's jobs run. Each job takes ids only; the daemon installs a
:class:`Runtime` (store, settings, its lease holder name, a stop event) first.

Exactly once: a plain campaign starts through ``engine.sender.start_campaign``,
whose ``scheduled -> sending`` claim is a conditional update, so a Conflict
just means another process got there first. A campaign whose time moved
(reschedule) or passed beyond the misfire grace is not started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import Conflict, NewsletterError
from newsletter.scheduling import waves as wave_runs
from newsletter.scheduling.times import show
from newsletter.store import scheduling as q
from newsletter.store.models import Campaign, utcnow
from newsletter.vocabulary import CampaignStatus

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store.db import Store

log = logging.getLogger("newsletter.scheduling")
DUE_TOLERANCE = timedelta(seconds=1)


@dataclass
class Runtime:
    """The daemon's shared state, reachable from job threads."""

    store: Store
    settings: Settings
    holder: str
    stop: threading.Event = field(default_factory=threading.Event)
    inflight: set = field(default_factory=set)
    lock: threading.Condition = field(default_factory=threading.Condition)
    lease_acquired_at: datetime | None = None
    clock: Callable[[], datetime] = utcnow  # the UTC clock of quota windows (tests inject one)

    @contextmanager
    def running(self, key):
        """Mark ``key`` busy for the block; yields False when it already is (the job runs once at a time)."""
        with self.lock:
            if key in self.inflight:
                yield False
                return
            self.inflight.add(key)
        try:
            yield True
        finally:
            with self.lock:
                self.inflight.discard(key)
                self.lock.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: not self.inflight, timeout)

    @property
    def grace(self) -> int:
        return self.settings.misfire_grace_seconds


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("no scheduler runtime installed (jobs run inside newsletter run)")
    return _runtime


def mark_missed(rt: Runtime, campaign_id: int, due: datetime) -> bool:
    """``scheduled -> missed`` (conditional) for a campaign whose time passed beyond the grace."""
    late = (utcnow() - due).total_seconds()
    with rt.store.session() as session:
        done = q.claim_scheduled(session, campaign_id, CampaignStatus.MISSED, (CampaignStatus.SCHEDULED,), error=(
            f"missed: it was due at {show(due, 'UTC')}, {late:.0f} s before the scheduler could send it "
            f"(misfire grace {rt.grace} s)"))
        if done:
            q.set_waves(session, campaign_id, q.WAVE_PENDING, q.WAVE_MISSED)
    if done:
        log.warning("campaign %s missed: due at %s, more than the grace of %s s ago", campaign_id,
                    show(due, "UTC"), rt.grace)
    return done


@contextmanager
def _job(campaign_id: int):
    """The daemon's runtime while this process works on the campaign; None when it must not
    (the daemon is stopping, or another job of this process already has the campaign)."""
    rt = current()
    if rt.stop.is_set():
        yield None
        return
    with rt.running(campaign_id) as mine:
        yield rt if mine else None


def fire_campaign(campaign_id: int) -> None:
    """The job of a scheduled campaign: start it (or its due waves) if it is still due."""
    with _job(campaign_id) as rt:
        if rt is None:
            return
        with rt.store.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
                log.info("campaign %s is %s; nothing to start", campaign_id,
                         campaign.status if campaign else "gone")
                return
            due, transport = campaign.scheduled_at, campaign.transport
            has_waves = bool(q.waves_of(session, campaign_id))
        now = utcnow()
        if has_waves:
            _run_waves(rt, campaign_id, transport, now)
        elif due is None or due > now + DUE_TOLERANCE:
            log.info("campaign %s now starts at %s (rescheduled); not yet", campaign_id, show(due, "UTC"))
        elif (now - due).total_seconds() > rt.grace:
            mark_missed(rt, campaign_id, due)
        else:
            _start(rt, campaign_id, transport)


def _start(rt: Runtime, campaign_id: int, transport: str) -> None:
    """Start a due campaign through the dispatcher the settings call for (here, or queued for the workers)."""
    from newsletter.usecases.dispatch import ThisMachine, Watch, dispatcher_for

    dispatcher = dispatcher_for(rt.store, rt.settings)
    ab_test = _ab_test(rt, campaign_id)
    if not dispatcher.on_workers or ab_test:  # A/B tests are sent here, by the daemon's clock (engine.abtests)
        here = ThisMachine(rt.store, rt.settings)
        watch = Watch(stop=rt.stop, clock=rt.clock) if ab_test else Watch(stop=rt.stop)
        send(rt, campaign_id, transport, "starting", lambda: here.start(campaign_id, watch))
        return
    try:
        dispatcher.start(campaign_id, Watch(stop=rt.stop, follow=False,
                                            note=lambda text: log.info("campaign %s: %s", campaign_id, text)))
    except Conflict:
        log.info("campaign %s was started by another process", campaign_id)


def _resume_here(rt: Runtime, campaign_id: int):
    """Resume on this machine: the daemon continues sends it (or a dead local sender) began, even with a broker."""
    from newsletter.usecases.dispatch import ThisMachine, Watch

    return ThisMachine(rt.store, rt.settings).resume(campaign_id, Watch(stop=rt.stop, clock=rt.clock))


def _run_waves(rt: Runtime, campaign_id: int, transport: str, now: datetime) -> None:
    for wave in wave_runs.due_waves(rt.store, campaign_id, now):
        if rt.stop.is_set():
            return
        if (now - wave.send_at).total_seconds() > rt.grace:
            if wave_runs.miss_wave(rt.store, wave.id):
                log.warning("campaign %s: wave %s missed (beyond the grace of %s s)", campaign_id,
                            wave_runs.wave_label(wave), rt.grace)
            continue
        rows = wave_runs.begin_wave(rt.store, campaign_id, wave.id, utcnow())
        if rows is None:
            log.info("campaign %s: wave already started elsewhere", campaign_id)
            return
        log.info("campaign %s: wave %s, %s recipients", campaign_id, wave_runs.wave_label(wave), rows)
        # The wave's claim left no heartbeat, so the engine's resume sees no live sender and continues.
        send(rt, campaign_id, transport, "sending wave", lambda: _resume_here(rt, campaign_id))
    wave_runs.settle(rt.store, campaign_id)


def resume_orphan(campaign_id: int, orphan: bool = False) -> None:
    """The job that resumes a campaign left ``sending`` (or paused by a stopping daemon).

    ``orphan``: a daemon we took the lease from was sending it, so it is dead
    and its heartbeat means nothing; clearing it lets the engine resume now
    instead of after its staleness delay.
    """
    with _job(campaign_id) as rt:
        if rt is None:
            return
        with rt.store.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                return
            transport = campaign.transport
            if orphan:
                q.clear_heartbeat(session, campaign_id)
        send(rt, campaign_id, transport, "resuming", lambda: _resume_here(rt, campaign_id))
        with rt.store.session() as session:
            has_waves = bool(q.waves_of(session, campaign_id))
        if has_waves:
            wave_runs.settle(rt.store, campaign_id)


def resume_after_quota(campaign_id: int) -> None:
    """The job that resumes a campaign a quota paused, once its window opened (it may pause again)."""
    with _job(campaign_id) as rt:
        if rt is None:
            return
        with rt.store.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if (campaign is None or campaign.status != CampaignStatus.PAUSED or campaign.resume_at is None
                    or campaign.resume_at > rt.clock()):
                return  # resumed by hand, cancelled, or not yet
            transport = campaign.transport
        from newsletter.usecases.dispatch import Watch, dispatcher_for

        dispatcher = dispatcher_for(rt.store, rt.settings)
        if not dispatcher.on_workers or _ab_test(rt, campaign_id):
            send(rt, campaign_id, transport, "resuming after its quota window opened",
                 lambda: _resume_here(rt, campaign_id))
            return
        try:  # the workers send it again: queue its chunks
            dispatcher.resume(campaign_id, Watch(stop=rt.stop, follow=False, clock=rt.clock,
                                                 note=lambda text: log.info("campaign %s: %s", campaign_id, text)))
        except NewsletterError as exc:
            log.error("campaign %s: %s%s", campaign_id, exc.message, f" ({exc.hint})" if exc.hint else "")


def _ab_test(rt: Runtime, campaign_id: int) -> bool:
    """Whether the campaign is an A/B test: the daemon sends those itself, never through the workers."""
    from newsletter.store.abtests import load_test

    with rt.store.session() as session:
        return load_test(session, campaign_id) is not None


def send(rt: Runtime, campaign_id: int, transport_name: str, verb: str, run) -> None:
    """Run ``run()`` (a send through ``transport_name``) with logging; the daemon never dies of one campaign."""
    with rt.store.session() as session:
        q.record_send(session, campaign_id, rt.holder)
    handed_over = False
    try:
        log.info("campaign %s: %s via %s", campaign_id, verb, transport_name)
        report = run()
        handed_over = report.status == CampaignStatus.PAUSED and rt.stop.is_set()
        log.info("campaign %s: %s (sent %s, failed %s, unknown %s, skipped %s) in %.1f s%s", campaign_id,
                 report.status, report.sent, report.failed, report.unknown, report.skipped, report.seconds,
                 "; the next newsletter run continues it" if handed_over else "")
        if report.status == CampaignStatus.PAUSED and report.resume_at is not None:
            log.info("campaign %s: paused: %s", campaign_id, report.pause_reason)
    except Conflict as exc:
        log.info("campaign %s: not started here: %s", campaign_id, exc.message)
    except NewsletterError as exc:
        log.error("campaign %s: %s%s", campaign_id, exc.message, f" ({exc.hint})" if exc.hint else "")
    except Exception:  # noqa: BLE001 - a bug in one send must not stop the daemon
        log.exception("campaign %s: the send failed", campaign_id)
    finally:
        if not handed_over:  # kept: tells the next daemon this campaign is its to continue
            with rt.store.session() as session:
                q.forget_send(session, campaign_id)


def fire_schedule(schedule_id: int) -> None:
    """The job of a recurring schedule (see :mod:`newsletter.scheduling.recurring`)."""
    rt = current()
    if rt.stop.is_set():
        return
    with rt.running(f"schedule-{schedule_id}") as mine:
        if mine:
            campaign_id = run_schedule(rt, schedule_id)
    if mine and campaign_id is not None:
        fire_campaign(campaign_id)


def run_schedule(rt: Runtime, schedule_id: int) -> int | None:
    """One firing of a recurring schedule: create a due campaign of the folder's newest new
    article; returns its id (None: skipped, or an error recorded on the run)."""
    from newsletter.scheduling.recurring import newest_unsent
    from newsletter.usecases.campaigns import create_due_campaign

    with rt.store.session() as session:
        schedule = session.get(q.Schedule, schedule_id)
        if schedule is None or not schedule.active:
            return None
        article = newest_unsent(session, Path(rt.settings.workspace), Path(schedule.folder), schedule.list_name)
        list_name, transport, zone, options = (schedule.list_name, schedule.transport, schedule.timezone,
                                               dict(schedule.options or {}))
    if article is None:
        _record_run(rt, schedule_id, q.RUN_SKIPPED, "", None, "nothing new in the folder")
        log.info("recurring schedule %s: nothing new; run skipped", schedule_id)
        return None
    try:
        campaign_id = create_due_campaign(rt.store, rt.settings, str(article), list_name, transport, zone, options)
    except NewsletterError as exc:
        _record_run(rt, schedule_id, q.RUN_ERROR, str(article), None, exc.message)
        log.error("recurring schedule %s: %s: %s", schedule_id, article.name, exc.message)
        return None
    _record_run(rt, schedule_id, q.RUN_SENT, str(article), campaign_id, "")
    log.info("recurring schedule %s: %s becomes campaign %s", schedule_id, article.name, campaign_id)
    return campaign_id


def _record_run(rt: Runtime, schedule_id: int, outcome: str, article: str, campaign_id: int | None,
                detail: str) -> None:
    with rt.store.session() as session:
        session.add(q.ScheduleRun(schedule_id=schedule_id, outcome=outcome, article=article,
                                  campaign_id=campaign_id, detail=detail, fired_at=utcnow()))
