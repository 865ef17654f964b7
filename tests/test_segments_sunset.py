"""The sunset policy: who goes dormant, who is judged at all, who wakes up; both backends, an injected clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from newsletter.audience import manage
from newsletter.store.db import Store
from newsletter.store.models import Campaign, Delivery, Edition, Subscriber
from newsletter.tracking import EventKind, TrackingEvent
from newsletter.usecases.segments import NO_ENGAGEMENT_NOTE, apply_sunset
from sqlalchemy import select

from support.events import SECRET, SENDER

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url):
    store = Store(database_url)
    yield store
    store.close()


@pytest.fixture
def settings(workspace):
    from newsletter.config import load_settings

    return load_settings()


def policy(settings, sends=0, days=0):
    return dataclasses.replace(settings, sunset_after_sends=sends, sunset_after_days=days)


class History:
    """Subscribers and the campaigns they were sent (one campaign per age, in days before NOW), some opened
    or clicked. With ``fan``, a reader who opens every campaign: campaigns someone engaged with are the
    tracked ones the policy may judge by (an untracked campaign's silence proves nothing)."""

    def __init__(self, store, fan: bool = True):
        self.store = store
        self.fan = fan
        self.campaigns: dict[float, int] = {}
        self.ids: dict[str, int] = {}

    def person(self, email: str, *, joined_days_ago: int = 400) -> None:
        manage.add_subscriber(self.store, email, list_name="readers", confirmed=True)
        with self.store.session() as session:
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email))
            subscriber.created_at = NOW - timedelta(days=joined_days_ago)
            self.ids[email] = subscriber.id

    def campaign(self, days_ago: float) -> int:
        if days_ago not in self.campaigns:
            with self.store.session() as session:
                edition = Edition(slug=f"e{len(self.campaigns)}", subject="s", html="h", text="t")
                session.add(edition)
                session.flush()
                campaign = Campaign(edition_id=edition.id, list_name="readers", status="sent", transport="file")
                session.add(campaign)
                session.flush()
                self.campaigns[days_ago] = campaign.id
            if self.fan:
                if "fan@x.org" not in self.ids:
                    self.person("fan@x.org")
                self.sent("fan@x.org", days_ago, opened=True)
        return self.campaigns[days_ago]

    def sent(self, email: str, days_ago: float, *, opened: bool = False, clicked: bool = False) -> int:
        at = NOW - timedelta(days=days_ago)
        campaign_id = self.campaign(days_ago)
        with self.store.session() as session:
            row = Delivery(campaign_id=campaign_id, subscriber_id=self.ids[email], email=email, status="sent",
                           attempts=1, updated_at=at, opened_at=at + timedelta(hours=1) if opened else None,
                           clicked_at=at + timedelta(hours=2) if clicked else None)
            session.add(row)
            session.flush()
            return row.id

    def dormant(self) -> set[str]:
        with self.store.session() as session:
            return set(session.scalars(select(Subscriber.email_key).where(Subscriber.dormant_at.is_not(None))))


@pytest.fixture
def history(store, settings):
    return History(store)


def test_off_by_default_nobody_is_marked(history, store, settings):
    history.person("a@x.org")
    for age in (30, 20, 10):
        history.sent("a@x.org", age)
    history.person("engaged@x.org")
    history.sent("engaged@x.org", 5, opened=True)
    result = apply_sunset(store, settings, now=NOW)
    assert (result["policy"], result["marked"]) == ("off", 0)
    assert history.dormant() == set()


def test_without_any_open_or_click_recorded_nobody_is_judged(store, settings):
    history = History(store, fan=False)
    history.person("a@x.org")
    for age in (30, 20, 10, 5):
        history.sent("a@x.org", age)
    result = apply_sunset(store, policy(settings, sends=3), now=NOW)
    assert (result["engagement_data"], result["marked"], result["note"]) == (False, 0, NO_ENGAGEMENT_NOTE)
    assert history.dormant() == set()


def test_after_n_sends_without_an_open_or_click(history, store, settings):
    for email in ("silent@x.org", "opened-last@x.org", "two-sends@x.org", "opened-long-ago@x.org",
                  "clicked@x.org"):
        history.person(email)
    for age in (30, 20, 10):
        history.sent("silent@x.org", age)
        history.sent("opened-last@x.org", age, opened=age == 10)
        history.sent("clicked@x.org", age, clicked=age == 30)
    for age in (20, 10):
        history.sent("two-sends@x.org", age)            # fewer than 3 sends: not judged yet
    for age in (40, 30, 20, 10):
        history.sent("opened-long-ago@x.org", age, opened=age == 40)
    dry = apply_sunset(store, policy(settings, sends=3), now=NOW, dry_run=True)
    assert dry["marked"] == 2 and history.dormant() == set()
    result = apply_sunset(store, policy(settings, sends=3), now=NOW)
    assert result["marked"] == 2
    assert history.dormant() == {"silent@x.org", "opened-long-ago@x.org"}


