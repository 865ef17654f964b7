"""The daemon's feed jobs: every active feed is polled on its ``--every`` period.

At each sync (:meth:`newsletter.scheduler.daemon.Daemon.sync`) the jobs
``feed-<id>`` are made to match the active feeds (added, changed, removed).
A firing polls the feed (:func:`newsletter.usecases.feeds.poll_feed`: its
items and campaigns are committed together) and then starts the campaigns it
created. A daemon stopped or killed between the two leaves them
``scheduled`` for now: the next daemon's sync starts them within the misfire
grace, like any scheduled campaign; one killed mid-send is resumed.
"""

from __future__ import annotations

from newsletter.errors import NewsletterError
from newsletter.scheduler import jobs

FIRE_FEED = "newsletter.scheduler.feeds:fire_feed"
PREFIX = "feed-"


def feed_job_id(feed_id: int) -> str:
    return f"{PREFIX}{feed_id}"


def sync_feeds(daemon) -> None:
    """Make the ``feed-<id>`` jobs match the active feeds."""
    from newsletter.scheduling.every import every_trigger
    from newsletter.store.feeds import active_feeds

    rt, scheduler = daemon.runtime, daemon.scheduler
    with rt.store.session() as session:
        wanted = {feed.id: (feed.name, feed.every, feed.timezone) for feed in active_feeds(session)}
    existing = {job.id: job for job in scheduler.get_jobs(jobstore="default") if job.id.startswith(PREFIX)}
    for feed_id, (name, every, zone) in wanted.items():
        signature = f"feed {name}: {every} ({zone})"
        job = existing.get(feed_job_id(feed_id))
        if job is not None and job.name == signature:
            continue
        try:
            trigger = every_trigger(every, zone)
        except NewsletterError as exc:
            jobs.log.error("feed %s: %s", name, exc.message)
            continue
        scheduler.add_job(FIRE_FEED, trigger, args=[feed_id], id=feed_job_id(feed_id), name=signature,
                          misfire_grace_time=rt.grace, coalesce=True, max_instances=1, replace_existing=True)
        jobs.log.info("feed %s: polled %s (%s)", name, every, zone)
    for job_id in existing.keys() - {feed_job_id(feed_id) for feed_id in wanted}:
        scheduler.remove_job(job_id, jobstore="default")


def fire_feed(feed_id: int) -> None:
    """A feed's job: poll it, then start the campaigns the poll created (each through the daemon's own path)."""
    from newsletter.usecases.feeds import poll_feed

    rt = jobs.current()
    if rt.stop.is_set():
        return
    campaigns: list[int] = []
    with rt.running(feed_job_id(feed_id)) as mine:
        if not mine:
            return
        try:
            campaigns = poll_feed(rt.store, rt.settings, feed_id).campaigns
        except Exception:  # noqa: BLE001 - a bug or a lost database in one poll must not stop the daemon
            jobs.log.exception("feed %s: the poll failed", feed_id)
    for campaign_id in campaigns:
        jobs.fire_campaign(campaign_id)
