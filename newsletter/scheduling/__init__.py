"""Scheduling rules: when a send goes out (in the reader's time zone too).

- :mod:`times`: parse ``TIME``/``--tz`` (IANA zones, DST gap refused, fold = first), show local times;
- :mod:`waves`: per-subscriber local time, one wave per distinct UTC send time;
- :mod:`recurring`: cron schedules over a folder of articles (newest new one, or a recorded skip).

Scheduling, cancelling and rescheduling a campaign are use cases
(:mod:`newsletter.usecases.planning`); the daemon that sends when due is
:mod:`newsletter.scheduler`.
"""
