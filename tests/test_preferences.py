"""The preference centre (/preferences/{token}) and data rights, through the ASGI test client, on both backends.

Every action of the page, what a GET by a link scanner leaves alone, tampered
and foreign links, the same-origin and form-token checks, the snooze honoured
by a real send, and the footer link of a sent message opening its reader's page.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import CONFIRM, UNSUBSCRIBE, confirm_url, make_token, preferences_url, unsubscribe_url
from newsletter.store import audience as q
from newsletter.store.models import Subscriber, Suppression
from newsletter.vocabulary import address_hash

from support.web import open_site, path_of

BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"
SCANNER_AGENT = "Mozilla/5.0 (compatible; SafeLinks scanner)"


@pytest.fixture
def site(workspace):
    with open_site(None) as site:
        yield site


@pytest.fixture
def reader(site):
    """Ann: confirmed on the public "news" (display name Clinic News) and the private "staff" list; the
    public "events" list exists too (she is not on it)."""
    with site.store.session() as session:
        q.create_list(session, "news", public=True, display_name="Clinic News")
        q.create_list(session, "events", public=True, display_name="Open Days")
        q.create_list(session, "staff")
    manage.add_subscriber(site.store, "ann@example.org", name="Ann Reader", list_name="news", confirmed=True)
    return manage.add_subscriber(site.store, "ann@example.org", list_name="staff", confirmed=True)


def page_path(site, reader) -> str:
    return path_of(preferences_url(site.settings, reader.subscriber_id, reader.email, reader.list_id))


def list_id(site, name: str) -> int:
    with site.store.session() as session:
        return q.get_list(session, name).id


def post(site, path: str, action: str, **fields):
    token = path.rsplit("/", 1)[1]
    return site.client.post(path, data={"token": token, "action": action, **fields},
                            headers={"User-Agent": BROWSER_AGENT, "Sec-Fetch-Site": "same-origin"})


def state(site, email="ann@example.org") -> dict:
    """Everything a change could touch: lists, consent rows, name, zone, snooze."""
    data = manage.describe(site.store, email)
    return {key: data[key] for key in ("name", "timezone", "snoozed_until", "lists", "consent", "suppressed")}


def last_consent(site, email="ann@example.org") -> dict:
    return manage.describe(site.store, email)["consent"][-1]


# -- GET shows, and changes nothing -------------------------------------------------------------

def test_get_shows_public_lists_by_display_name_and_changes_nothing(site, reader):
    before = state(site)
    response = site.client.get(page_path(site, reader))
    assert response.status_code == 200
    text = response.text
    assert "Leave Clinic News" in text and "Join Open Days" in text
    assert "staff" not in text  # a private list is never named on the page
    assert "ann@example.org" not in text and "a•••@example.org" in text
    assert "Pause for 30 days" in text and "Download my data" in text and "Erase my data" in text
    assert 'method="post"' in text and "<form" in text
    assert response.headers["cache-control"] == "no-store"
    assert state(site) == before


def test_a_scanner_following_every_link_changes_nothing(site, reader):
    """Mail scanners fetch (GET and HEAD) every link of a message: confirm, unsubscribe, preferences."""
    pending = manage.add_subscriber(site.store, "bob@example.org", list_name="events")
    with site.store.session() as session:
        q.update_list(session, "events", double_opt_in=True)
    pending = manage.add_subscriber(site.store, "cat@example.org", list_name="events")
    assert pending.list_status == "pending"
    links = [preferences_url(site.settings, reader.subscriber_id, reader.email),
             unsubscribe_url(site.settings, reader.subscriber_id, reader.list_id, reader.email),
             unsubscribe_url(site.settings, reader.subscriber_id, None, reader.email),
             confirm_url(site.settings, pending.subscriber_id, pending.list_id, pending.email, issued=site.clock.now)]
    before = (state(site), state(site, "cat@example.org"))
    for link in links:
        for method in (site.client.get, site.client.head):
            response = method(path_of(link), headers={"User-Agent": SCANNER_AGENT})
            assert response.status_code == 200, link
    assert (state(site), state(site, "cat@example.org")) == before
    assert state(site, "cat@example.org")["lists"][0]["status"] == "pending"


# -- links that must not work -------------------------------------------------------------------

def tampered(token: str) -> str:
    """The token with a middle character of its signature changed (the last may carry only padding bits)."""
    head, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1:]}"


def test_tampered_foreign_and_erased_links_are_refused_with_a_plain_page(site, reader):
    other = manage.add_subscriber(site.store, "eve@example.org", list_name="news", confirmed=True)
    good = page_path(site, reader).rsplit("/", 1)[1]
    # Eve's id with a signature made for Ann's address; Ann's id signed for Eve's address.
    foreign = [make_token(site.settings.secret_keys, UNSUBSCRIBE, other.subscriber_id, None, "ann@example.org"),
               make_token(site.settings.secret_keys, UNSUBSCRIBE, reader.subscriber_id, None, "eve@example.org"),
               make_token(site.settings.secret_keys, CONFIRM, reader.subscriber_id, reader.list_id, reader.email),
               tampered(good), "1.0", "not-a-token", f"{2**40}.0.abc"]
    before = (state(site), state(site, "eve@example.org"))
    for token in foreign:
        shown = site.client.get(f"/preferences/{token}")
        assert shown.status_code == 400, token
        assert "This link is not valid" in shown.text and "Leave" not in shown.text
        posted = post(site, f"/preferences/{token}", "unsubscribe")
        assert posted.status_code == 400, token
    assert (state(site), state(site, "eve@example.org")) == before
    manage.erase(site.store, "eve@example.org")
    gone = make_token(site.settings.secret_keys, UNSUBSCRIBE, other.subscriber_id, None, "eve@example.org")
    assert site.client.get(f"/preferences/{gone}").status_code == 404


def test_posts_from_another_site_or_without_the_page_token_change_nothing(site, reader):
    path = page_path(site, reader)
    token = path.rsplit("/", 1)[1]
    before = state(site)
    elsewhere = site.client.post(path, data={"token": token, "action": "unsubscribe"},
                                 headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert elsewhere.status_code == 403
    hidden_origin = site.client.post(path, data={"token": token, "action": "unsubscribe"}, headers={"Origin": "null"})
    assert hidden_origin.status_code == 403
    without_token = site.client.post(path, data={"action": "unsubscribe"})
    assert without_token.status_code == 400
    other_token = site.client.post(path, data={"action": "unsubscribe", "token": tampered(token)})
    assert other_token.status_code == 400
    unknown = post(site, path, "delete-everything")
    assert unknown.status_code == 400
    assert state(site) == before


# -- every action -------------------------------------------------------------------------------

def test_join_and_leave_public_lists_with_proof(site, reader):
    path = page_path(site, reader)
    joined = post(site, path, "join", list=str(list_id(site, "events")))
    assert joined.status_code == 200 and "You are now on Open Days." in joined.text
    assert "Leave Open Days" in joined.text
    lists = {entry["name"]: entry["status"] for entry in state(site)["lists"]}
    assert lists == {"events": "confirmed", "news": "confirmed", "staff": "confirmed"}
    consent = last_consent(site)
    assert (consent["action"], consent["list"], consent["source"], consent["ip"]) == (
        "subscribe", "events", "web", "testclient")
    assert consent["user_agent"] == BROWSER_AGENT and consent["consent_text"] == "Join Open Days"
    assert consent["form"] == "preference centre v1"
    assert consent["source_url"] == "https://news.clinic.example/preferences"  # never the token

    left = post(site, path, "leave", list=str(list_id(site, "news")))
    assert left.status_code == 200 and "You are no longer on Clinic News." in left.text
    assert {e["name"]: e["status"] for e in state(site)["lists"]}["news"] == "unsubscribed"
    consent = last_consent(site)
    assert (consent["action"], consent["list"], consent["ip"], consent["consent_text"]) == (
        "unsubscribe", "news", "testclient", "Leave Clinic News")
    again = post(site, path, "join", list=str(list_id(site, "news")))
    assert "You are now on Clinic News." in again.text
    assert last_consent(site)["action"] == "resubscribe"


def test_a_private_list_cannot_be_joined_from_the_page(site, reader):
    with site.store.session() as session:
        secret = q.create_list(session, "board").id
    before = state(site)
    response = post(site, page_path(site, reader), "join", list=str(secret))
    assert response.status_code == 404
    assert post(site, page_path(site, reader), "join", list="abc").status_code == 400
    assert state(site) == before


def test_snooze_pauses_for_the_chosen_days_and_resumes(site, reader):
    path = page_path(site, reader)
    site.clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    response = post(site, path, "snooze", days="60")
    assert response.status_code == 200 and "paused until 30 April 2026" in response.text
    assert state(site)["snoozed_until"] == datetime(2026, 4, 30, 12, 0, tzinfo=UTC)
    consent = last_consent(site)
    assert (consent["action"], consent["detail"], consent["ip"]) == (
        "snooze", "paused until 2026-04-30 12:00 UTC", "testclient")
    assert post(site, path, "snooze", days="45").status_code == 400
    assert state(site)["snoozed_until"] == datetime(2026, 4, 30, 12, 0, tzinfo=UTC)
    resumed = post(site, path, "snooze", days="0")
    assert "Your email is back on." in resumed.text and state(site)["snoozed_until"] is None
    assert last_consent(site)["detail"] == "mail resumed"


def test_name_and_time_zone_are_validated_and_saved(site, reader):
    path = page_path(site, reader)
    before = state(site)
    bad = post(site, path, "profile", name="Ann", timezone="Mars/Olympus")
    assert bad.status_code == 400 and "Save my details" in bad.text
    assert "Unknown time zone &#39;Mars/Olympus&#39;" in bad.text
    assert state(site) == before
    saved = post(site, path, "profile", name="Ann\r\nBcc: x@evil.example", timezone="Europe/Paris")
    assert saved.status_code == 200 and "Saved your name and time zone." in saved.text
    now = state(site)
    assert (now["name"], now["timezone"]) == ("Ann Bcc: x@evil.example", "Europe/Paris")
    assert last_consent(site)["detail"] == "changed: name, time zone"
    assert 'value="Europe/Paris"' in saved.text
    assert "Nothing changed." in post(site, path, "profile", name=now["name"], timezone="Europe/Paris").text


def test_unsubscribe_from_everything_suppresses(site, reader):
    response = post(site, page_path(site, reader), "unsubscribe")
    assert response.status_code == 200 and "unsubscribed from every list" in response.text
    now = state(site)
    assert {e["status"] for e in now["lists"]} == {"unsubscribed"} and now["suppressed"] == "unsubscribed"
    assert [c["consent_text"] for c in now["consent"] if c["action"] == "unsubscribe"] == [
        "Unsubscribe from everything"] * 2


def test_download_is_everything_held_and_is_logged(site, reader):
    post(site, page_path(site, reader), "snooze", days="30")
    response = post(site, page_path(site, reader), "export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    data = json.loads(response.text)
    assert data["format"] == "newsletter subscriber data v1"
    assert (data["email"], data["name"]) == ("ann@example.org", "Ann Reader")
    assert {entry["name"] for entry in data["lists"]} == {"news", "staff"}
    assert [c["action"] for c in data["consent"]][-2:] == ["snooze", "export"]
    assert data["snoozed_until"] is not None
    assert last_consent(site)["action"] == "export"


def test_erase_needs_the_box_ticked_and_keeps_only_the_hash(site, reader, database_url):
    path = page_path(site, reader)
    before = state(site)
    unticked = post(site, path, "erase")
    assert unticked.status_code == 400 and state(site) == before
    erased = post(site, path, "erase", confirm="yes")
    assert erased.status_code == 200 and "Your data is erased" in erased.text
    with site.store.session() as session:
        assert session.query(Subscriber).count() == 0
        row = session.get(Suppression, address_hash("ann@example.org"))
        assert (row.reason, row.detail) == ("erased", "erased at the subscriber's request (web)")
    assert site.client.get(path).status_code == 404
    assert post(site, path, "unsubscribe").status_code == 404


# -- snooze at send time, and the footer link ---------------------------------------------------

def test_a_send_skips_snoozed_readers_and_its_footer_opens_each_readers_page(site, reader, tmp_path):
    from newsletter.compose.edition import compose_edition
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign

    manage.add_subscriber(site.store, "bob@example.org", name="Bob", list_name="news", confirmed=True)
    manage.add_subscriber(site.store, "cat@example.org", list_name="news", confirmed=True)
    with site.store.session() as session:
        bob = q.find_subscriber(session, "bob@example.org")
        cat = q.find_subscriber(session, "cat@example.org")
        bob.snoozed_until = datetime.now(UTC) + timedelta(days=30)   # paused: skipped
        cat.snoozed_until = datetime.now(UTC) - timedelta(minutes=1)  # the pause is over: mailed
    edition = compose_edition("articles/welcome.md", site.settings)
    campaign_id = create_campaign(site.store, site.settings, edition, "news", "memory")
    transport = MemoryTransport()
    report = start_campaign(site.store, site.settings, campaign_id, transport)
    assert report.sent == 2
    sent = {message["To"].addresses[0].addr_spec: message for message in transport.outbox}
    assert set(sent) == {"ann@example.org", "cat@example.org"}
    for address, message in sent.items():
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        [link] = set(re.findall(r'href="(https://news\.clinic\.example/preferences/[^"]+)"', html))
        assert f"Manage your subscription: {link}" in text
        page = site.client.get(path_of(link))
        assert page.status_code == 200
        assert f"{address[0]}•••@example.org" in page.text
    # The archive's copy is nobody's: its footer leads to the page that says where the personal link is.
    archived = site.client.get(f"/archive/{edition.slug}").text
    assert 'href="https://news.clinic.example/preferences"' in archived and "/preferences/" not in archived
    assert "Manage your subscription" in site.client.get("/preferences").text
