"""APScheduler's job store on the workspace database, and the jobs' ids.

Jobs carry ids only (``fire_campaign(campaign_id)``), referenced by dotted
name, so the pickled job state never holds an object. The campaigns table is
the truth; the job store is the daemon's working copy, which its sync keeps
in line with the table. The CLI also writes a campaign's job row when it
schedules it (without running a scheduler), so the store shows what is
queued even while no daemon runs.
"""

from __future__ import annotations

from datetime import datetime, timezone

from newsletter.store.scheduling import JOBS_TABLE

FIRE_CAMPAIGN = "newsletter.scheduling.jobs:fire_campaign"
FIRE_SCHEDULE = "newsletter.scheduling.jobs:fire_schedule"


def campaign_job_id(campaign_id: int) -> str:
    return f"campaign-{campaign_id}"


def schedule_job_id(schedule_id: int) -> str:
    return f"schedule-{schedule_id}"


def job_store(engine):
    """A SQLAlchemyJobStore on ``engine`` using the ``apscheduler_jobs`` table (created by migration 0003)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    return SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)


def campaign_job_options(campaign_id: int, run_at: datetime, grace_seconds: int | None) -> dict:
    """``add_job`` arguments for a campaign's one-shot job (never APScheduler's 1 s misfire default)."""
    return dict(func=FIRE_CAMPAIGN, trigger="date", run_date=run_at, args=[campaign_id],
                id=campaign_job_id(campaign_id), name=f"campaign {campaign_id}",
                misfire_grace_time=grace_seconds, coalesce=True, max_instances=1, replace_existing=True)


def put_campaign_job(store, settings, campaign_id: int, run_at: datetime, *, waves: bool = False) -> None:
    """Write (or replace) the campaign's job row; wave campaigns check each wave's grace themselves.

    The job is built and written without starting a scheduler: a scheduler
    here, even a paused one, would process due jobs when it shuts down.
    """
    from apscheduler.job import Job
    from apscheduler.jobstores.base import ConflictingIdError
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger

    scheduler = BackgroundScheduler(timezone=timezone.utc)  # never started: only what Job needs
    jobs = job_store(store.engine)
    jobs.start(scheduler, "default")
    options = campaign_job_options(campaign_id, run_at, None if waves else settings.misfire_grace_seconds)
    job = Job(scheduler, id=options["id"], func=options["func"], trigger=DateTrigger(run_at, timezone=timezone.utc),
              executor="default", args=tuple(options["args"]), kwargs={}, name=options["name"],
              misfire_grace_time=options["misfire_grace_time"], coalesce=True, max_instances=1,
              next_run_time=run_at)
    try:
        jobs.add_job(job)
    except ConflictingIdError:
        jobs.update_job(job)


def drop_job(store, job_id: str) -> None:
    """Remove a job from the store if it is there (the daemon's sync would remove it anyway)."""
    from sqlalchemy import delete

    from newsletter.store.scheduling import apscheduler_jobs

    with store.session() as session:
        session.execute(delete(apscheduler_jobs).where(apscheduler_jobs.c.id == job_id))
