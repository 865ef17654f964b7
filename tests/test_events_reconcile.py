"""Ledger rows of unknown outcome settled from provider events, so `campaigns retry --unknown` never resends them.

A crash between the provider call and its answer is made real: the SendGrid
stand-in reads the whole request and drops the connection (the provider may
have the batch; the engine marks it ``unknown``). SendGrid's events for some
of those messages then arrive, signed, through the real Starlette app; the
retry sends only to the recipients no event speaks for. Both backends.
"""

from __future__ import annotations

import pytest
from newsletter.config import load_settings
from newsletter.delivery.message_id import id_template
from newsletter.store.db import open_store
from newsletter.store.models import Delivery
from sqlalchemy import select, update

from fake_sendgrid import FakeSendGrid
from support.cli import populate
from support.web import KeyPair, Site

API_KEY = "SG.reconcile-test.secret-value"


@pytest.fixture
def sendgrid(monkeypatch):
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")
        yield server


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    """The transport's retry waits take no real time (a dropped connection is not retried anyway)."""
    from newsletter.delivery import retry

    monkeypatch.setattr(retry, "pause", lambda seconds: None)


@pytest.fixture
def site(workspace, sendgrid):
    settings = load_settings()
    store = open_store(settings)
    yield Site(settings, store, keys=KeyPair())
    store.close()


def recipients_of(server: FakeSendGrid) -> list[str]:
    return [to["email"] for body in server.bodies for p in body["personalizations"] for to in p["to"]]


def ledger(store, campaign_id: int) -> dict[str, Delivery]:
    with store.session() as session:
        rows = session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).all()
        session.expunge_all()
        return {row.email: row for row in rows}


def message_ids(site: Site, campaign_id: int) -> dict[str, str]:
    """Our Message-ID of each ledger row, as the engine made it (SendGrid echoes it in every event)."""
    template = id_template(site.settings.secret_keys[-1], campaign_id, site.settings.sender_address)
    return {email: template.format(row.id) for email, row in ledger(site.store, campaign_id).items()}


def sg_event(kind: str, email: str, mid: str, n: int, **extra) -> dict:
    return {"email": email, "event": kind, "timestamp": 1_790_000_000 + n, "sg_event_id": f"rc-{kind}-{n}",
            "sg_message_id": f"sg{n}.filter", "message_id": mid, **extra}


def test_events_settle_unknown_rows_and_retry_unknown_sends_only_to_the_rest(site, sendgrid, cli, tmp_path):
    emails = populate(cli, tmp_path, 20)
    sendgrid.fail_next("drop")  # the request reached SendGrid; its answer never came back
    sent = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert sent.exit_code == 2 and sent.json()["status"] == "failed", sent.stderr  # nobody known to have it
    campaign_id = sent.json()["campaign_id"]
    assert cli("campaigns", "show", str(campaign_id), "--json").json()["counts"]["unknown"] == 20
    mids = message_ids(site, campaign_id)
    answer = site.post_events([
        sg_event("processed", emails[0], mids[emails[0]], 0),
        sg_event("delivered", emails[1], mids[emails[1]], 1),
        sg_event("bounce", emails[2], mids[emails[2]], 2, type="bounce", reason="550 5.1.1 no such user"),
        sg_event("dropped", emails[3], mids[emails[3]], 3, reason="Invalid"),
        sg_event("open", emails[4], mids[emails[4]], 4),
    ])
    assert answer.status_code == 200 and answer.json()["matched"] == 5
    rows = ledger(site.store, campaign_id)
    assert [rows[e].status for e in emails[:5]] == ["sent", "sent", "failed", "failed", "sent"]
    assert "hard" in rows[emails[2]].error and "rejected" in rows[emails[3]].error
    assert {rows[e].status for e in emails[5:]} == {"unknown"}
    shown = cli("campaigns", "show", str(campaign_id), "--json").json()
    assert shown["counts"]["unknown"] == 15
    assert shown["status"] == "sent"  # no longer "nobody received it": the events say three did

    retried = cli("campaigns", "retry", str(campaign_id), "--unknown", "--json")
    assert retried.exit_code == 0, retried.stderr
    assert sorted(recipients_of(sendgrid)) == sorted(emails[5:])  # each truly unknown one, once; none of the five
    rows = ledger(site.store, campaign_id)
    assert {rows[e].status for e in emails[5:]} == {"sent"}
    assert [rows[e].status for e in emails[:5]] == ["sent", "sent", "failed", "failed", "sent"]


def test_an_event_after_the_retry_took_the_row_changes_its_outcome_columns_only(site, sendgrid, cli, tmp_path):
    emails = populate(cli, tmp_path, 3)
    sendgrid.fail_next("drop")
    campaign_id = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json").json()["campaign_id"]
    mids = message_ids(site, campaign_id)
    assert cli("campaigns", "retry", str(campaign_id), "--unknown", "--json").exit_code == 0
    site.post_events([sg_event("bounce", emails[0], mids[emails[0]], 0, type="bounce")])  # the first copy bounced
    row = ledger(site.store, campaign_id)[emails[0]]
    assert (row.status, row.refused) == ("sent", "hard")  # the retry's answer stands; the report sees the bounce


def test_an_event_that_came_before_the_crash_settles_the_row_left_in_flight(site, sendgrid, cli, tmp_path):
    emails = populate(cli, tmp_path, 6)
    campaign_id = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json").json()["campaign_id"]
    mids = message_ids(site, campaign_id)
    # The sender died after the call, before recording its answer (rows ``sending``); SendGrid's events came first.
    with site.store.session() as session:
        session.execute(update(Delivery).where(Delivery.campaign_id == campaign_id).values(status="sending"))
    site.post_events([sg_event("delivered", emails[0], mids[emails[0]], 0),
                      sg_event("bounce", emails[1], mids[emails[1]], 1, type="bounce")])
    # A live sender's rows are its own to record: untouched.
    assert {r.status for r in ledger(site.store, campaign_id).values()} == {"sending"}
    resumed = cli("campaigns", "resume", str(campaign_id), "--json")
    assert resumed.exit_code == 0, resumed.stderr
    rows = ledger(site.store, campaign_id)
    assert (rows[emails[0]].status, rows[emails[1]].status) == ("sent", "failed")
    assert {rows[e].status for e in emails[2:]} == {"unknown"}
    assert len(recipients_of(sendgrid)) == 6  # nothing sent again

