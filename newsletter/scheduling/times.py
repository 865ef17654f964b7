"""Times and zones for scheduling: parse what people type, store UTC, show local.

Contract:
- zones are IANA names (``Europe/Paris``) or a fixed offset written
  ``UTC+02:00``; anything else is an InputError;
- ``TIME`` is ISO 8601 local time in the zone (``2026-12-01 09:00``,
  ``2026-12-01T09:00:30``) or carries its own offset (``...+02:00``, ``...Z``);
- a local time that does not exist (the DST gap, clocks jump forward) is an
  InputError naming the first valid time after it: silently shifting a send
  by an hour is worse than asking;
- a local time that happens twice (the DST fold) means the first occurrence
  (fold=0); the returned note says so;
- times in the past are an InputError, and so are times more than ten
  years ahead (a mistyped year; near year 9999 the zone arithmetic of
  waves and reminders would overflow).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import InputError

UTC = UTC
_OFFSET_ZONE = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")
ZONE_HINT = "use an IANA time zone name such as Europe/Paris, America/New_York or UTC"
MAX_AHEAD = timedelta(days=3653)  # ten years
TIME_HINT = 'write it as ISO 8601 local time, e.g. "2026-12-01 09:00" or 2026-12-01T09:00:30'


@dataclass(frozen=True)
class When:
    """A parsed send time: ``utc`` to store, ``zone`` (a name) to show it in, and a note for people."""

    utc: datetime
    zone: str
    note: str = ""

    @property
    def local(self) -> datetime:
        return self.utc.astimezone(get_zone(self.zone))


def get_zone(name: str) -> tzinfo:
    """The zone named ``name`` (IANA, or ``UTC+HH:MM``); InputError when unknown."""
    match = _OFFSET_ZONE.match(name or "")
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        if not name or name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(f"unknown time zone {name!r}", hint=ZONE_HINT) from None


def zone_or(name: str | None, default: str) -> tzinfo:
    """The zone ``name``, or ``default`` when it is empty or unknown (a subscriber's stored zone)."""
    try:
        return get_zone(name) if name else get_zone(default)
    except InputError:
        return get_zone(default)


def offset_name(value: datetime) -> str:
    offset = value.utcoffset() or timedelta(0)
    sign = "+" if offset >= timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_naive(text: str) -> datetime:
    """``text`` as a datetime (naive, or aware when it carries an offset); InputError when unparseable."""
    cleaned = (text or "").strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        value = None
    if value is None or len(cleaned) <= 10:  # a date alone has no time of day to send at
        raise InputError(f"cannot read the time {text!r}", hint=TIME_HINT)
    return value


def localize(naive: datetime, zone: tzinfo, zone_name: str) -> tuple[datetime, str]:
    """Attach ``zone`` to a wall-clock time: InputError in a DST gap, first occurrence in a fold."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first, ""
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip != naive:  # the wall clock skips this time
        after = _end_of_gap(naive, zone)
        raise InputError(
            f"{naive:%Y-%m-%d %H:%M:%S} does not exist in {zone_name}: the clocks jump forward (daylight saving time)",
            hint=f"choose a time outside the gap, e.g. {after:%Y-%m-%d %H:%M} {zone_name}")
    return first, (f"{naive:%Y-%m-%d %H:%M:%S} happens twice in {zone_name} (daylight saving time ends); "
                   f"using the first, at {offset_name(first)}. Give an explicit offset for the second "
                   f"({offset_name(second)}).")


def _end_of_gap(naive: datetime, zone: tzinfo) -> datetime:
    """The first wall-clock minute after ``naive`` that exists in ``zone``."""
    probe = naive.replace(second=0, microsecond=0)
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=zone)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == probe:
            return probe
    return probe


def parse_when(text: str, zone_name: str | None, *, now: datetime | None = None,
               allow_past: bool = False) -> When:
    """Parse ``text`` in zone ``zone_name`` (default UTC, or the time's own offset)."""
    value = parse_naive(text)
    note = ""
    try:
        if value.tzinfo is not None:
            if zone_name:
                get_zone(zone_name)
            shown_in = zone_name or offset_name(value)
            if shown_in in ("UTC+00:00",):
                shown_in = "UTC"
            aware = value
        else:
            shown_in = zone_name or "UTC"
            aware, note = localize(value, get_zone(shown_in), shown_in)
        utc = aware.astimezone(UTC)
    except OverflowError:  # a zone offset pushed the time past year 9999 or before year 1
        raise InputError(f"{text.strip()} is out of the range of dates", hint="check the year") from None
    now = now or datetime.now(UTC)
    if utc - now > MAX_AHEAD:
        raise InputError(f"{text.strip()} ({shown_in}) is more than ten years ahead",
                         hint="check the year; a send can be scheduled at most ten years ahead")
    if not allow_past and utc <= now:
        raise InputError(f"{text.strip()} ({shown_in}) is in the past: it was {utc:%Y-%m-%d %H:%M:%S} UTC, "
                         f"now is {now:%Y-%m-%d %H:%M:%S} UTC",
                         hint="give a time in the future (with --tz for your own time zone)")
    return When(utc, shown_in, note)


def show(utc: datetime | None, zone_name: str | None) -> str:
    """``utc`` as wall-clock time in ``zone_name`` with its abbreviation, e.g. ``2026-12-01 09:00 EST``."""
    if utc is None:
        return ""
    local = utc.astimezone(zone_or(zone_name, "UTC"))
    text = local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")
    label = local.tzname() or zone_name or ""
    if label.startswith(("+", "-")):
        label = offset_name(local)
    return f"{text} {label}".strip()
