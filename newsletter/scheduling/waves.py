"""Per-subscriber local time: one campaign sent in waves, one per distinct UTC send time.

Planning: the audience is grouped by subscriber time zone (no zone, or one
we cannot read: the campaign's zone); each group's send time is the given
wall-clock time in that zone. A wall-clock time inside a subscriber zone's DST
gap moves forward by the gap (zoneinfo's fold=0 reading); in a fold it is the
first occurrence. Groups sharing a UTC instant share a wave (hourly for
whole-hour zones; half-hour zones get their own).

Sending: when a wave is due the daemon moves the campaign ``scheduled ->
sending`` (conditional), adds ledger rows for every zone whose time has come
(the last wave takes everyone left, so people who joined or changed zone
since the plan are not forgotten), and runs the engine's loop on them. Between
waves the campaign is ``scheduled`` again, its ``scheduled_at`` the next wave.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func

from newsletter.engine.campaigns import audience_list_id
from newsletter.errors import InputError
from newsletter.scheduling.times import UTC, show, zone_or
from newsletter.store import ledger
from newsletter.store import scheduling as q
from newsletter.store.models import Campaign, utcnow
from newsletter.vocabulary import CampaignStatus

DUE_TOLERANCE = timedelta(seconds=1)


def instant(wall: datetime, zone_name: str | None, default_zone: str) -> datetime:
    """The UTC instant of wall-clock ``wall`` in a subscriber's zone (gap: shifted forward; fold: first)."""
    return wall.replace(tzinfo=zone_or(zone_name, default_zone), fold=0).astimezone(UTC)


def plan(zone_counts: dict[str | None, int], wall: datetime, default_zone: str) -> list[tuple[datetime, list, int]]:
    """``[(send_at_utc, zones, people)]`` sorted by time, from the audience's zone counts."""
    groups: dict[datetime, tuple[list, int]] = {}
    for name, count in zone_counts.items():
        at = instant(wall, name, default_zone)
        zones, people = groups.get(at, ([], 0))
        groups[at] = (zones + [name], people + count)
    return [(at, sorted(zones, key=lambda z: z or ""), people) for at, (zones, people) in sorted(groups.items())]


def create_waves(session, campaign: Campaign, wall: datetime, *, now: datetime | None = None) -> list:
    """Plan and store the waves of ``campaign``; InputError when the first would be in the past."""
    planned = plan(q.audience_zones(session, audience_list_id(campaign)), wall, campaign.timezone or "UTC")
    if not planned:
        raise InputError("the list has no confirmed, unsubscribed-free audience to plan waves for")
    first_at, first_zones, _ = planned[0]
    if first_at <= (now or utcnow()):
        where = ", ".join(z or f"no zone ({campaign.timezone})" for z in first_zones)
        raise InputError(f"{wall:%Y-%m-%d %H:%M} has already passed in {where} (it was {first_at:%Y-%m-%d %H:%M} UTC)",
                         hint="with --local-time choose a time that is still ahead in every subscriber's zone")
    waves = [q.CampaignWave(campaign_id=campaign.id, send_at=at, local_time=wall.isoformat(), zones=zones,
                            status=q.WAVE_PENDING) for at, zones, _ in planned]
    session.add_all(waves)
    campaign.scheduled_at = first_at
    return [{"send_at": at, "zones": zones, "audience": people} for at, zones, people in planned]


def replace_waves(session, campaign: Campaign, wall: datetime) -> list:
    """Plan the waves again (reschedule); Conflict-free only while no wave has started."""
    from newsletter.errors import Conflict

    waves = q.waves_of(session, campaign.id)
    if any(w.status not in (q.WAVE_PENDING, q.WAVE_MISSED) for w in waves):
        raise Conflict(f"campaign {campaign.id} has already sent a wave; it can no longer be rescheduled",
                       hint=f"see it with: newsletter campaigns show {campaign.id}")
    for wave in waves:
        session.delete(wave)
    session.flush()
    return create_waves(session, campaign, wall)