def test_sends_of_campaigns_nobody_opened_or_clicked_do_not_count(store, settings):
    history = History(store, fan=False)
    for email in ("untracked@x.org", "tracked@x.org", "reader@x.org"):
        history.person(email)
    for age in (60, 50, 40):                       # nobody engaged with these three: not tracked, it seems
        history.sent("untracked@x.org", age)
    for age in (30, 20, 10):
        history.sent("tracked@x.org", age)
        history.sent("reader@x.org", age, opened=True)
    apply_sunset(store, policy(settings, sends=3), now=NOW)
    assert history.dormant() == {"tracked@x.org"}


def test_after_n_days_without_an_open_or_click(history, store, settings):
    history.person("silent@x.org")
    history.sent("silent@x.org", 10)
    history.person("new@x.org", joined_days_ago=10)     # not a subscriber for 30 days yet
    history.sent("new@x.org", 5)
    history.person("not-mailed@x.org")                  # nothing sent within 30 days: no chance to engage
    history.sent("not-mailed@x.org", 45)
    history.person("reader@x.org")
    history.sent("reader@x.org", 10, opened=True)
    apply_sunset(store, policy(settings, days=30), now=NOW)
    assert history.dormant() == {"silent@x.org"}


def test_with_both_rules_both_must_hold(history, store, settings):
    history.person("one-send@x.org")
    history.sent("one-send@x.org", 10)                  # 30 silent days, but one send of the 2
    history.person("silent@x.org")
    history.sent("silent@x.org", 20)
    history.sent("silent@x.org", 10)
    history.person("reader@x.org")
    history.sent("reader@x.org", 20, opened=True)
    history.sent("reader@x.org", 10)
    apply_sunset(store, policy(settings, sends=2, days=30), now=NOW)
    assert history.dormant() == {"silent@x.org"}


def test_an_open_after_going_dormant_wakes_them_and_sends_skip_only_the_dormant(history, store, settings):
    from newsletter.store.segments import audience_count, list_ids

    for email in ("a@x.org", "b@x.org"):
        history.person(email)
        for age in (30, 20, 10):
            history.sent(email, age, opened=email == "b@x.org")
    apply_sunset(store, policy(settings, sends=3), now=NOW)
    assert history.dormant() == {"a@x.org"}
    with store.session() as session:
        readers = list_ids(session, ["readers"])
        assert audience_count(session, readers, None) == 2  # b and the fan
        assert audience_count(session, readers, None, include_dormant=True) == 3
    # a re-engagement send reaches a@x.org, who opens it: the provider's event wakes them at once
    delivery = history.sent("a@x.org", -1)
    from newsletter.delivery.message_id import id_template
    from newsletter.events.pipeline import record_events

    with store.session() as session:
        campaign_id = session.get(Delivery, delivery).campaign_id
    message_id = id_template(SECRET, campaign_id, SENDER).format(delivery)
    opened = TrackingEvent(provider="sendgrid", kind=EventKind.OPENED, event_id="open-1", recipient="a@x.org",
                           occurred_at=NOW + timedelta(days=2), raw={}, message_id=message_id)
    record_events(store, [opened], [SECRET], NOW + timedelta(days=2))
    assert history.dormant() == set()


def test_the_sweep_wakes_whoever_engaged_since_by_any_record(history, store, settings):
    history.person("a@x.org")
    for age in (30, 20, 10):
        history.sent("a@x.org", age)
    history.person("b@x.org")
    history.sent("b@x.org", 40, opened=True)  # engagement exists in the store
    apply_sunset(store, policy(settings, sends=3), now=NOW)
    assert history.dormant() == {"a@x.org"}
    history.sent("a@x.org", -3, clicked=True)  # a click recorded later (first-party tracking, say)
    result = apply_sunset(store, policy(settings, sends=3), now=NOW + timedelta(days=5))
    assert result["woken"] == 1
    assert history.dormant() == set()


def test_the_cli_says_when_it_cannot_judge_and_applies_the_policy_before_a_send(store, settings, cli, monkeypatch):
    history = History(store, fan=False)
    history.person("a@x.org")
    for age in (30, 20, 10):
        history.sent("a@x.org", age)
    history.person("b@x.org")
    monkeypatch.setenv("NEWSLETTER_SUNSET_AFTER_SENDS", "3")
    shown = cli("subscribers", "sunset")
    assert shown.exit_code == 0 and "no open or click is recorded" in shown.stderr
    dry = cli("send", "articles/welcome.md", "--list", "readers", "--dry-run", "--json")
    assert dry.exit_code == 0 and "Note: the sunset policy is on, but no open or click" in dry.stderr
    assert dry.json()["audience"] == 2
    for age in (30, 20, 10):
        history.sent("b@x.org", age, opened=True)
    assert cli("subscribers", "sunset", "--dry-run", "--json").json()["marked"] == 1
    sent = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert "Sunset policy: marked 1 dormant" in sent.stderr
    assert sent.json()["sent"] == 1
    assert history.dormant() == {"a@x.org"}
