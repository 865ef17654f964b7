"""How often a feed is polled, as people write it: ``--every "mon 09:00"``.

Accepted, in the feed's time zone:

- ``DAYS HH:MM``: DAYS is ``daily``, ``weekdays``, ``weekends`` or day
  names (``mon``, ``monday``, comma-separated: ``mon,thu``);
- ``HH:MM`` alone: every day at that time;
- ``hourly``: at minute 0 of every hour;
- a cron expression, five fields (``0 9 * * MON``) or six with seconds
  first (as ``newsletter schedule --cron`` takes).

Anything else is an InputError with examples.
"""

from __future__ import annotations

import re

from newsletter.errors import InputError

EVERY_HINT = 'e.g. --every "mon 09:00", "mon,thu 07:30", "daily 09:00", "weekdays 08:00", "hourly" or "0 9 * * MON"'
_DAYS = {"mon": "mon", "tue": "tue", "wed": "wed", "thu": "thu", "fri": "fri", "sat": "sat", "sun": "sun",
         "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
         "saturday": "sat", "sunday": "sun", "tues": "tue", "thur": "thu", "thurs": "thu"}
_GROUPS = {"daily": "*", "day": "*", "everyday": "*", "weekdays": "mon-fri", "weekends": "sat,sun"}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def every_trigger(every: str, zone: str):
    """The APScheduler trigger of ``every`` in ``zone``; InputError when it cannot be read."""
    from newsletter.scheduling.recurring import cron_trigger

    return cron_trigger(every_cron(every), zone)


def every_cron(every: str) -> str:
    """``every`` as a cron expression (five fields, or six when given so)."""
    text = " ".join((every or "").split()).lower()
    if not text or len(text) > 100:
        raise InputError(f"cannot read --every {every[:100]!r}", hint=EVERY_HINT)
    if text == "hourly":
        return "0 * * * *"
    fields = text.split(" ")
    if len(fields) in (5, 6):
        return text
    if len(fields) == 1:
        days, clock = "*", fields[0]
    elif len(fields) == 2:
        days, clock = _days(fields[0], every), fields[1]
    else:
        raise InputError(f"cannot read --every {every!r}", hint=EVERY_HINT)
    match = _TIME.match(clock)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise InputError(f"cannot read the time in --every {every!r} (HH:MM, 24-hour)", hint=EVERY_HINT)
    return f"{int(match.group(2))} {int(match.group(1))} * * {days}"


def _days(word: str, every: str) -> str:
    if word in _GROUPS:
        return _GROUPS[word]
    names = [part for part in word.split(",") if part]
    if not names or any(name not in _DAYS for name in names):
        raise InputError(f"cannot read the days in --every {every!r}", hint=EVERY_HINT)
    return ",".join(dict.fromkeys(_DAYS[name] for name in names))
