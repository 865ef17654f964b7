"""Hourly and daily caps per transport (and account), and the warm-up plan.

A transport's limits come from ``[delivery]`` and its own section
(:meth:`newsletter.config.Settings.limits_for`). The windows are UTC
calendar hours and days; the day's cap under a warm-up plan
(``[delivery.warmup]``) is ``min(daily_cap, start * factor ** days)``,
``days`` counted from the plan's start date. The counts live in the
database (``store.quotas``), keyed by the transport and a digest of its
account (:func:`scope_of`), so they hold across processes, restarts, the
scheduler and campaigns; the scale-out workers' gate keeps the same caps in
Redis (``newsletter.distributed.limits``).

:meth:`Quota.take` runs in the transaction that claims the rows, so the
count is committed with the claim, before the provider is called (never an
under-count). When nothing fits, it raises :class:`QuotaReached`, which
names the cap and when its window opens: the engine pauses the campaign
with that reason (``campaigns show``), and the scheduler daemon resumes it
then.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from newsletter.store import quotas as counters
from newsletter.store.models import utcnow
from newsletter.store.quotas import Window

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.config import Limits, Settings, Warmup
    from newsletter.store.db import Store

HOUR, DAY = "hour", "day"
# Far above any real volume: a warm-up's growth stops mattering long before it.
_NO_CAP = 10**12


class QuotaReached(Exception):  # noqa: N818 - a state, not an error: the campaign pauses and resumes
    """Nothing more may be sent through ``transport`` until ``resume_at``."""

    def __init__(self, transport: str, window: Window, resume_at: datetime, warmup_day: int | None = None):
        self.transport, self.window, self.resume_at, self.warmup_day = transport, window, resume_at, warmup_day
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """``daily cap of 500 for transport smtp reached; resumes at 2026-12-03 00:00 UTC``."""
        which = "hourly" if self.window.kind == HOUR else "daily"
        plan = f" (warm-up day {self.warmup_day + 1})" if self.warmup_day is not None else ""
        return (f"{which} cap of {self.window.cap} for transport {self.transport} reached{plan}; "
                f"resumes at {show_utc(self.resume_at)}")


def show_utc(when: datetime) -> str:
    """``2026-12-03 00:00 UTC``."""
    return when.strftime("%Y-%m-%d %H:%M UTC")


def warmup_cap(warmup: Warmup, day: date) -> int:
    """The warm-up plan's volume for ``day``: ``start * factor ** days`` (days before the start: the first)."""
    days = max(0, (day - warmup.start_date).days)
    volume = warmup.start * math.pow(warmup.factor, min(days, 2000))
    return int(min(volume, _NO_CAP))


def daily_cap(limits: Limits, warmup: Warmup | None, day: date) -> int:
    """The day's cap: the configured one, lowered by the warm-up plan (0: none)."""
    cap = limits.daily_cap
    if warmup is not None:
        planned = warmup_cap(warmup, day)
        cap = min(cap, planned) if cap else planned
    return cap


def windows(limits: Limits, warmup: Warmup | None, now: datetime) -> list[Window]:
    """The capped windows ``now`` falls in (none without caps)."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    result = []
    if limits.hourly_cap:
        result.append(Window(HOUR, hour, hour + timedelta(hours=1), limits.hourly_cap))
    cap = daily_cap(limits, warmup, now.date())
    if cap:
        result.append(Window(DAY, day, day + timedelta(days=1), cap))
    return result


def reached(transport: str, window: Window, limits: Limits, warmup: Warmup | None, now: datetime) -> QuotaReached:
    """The QuotaReached of a full ``window`` (naming the warm-up day when the plan set its cap)."""
    warm = (window.kind == DAY and warmup is not None and window.cap == warmup_cap(warmup, now.date())
            and window.cap != limits.daily_cap)
    day = max(0, (now.date() - warmup.start_date).days) if warm and warmup is not None else None
    return QuotaReached(transport, window, window.ends_at, day)


def account_of(settings: Settings, transport: str) -> str:
    """What names the provider account behind ``transport`` (hashed by :func:`scope_of`, never shown)."""
    if transport == "smtp":
        if settings.smtp_relays:
            return " ".join(f"{r.user or ''}@{r.host}:{r.port or ''}" for r in settings.smtp_relays)
        from urllib.parse import urlsplit

        parts = urlsplit(settings.smtp_url or "")
        return f"{parts.username or ''}@{parts.hostname or ''}:{parts.port or ''}"
    return {"sendgrid": settings.sendgrid_api_key, "postmark": settings.postmark_server_token,
            "mailgun": f"{settings.mailgun_api_key}:{settings.mailgun_domain}",
            "ses": f"{settings.ses_region}:{settings.ses_endpoint_url}"}.get(transport) or ""


def scope_of(settings: Settings, transport: str) -> str:
    """The counters' key: the transport, and a digest of its account (two accounts, two sets of caps)."""
    account = account_of(settings, transport)
    if not account:
        return transport
    return f"{transport}:{hashlib.sha256(account.encode()).hexdigest()[:16]}"


@dataclass
class Quota:
    """The caps of one transport, counted in the database. ``clock`` returns aware UTC datetimes."""

    transport: str
    scope: str
    limits: Limits
    warmup: Warmup | None
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def of(cls, settings: Settings, transport: str, clock: Callable[[], datetime] | None = None) -> Quota:
        return cls(transport, scope_of(settings, transport), settings.limits_for(transport), settings.warmup,
                   clock or utcnow)

    @property
    def capped(self) -> bool:
        return bool(self.limits.hourly_cap or self.limits.daily_cap or self.warmup)

    def take(self, session: Session, want: int) -> tuple[int, list[Window]]:
        """Count up to ``want`` messages in the caller's transaction; returns (granted, the windows).

        Raises :class:`QuotaReached` when nothing fits. Give back what the
        claim did not use with :meth:`give_back`, in the same transaction.
        """
        now = self.clock()
        current = windows(self.limits, self.warmup, now)
        if not current:
            return want, current
        taken = counters.take(session, self.scope, current, want)
        if taken.granted == 0 and want > 0 and taken.tightest is not None:
            raise reached(self.transport, taken.tightest, self.limits, self.warmup, now)
        return taken.granted, current

    def give_back(self, session: Session, current: list[Window], count: int) -> None:
        counters.give_back(session, self.scope, current, count)


def shared_pace(store: Store, scope: str) -> Callable[[float, float], float]:
    """The engine pacer's ``book(now, seconds)``, kept in the database (``send_pace``) for ``scope``:
    every process sending through the transport books from one timeline (epoch seconds)."""

    def book(now: float, seconds: float) -> float:
        with store.session() as session:
            return counters.book(session, scope, datetime.fromtimestamp(now, UTC), seconds).timestamp()

    return book
