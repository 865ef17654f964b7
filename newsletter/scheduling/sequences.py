"""When a sequence's steps fall due: delays, times of day, subscriber zones.

A step says ``after: 3d`` (a delay: ``s``, ``m``, ``h``, ``d`` or ``w``;
from joining for the first step, from the previous step's due time after)
and optionally ``at: "09:00"`` (wall-clock time in the subscriber's zone,
or the sequence's zone when theirs is unknown).

- Without ``at``: due = base + delay.
- With ``at`` and a delay in whole days or weeks: the ``at`` time on the
  calendar day ``delay`` days after the base's own local day; when that
  moment is not after the base (``0d`` and a reader who joined after 09:00),
  the next day. "3d at 09:00" from Monday 15:00 is Thursday 09:00.
- With ``at`` and a shorter delay (``12h``): the first ``at`` at or after
  base + delay.

A wall-clock time inside a DST gap moves forward by the gap; in a fold the
first occurrence is used (as for local-time waves). Steps chain on due
times, not on when a message actually went, so a restart or a slow send
never shifts a reader's later steps.

Every function here is pure (``now`` and the base are passed in), so the
dry run, the daemon and the tests share one set of rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from newsletter.errors import InputError
from newsletter.scheduling.times import zone_or

_DELAY = re.compile(r"\A\s*(\d{1,6})\s*([smhdw])\s*\Z")
_AT = re.compile(r"\A\s*([01]?\d|2[0-3]):([0-5]\d)\s*\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DELAY_SECONDS = 366 * 86400  # a year between two steps is the longest that makes sense
DELAY_HINT = "write it as after: 0d, after: 3d, after: 1w (units s, m, h, d, w; at most a year)"
AT_HINT = 'write it as at: "09:00" (24-hour time, quoted)'


@dataclass(frozen=True)
class Timing:
    """One step's timing rule: ``seconds`` after its base, at ``at`` (``HH:MM``) if given."""

    seconds: int
    at: str | None = None

    @property
    def whole_days(self) -> bool:
        return self.seconds % 86400 == 0

    def label(self) -> str:
        text = describe_delay(self.seconds)
        return f"{text} at {self.at}" if self.at else text


def parse_delay(value: Any, where: str) -> int:
    """``after:`` as seconds; InputError naming ``where`` when it is not one number and a unit."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{where}: after: is missing or empty", hint=DELAY_HINT)
    text = str(value)
    if isinstance(value, int):  # "after: 0" in YAML: a bare number is days, the most common unit
        text = f"{value}d"
    match = _DELAY.match(text)
    if not match:
        raise InputError(f"{where}: after: {text[:40]!r} is not a delay", hint=DELAY_HINT)
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DELAY_SECONDS:
        raise InputError(f"{where}: after: {text.strip()} is more than a year", hint=DELAY_HINT)
    return seconds


def parse_at(value: Any, where: str) -> str | None:
    """``at:`` as ``HH:MM`` (None when absent); InputError when it is no time of day.

    YAML reads an unquoted ``09:00`` as the number 540 (sexagesimal): that
    is refused with the hint to quote it, rather than guessed.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: at: {str(value)[:40]!r} is not a time of day", hint=AT_HINT)
    match = _AT.match(value)
    if not match:
        raise InputError(f"{where}: at: {value[:40]!r} is not a time of day", hint=AT_HINT)
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def describe_delay(seconds: int) -> str:
    """``3d``, ``1w``, ``90s``: the largest unit that divides ``seconds`` (``0d`` for zero)."""
    if seconds == 0:
        return "0d"
    for unit in ("w", "d", "h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def wall_instant(day: date, at: str, zone_name: str | None, default_zone: str) -> datetime:
    """The UTC instant of ``at`` on ``day`` in the zone (gap: moved forward; fold: the first)."""
    hour, minute = (int(part) for part in at.split(":"))
    zone = zone_or(zone_name, default_zone)
    return datetime.combine(day, time(hour, minute), tzinfo=zone).replace(fold=0).astimezone(UTC)


def due_after(base: datetime, timing: Timing, zone_name: str | None, default_zone: str) -> datetime:
    """When a step with ``timing`` falls due after ``base`` (UTC), for a reader in ``zone_name``."""
    if timing.at is None:
        return base + timedelta(seconds=timing.seconds)
    zone = zone_or(zone_name, default_zone)
    if timing.whole_days:
        day = base.astimezone(zone).date() + timedelta(days=timing.seconds // 86400)
        due = wall_instant(day, timing.at, zone_name, default_zone)
        if due <= base:
            due = wall_instant(day + timedelta(days=1), timing.at, zone_name, default_zone)
        return due
    earliest = base + timedelta(seconds=timing.seconds)
    day = earliest.astimezone(zone).date()
    due = wall_instant(day, timing.at, zone_name, default_zone)
    if due < earliest:
        due = wall_instant(day + timedelta(days=1), timing.at, zone_name, default_zone)
    return due


def schedule_from(base: datetime, timings: list[Timing], first: int, zone_name: str | None,
                  default_zone: str) -> list[tuple[int, datetime]]:
    """``[(position, due)]`` for steps ``first``.. when step ``first`` chains on ``base``."""
    out = []
    for position in range(first, len(timings)):
        base = due_after(base, timings[position], zone_name, default_zone)
        out.append((position, base))
    return out
