"""Running sequences: one round of the daemon's work for every active sequence.

Each round, per sequence (``run_round``):

1. readers who left the list, unsubscribed or were suppressed are stopped;
2. new members are enrolled (confirmed since the sequence was created, or
   every member with ``--enrol-existing``; with ``--restart``, readers who
   joined again start over on a new round);
3. every step whose time came is handed to the ledger: the enrolment moves
   on and the step's ledger row is inserted in one transaction (pending; or
   skipped and recorded as missed when it is later than the misfire grace);
4. the pending rows are sent like a campaign's: claimed (``pending ->
   sending``, only the rows the claim moved, membership and suppression
   checked again at the claim), sent through the sequence's transport, each
   outcome committed.

Only the scheduler daemon runs rounds (one holds the lease per database),
one round at a time. The fence of every claim and every write of results
is that lease: a daemon that lost it sends nothing more. A round that
starts a daemon turns rows a dead daemon left ``sending`` into ``unknown``
(never sent blindly), as a campaign resume does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from newsletter.engine.sender import (
    RecipientBuilder,
    SendReport,
    campaign_message,
    claim_batch,
    reader_list_name,
    send_claimed,
)
from newsletter.scheduling.sequences import Timing, due_after
from newsletter.scheduling.times import show
from newsletter.store import ledger
from newsletter.store import sequences as q
from newsletter.store.models import Campaign, utcnow
from newsletter.vocabulary import SequenceStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.config import Settings
    from newsletter.delivery.base import Transport
    from newsletter.store.db import Store

log = logging.getLogger("newsletter.scheduling")
BATCH = 2000  # readers enrolled, or steps handed over, per transaction
Clock = Callable[[], datetime]


@dataclass
class RoundReport:
    """What one round did, over every sequence."""

    enrolled: int = 0
    stopped: int = 0
    queued: int = 0
    missed: int = 0
    orphans: int = 0
    stale: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return any((self.enrolled, self.stopped, self.queued, self.missed, self.orphans, self.stale, self.sent,
                    self.failed, self.unknown, self.skipped))


@dataclass(frozen=True)
class Plan:
    """A sequence as a round needs it: its row and its steps' timings and editions."""

    sequence: q.Sequence
    timings: list[Timing]
    editions: list[int]


def load_plan(session: Session, sequence: q.Sequence) -> Plan:
    steps = q.steps_of(session, sequence.id)
    return Plan(sequence, [Timing(s.after_seconds, s.at_time) for s in steps], [s.edition_id for s in steps])


def run_round(store: Store, settings: Settings, transport_for: Callable[[str], Transport],
              fence: Callable[[Session], bool], *, first: bool = False, enrol: bool = True,
              clock: Clock = utcnow, stop: threading.Event | None = None) -> RoundReport:
    """One round over every active sequence (see the module docstring).

    ``transport_for(name)``: an open transport (the caller owns and closes
    it). ``fence(session)``: True while this process may still send (the
    daemon: it holds the lease). ``first``: the daemon's first round, which
    settles what a dead daemon left in flight. ``enrol``: look for new
    members too (it reads every member's join time, ~0.3 s per 200,000 on
    SQLite, so the daemon does it every few rounds rather than every round).
    """
    report = RoundReport()
    grace = settings.misfire_grace_seconds
    with store.session() as session:
        sequences = q.all_sequences(session)
        if not sequences:  # the common case of a workspace without sequences: one read, no writes
            return report
        if first:
            report.orphans = q.orphans_to_unknown(session)
        report.stale = q.skip_stale(session, clock(), grace)
        plans = [load_plan(session, s) for s in sequences if s.status == SequenceStatus.ACTIVE]
    for plan in plans:
        if stop is not None and stop.is_set():
            break
        if not plan.timings:
            continue
        with store.session() as session:
            report.stopped += q.stop_leavers(session, plan.sequence)
        if enrol:
            _enrol(store, plan, report, clock)
        _hand_over(store, plan, report, clock, grace, stop)
        _send(store, settings, plan, report, transport_for, fence, stop)
    return report


