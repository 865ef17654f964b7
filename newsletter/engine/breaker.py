"""The circuit breaker: a running campaign pauses by itself before it hurts the sender.

Three things trip it (thresholds in ``[delivery] breaker_*``,
:class:`newsletter.config.Breaker`):

- the complaint rate (recipients who complained / messages sent) at
  ``complaint_pause`` (0.3%, the rate at which Gmail stops delivering
  bulk mail); at ``complaint_warn`` (0.1%, Gmail's "keep under") it warns
  once per run;
- the hard-bounce rate at ``hard_bounce_pause`` (2%);
- ``transport_failures`` (50) recipients in a row that failed for the same
  cause of ours or the network's (DNS, connection refused, a timeout while
  connecting: :data:`newsletter.delivery.message.TRANSPORT_CAUSES`).

Rates count only once ``min_sample`` (1,000) messages of the campaign were
sent, so the first bounce among ten sends does not pause a campaign, and
a single complaint never does (1 in 1,000 is 0.1%: a warning).

Complaints and bounces reach the ledger through the event pipeline
(webhooks, ``bounces read``); the send loop reads the campaign's counts
between batches (:meth:`Breaker.check`: one aggregate query, at most every
``check_seconds``, 5 s), and the scale-out workers do the same per chunk.

When the breaker trips, the rows of the failing streak, recorded
``failed``, go back to ``pending`` (:meth:`Breaker.release`): nothing of
them was accepted and the recipients did nothing wrong. The campaign is
paused with the reason (``campaigns show``) and no ``resume_at``: unlike a
quota's pause the scheduler never resumes it; a person does, with
``newsletter campaigns resume N`` once the cause is fixed. A resumed run
takes the counts it starts with as seen: only a new complaint or hard
bounce, with the rate still at the threshold, pauses it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from newsletter.delivery.message import TRANSPORT_CAUSES, Outcome
from newsletter.store import ledger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.config import Breaker as Thresholds
    from newsletter.delivery.message import SendResult

log = logging.getLogger("newsletter.breaker")

_CAUSE_NAMES = {"dns": "DNS lookups", "connection": "connections", "authentication": "logins",
                "timeout": "connections (timed out)"}


class BreakerTripped(Exception):  # noqa: N818 - a state, not an error: the campaign pauses for a person
    """The campaign must pause until a person resumes it; ``reason`` says why (shown by campaigns show)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def percent(rate: float) -> str:
    """``0.3%``."""
    return f"{rate * 100:.2g}%"


class Breaker:
    """One run's breaker: the streak of transport failures it has seen, and whether it warned.

    Not shared between processes: each sending process (or worker) counts
    its own streak, and every one of them reads the rates from the ledger.
    """

    def __init__(self, thresholds: Thresholds, clock: Callable[[], float] = time.monotonic):
        self.thresholds, self.clock = thresholds, clock
        self.checked_at: float | None = None
        self.cause: str | None = None
        self.streak: list[int] = []  # the ledger rows of the current streak
        self.warned = False
        self.warnings: list[str] = []
        self.seen_at_start: ledger.Reception | None = None

    def observe(self, results: Sequence[SendResult], ids: dict[str, int]) -> str | None:
        """Count a batch's results in order (``ids``: Message-ID to ledger row); returns the reason
        when the streak reaches the threshold."""
        limit = self.thresholds.transport_failures
        for result in results:
            cause = result.cause if result.outcome is Outcome.FAILED and result.cause in TRANSPORT_CAUSES else None
            if cause is None:
                self.cause, self.streak = None, []
                continue
            if cause != self.cause:
                self.cause, self.streak = cause, []
            self.streak.append(ids[result.message_id])
        if limit and len(self.streak) >= limit and self.cause is not None:
            return (f"circuit breaker: {len(self.streak)} recipients in a row failed: "
                    f"{_CAUSE_NAMES.get(self.cause, self.cause)} failed ({self.cause}); fix the cause, then "
                    f"resume")
        return None

    def release(self, session: Session) -> int:
        """Put the streak's rows (recorded ``failed``) back to ``pending``; returns how many moved."""
        moved = ledger.failed_to_pending(session, self.streak)
        self.cause, self.streak = None, []
        return moved

    def check(self, session: Session, campaign_id: int) -> None:
        """Read the campaign's complaint and hard-bounce counts; warn, or raise BreakerTripped.

        At most once every ``check_seconds`` (the first call always reads).
        The troubled rows are counted first (a partial index: a few rows);
        only when there are some are the counts taken over the campaign's
        rows (one scan, ~0.4 s at 200,000 rows on SQLite).
        """
        t, now = self.thresholds, self.clock()
        if self.checked_at is not None and now - self.checked_at < t.check_seconds:
            return
        self.checked_at = now
        if ledger.troubles(session, campaign_id) == (0, 0):
            # No complaint, no hard bounce: no rate to weigh (and none seen at the start of this run).
            self.seen_at_start = self.seen_at_start or ledger.Reception(0, 0, 0)
            return
        seen = ledger.reception(session, campaign_id)
        # A person who resumed a campaign the breaker paused has seen these counts: only a new
        # complaint or bounce (with the rate still over) pauses it again.
        start = self.seen_at_start = self.seen_at_start or seen
        if seen.sent == 0 or seen.sent < t.min_sample:
            return
        complaints, bounces = seen.complained / seen.sent, seen.hard_bounced / seen.sent
        if t.complaint_pause and complaints >= t.complaint_pause and seen.complained > start.complained:
            raise BreakerTripped(
                f"circuit breaker: complaint rate {percent(complaints)} ({seen.complained} of {seen.sent} sent) "
                f"reached {percent(t.complaint_pause)}; check the list's consent and content, then resume")
        if t.hard_bounce_pause and bounces >= t.hard_bounce_pause and seen.hard_bounced > start.hard_bounced:
            raise BreakerTripped(
                f"circuit breaker: hard-bounce rate {percent(bounces)} ({seen.hard_bounced} of {seen.sent} sent) "
                f"reached {percent(t.hard_bounce_pause)}; clean the list, then resume")
        if t.complaint_warn and complaints >= t.complaint_warn and not self.warned:
            self.warned = True
            warning = (f"complaint rate {percent(complaints)} ({seen.complained} of {seen.sent} sent) is at or "
                       f"over {percent(t.complaint_warn)}; the campaign pauses at {percent(t.complaint_pause)}")
            self.warnings.append(warning)
            log.warning("campaign %s: %s", campaign_id, warning)
