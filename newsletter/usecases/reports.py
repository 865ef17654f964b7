"""Campaign reports: one campaign in detail, or the last few side by side (``newsletter.events.engagement``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def campaign_report(store, campaign_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The report of one campaign (a plain dict: see ``newsletter.events.engagement``)."""
    from newsletter.events.engagement import campaign_report as build

    with store.session() as session:
        return build(session, campaign_id, now or datetime.now(UTC))


def compare(store, last: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """The last ``last`` campaigns that went out, oldest first, with their counts and rates."""
    from newsletter.events.engagement import compare as build

    with store.session() as session:
        return build(session, last, now or datetime.now(UTC))
