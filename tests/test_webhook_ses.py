"""SES events through SNS: signatures, the subscription handshake, parsing, and their effect, through the real app.

SNS messages are signed here with a locally generated certificate served on
127.0.0.1 (tests/support/sns.py); the app accepts that host only because
these settings turn ``sns_allow_loopback`` on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from newsletter.audience import manage
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.providers.base import NotConfigured, Refused
from newsletter.providers.ses.events import SesEvents, string_to_sign, tracking_events
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.tracking import EventKind

from support.sns import TOPIC, SnsHost, make_certificate, ses_event
from support.web import Clock


@pytest.fixture
def sns():
    with SnsHost() as host:
        yield host


class App:
    """The public app with SES events configured for ``TOPIC``."""

    def __init__(self, settings, store, allow_loopback: bool = True):
        from newsletter.web.app import create_app
        from starlette.testclient import TestClient

        self.settings = dataclasses.replace(settings, ses_topic_arns=(TOPIC,), ses_sns_allow_loopback=allow_loopback)
        self.store = store
        self.clock = Clock()
        self.app = create_app(self.settings, store, transport_factory=lambda _s: MemoryTransport(), clock=self.clock)
        self.client = TestClient(self.app)

    def post(self, message: dict, **headers: str):
        body = json.dumps(message).encode()
        headers = {"x-amz-sns-message-type": message.get("Type", ""), "Content-Type": "text/plain", **headers}
        return self.client.post("/webhooks/ses", content=body, headers=headers)


@pytest.fixture
def app(workspace):
    settings = load_settings()
    store = open_store(settings)
    yield App(settings, store)
    store.close()


@pytest.fixture
def campaign(app, cli, tmp_path):
    """A campaign to three readers through the memory transport: (campaign id, {email: our Message-ID})."""
    rows = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(3))
    (tmp_path / "people.csv").write_text("email,name\n" + rows)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    MemoryTransport.clear_shared()
    result = cli("send", "articles/welcome.md", "--list", "readers", "--transport", "memory", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    ids = {m["To"].split("<")[-1].rstrip(">"): m["Message-ID"].strip("<>") for m in MemoryTransport.shared_outbox}
    return result.json()["campaign_id"], ids


def stored(app) -> list[ProviderEvent]:
    with app.store.session() as session:
        return list(session.query(ProviderEvent).order_by(ProviderEvent.id))


# -- the pipeline's effect -----------------------------------------------------------------------

def test_a_hard_bounce_suppresses_the_address_and_finds_its_delivery(app, sns, campaign):
    campaign_id, ids = campaign
    response = app.post(sns.notification(ses_event("Bounce", "reader1@example.org",
                                                    message_id=ids["reader1@example.org"])))
    assert response.status_code == 200 and response.json()["new"] == 1 and response.json()["matched"] == 1
    shown = manage.describe(app.store, "reader1@example.org")
    assert shown["status"] == "bounced" and shown["suppressed"] == "bounced"
    row, = stored(app)
    assert (row.provider, row.kind, row.campaign_id) == ("ses", "bounced", campaign_id)


def test_the_message_id_is_found_through_the_tag_when_headers_are_left_out(app, sns, campaign):
    campaign_id, ids = campaign
    response = app.post(sns.notification(ses_event("Delivery", "reader2@example.org",
                                                    message_id=ids["reader2@example.org"], via="tag")))
    assert response.json()["matched"] == 1
    assert stored(app)[0].campaign_id == campaign_id


def test_a_transient_bounce_does_not_suppress(app, sns, campaign):
    _campaign_id, ids = campaign
    app.post(sns.notification(ses_event("Bounce", "reader0@example.org", message_id=ids["reader0@example.org"],
                                        bounce_type="Transient")))
    shown = manage.describe(app.store, "reader0@example.org")
    assert shown["status"] == "active" and shown["suppressed"] is None


def test_a_complaint_suppresses_as_complained(app, sns, campaign):
    _campaign_id, ids = campaign
    app.post(sns.notification(ses_event("Complaint", "reader2@example.org", message_id=ids["reader2@example.org"])))
    shown = manage.describe(app.store, "reader2@example.org")
    assert (shown["status"], shown["suppressed"]) == ("complained", "complained")


def test_the_same_notification_twice_is_applied_once(app, sns, campaign):
    _campaign_id, ids = campaign
    message = sns.notification(ses_event("Delivery", "reader0@example.org", message_id=ids["reader0@example.org"]))
    assert app.post(message).json()["new"] == 1
    assert app.post(message).json()["new"] == 0
    assert len(stored(app)) == 1


# -- verification --------------------------------------------------------------------------------

def test_signature_versions_1_and_2_are_accepted_and_the_certificate_is_cached(app, sns):
    for version in ("1", "2"):
        response = app.post(sns.notification(ses_event("Delivery", "a@example.org"), version=version))
        assert response.status_code == 200, response.text
    assert sns.cert_fetches == 1


def test_a_tampered_message_is_refused(app, sns):
    message = sns.notification(ses_event("Bounce", "victim@example.org"))
    event = json.loads(message["Message"])
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = "someone-else@example.org"
    message["Message"] = json.dumps(event)
    assert app.post(message).status_code == 403
    assert stored(app) == []


def test_a_message_signed_by_another_key_is_refused(app, sns):
    other_key, _pem = make_certificate()
    message = sns.sign({**sns.notification(ses_event("Delivery", "a@example.org"))}, key=other_key)
    assert app.post(message).status_code == 403


def test_another_topic_is_refused(app, sns):
    message = sns.notification(ses_event("Bounce", "a@example.org"), topic="arn:aws:sns:us-east-1:999:theirs")
    response = app.post(message)
    assert response.status_code == 403 and "topic" in response.json()["error"]


def test_a_stale_message_is_refused(app, sns):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    assert app.post(sns.notification(ses_event("Delivery", "a@example.org"), when=old)).status_code == 403


@pytest.mark.parametrize("url", [
    "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
    "http://sns.us-east-1.amazonaws.com/cert.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
])
def test_a_certificate_off_the_sns_hosts_is_refused_before_any_fetch(app, sns, url):
    message = sns.notification(ses_event("Delivery", "a@example.org"))
    message["SigningCertURL"] = url
    assert app.post(message).status_code == 403 and sns.cert_fetches == 0


def test_loopback_certificates_need_the_test_setting(workspace, sns):
    settings = load_settings()
    store = open_store(settings)
    try:
        strict = App(settings, store, allow_loopback=False)
        response = strict.post(sns.notification(ses_event("Delivery", "a@example.org")))
        assert response.status_code == 403 and sns.cert_fetches == 0
    finally:
        store.close()


def test_the_sns_host_pattern_is_the_documented_one():
    source = SesEvents((TOPIC,), clock=lambda: 0.0)
    assert source._allowed_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert source._allowed_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem")
    assert not source._allowed_url("http://127.0.0.1:8000/cert.pem")


def test_a_body_that_is_not_sns_is_refused(app):
    assert app.client.post("/webhooks/ses", content=b"[1, 2]").status_code == 403
    assert app.client.post("/webhooks/ses", content=b"\xff\xfe").status_code == 403


def test_without_topic_arns_the_webhook_answers_503(workspace):
    settings = load_settings()
    with pytest.raises(NotConfigured):
        SesEvents.from_settings(settings, clock=lambda: 0.0)


def test_the_string_to_sign_follows_the_sns_guide():
    message = {"Type": "Notification", "Message": "m", "MessageId": "id", "Subject": "s",
               "Timestamp": "t", "TopicArn": "arn", "Signature": "x", "UnsubscribeURL": "u"}
    assert string_to_sign(message) == "Message\nm\nMessageId\nid\nSubject\ns\nTimestamp\nt\nTopicArn\narn\nType\n" \
                                      "Notification\n"
    del message["Subject"]
    assert "Subject" not in string_to_sign(message)


# -- the subscription handshake ------------------------------------------------------------------

def test_a_subscription_confirmation_is_confirmed(app, sns):
    response = app.post(sns.subscription_confirmation())
    assert response.status_code == 200 and response.json() == {"confirmed": TOPIC}
    assert len(sns.confirmations) == 1 and "Action=ConfirmSubscription" in sns.confirmations[0]
    assert stored(app) == []


def test_a_confirmation_for_another_host_is_not_followed(app, sns):
    message = sns.subscription_confirmation(subscribe_url="https://evil.example/confirm")
    assert app.post(message).status_code == 403 and sns.confirmations == []


def test_a_forged_confirmation_is_not_followed(app, sns):
    message = sns.subscription_confirmation()
    message["Token"] = "other"
    assert app.post(message).status_code == 403 and sns.confirmations == []


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("event_type", "kind"), [
    ("Bounce", EventKind.BOUNCED), ("Complaint", EventKind.COMPLAINED), ("Delivery", EventKind.DELIVERED),
    ("Send", EventKind.QUEUED), ("Reject", EventKind.REJECTED), ("Open", EventKind.OPENED),
    ("Click", EventKind.CLICKED), ("DeliveryDelay", EventKind.DEFERRED),
])
def test_each_ses_event_type_maps_to_its_kind(event_type, kind):
    event, = tracking_events(ses_event(event_type, "zoe@xn--bcher-kva.example",
                                       message_id="nl.abc.1.2@clinic.example"))
    assert event.kind is kind and event.provider == "ses"
    assert event.recipient == "zoe@xn--bcher-kva.example" and event.message_id == "nl.abc.1.2@clinic.example"
    assert event.hard is (event_type == "Bounce") and event.occurred_at is not None


def test_a_notification_type_record_parses_too():
    event = ses_event("Bounce", "a@example.org")
    event["notificationType"] = event.pop("eventType")
    parsed, = tracking_events(event)
    assert parsed.kind is EventKind.BOUNCED and parsed.hard and "550 5.1.1" in parsed.detail


def test_an_unknown_event_type_is_kept_as_other():
    event = ses_event("Send", "a@example.org")
    event["eventType"] = "Something New"
    parsed, = tracking_events(event)
    assert parsed.kind is EventKind.OTHER


def test_refused_is_raised_for_a_bad_timestamp():
    source = SesEvents((TOPIC,), clock=lambda: 0.0)
    with pytest.raises(Refused):
        source.verify({}, json.dumps({"Type": "Notification", "TopicArn": TOPIC, "SignatureVersion": "2",
                                      "Timestamp": "yesterday"}).encode())


def test_a_certificate_that_cannot_be_fetched_answers_503_so_sns_retries(app, sns):
    message = sns.notification(ses_event("Delivery", "a@example.org"))
    message["SigningCertURL"] = "http://127.0.0.1:9/cert.pem"  # not a signed field; nothing listens there
    assert app.post(message).status_code == 503 and stored(app) == []