def _enrol(store: Store, plan: Plan, report: RoundReport, clock: Clock) -> None:
    sequence = plan.sequence
    after_id = 0
    while True:
        with store.session() as session:
            joiners = q.joiners(session, sequence, BATCH, after_id)
            first_time = []
            for joiner in joiners:
                # Existing members enrolled on purpose start from the sequence's creation, not from
                # a join years ago (which would make every step "missed").
                base = max(joiner.joined_at, sequence.created_at)
                first_due = due_after(base, plan.timings[0], joiner.timezone, sequence.timezone)
                if joiner.enrolment_id is None:
                    first_time.append((joiner.subscriber_id, base, first_due))
                elif q.enrol(session, sequence.id, joiner, base, first_due):  # joined again: a new round
                    report.enrolled += 1
            report.enrolled += q.enrol_new(session, sequence.id, first_time)
        if len(joiners) < BATCH:
            return
        after_id = max(joiner.subscriber_id for joiner in joiners)


def _hand_over(store: Store, plan: Plan, report: RoundReport, clock: Clock, grace: int,
               stop: threading.Event | None) -> None:
    sequence, last = plan.sequence, len(plan.timings) - 1
    while stop is None or not stop.is_set():
        now = clock()
        with store.session() as session:
            due = q.due_now(session, sequence.id, now, BATCH)
            campaigns: dict[tuple[int, int], int] = {}
            items = []
            for item in due:
                if item.position > last:  # steps removed since: nothing more to send
                    continue
                next_due = (None if item.position >= last else
                            due_after(item.due_at, plan.timings[item.position + 1], item.timezone,
                                      sequence.timezone))
                late = (now - item.due_at).total_seconds()
                missed = "" if late <= grace else (
                    f"missed: due at {show(item.due_at, 'UTC')}, {late:.0f} s before the scheduler could send it "
                    f"(misfire grace {grace} s)")
                key = (item.position, item.round)
                if key not in campaigns:
                    campaigns[key] = q.step_campaign(session, sequence, item.position, item.round,
                                                     plan.editions[item.position])
                items.append(q.Handover(item, campaigns[key], next_due, missed))
            moved = q.hand_over_many(session, items, now)
        missed_count = sum(1 for item in moved if item.missed)
        report.missed += missed_count
        report.queued += len(moved) - missed_count
        if missed_count:
            log.warning("sequence %s: %s step(s) later than the misfire grace of %s s skipped and recorded",
                        sequence.name, missed_count, grace)
        if len(due) < BATCH:
            return


def _send(store: Store, settings: Settings, plan: Plan, report: RoundReport,
          transport_for: Callable[[str], Transport], fence: Callable[[Session], bool],
          stop: threading.Event | None) -> None:
    sequence = plan.sequence
    with store.session() as session:
        campaign_ids = q.pending_campaigns(session, sequence.id)
    for campaign_id in campaign_ids:
        if stop is not None and stop.is_set():
            return
        transport = transport_for(sequence.transport)
        step = SendReport(campaign_id, "automated")
        try:
            _send_campaign(store, settings, campaign_id, transport, step, fence, stop)
        finally:
            with store.session() as session:
                q.restore_automated(session, campaign_id)  # a failed batch settles the campaign as paused
            report.sent += step.sent
            report.failed += step.failed
            report.unknown += step.unknown
            report.skipped += step.skipped
        if step.sent or step.failed or step.unknown or step.skipped:
            log.info("sequence %s, campaign %s: sent %s, failed %s, unknown %s, skipped %s", sequence.name,
                     campaign_id, step.sent, step.failed, step.unknown, step.skipped)


def _send_campaign(store: Store, settings: Settings, campaign_id: int, transport: Transport, report: SendReport,
                   fence: Callable[[Session], bool], stop: threading.Event | None) -> None:
    with store.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            return
        list_id, slug = campaign.list_id, campaign.edition.slug
        mailing_list = ledger.list_of(session, list_id)
        message = campaign_message(settings, campaign, mailing_list=mailing_list)
    builder = RecipientBuilder(settings, slug, campaign_id, list_id,
                               list_name=reader_list_name(settings, mailing_list))
    batch_size = max(1, min(settings.batch_size, transport.max_batch))
    after_id = 0
    while stop is None or not stop.is_set():
        claim = claim_batch(store, campaign_id, list_id, after_id, batch_size, report, fence=fence)
        if claim is None:
            return
        after_id = claim.last_id
        if claim.rows:
            send_claimed(store, transport, message, builder, claim.rows, report, campaign_id, fence=fence)
