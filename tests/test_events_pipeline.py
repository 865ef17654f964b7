"""The provider-neutral event pipeline (newsletter.events.pipeline) with hand-made TrackingEvents, on both backends.

Soft bounces counted per address and suppressing at the limit; complaints
suppressing and ending every membership; delivered, deferred, opened and
clicked written on the ledger row; events for messages not ours counted and
ignored; the report of ``campaigns show`` per provider.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from newsletter.config import load_settings
from newsletter.events.pipeline import SoftBounceLimit, outcome_after, record_events
from newsletter.events.report import rated
from newsletter.store.db import open_store
from newsletter.store.events import Outcome
from newsletter.tracking import EventKind, RejectReason
from newsletter.vocabulary import address_hash

from support.events import SECRET, WHEN, event, membership_statuses, seed_campaign, state

NOW = WHEN + timedelta(hours=1)
D, B, OPEN, C, DEF, CMP = (EventKind.DELIVERED, EventKind.BOUNCED, EventKind.OPENED, EventKind.CLICKED,
                           EventKind.DEFERRED, EventKind.COMPLAINED)
DEFAULT_LIMIT = SoftBounceLimit()


@pytest.fixture
def store(workspace):
    store = open_store(load_settings())
    yield store
    store.close()


def apply(store, events, limit=DEFAULT_LIMIT):
    return record_events(store, events, [SECRET], NOW, limit)


def test_three_soft_bounces_within_thirty_days_suppress_two_do_not(store):
    seeded = seed_campaign(store, ["soft@example.org", "twice@example.org"])
    mid = seeded.message_ids
    for n in range(2):
        apply(store, [event(B, "soft@example.org", f"s{n}", message_id=mid["soft@example.org"],
                            when=WHEN - timedelta(days=10 * n), detail="452 mailbox full"),
                      event(B, "twice@example.org", f"t{n}", message_id=mid["twice@example.org"])])
    after_two = state(store, ["soft@example.org", "twice@example.org"])
    assert after_two["soft@example.org"]["suppressed"] is None and after_two["soft@example.org"]["soft_bounces"] == 2
    counts = apply(store, [event(B, "Soft@Example.org", "s2", when=WHEN - timedelta(days=29))])  # not our message
    assert counts["applied"] == 1 and counts["unmatched"] == 1
    shown = state(store, ["soft@example.org", "twice@example.org"])
    assert shown["soft@example.org"]["suppressed"] == "bounced" and shown["soft@example.org"]["status"] == "bounced"
    assert shown["twice@example.org"]["suppressed"] is None and shown["twice@example.org"]["status"] == "active"
    with store.session() as session:
        from newsletter.store.models import Suppression

        detail = session.get(Suppression, address_hash("soft@example.org")).detail
    assert detail.startswith("sendgrid: 3 soft bounces within 30 days")


def test_soft_bounces_older_than_the_window_do_not_count(store):
    seed_campaign(store, ["old@example.org"])
    apply(store, [event(B, "old@example.org", f"o{n}", when=NOW - timedelta(days=31 + n)) for n in range(5)])
    apply(store, [event(B, "old@example.org", f"r{n}", when=NOW - timedelta(days=1)) for n in range(2)])
    assert state(store, ["old@example.org"])["old@example.org"]["suppressed"] is None


def test_the_soft_bounce_limit_is_a_setting(store):
    seed_campaign(store, ["limit@example.org"])
    counts = apply(store, [event(B, "limit@example.org", "a"), event(B, "limit@example.org", "b")],
                   SoftBounceLimit(limit=2, days=1))
    assert counts["applied"] == 1
    assert state(store, ["limit@example.org"])["limit@example.org"]["suppressed"] == "bounced"


def test_settings_read_the_events_section_and_the_environment(workspace, monkeypatch):
    config = (workspace / "newsletter.toml").read_text()
    assert "soft_bounce_limit = 3" in config  # newsletter init writes the defaults
    (workspace / "newsletter.toml").write_text(config.replace("soft_bounce_limit = 3", "soft_bounce_limit = 5")
                                               .replace("soft_bounce_days = 30", "soft_bounce_days = 7"))
    settings = load_settings()
    assert (settings.soft_bounce_limit, settings.soft_bounce_days) == (5, 7.0)
    monkeypatch.setenv("NEWSLETTER_SOFT_BOUNCE_LIMIT", "4")
    monkeypatch.setenv("NEWSLETTER_SOFT_BOUNCE_DAYS", "14")
    settings = load_settings()
    assert (settings.soft_bounce_limit, settings.soft_bounce_days) == (4, 14.0)


def test_a_bad_soft_bounce_limit_is_a_one_line_error(workspace, cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SOFT_BOUNCE_LIMIT", "0")
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and "NEWSLETTER_SOFT_BOUNCE_LIMIT must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_complaint_suppresses_and_unsubscribes_from_every_list(store):
    seeded = seed_campaign(store, ["spam@example.org", "fine@example.org"], other_list="offers")
    counts = apply(store, [event(CMP, "spam@example.org", "c1", message_id=seeded.message_ids["spam@example.org"])])
    assert counts == {"received": 1, "new": 1, "matched": 1, "unmatched": 0, "applied": 1}
    shown = state(store, ["spam@example.org", "fine@example.org"])
    assert shown["spam@example.org"]["suppressed"] == "complained"
    assert shown["spam@example.org"]["status"] == "complained"
    assert membership_statuses(store, "spam@example.org") == {"readers": "unsubscribed", "offers": "unsubscribed"}
    assert membership_statuses(store, "fine@example.org") == {"readers": "confirmed", "offers": "confirmed"}
    assert shown["spam@example.org"]["ledger"][0]["complained_at"] == WHEN


def test_a_bounce_after_a_complaint_keeps_the_reason_complained(store):
    seed_campaign(store, ["both@example.org"])
    apply(store, [event(CMP, "both@example.org", "c"), event(B, "both@example.org", "b", hard=True),
                  event(EventKind.REJECTED, "both@example.org", "r", reject_reason=RejectReason.BOUNCED)])
    assert state(store, ["both@example.org"])["both@example.org"]["suppressed"] == "complained"


def test_delivered_deferred_opened_clicked_are_written_on_the_ledger_row(store):
    seeded = seed_campaign(store, ["reader@example.org", "other@example.org"])
    mid = seeded.message_ids["reader@example.org"]
    at = [WHEN + timedelta(minutes=m) for m in range(6)]
    apply(store, [event(OPEN, "reader@example.org", "o2", message_id=mid, when=at[4]),
                  event(DEF, "reader@example.org", "d1", message_id=mid, when=at[0]),
                  event(DEF, "reader@example.org", "d2", message_id=mid, when=at[1])])
    apply(store, [event(D, "reader@example.org", "dl", message_id=mid, when=at[2]),
                  event(OPEN, "reader@example.org", "o1", message_id=mid, when=at[3]),  # reported late: the first open
                  event(C, "reader@example.org", "c1", message_id=mid, when=at[5]),
                  event(EventKind.QUEUED, "reader@example.org", "q", message_id=mid, when=at[0])])
    row = state(store, ["reader@example.org"])["reader@example.org"]["ledger"][0]
    assert row == {"status": "sent", "error": None, "event_provider": "sendgrid", "delivered_at": at[2],
                   "deferred_at": at[1], "opened_at": at[3], "clicked_at": at[5], "complained_at": None,
                   "refused": None}
    assert state(store, ["other@example.org"])["other@example.org"]["ledger"][0]["event_provider"] is None


def test_events_for_messages_not_ours_are_counted_and_change_no_ledger_row(store):
    seeded = seed_campaign(store, ["reader@example.org"])
    ours = seeded.message_ids["reader@example.org"]
    foreign = [ours.replace("nl.", "nl.0", 1),                                        # another workspace's tag
               ours.rsplit(".", 1)[0].rsplit(".", 1)[0] + f".{seeded.campaign_id + 1}."
               + ours.rsplit(".", 1)[1],                                              # a campaign that is not its own
               "<CAFEBABE@mail.example>", None]
    counts = apply(store, [event(D, "reader@example.org", f"f{i}", message_id=m) for i, m in enumerate(foreign)])
    assert counts == {"received": 4, "new": 4, "matched": 0, "unmatched": 4, "applied": 0}
    assert state(store, ["reader@example.org"])["reader@example.org"]["ledger"][0]["delivered_at"] is None


def test_outcome_keeps_the_strongest_refusal_whatever_the_order():
    soft, hard = event(B, "a@example.org", "s"), event(B, "a@example.org", "h", hard=True)
    rejected = event(EventKind.REJECTED, "a@example.org", "r", reject_reason=RejectReason.INVALID)
    for order in ([soft, rejected, hard], [hard, soft, rejected], [rejected, hard, soft]):
        outcome = Outcome()
        for e in order:
            outcome = outcome_after(outcome, e, WHEN)
        assert outcome.refused == "hard"


def test_campaign_report_counts_per_provider_and_rates_against_the_limits(store, cli):
    emails = [f"r{i}@example.org" for i in range(1000)]
    seeded = seed_campaign(store, emails, transport="sendgrid")
    mid = seeded.message_ids
    events = [event(D, e, f"d{i}", message_id=mid[e]) for i, e in enumerate(emails[:990])]
    events += [event(B, e, f"h{i}", message_id=mid[e], hard=True) for i, e in enumerate(emails[990:1000])]
    events += [event(CMP, emails[0], "c0", message_id=mid[emails[0]])]  # 1 in 990: 0.1%, at the limit
    events += [event(B, emails[1], "s1", message_id=mid[emails[1]]),  # soft, then delivered: not counted soft
               event(B, emails[995], "s995", message_id=mid[emails[995]], provider="postmark")]
    apply(store, events)
    shown = cli("campaigns", "show", str(seeded.campaign_id), "--json").json()
    sendgrid = shown["providers"][0]
    assert [p["provider"] for p in shown["providers"]] == ["sendgrid"]  # the postmark event came second: row stays
    assert (sendgrid["sent"], sendgrid["delivered"], sendgrid["hard_bounced"], sendgrid["soft_bounced"],
            sendgrid["complained"]) == (1000, 990, 10, 0, 1)
    assert sendgrid["hard_bounce_rate"] == pytest.approx(0.01) and sendgrid["complaint_rate"] == pytest.approx(1 / 990)
    assert sendgrid["ok"] is False  # 1/990 is over 0.1%
    human = cli("campaigns", "show", str(seeded.campaign_id)).stdout
    assert "sendgrid hard-bounce rate: 1.00% (limit 1.0%) within the limit" in human
    assert "sendgrid complaint rate: 0.10% (limit 0.1%) over the limit" in human


def test_rates_at_the_limit_are_within_it_and_nothing_to_divide_is_none():
    zero = dict.fromkeys(("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained", "opened",
                          "clicked"), 0)
    assert rated(zero)["complaint_rate"] is None and rated(zero)["ok"] is True
    at_limit = rated({**zero, "sent": 1000, "delivered": 1000, "hard_bounced": 10, "complained": 1})
    assert at_limit["ok"] is True
    assert rated({**at_limit, "hard_bounced": 11})["ok"] is False
