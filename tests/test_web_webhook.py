"""SendGrid Event Webhook, the web archive and the campaign report, through the ASGI test client, on both backends.

The webhook key pair is generated here; events are signed exactly as SendGrid
signs them (ECDSA P-256 over timestamp + raw body) and checked by the app
through the sendgrid library's own helper.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC

import pytest
from newsletter.audience import manage
from newsletter.audience.addresses import address_hash
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.store import audience as q
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.store.models import Delivery
from newsletter.tracking import EventKind, TrackingEvent

from support.web import KeyPair, Site, open_site, path_of

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def site(workspace):
    with open_site(KeyPair()) as site:
        yield site


@pytest.fixture
def campaign(site, cli, tmp_path):
    """A campaign sent to three readers through the memory transport: (campaign id, {email: message})."""
    rows = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(3))
    (tmp_path / "people.csv").write_text("email,name\n" + rows)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    MemoryTransport.clear_shared()
    result = cli("send", "articles/welcome.md", "--list", "readers", "--transport", "memory", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    messages = {m["To"].split("<")[-1].rstrip(">"): m for m in MemoryTransport.shared_outbox}
    return result.json()["campaign_id"], messages


def event(kind: str, email: str, *, campaign_id=None, message=None, n=0, **extra) -> dict:
    """An event as SendGrid posts it: our custom_args appear as top-level keys."""
    data = {"email": email, "event": kind, "timestamp": 1_790_000_000 + n, "sg_event_id": f"ev-{kind}-{email}-{n}",
            "sg_message_id": f"sgmsg{n}.filter0001"}
    if message is not None:
        data.update(campaign_id=str(campaign_id), subscriber_id="1",
                    message_id=message["Message-ID"].strip("<>"))
    data.update(extra)
    return data


def stored(site) -> list[ProviderEvent]:
    with site.store.session() as session:
        return list(session.query(ProviderEvent).order_by(ProviderEvent.id))


def status_of(site, email: str) -> tuple[str, str | None]:
    shown = manage.describe(site.store, email)
    return shown["status"], shown["suppressed"]


# -- signature -----------------------------------------------------------------------------------

def test_signed_batch_is_stored_normalised_with_the_raw_event(site):
    events = [event("delivered", "a@example.org"), event("open", "a@example.org", n=1),
              event("click", "a@example.org", n=2, url="https://clinic.example/x")]
    response = site.post_events(events)
    assert response.status_code == 200 and response.json()["new"] == 3
    rows = stored(site)
    assert [r.kind for r in rows] == ["delivered", "opened", "clicked"]
    assert rows[0].raw == events[0] and rows[0].event_id == "ev-delivered-a@example.org-0"
    assert rows[0].occurred_at.timestamp() == 1_790_000_000 and rows[0].provider == "sendgrid"


@pytest.mark.parametrize("how", ["tampered body", "other key", "no headers", "stale", "future", "garbage signature"])
def test_bad_or_stale_signature_is_403_and_changes_nothing(site, how):
    manage.add_subscriber(site.store, "a@example.org", list_name="readers", confirmed=True)
    body = json.dumps([event("spamreport", "a@example.org")]).encode()
    headers = site.keys.headers(body, int(site.clock.now))
    if how == "tampered body":
        body = body.replace(b"a@example.org", b"b@example.org")
    elif how == "other key":
        headers = KeyPair().headers(body, int(site.clock.now))
    elif how == "no headers":
        headers = {}
    elif how in ("stale", "future"):
        shift = -601 if how == "stale" else 601
        headers = site.keys.headers(body, int(site.clock.now) + shift)
    else:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    response = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403
    assert stored(site) == [] and status_of(site, "a@example.org") == ("active", None)


def test_reserialised_json_fails_verification(site):
    """The signature covers the raw bytes: a body re-encoded with other spacing must not pass."""
    events = [event("delivered", "a@example.org")]
    body = json.dumps(events).encode()
    headers = site.keys.headers(body, int(site.clock.now))
    other = json.dumps(events, separators=(",", ":")).encode()
    assert site.client.post("/webhooks/sendgrid", content=other, headers=headers).status_code == 403


def test_no_key_configured_is_503(workspace):
    settings = load_settings()
    store = open_store(settings)
    try:
        keyless = Site(settings, store, keys=None)
        body = b"[]"
        response = keyless.client.post("/webhooks/sendgrid", content=body, headers=KeyPair().headers(body, 0))
        assert response.status_code == 503
    finally:
        store.close()


def test_signed_body_that_is_not_a_batch_is_400(site):
    assert site.post_events(None, body=b'{"event": "delivered"}').status_code == 400
    assert site.post_events(None, body=b"not json").status_code == 400


# -- dedupe, matching, effects ----------------------------------------------------------------------

def test_replayed_batch_is_applied_once(site):
    events = [event("delivered", f"r{i}@example.org", n=i) for i in range(5)]
    assert site.post_events(events).json()["new"] == 5
    again = site.post_events(events + events[:2])  # SendGrid repeats, even within a batch
    assert again.status_code == 200 and again.json() == {"received": 7, "new": 0, "matched": 0, "unmatched": 0,
                                                               "applied": 0}
    assert len(stored(site)) == 5


def test_events_match_ledger_rows_through_custom_args(site, campaign):
    campaign_id, messages = campaign
    events = [event("delivered", email, campaign_id=campaign_id, message=m, n=i)
              for i, (email, m) in enumerate(sorted(messages.items()))]
    events.append(event("delivered", "stranger@example.org", n=9,
                        message_id=f"nl.0000000000.{campaign_id}.1@clinic.example"))  # not our tag
    response = site.post_events(events)
    assert response.json()["matched"] == 3
    rows = {r.email: r for r in stored(site)}
    assert all(rows[e].campaign_id == campaign_id and rows[e].delivery_id for e in messages)
    assert rows["stranger@example.org"].delivery_id is None and rows["stranger@example.org"].campaign_id is None
    with site.store.session() as session:
        for email in messages:
            assert session.get(Delivery, rows[email].delivery_id).email == email


def test_hard_bounce_and_spam_report_suppress_blocked_does_not(site):
    for email in ("hard@example.org", "spam@example.org", "blocked@example.org", "dropped@example.org"):
        manage.add_subscriber(site.store, email, list_name="readers", confirmed=True)
    site.post_events([
        event("bounce", "hard@example.org", type="bounce", reason="550 5.1.1 no such user"),
        event("spamreport", "spam@example.org"),
        event("bounce", "blocked@example.org", type="blocked", reason="421 try later"),
        event("dropped", "dropped@example.org", reason="Bounced Address"),
    ])
    assert status_of(site, "hard@example.org") == ("bounced", "bounced")
    assert status_of(site, "spam@example.org") == ("complained", "complained")
    assert status_of(site, "blocked@example.org") == ("active", None)
    assert status_of(site, "dropped@example.org") == ("bounced", "bounced")


def test_bounce_of_an_unknown_address_is_still_suppressed(site):
    site.post_events([event("bounce", "Never@Example.org", type="bounce")])
    with site.store.session() as session:
        assert q.suppression_reason(session, address_hash("never@example.org")) == "bounced"


def test_unsubscribe_event_for_our_message_unsubscribes_everywhere(site, campaign):
    campaign_id, messages = campaign
    manage.add_subscriber(site.store, "reader1@example.org", list_name="other", confirmed=True)
    site.post_events([event("unsubscribe", "reader1@example.org", campaign_id=campaign_id,
                            message=messages["reader1@example.org"])])
    shown = manage.describe(site.store, "reader1@example.org")
    assert shown["status"] == "unsubscribed" and shown["suppressed"] == "unsubscribed"
    assert {entry["status"] for entry in shown["lists"]} == {"unsubscribed"}
    assert shown["consent"][-1]["source"] == "sendgrid"
    # Someone else's message on a shared account changes nothing here.
    site.post_events([event("group_unsubscribe", "reader2@example.org", n=1,
                            message_id=f"nl.0000000000.{campaign_id}.2@clinic.example")])
    assert status_of(site, "reader2@example.org") == ("active", None)


def test_a_thousand_events_in_one_batch(site, campaign):
    campaign_id, messages = campaign
    message = messages["reader0@example.org"]
    kinds = ["processed", "delivered", "open", "click", "deferred"]
    events = [event(kinds[i % 5], f"r{i}@example.org", n=i) for i in range(995)]
    events += [event("bounce", f"b{i}@example.org", n=i, type="bounce") for i in range(4)]
    events.append(event("delivered", "reader0@example.org", campaign_id=campaign_id, message=message, n=5000))
    response = site.post_events(events)
    assert response.json() == {"received": 1000, "new": 1000, "matched": 1, "unmatched": 999,
                                 "applied": 4}
    assert len(stored(site)) == 1000
    assert site.post_events(events).json()["new"] == 0


# -- one route for every provider ------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["nosuch", "smtp", "SendGrid"])
def test_a_provider_that_posts_no_events_is_404(site, provider):
    body = json.dumps([event("delivered", "a@example.org")]).encode()
    response = site.client.post(f"/webhooks/{provider}", content=body,
                                headers=site.keys.headers(body, int(site.clock.now)))
    assert response.status_code == 404 and stored(site) == []


class FakeEvents:
    """A second provider, registered by the test below: signs with a shared word, posts {id, kind, email, mid}."""

    name = "fakepost"

    def __init__(self, settings):
        self.word = settings.secret_keys[0]

    @classmethod
    def from_settings(cls, settings, clock):
        return cls(settings)

    def verify(self, headers, raw_body):
        from newsletter.providers.base import Refused

        if headers.get("X-Fake-Word") != self.word:
            raise Refused("bad word")

    def parse(self, raw_body):
        return [TrackingEvent(provider=self.name, kind=EventKind(e["kind"]), event_id=e["id"], recipient=e["email"],
                              occurred_at=None, raw=e, message_id=e.get("mid"), hard=True)
                for e in json.loads(raw_body)]


def test_a_registered_provider_gets_its_route_and_the_same_pipeline(site, campaign, monkeypatch):
    from newsletter import transports as registry

    monkeypatch.setitem(registry.PROVIDERS, "fakepost", registry.Provider(
        "fakepost", "newsletter.delivery.memory:MemoryTransport", events=f"{__name__}:FakeEvents"))
    campaign_id, messages = campaign
    mid = messages["reader0@example.org"]["Message-ID"].strip("<>")
    body = json.dumps([{"id": "f1", "kind": "bounced", "email": "reader0@example.org", "mid": mid},
                       {"id": "f2", "kind": "opened", "email": "reader1@example.org"}]).encode()
    refused = site.client.post("/webhooks/fakepost", content=body, headers={"X-Fake-Word": "guess"})
    assert refused.status_code == 403 and stored(site) == []
    word = {"X-Fake-Word": site.settings.secret_keys[0]}
    response = site.client.post("/webhooks/fakepost", content=body, headers=word)
    assert response.json() == {"received": 2, "new": 2, "matched": 1, "unmatched": 1, "applied": 1}
    rows = stored(site)
    assert [(r.provider, r.kind, r.campaign_id) for r in rows] == [("fakepost", "bounced", campaign_id),
                                                                   ("fakepost", "opened", None)]
    assert status_of(site, "reader0@example.org") == ("bounced", "bounced")
    assert site.client.post("/webhooks/fakepost", content=body, headers=word).json()["new"] == 0


def test_sendgrid_processed_and_dropped_are_stored_as_queued_and_rejected(site):
    site.post_events([event("processed", "a@example.org"), event("dropped", "b@example.org", reason="Invalid")])
    assert [r.kind for r in stored(site)] == ["queued", "rejected"]


# -- the campaign report -------------------------------------------------------------------------

def test_campaigns_show_reports_events_and_rates(site, campaign, cli):
    campaign_id, messages = campaign
    ordered = sorted(messages.items())
    events = [event("delivered", e, campaign_id=campaign_id, message=m, n=i) for i, (e, m) in enumerate(ordered)]
    events += [event("open", ordered[0][0], campaign_id=campaign_id, message=ordered[0][1], n=10 + i)
               for i in range(3)]  # three opens, one reader
    events.append(event("click", ordered[0][0], campaign_id=campaign_id, message=ordered[0][1], n=20))
    events.append(event("spamreport", ordered[1][0], campaign_id=campaign_id, message=ordered[1][1], n=21))
    events.append(event("bounce", ordered[2][0], campaign_id=campaign_id, message=ordered[2][1], n=22, type="bounce"))
    site.post_events(events)
    shown = cli("campaigns", "show", str(campaign_id), "--json").json()
    assert shown["events"] == {"delivered": 3, "bounced": 1, "opened": 1, "clicked": 1, "complained": 1,
                               "unsubscribed": 0}
    [sendgrid] = shown["providers"]
    assert {k: sendgrid[k] for k in ("provider", "sent", "delivered", "hard_bounced", "soft_bounced", "rejected",
                                     "complained", "opened", "clicked")} == {
        "provider": "sendgrid", "sent": 3, "delivered": 3, "hard_bounced": 1, "soft_bounced": 0, "rejected": 0,
        "complained": 1, "opened": 1, "clicked": 1}
    assert sendgrid["complaint_rate"] == pytest.approx(1 / 3)
    assert sendgrid["hard_bounce_rate"] == pytest.approx(1 / 3)
    assert (sendgrid["complaint_limit"], sendgrid["hard_bounce_limit"]) == (0.001, 0.01)
    assert sendgrid["ok"] is False and shown["rates"]["ok"] is False
    human = cli("campaigns", "show", str(campaign_id))
    assert "sendgrid complaint rate: 33.33% (limit 0.1%) over the limit" in human.stdout
    assert "sendgrid hard-bounce rate: 33.33% (limit 1.0%) over the limit" in human.stdout
    assert "suspend senders over these limits" in human.stderr


# -- the archive -----------------------------------------------------------------------------------

def test_archive_lists_sent_editions_and_shows_them_without_personal_data(site, campaign):
    _campaign_id, messages = campaign
    index = site.client.get("/archive")
    assert index.status_code == 200 and 'href="https://news.clinic.example/archive/welcome' in index.text
    web_link = next(h for h in messages["reader0@example.org"].get_body(("html",)).get_content().split('"')
                    if "/archive/" in h)  # the email's "view in browser" link
    page = site.client.get(path_of(web_link))
    assert page.status_code == 200
    for personal in ("reader0@example.org", "Reader 0", "/unsubscribe/"):
        assert personal not in page.text
    assert "https://news.clinic.example/unsubscribe" in page.text
    assert site.client.get("/unsubscribe").status_code == 200
    assert site.client.get("/archive/no-such-issue").status_code == 404


def test_unsent_editions_stay_out_of_the_archive(site):
    from datetime import datetime

    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign

    manage.add_subscriber(site.store, "a@example.org", list_name="readers", confirmed=True)
    edition = compose_edition("articles/welcome.md", site.settings)
    create_campaign(site.store, site.settings, edition, "readers", "memory", status="scheduled",
                    scheduled_at=datetime(2099, 1, 1, tzinfo=UTC))
    assert "/archive/welcome" not in site.client.get("/archive").text
    assert site.client.get("/archive/welcome").status_code == 404
    assert ET.fromstring(site.client.get("/feed.xml").content).findall(f"{ATOM}entry") == []


def test_atom_feed(site, campaign):
    response = site.client.get("/feed.xml")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    assert root.find(f"{ATOM}id").text and root.find(f"{ATOM}updated").text.endswith("Z")
    [entry] = root.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}id").text.startswith("https://news.clinic.example/archive/welcome")
    assert entry.find(f"{ATOM}title").text and entry.find(f"{ATOM}updated").text
    assert entry.find(f"{ATOM}link").get("href") == entry.find(f"{ATOM}id").text
