"""``newsletter run``: the scheduler daemon, the one process that runs APScheduler for a database.

It sits above the use cases (it calls them, like the command line does):

- :mod:`daemon`: the lease, APScheduler wiring, signals;
- :mod:`sync`: jobs rebuilt from the campaigns and schedules tables, the scheduler's only input;
- :mod:`jobs`: what a job runs (start a due campaign or its waves, resume an orphan, fire a
  recurring schedule), ids only.

The rules it applies (times and zones, waves, cron folders) live below, in
:mod:`newsletter.scheduling`.
"""
