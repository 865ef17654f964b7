"""What the provider events say about a campaign, per provider, against the senders' thresholds.

Gmail and Yahoo (bulk-sender rules, 2024) and the providers themselves
suspend senders whose spam complaints pass 0.1% or whose hard bounces pass
about 1%: the report gives each provider's rates next to those limits, and
``ok`` False when one is over. ``newsletter campaigns show`` prints it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from newsletter.store import events as ev

COMPLAINT_RATE_LIMIT = 0.001  # complaints / delivered (or sent, before any delivery is reported)
HARD_BOUNCE_RATE_LIMIT = 0.01  # hard bounces / sent
COUNTED = ("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained", "opened", "clicked")


def campaign_report(session: Session, campaign_id: int, transport: str) -> dict[str, Any]:
    """``providers``: one entry per provider (counts of recipients and rates); ``overall``: their sum, rated.

    Counts are of ledger rows (recipients): a reader opening five times is
    one ``opened``. ``sent`` is what the provider took (the ledger's sent
    rows, and any row its events describe).
    """
    providers = [rated(row) for row in ev.provider_report(session, campaign_id, transport)]
    total = {name: sum(p[name] for p in providers) for name in COUNTED}
    return {"providers": providers, "overall": rated({"provider": "all", **total})}


def rated(counts: dict[str, Any]) -> dict[str, Any]:
    """The counts with ``complaint_rate`` and ``hard_bounce_rate`` (None with nothing to divide by),
    their limits, and ``ok`` (False when a rate is over its limit)."""
    sent, delivered = counts["sent"], counts["delivered"]
    base = delivered or sent
    complaint = counts["complained"] / base if base else None
    bounce = counts["hard_bounced"] / sent if sent else None
    return {**counts,
            "complaint_rate": complaint, "complaint_limit": COMPLAINT_RATE_LIMIT,
            "hard_bounce_rate": bounce, "hard_bounce_limit": HARD_BOUNCE_RATE_LIMIT,
            "ok": not over(complaint, COMPLAINT_RATE_LIMIT) and not over(bounce, HARD_BOUNCE_RATE_LIMIT)}


def over(rate: float | None, limit: float) -> bool:
    """The thresholds are ceilings: a rate at the limit is still within it."""
    return rate is not None and rate > limit
