"""The ``click`` webhook: a person's click on a personal link (tracking consent) names the subscriber; an
aggregate link's click names no one; a scanner's click sends nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from newsletter.store import webhooks as hooks
from newsletter.usecases import webhooks as usecase
from sqlalchemy import select

from support.web import open_site, path_of
from test_tracking import BROWSER_AGENT, CONSENTING, SURVEY, later, send, tracked_links


@pytest.fixture
def site(workspace):
    with open_site(None) as site:
        yield site


def click_events(site) -> list[dict]:
    with site.store.session() as session:
        return [json.loads(body)["data"] for body in session.scalars(
            select(hooks.WebhookEvent.body).where(hooks.WebhookEvent.type == "click").order_by(hooks.WebhookEvent.id))]


def test_clicks_are_reported_with_the_subscriber_only_when_tracking_allows(site, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    usecase.add_endpoint(site.store, "https://crm.example.org/hooks", ["click"])
    campaign_id, messages = send(cli, tmp_path, people=CONSENTING)
    later(site)
    scanner = path_of(tracked_links(messages["yes@example.org"])[0])
    assert site.client.get(scanner, headers={"User-Agent": "curl/8.0"}).status_code == 303  # a tool: a machine
    assert click_events(site) == []
    for email in ("yes@example.org", "no@example.org"):
        site.clock.now += 30
        link = path_of(tracked_links(messages[email])[0])
        assert site.client.get(link, headers={"User-Agent": BROWSER_AGENT}).status_code == 303
    personal, aggregate = click_events(site)
    assert personal["email"] == "yes@example.org" and personal["url"] == SURVEY
    assert personal["campaign_id"] == campaign_id and personal["subscriber_id"]
    assert aggregate == {"campaign_id": campaign_id, "url": SURVEY}  # no one named: aggregate tracking
