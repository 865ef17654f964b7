"""Postmark webhooks through the real Starlette app, on both backends: basic auth, parsing, the pipeline's effect.

Events are written as Postmark's webhook reference shows them (one JSON
object per request; https://postmarkapp.com/developer/webhooks/, read on
2026-12-02), with our Message-ID in ``Metadata.message_id`` as the transport
puts it there.
"""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from newsletter.audience import manage
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.providers.base import NotConfigured, Refused
from newsletter.providers.postmark.events import PostmarkEvents, tracking_event
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.tracking import EventKind

USER = "postmark-hook"
PASSWORD = "s3cret-Pässword:with-colon"


def auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Site:
    """The public app with Postmark's webhook credentials set."""

    def __init__(self, settings, store):
        from newsletter.web.app import create_app
        from starlette.testclient import TestClient

        self.settings = dataclasses.replace(settings, postmark_webhook_user=USER, postmark_webhook_password=PASSWORD)
        self.store = store
        self.app = create_app(self.settings, store, transport_factory=lambda _s: MemoryTransport(),
                              clock=lambda: 1_790_000_000.0)
        self.client = TestClient(self.app, follow_redirects=False)

    def post(self, event, headers=None):
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return self.client.post("/webhooks/postmark", content=body, headers=auth() if headers is None else headers)


@pytest.fixture
def site(workspace):
    settings = load_settings()
    store = open_store(settings)
    yield Site(settings, store)
    store.close()


@pytest.fixture
def campaign(site, cli, tmp_path):
    """A campaign sent to three readers through the memory transport: (campaign id, {email: our Message-ID})."""
    rows = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(3))
    (tmp_path / "people.csv").write_text("email,name\n" + rows)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    MemoryTransport.clear_shared()
    result = cli("send", "articles/welcome.md", "--list", "readers", "--transport", "memory", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    ids = {m["To"].split("<")[-1].rstrip(">"): m["Message-ID"].strip("<>") for m in MemoryTransport.shared_outbox}
    return result.json()["campaign_id"], ids


def bounce(email: str, kind: str = "HardBounce", n: int = 1, message_id: str | None = None) -> dict:
    return {"RecordType": "Bounce", "ID": 4323372036854775807 + n, "Type": kind, "TypeCode": 1,
            "Name": "Hard bounce", "Tag": "welcome", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {"message_id": message_id} if message_id else {}, "ServerID": 23,
            "MessageStream": "outbound", "Description": "The server was unable to deliver your message",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": email, "From": "news@clinic.example", "BouncedAt": "2026-12-02T09:00:00.1234567Z",
            "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Welcome"}


def subscription_change(email: str, reason: str | None, suppress: bool = True,
                        message_id: str | None = None) -> dict:
    return {"RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 123456, "MessageStream": "broadcast", "ChangedAt": "2026-12-02T10:53:34.416071Z",
            "Recipient": email, "Origin": "Recipient", "SuppressSending": suppress, "SuppressionReason": reason,
            "Tag": "welcome", "Metadata": {"message_id": message_id} if message_id else {}}


def delivery(email: str, message_id: str | None = None) -> dict:
    return {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "broadcast",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Recipient": email, "Tag": "welcome",
            "DeliveredAt": "2026-12-02T09:01:00Z", "Details": "Test delivery webhook details",
            "Metadata": {"message_id": message_id} if message_id else {}}


def stored(site) -> list[ProviderEvent]:
    with site.store.session() as session:
        return list(session.query(ProviderEvent).order_by(ProviderEvent.id))


def status_of(site, email: str) -> tuple[str, str | None]:
    shown = manage.describe(site.store, email)
    return shown["status"], shown["suppressed"]


# -- basic auth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, auth(password="wrong"), auth(user="other"), {"Authorization": "Bearer x"},
    {"Authorization": "Basic !!!not-base64"}, auth(password=PASSWORD + "x"),
])
def test_a_request_without_our_credentials_is_refused_and_stores_nothing(site, headers):
    response = site.post(bounce("a@example.org"), headers=headers)
    assert response.status_code == 403
    assert stored(site) == []
    assert PASSWORD not in response.text


def test_without_credentials_configured_the_webhook_answers_503(workspace):
    settings = load_settings()
    with pytest.raises(NotConfigured):
        PostmarkEvents.from_settings(settings, lambda: 0.0)
    from newsletter.web.app import create_app
    from starlette.testclient import TestClient

    store = open_store(settings)
    try:
        client = TestClient(create_app(settings, store, transport_factory=lambda _s: MemoryTransport()))
        assert client.post("/webhooks/postmark", content=b"{}", headers=auth()).status_code == 503
    finally:
        store.close()


def test_credentials_come_from_the_settings_and_the_environment(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_POSTMARK_WEBHOOK_USER", USER)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD", PASSWORD)
    settings = load_settings()
    source = PostmarkEvents.from_settings(settings, lambda: 0.0)
    source.verify(auth(), b"{}")
    with pytest.raises(Refused):
        source.verify(auth(password="nope"), b"{}")
    assert PASSWORD not in repr(settings) and USER not in repr(settings)


def test_a_body_that_is_not_an_event_is_a_400(site):
    assert site.post(b"not json").status_code == 400
    assert site.post(b"42").status_code == 400
    assert stored(site) == []


# -- parsing and the pipeline --------------------------------------------------------------------