def describe(session, campaign_id: int) -> list[dict]:
    return [{"send_at": w.send_at, "zones": w.zones, "status": w.status, "local_time": w.local_time}
            for w in q.waves_of(session, campaign_id)]


def due_waves(store, campaign_id: int, now: datetime) -> list:
    with store.session() as session:
        return [w for w in q.waves_of(session, campaign_id)
                if w.status == q.WAVE_PENDING and w.send_at <= now + DUE_TOLERANCE]


def begin_wave(store, campaign_id: int, wave_id: int, now: datetime) -> int | None:
    """Claim the campaign and the wave, add the ledger rows of the zones now due; None if not ours."""
    with store.session() as session:
        table = Campaign.__table__
        # No heartbeat: the engine's resume (which runs the wave) then sees no other live sender.
        if not q.claim_scheduled(session, campaign_id, CampaignStatus.SENDING, (CampaignStatus.SCHEDULED,),
                                 heartbeat_at=None,
                                 started_at=func.coalesce(table.c.started_at, now)):
            return None
        if not q.claim_wave(session, wave_id, q.WAVE_PENDING, q.WAVE_SENDING, started_at=now):
            raise RuntimeError(f"wave {wave_id} changed under a claimed campaign")  # rolls back the claim
        campaign = session.get(Campaign, campaign_id)
        waves = q.waves_of(session, campaign_id)
        wave = next(w for w in waves if w.id == wave_id)
        last = not any(w.status == q.WAVE_PENDING for w in waves if w.id != wave_id)
        wall = datetime.fromisoformat(wave.local_time)
        zones = [name for name in q.audience_zones(session, campaign.list_id)
                 if last or instant(wall, name, campaign.timezone or "UTC") <= wave.send_at]
        return ledger.snapshot_audience(session, campaign_id, campaign.list_id, zones)


def miss_wave(store, wave_id: int) -> bool:
    with store.session() as session:
        return q.claim_wave(session, wave_id, q.WAVE_PENDING, q.WAVE_MISSED)


def settle(store, campaign_id: int) -> str:
    """After a wave's run: mark finished waves, and put the campaign back to ``scheduled`` for the next.

    Returns the campaign's status afterwards.
    """
    now = utcnow()
    with store.session() as session:
        campaign = session.get(Campaign, campaign_id)
        finished = (CampaignStatus.SENT, CampaignStatus.FAILED)  # a wave that reached nobody is over too
        if campaign.status in finished:
            q.set_waves(session, campaign_id, q.WAVE_SENDING, q.WAVE_SENT, finished_at=now)
        waves = q.waves_of(session, campaign_id)
        pending = [w for w in waves if w.status == q.WAVE_PENDING]
        status = campaign.status
        if status in finished and pending:
            q.claim_scheduled(session, campaign_id, CampaignStatus.SCHEDULED, finished, scheduled_at=pending[0].send_at,
                              finished_at=None, error="")
            return CampaignStatus.SCHEDULED
        if status == CampaignStatus.SCHEDULED and pending:
            q.claim_scheduled(session, campaign_id, CampaignStatus.SCHEDULED, (CampaignStatus.SCHEDULED,),
                              scheduled_at=pending[0].send_at)
        elif status == CampaignStatus.SCHEDULED:
            sent_any = any(w.status == q.WAVE_SENT for w in waves)
            final = CampaignStatus.SENT if sent_any else CampaignStatus.MISSED
            q.claim_scheduled(session, campaign_id, final, (CampaignStatus.SCHEDULED,),
                              finished_at=now if sent_any else None,
                              error="" if sent_any else "every wave was missed (newsletter run was not running)")
            return final
        return status


def wave_label(wave) -> str:
    zones = ", ".join(z or "(no zone)" for z in wave.zones)
    return f"{show(wave.send_at, 'UTC')} for {zones}"
