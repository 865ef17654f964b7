"""One round of the daemon's sync: make the daemon's jobs match the tables.

The campaigns and schedules tables are the scheduler's only input: no other
process writes jobs, and the daemon keeps them in memory (APScheduler's job
stores are not to be shared between processes), so a daemon that starts
rebuilds them all at its first sync.

For every ``scheduled`` campaign there is one job ``campaign-<id>`` at its
``scheduled_at`` (a local-time campaign's next wave); one past the misfire
grace becomes ``missed`` here instead. Every active recurring schedule has a
job ``schedule-<id>`` with its cron trigger. Jobs with no row behind them
(cancelled, started elsewhere) go. A ``sending`` campaign whose sender is
dead is resumed: a process on this host that no longer exists, or one on
another host whose heartbeat is older than the staleness limit
(``NEWSLETTER_SENDER_STALE_SECONDS``). A sender on another machine with a
fresh heartbeat is alive, however long its campaign has been sending. A
campaign a quota paused (``resume_at``) is resumed once its window opens
(``resume-<id>`` job, :func:`newsletter.scheduler.jobs.resume_after_quota`).
"""

from __future__ import annotations

from datetime import datetime

from newsletter.engine.fencing import sender_alive, stale_seconds
from newsletter.scheduler import jobs
from newsletter.store import scheduling as q
from newsletter.store.models import utcnow
from newsletter.vocabulary import CampaignStatus

# Jobs carry ids only and name their function, so a job never holds an object.
FIRE_CAMPAIGN = "newsletter.scheduler.jobs:fire_campaign"
FIRE_SCHEDULE = "newsletter.scheduler.jobs:fire_schedule"


def campaign_job_id(campaign_id: int) -> str:
    return f"campaign-{campaign_id}"


def schedule_job_id(schedule_id: int) -> str:
    return f"schedule-{schedule_id}"


def campaign_job_options(campaign_id: int, run_at: datetime, grace_seconds: int | None) -> dict:
    """``add_job`` arguments for a campaign's one-shot job (never APScheduler's 1 s misfire default)."""
    return dict(func=FIRE_CAMPAIGN, trigger="date", run_date=run_at, args=[campaign_id],
                id=campaign_job_id(campaign_id), name=f"campaign {campaign_id}",
                misfire_grace_time=grace_seconds, coalesce=True, max_instances=1, replace_existing=True)


def plan_sync(daemon) -> None:
    rt, scheduler = daemon.runtime, daemon.scheduler
    now, limit = utcnow(), stale_seconds(rt.settings)
    with rt.store.session() as session:
        scheduled = [(c.id, c.scheduled_at) for c in q.campaigns_in(session, (CampaignStatus.SCHEDULED,))
                     if c.scheduled_at]
        with_waves = q.campaigns_with_waves(session, [cid for cid, _ in scheduled])
        stale = [c.id for c in q.campaigns_in(session, (CampaignStatus.SENDING,))
                 if not sender_alive(c.sender, c.heartbeat_at, limit)]
        schedules = [(s.id, s.cron, s.timezone) for s in q.active_schedules(session)]
    existing = {job.id: job for job in scheduler.get_jobs(jobstore="default")}
    wanted = set()
    for campaign_id, due in scheduled:
        late = (now - due).total_seconds() > rt.grace
        if late and campaign_id not in with_waves and campaign_id not in rt.inflight:
            jobs.mark_missed(rt, campaign_id, due)
            continue
        wanted.add(campaign_job_id(campaign_id))
        if campaign_id in rt.inflight:  # firing now: its job is already gone from the scheduler
            continue
        if daemon.known.get(campaign_id) != due:
            daemon.known[campaign_id] = due
            jobs.log.info("campaign %s: queued for %s", campaign_id, due.isoformat())
        _ensure_campaign_job(scheduler, existing.get(campaign_job_id(campaign_id)), campaign_id, due,
                             None if campaign_id in with_waves else rt.grace)
    for schedule_id, cron, zone in schedules:
        wanted.add(schedule_job_id(schedule_id))
        _ensure_schedule_job(scheduler, existing.get(schedule_job_id(schedule_id)), schedule_id, cron, zone,
                             rt.grace)
    for job_id in existing.keys() - wanted:
        if job_id.startswith(("campaign-", "schedule-")):
            scheduler.remove_job(job_id, jobstore="default")
    for campaign_id in stale:
        if campaign_id not in rt.inflight and scheduler.get_job(f"resume-{campaign_id}") is None:
            daemon._submit_resume(campaign_id, False)
    for campaign_id in paused_due(rt):
        if campaign_id not in rt.inflight and scheduler.get_job(f"resume-{campaign_id}") is None:
            jobs.log.info("campaign %s: its quota window opened; resuming", campaign_id)
            scheduler.add_job(jobs.resume_after_quota, args=[campaign_id], id=f"resume-{campaign_id}",
                              jobstore="internal", replace_existing=True, misfire_grace_time=None)


def paused_due(rt) -> list[int]:
    """Campaigns paused by a quota whose window has opened by ``rt.clock()``."""
    with rt.store.session() as session:
        return q.paused_until(session, rt.clock())


def _ensure_campaign_job(scheduler, job, campaign_id, due, grace) -> None:
    if job is not None and job.next_run_time == due and job.misfire_grace_time == grace:
        return
    scheduler.add_job(**campaign_job_options(campaign_id, due, grace))


def _ensure_schedule_job(scheduler, job, schedule_id, cron, zone, grace) -> None:
    from newsletter.scheduling.recurring import cron_trigger

    signature = f"schedule {schedule_id}: {cron} ({zone})"
    if job is not None and job.name == signature:
        return
    scheduler.add_job(FIRE_SCHEDULE, cron_trigger(cron, zone), args=[schedule_id], id=schedule_job_id(schedule_id),
                      name=signature, misfire_grace_time=grace, coalesce=True, max_instances=1,
                      replace_existing=True)
    jobs.log.info("recurring schedule %s: %s (%s)", schedule_id, cron, zone)
