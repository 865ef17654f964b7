"""Recurring sends: on a cron expression, the newest new article of a folder goes to a list.

"New" means newer (by file modification time) than every article of the
folder already sent to that list, and not itself sent: a run sends the newest
such article, and a run with none is *skipped* -- recorded in
``schedule_runs``, not an error. An article counts as sent once a campaign of
it to the list has been scheduled, started or sent (cancelled and missed
campaigns do not count). A run whose article fails the pre-flight checks is
recorded as ``error`` and sends nothing. (A firing is the daemon's job:
:func:`newsletter.scheduler.jobs.run_schedule`.)

Cron expressions have five fields (``0 9 * * MON``) or six, seconds first
(``*/5 * * * * *``), evaluated in the schedule's time zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsletter.errors import InputError
from newsletter.scheduling.times import get_zone
from newsletter.store import scheduling as q
from newsletter.vocabulary import CampaignStatus

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
# A campaign of these statuses carries its edition (a draft, a cancelled or missed one does not).
COUNTS_AS_SENT = tuple(str(s) for s in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED,
                                        CampaignStatus.STOPPED, CampaignStatus.SENT))


def cron_trigger(expression: str, zone_name: str):
    """An APScheduler CronTrigger; InputError for an expression it cannot read."""
    from apscheduler.triggers.cron import CronTrigger

    zone = get_zone(zone_name)
    fields = expression.split()
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expression, timezone=zone)
        if len(fields) == 6:
            names = ("second", "minute", "hour", "day", "month", "day_of_week")
            return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=zone)
    except ValueError as exc:
        raise InputError(f"cannot read the cron expression {expression!r}: {exc}",
                         hint='five fields, e.g. "0 9 * * MON" (09:00 every Monday)') from None
    raise InputError(f"cannot read the cron expression {expression!r}: it has {len(fields)} fields",
                     hint='five fields, e.g. "0 9 * * MON" (09:00 every Monday), or six with seconds first')


def articles_in(folder: Path) -> list[Path]:
    """The folder's article files, newest first (modification time, then name)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def newest_unsent(session, workspace: Path, folder: Path, list_name: str) -> Path | None:
    """The article a run would send now, or None when nothing is new."""
    sent = set()
    for path in q.sent_article_paths(session, list_name, COUNTS_AS_SENT):
        candidate = Path(path) if Path(path).is_absolute() else workspace / path
        sent.add(candidate.resolve())
    articles = articles_in(folder)
    sent_times = [a.stat().st_mtime for a in articles if a.resolve() in sent]
    newest_sent = max(sent_times, default=float("-inf"))
    for article in articles:
        if article.resolve() not in sent and article.stat().st_mtime > newest_sent:
            return article
    return None


def add_schedule(store, settings, folder: str, list_name: str, cron: str, zone: str, transport: str,
                 options: dict[str, Any]) -> tuple[int, Any]:
    """Store a recurring schedule; returns its id and its cron trigger (for the next fire time)."""
    trigger = cron_trigger(cron, zone)
    path = Path(folder).resolve()
    if not path.is_dir():
        raise InputError(f"{folder} is not a folder", hint="--cron sends the newest article of a folder")
    with store.session() as session:
        from newsletter.store.audience import get_list

        get_list(session, list_name)
        schedule = q.Schedule(folder=str(path), list_name=list_name, cron=cron, timezone=zone,
                              transport=transport, options=options, active=True)
        session.add(schedule)
        session.flush()
        return schedule.id, trigger
