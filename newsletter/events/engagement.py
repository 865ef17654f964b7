"""The campaign report people look at: what reached whom, what they clicked, over time, against the past.

:func:`campaign_report` builds one plain dict (the ``--json`` output; the
terminal, HTML and PNG renderings in ``newsletter.events.charts`` draw from
it) from the ledger, the provider and first-party events and the link
counts:

- ``counts``: recipients, sent, delivered (when no provider reports
  deliveries, ``sent`` minus bounces, and ``delivered_estimated`` says so),
  bounced (hard + soft), complained, unsubscribed, unique clicks (recipients
  with a recorded human click: personal tracking or provider events),
  clicks and machine clicks (link-level counts, every mode), unique opens,
  opens and machine opens;
- ``rates``: over ``delivered``: delivery (over sent), bounce (over sent),
  complaint, unsubscribe, click (unique clicks when any were recorded per
  recipient, else human clicks: ``click_basis`` says which), open (always
  an estimate: ``opens_are_estimates``);
- ``links``: per link, its URL, human and machine clicks, unique clickers;
- ``domains``: the recipient domains with the most recipients, and their counts;
- ``timeline``: per hour for the first 72 hours after the send started,
  human clicks, machine clicks, human opens (first-party and provider events);
- ``previous``: the same rates averaged over the previous five campaigns
  that went out, and ``compared`` (this rate minus that average).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from newsletter.errors import NotFound
from newsletter.store import reports as q
from newsletter.store import tracking as tr

TIMELINE_HOURS = 72
PREVIOUS = 5
FIRST_PARTY = "newsletter"
RATE_NAMES = ("delivery_rate", "bounce_rate", "complaint_rate", "unsubscribe_rate", "click_rate", "open_rate")


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summary(session: Session, campaign_id: int, now: datetime) -> dict[str, Any]:
    """The campaign, its ``counts`` and ``rates`` (no links, domains or timeline): what ``compare`` lists."""
    info = q.campaign_info(session, campaign_id)
    if info is None:
        raise NotFound(f"campaign {campaign_id} does not exist", hint="list them with: newsletter campaigns list")
    ledger = q.ledger_counts(session, campaign_id)
    plan = tr.load_plan(session, campaign_id)
    clicks = tr.counts_by_link(session, campaign_id, "click")
    opens = tr.counts_by_link(session, campaign_id, "open")
    bounced = ledger["hard_bounced"] + ledger["soft_bounced"]
    estimated = ledger["delivered"] == 0 and ledger["events"] == 0
    delivered = max(ledger["sent"] - bounced, 0) if estimated else ledger["delivered"]
    until = q.next_campaign_start(session, campaign_id, info.list_id)
    counts = {
        "recipients": ledger["recipients"], "sent": ledger["sent"], "delivered": delivered,
        "bounced": bounced, "hard_bounced": ledger["hard_bounced"], "soft_bounced": ledger["soft_bounced"],
        "complained": ledger["complained"],
        "unsubscribed": q.unsubscribed(session, campaign_id, info.list_id, info.sent_at, until),
        "unique_clicks": ledger["clicked"],
        "clicks": sum(h for h, _ in clicks.values()), "machine_clicks": sum(m for _, m in clicks.values()),
        "unique_opens": ledger["opened"],
        "opens": sum(h for h, _ in opens.values()), "machine_opens": sum(m for _, m in opens.values()),
    }
    click_basis = "unique" if counts["unique_clicks"] else "clicks"
    rates = {
        "delivery_rate": _ratio(delivered, counts["sent"]),
        "bounce_rate": _ratio(bounced, counts["sent"]),
        "complaint_rate": _ratio(counts["complained"], delivered),
        "unsubscribe_rate": _ratio(counts["unsubscribed"], delivered),
        "click_rate": _ratio(counts["unique_clicks"] if click_basis == "unique" else counts["clicks"], delivered),
        # Not measured (None) when no pixel was sent and no provider reported an open.
        "open_rate": _ratio(counts["unique_opens"] or counts["opens"], delivered)
        if (plan is not None and plan.opens) or counts["unique_opens"] or counts["machine_opens"] else None,
    }
    return {
        "campaign_id": info.id, "subject": info.subject, "list": info.list_name, "status": info.status,
        "transport": info.transport, "sent_at": info.sent_at.isoformat(),
        "tracking": {"mode": plan.mode if plan else "none", "clicks": bool(plan and plan.clicks),
                     "opens": bool(plan and plan.opens)},
        "counts": counts, "rates": rates, "click_basis": click_basis,
        "delivered_estimated": estimated, "opens_are_estimates": True,
    }


def campaign_report(session: Session, campaign_id: int, now: datetime) -> dict[str, Any]:
    """The whole report of one campaign (see the module docstring)."""
    report = summary(session, campaign_id, now)
    plan = tr.load_plan(session, campaign_id)
    clicks = tr.counts_by_link(session, campaign_id, "click")
    unique = q.unique_clickers_by_link(session, campaign_id, FIRST_PARTY)
    links: list[dict[str, Any]] = [{"position": position, "url": url, "clicks": clicks.get(position, (0, 0))[0],
              "machine_clicks": clicks.get(position, (0, 0))[1], "unique_clicks": unique.get(position, 0)}
             for position, url in sorted((plan.links if plan else {}).items())]
    links.sort(key=lambda link: (-link["clicks"], link["position"]))
    report["links"] = links
    estimated = report["delivered_estimated"]
    report["domains"] = [_domain_row(row, estimated) for row in q.domain_counts(session, campaign_id)]
    report["timeline"] = _timeline(session, campaign_id, datetime.fromisoformat(report["sent_at"]))
    report["previous"], report["compared"] = _previous(session, campaign_id, report["rates"], now)
    return report


def _domain_row(row: dict[str, int | str], estimated: bool) -> dict[str, Any]:
    """A domain's counts, with ``bounced`` and ``delivered`` as the campaign's totals define them."""
    bounced = int(row["hard_bounced"]) + int(row["soft_bounced"])
    delivered = max(int(row["sent"]) - bounced, 0) if estimated else int(row["delivered"])
    return {"domain": row["domain"], "recipients": row["recipients"], "sent": row["sent"], "delivered": delivered,
            "bounced": bounced, "complained": row["complained"], "clicked": row["clicked"]}


def _timeline(session: Session, campaign_id: int, start: datetime) -> dict[str, Any]:
    """Per hour from the send's start: ``clicks``, ``machine_clicks``, ``opens`` (lists of 72 numbers)."""
    first = start.replace(minute=0, second=0, microsecond=0)
    series = {name: [0] * TIMELINE_HOURS for name in ("clicks", "machine_clicks", "opens")}

    def add(name: str, when: datetime, amount: int) -> None:
        index = int((when - first).total_seconds() // 3600)
        if 0 <= index < TIMELINE_HOURS:
            series[name][index] += amount

    for hour, (human, machine) in tr.counts_by_hour(session, campaign_id, "click").items():
        add("clicks", hour, human)
        add("machine_clicks", hour, machine)
    for hour, (human, _machine) in tr.counts_by_hour(session, campaign_id, "open").items():
        add("opens", hour, human)
    for when in q.provider_event_times(session, campaign_id, "clicked", FIRST_PARTY):
        add("clicks", when, 1)
    for when in q.provider_event_times(session, campaign_id, "opened", FIRST_PARTY):
        add("opens", when, 1)
    return {"start": first.isoformat(), "hours": TIMELINE_HOURS, **series}


def _previous(session: Session, campaign_id: int, rates: dict[str, float | None],
              now: datetime) -> tuple[dict[str, Any], dict[str, float | None]]:
    """The previous campaigns' average rates (each over the campaigns that have it), and the differences."""
    ids = q.sent_campaign_ids(session, before=campaign_id, limit=PREVIOUS)
    summaries = [summary(session, i, now)["rates"] for i in ids]
    average: dict[str, float | None] = {}
    for name in RATE_NAMES:
        values = [s[name] for s in summaries if s[name] is not None]
        average[name] = sum(values) / len(values) if values else None
    compared: dict[str, float | None] = {}
    for name in RATE_NAMES:
        this, before = rates[name], average[name]
        compared[name] = this - before if this is not None and before is not None else None
    return {"campaign_ids": ids, "rates": average}, compared


def compare(session: Session, last: int, now: datetime) -> list[dict[str, Any]]:
    """The last ``last`` campaigns that went out, oldest first, each its :func:`summary`."""
    return [summary(session, i, now) for i in reversed(q.sent_campaign_ids(session, limit=last))]


def hours_since(start: datetime, now: datetime) -> float:
    return (now - start) / timedelta(hours=1)
