"""Mailgun's JSON webhooks through the real Starlette app: signature, freshness, replays, and the pipeline's effect.

A campaign is sent through ``newsletter send --transport mailgun`` to the
local Mailgun stand-in; its events are then posted back signed as Mailgun
signs them (HMAC-SHA256 of timestamp + token with the webhook signing key),
carrying the custom variables the stand-in recorded for each recipient.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.audience import manage
from newsletter.config import load_settings
from newsletter.providers.base import Refused
from newsletter.providers.mailgun.events import MailgunEvents, tracking_event
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.tracking import EventKind, RejectReason

from fake_mailgun import FakeMailgun
from support.cli import populate
from support.mailgun import SIGNING_KEY, event_data, signed
from support.web import Clock

KEY = "key-webhook-test-0123456789"
DOMAIN = "mg.clinic.example"


class MailgunSite:
    """The public app with the Mailgun signing key set and a clock the test moves."""

    def __init__(self, settings, store, key: str | None = SIGNING_KEY):
        from newsletter.web.app import create_app
        from starlette.testclient import TestClient

        self.settings = dataclasses.replace(settings, mailgun_webhook_signing_key=key)
        self.store, self.clock = store, Clock()
        self.client = TestClient(create_app(self.settings, store, clock=self.clock), follow_redirects=False)

    def post(self, event: dict, *, shift: int = 0, **signing):
        body = signed(event, int(self.clock.now) + shift, **signing)
        return self.client.post("/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"})


@pytest.fixture
def site(workspace):
    settings = load_settings()
    store = open_store(settings)
    yield MailgunSite(settings, store)
    store.close()


@pytest.fixture
def campaign(site, cli, tmp_path, monkeypatch):
    """Three readers sent a campaign through the Mailgun stand-in: (campaign id, {email: recorded message})."""
    populate(cli, tmp_path, 3)
    with FakeMailgun(api_key=KEY, domain=DOMAIN) as server:
        monkeypatch.setenv("MAILGUN_API_KEY", KEY)
        monkeypatch.setenv("NEWSLETTER_MAILGUN_DOMAIN", DOMAIN)
        monkeypatch.setenv("NEWSLETTER_MAILGUN_HOST", server.url)
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "mailgun", "--json")
        assert result.exit_code == 0, result.stderr
    return result.json()["campaign_id"], {m["to"]: m for m in server.messages}


def stored(site) -> list[ProviderEvent]:
    with site.store.session() as session:
        return list(session.query(ProviderEvent).order_by(ProviderEvent.id))


def status_of(site, email: str) -> tuple[str, str | None]:
    shown = manage.describe(site.store, email)
    return shown["status"], shown["suppressed"]


# -- verification ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["other key", "tampered signature", "stale", "future", "no signature",
                                 "replayed token", "not json", "non-ascii signature", "form-encoded",
                                 "huge timestamp"])
def test_a_bad_stale_or_replayed_request_is_403_and_changes_nothing(site, how):
    manage.add_subscriber(site.store, "a@example.org", list_name="readers", confirmed=True)
    event = event_data("failed", "a@example.org", severity="permanent", reason="bounce")
    now = int(site.clock.now)
    body = signed(event, now, token="t" * 50)
    if how == "other key":
        body = signed(event, now, key="another-signing-key")
    elif how == "tampered signature":
        data = json.loads(body)
        sig = data["signature"]["signature"]
        data["signature"]["signature"] = sig[:20] + ("0" if sig[20] != "0" else "1") + sig[21:]
        body = json.dumps(data).encode()
    elif how in ("stale", "future"):
        body = signed(event, now + (-301 if how == "stale" else 301))
    elif how == "no signature":
        body = json.dumps({"event-data": event}).encode()
    elif how == "replayed token":
        first = site.client.post("/webhooks/mailgun", content=signed(event_data("opened", "b@example.org"), now,
                                                                     token="t" * 50))
        assert first.status_code == 200
    elif how == "non-ascii signature":
        data = json.loads(body)
        data["signature"]["signature"] = "é" * 64
        body = json.dumps(data, ensure_ascii=False).encode()
    elif how == "huge timestamp":
        body = signed(event, int("9" * 400))
    elif how == "form-encoded":  # Mailgun's legacy webhooks
        body = f"event=bounced&recipient=a%40example.org&timestamp={now}&token={'t' * 50}".encode()
    else:
        body = b"not json"
    response = site.client.post("/webhooks/mailgun", content=body)
    assert response.status_code == 403
    assert all(row.email != "a@example.org" for row in stored(site))
    assert status_of(site, "a@example.org") == ("active", None)


def test_the_edges_of_the_freshness_window_pass(site):
    site.clock.now = float(int(site.clock.now))
    assert site.post(event_data("opened", "a@example.org", n=1), shift=-300).status_code == 200
    assert site.post(event_data("opened", "a@example.org", n=2), shift=300).status_code == 200


def test_no_signing_key_is_503(workspace):
    settings = load_settings()
    store = open_store(settings)
    try:
        keyless = MailgunSite(settings, store, key=None)
        assert keyless.post(event_data("delivered", "a@example.org")).status_code == 503
    finally:
        store.close()


def test_a_signed_body_without_event_data_is_400(site):
    body = json.loads(signed(event_data("delivered", "a@example.org"), int(site.clock.now)))
    del body["event-data"]
    assert site.client.post("/webhooks/mailgun", content=json.dumps(body).encode()).status_code == 400


def test_tokens_are_forgotten_after_the_window_and_memory_stays_bounded():
    clock = Clock(now=1_800_000_000.0)
    source = MailgunEvents(SIGNING_KEY, clock, max_tokens=3)
    body = signed(event_data("opened", "a@example.org"), int(clock.now), token="x" * 40)
    source.verify({}, body)
    with pytest.raises(Refused, match="replayed"):
        source.verify({}, body)
    for i in range(5):
        source.verify({}, signed(event_data("opened", "a@example.org"), int(clock.now), token=f"tok{i}"))
    assert len(source._seen) == 3
    clock.now += 601
    source.verify({}, signed(event_data("opened", "a@example.org"), int(clock.now), token="late"))
    assert list(source._seen) == ["late"]


# -- parsing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "extra", "expected", "hard", "reason"), [
    ("delivered", {}, EventKind.DELIVERED, False, None),
    ("accepted", {}, EventKind.QUEUED, False, None),
    ("opened", {}, EventKind.OPENED, False, None),
    ("clicked", {"url": "https://clinic.example/x"}, EventKind.CLICKED, False, None),
    ("complained", {}, EventKind.COMPLAINED, False, None),
    ("unsubscribed", {}, EventKind.UNSUBSCRIBED, False, None),
    ("failed", {"severity": "permanent", "reason": "bounce"}, EventKind.BOUNCED, True, None),
    ("failed", {"severity": "permanent", "reason": "old"}, EventKind.BOUNCED, False, None),
    ("failed", {"severity": "temporary", "reason": "generic"}, EventKind.DEFERRED, False, None),
    ("failed", {"severity": "permanent", "reason": "suppress-bounce"}, EventKind.REJECTED, False, RejectReason.BOUNCED),
    ("failed", {"severity": "permanent", "reason": "suppress-complaint"}, EventKind.REJECTED, False,
     RejectReason.COMPLAINED),
    ("stored", {}, EventKind.OTHER, False, None),
])
def test_mailgun_events_map_to_our_kinds(kind, extra, expected, hard, reason):
    event = tracking_event(event_data(kind, "a@example.org", variables={"message_id": "nl.x.1.2@clinic.example"},
                                      **extra))
    assert (event.kind, event.hard, event.reject_reason) == (expected, hard, reason)
    assert event.provider == "mailgun" and event.recipient == "a@example.org"
    assert event.message_id == "nl.x.1.2@clinic.example" and event.event_id == f"ev{kind[:3]}000000Q@1790000000.25"
    assert event.occurred_at.timestamp() == 1_790_000_000.25


def test_without_user_variables_the_message_id_header_is_used_and_odd_events_still_parse():
    event = tracking_event(event_data("delivered", "a@example.org", **{"user-variables": None}))
    assert event.message_id == "20261202.0@mg.clinic.example"
    odd = tracking_event({"event": 7, "timestamp": "soon", "recipient": "x\x00@example.org"})
    assert odd.kind is EventKind.OTHER and odd.occurred_at is None and odd.event_id.startswith("sha256:")
    assert "\x00" not in odd.recipient


def test_a_failed_event_keeps_mailguns_reason_as_detail():
    event = tracking_event(event_data("failed", "a@example.org", severity="permanent", reason="bounce",
                                      **{"delivery-status": {"code": 550, "description": "",
                                                             "message": "5.1.1 The email account does not exist"}}))
    assert event.detail == "bounce permanent 550 5.1.1 The email account does not exist"


# -- the pipeline's effect -------------------------------------------------------------------------------

def test_events_match_the_ledger_through_v_message_id_and_a_hard_bounce_suppresses(site, campaign):
    campaign_id, messages = campaign
    ordered = sorted(messages.items())
    (first, m0), (second, m1), (third, m2) = ordered
    assert site.post(event_data("delivered", first, n=1, variables=m0["variables"])).json()["matched"] == 1
    bounce = site.post(event_data("failed", second, n=2, variables=m1["variables"], severity="permanent",
                                  reason="bounce"))
    assert bounce.json() == {"received": 1, "new": 1, "matched": 1, "applied": 1, "unmatched": 0}
    assert status_of(site, second) == ("bounced", "bounced")
    site.post(event_data("failed", third, n=3, variables=m2["variables"], severity="temporary", reason="generic"))
    assert status_of(site, third) == ("active", None)
    rows = {r.email: r for r in stored(site)}
    assert rows[first].campaign_id == campaign_id and rows[first].delivery_id
    assert [r.provider for r in rows.values()] == ["mailgun"] * 3


def test_a_complaint_unsubscribes_everywhere(site, campaign):
    _campaign_id, messages = campaign
    email, message = sorted(messages.items())[0]
    manage.add_subscriber(site.store, email, list_name="other", confirmed=True)
    site.post(event_data("complained", email, variables=message["variables"]))
    shown = manage.describe(site.store, email)
    assert shown["status"] == "complained" and shown["suppressed"] == "complained"


def test_a_retried_event_is_stored_once_though_re_signed(site, campaign):
    """Mailgun signs each retry anew: a new token for the same event id."""
    _campaign_id, messages = campaign
    email, message = sorted(messages.items())[0]
    event = event_data("delivered", email, variables=message["variables"])
    assert site.post(event).json()["new"] == 1
    assert site.post(event).json() == {"received": 1, "new": 0, "matched": 0, "applied": 0, "unmatched": 0}
    assert len(stored(site)) == 1


def test_an_event_for_someone_elses_message_is_stored_unmatched(site, campaign):
    campaign_id, _messages = campaign
    response = site.post(event_data("failed", "stranger@example.org", severity="permanent", reason="bounce",
                                    variables={"message_id": f"nl.0000000000.{campaign_id}.1@clinic.example"}))
    assert response.status_code == 200 and response.json()["matched"] == 0
    (row,) = stored(site)
    assert row.campaign_id is None and row.kind == "bounced"


# -- hostile bodies ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20)
event_fields = st.dictionaries(
    st.sampled_from(["event", "id", "timestamp", "recipient", "severity", "reason", "user-variables", "message",
                     "delivery-status", "url", "tags"]) | st.text(max_size=10), json_values, max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=event_fields, timestamp=st.one_of(st.integers(), st.text(max_size=20), st.none()),
       token=st.one_of(st.text(max_size=300), st.integers(), st.none()), sign=st.booleans())
def test_any_body_is_verified_or_refused_and_any_event_data_parses(event, timestamp, token, sign):
    clock = Clock(now=1_800_000_000.0)
    source = MailgunEvents(SIGNING_KEY, clock)
    if sign:
        body = signed(event, 1_800_000_000, token=str(token) if token else None)
    else:
        body = json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": "ab"},
                           "event-data": event}).encode()
    genuine = sign and len(str(token) if token else "generated") <= 200
    if genuine:
        source.verify({}, body)
    else:
        with pytest.raises(Refused):
            source.verify({}, body)
    (parsed,) = source.parse(body)
    assert parsed.provider == "mailgun" and "\x00" not in parsed.recipient + parsed.event_id + parsed.detail
    assert len(parsed.event_id) <= 200 and len(parsed.recipient) <= 320
