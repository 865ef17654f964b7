"""Scheduling: queue sends for a time (in the reader's time zone too) and keep them through restarts.

- :mod:`times`: parse ``TIME``/``--tz`` (IANA zones, DST gap refused, fold = first), show local times;
- :mod:`planning`: schedule, cancel and reschedule campaigns (conditional updates on their status);
- :mod:`waves`: per-subscriber local time, one wave per distinct UTC send time;
- :mod:`recurring`: cron schedules over a folder of articles (newest new one, or a recorded skip);
- :mod:`daemon`, :mod:`sync`, :mod:`jobs`: ``newsletter run`` -- one lease-holding
  APScheduler 3 BlockingScheduler, synced from the campaigns table, whose jobs carry ids only.
"""