def test_a_hard_bounce_suppresses_the_address(site):
    manage.add_subscriber(site.store, "hard@example.org", list_name="readers", confirmed=True)
    response = site.post(bounce("hard@example.org"))
    assert response.status_code == 200 and response.json()["new"] == 1
    assert status_of(site, "hard@example.org") == ("bounced", "bounced")
    (row,) = stored(site)
    assert row.kind == "bounced" and row.event_id == str(4323372036854775808) and row.provider == "postmark"
    assert "550 5.1.1" in row.detail


def test_soft_bounces_and_auto_replies_do_not_suppress(site):
    for n, kind in enumerate(("SoftBounce", "Transient", "AutoResponder")):
        email = f"{kind.lower()}@example.org"
        manage.add_subscriber(site.store, email, list_name="readers", confirmed=True)
        assert site.post(bounce(email, kind, n=n)).status_code == 200
        assert status_of(site, email) == ("active", None)
    assert [r.kind for r in stored(site)] == ["bounced", "bounced", "other"]


def test_the_same_bounce_posted_twice_is_stored_once(site):
    assert site.post(bounce("twice@example.org")).json()["new"] == 1
    assert site.post(bounce("twice@example.org")).json()["new"] == 0
    assert len(stored(site)) == 1


def test_a_spam_complaint_suppresses_as_complained(site):
    manage.add_subscriber(site.store, "spam@example.org", list_name="readers", confirmed=True)
    complaint = {**bounce("spam@example.org", "SpamComplaint"), "RecordType": "SpamComplaint", "TypeCode": 512}
    site.post(complaint)
    assert status_of(site, "spam@example.org") == ("complained", "complained")


def test_broadcast_suppressions_arrive_as_subscription_changes(site, campaign):
    campaign_id, ids = campaign
    site.post(subscription_change("reader0@example.org", "HardBounce", message_id=ids["reader0@example.org"]))
    site.post(subscription_change("reader1@example.org", "SpamComplaint", message_id=ids["reader1@example.org"]))
    manage.add_subscriber(site.store, "reader2@example.org", list_name="other", confirmed=True)
    site.post(subscription_change("reader2@example.org", "ManualSuppression", message_id=ids["reader2@example.org"]))
    assert status_of(site, "reader0@example.org") == ("bounced", "bounced")
    assert status_of(site, "reader1@example.org") == ("complained", "complained")
    shown = manage.describe(site.store, "reader2@example.org")
    assert shown["status"] == "unsubscribed" and {e["status"] for e in shown["lists"]} == {"unsubscribed"}
    assert shown["consent"][-1]["source"] == "postmark"
    rows = stored(site)
    assert [r.kind for r in rows] == ["bounced", "complained", "unsubscribed"]
    assert all(r.campaign_id == campaign_id and r.delivery_id for r in rows)


def test_a_reactivation_is_recorded_and_changes_nothing(site):
    manage.add_subscriber(site.store, "back@example.org", list_name="readers", confirmed=True)
    site.post(subscription_change("back@example.org", None, suppress=False))
    assert status_of(site, "back@example.org") == ("active", None)
    assert [r.kind for r in stored(site)] == ["resubscribed"]


def test_delivery_open_and_click_are_matched_to_our_message(site, campaign):
    campaign_id, ids = campaign
    message_id = ids["reader0@example.org"]
    site.post(delivery("reader0@example.org", message_id))
    site.post({"RecordType": "Open", "FirstOpen": True, "Client": {"Name": "Chrome"}, "MessageID": "x",
               "ReceivedAt": "2026-12-02T09:02:00Z", "Recipient": "reader0@example.org", "MessageStream": "broadcast",
               "Metadata": {"message_id": message_id}})
    site.post({"RecordType": "Click", "ClickLocation": "HTML", "OriginalLink": "https://example.org/a",
               "MessageID": "x", "ReceivedAt": "2026-12-02T09:03:00Z", "Recipient": "reader0@example.org",
               "Metadata": {"message_id": message_id}})
    rows = stored(site)
    assert [r.kind for r in rows] == ["delivered", "opened", "clicked"]
    assert all(r.campaign_id == campaign_id and r.delivery_id for r in rows)
    assert rows[0].occurred_at.isoformat().startswith("2026-12-02T09:01:00")
    assert all(r.event_id.startswith("sha256:") for r in rows)


def test_an_array_of_events_is_accepted_too(site):
    response = site.post([delivery("a@example.org"), delivery("b@example.org")])
    assert response.status_code == 200 and response.json()["new"] == 2


def test_a_shortened_message_id_still_matches(site, campaign):
    """An id over Postmark's 80-character metadata limit goes out up to its @ (body.metadata): still ours."""
    campaign_id, ids = campaign
    short = ids["reader0@example.org"].partition("@")[0] + "@"
    site.post(delivery("reader0@example.org", short))
    (row,) = stored(site)
    assert row.campaign_id == campaign_id and row.delivery_id


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["RecordType", "Type", "ID", "Email", "Recipient", "Metadata", "BouncedAt",
                                        "ReceivedAt", "SuppressSending", "SuppressionReason", "Details"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.dictionaries(
                           st.text(max_size=5), st.text(max_size=5), max_size=2)), max_size=8))
def test_any_object_becomes_an_event_without_failing(event):
    parsed = tracking_event(event)
    assert parsed.provider == "postmark" and isinstance(parsed.kind, EventKind) and parsed.event_id
    assert "\x00" not in parsed.recipient + parsed.detail + parsed.event_id
