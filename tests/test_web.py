"""Public endpoints: one-click unsubscribe and double opt-in, through the ASGI test client, on both backends."""

from __future__ import annotations

import dataclasses

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import CONFIRM, UNSUBSCRIBE, make_token, unsubscribe_url
from newsletter.store import audience as q
from newsletter.store.db import Store

from support.web import NO_PROOF_OF_WORK, Site, open_site, path_of


@pytest.fixture
def site(workspace):
    # The clinic's own website hosts a signup form that posts here.
    # these tests are about tokens, limits and pages: the proof of work (on by default) has its own tests
    with open_site(None, signup_origins=("https://clinic.example",), **NO_PROOF_OF_WORK) as site:
        yield site


@pytest.fixture
def reader(site):
    """A confirmed reader on two private lists (one with a display name); returns their ids."""
    with site.store.session() as session:
        q.create_list(session, "readers", display_name="Clinic Readers")
    first = manage.add_subscriber(site.store, "Reader@Example.org", name="Ann Reader", list_name="readers",
                                  confirmed=True)
    manage.add_subscriber(site.store, "reader@example.org", list_name="clinic-news", confirmed=True)
    return first


def lists_of(store, email="reader@example.org") -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in manage.describe(store, email)["lists"]}


def consents(store, email="reader@example.org") -> list[tuple[str, str, str | None]]:
    return [(c["action"], c["source"], c["ip"]) for c in manage.describe(store, email)["consent"]]


def token_of(site, reader, purpose=UNSUBSCRIBE, list_id=...):
    return make_token(site.settings.secret_keys, purpose, reader.subscriber_id,
                      reader.list_id if list_id is ... else list_id, reader.email)


# -- unsubscribe --------------------------------------------------------------------------------

def test_get_shows_buttons_and_changes_nothing(site, reader):
    before = consents(site.store)
    response = site.client.get(
        path_of(unsubscribe_url(site.settings, reader.subscriber_id, reader.list_id, reader.email)))
    assert response.status_code == 200
    assert 'method="post"' in response.text and "Unsubscribe from Clinic Readers" in response.text
    assert "Unsubscribe from every list" in response.text
    assert "reader@example.org" not in response.text.lower()  # masked: r•••@example.org
    assert response.headers["referrer-policy"] == "no-referrer"
    assert lists_of(site.store) == {"clinic-news": "confirmed", "readers": "confirmed"}
    assert consents(site.store) == before


def test_one_click_post_unsubscribes_at_once_without_redirect(site, reader, database_url):
    path = f"/unsubscribe/{token_of(site, reader)}"
    response = site.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "location" not in response.headers
    # Committed before the answer: a separate connection sees it.
    other = Store(database_url)
    try:
        assert lists_of(other) == {"clinic-news": "confirmed", "readers": "unsubscribed"}
    finally:
        other.close()
    assert consents(site.store)[-1] == ("unsubscribe", "web", "testclient")
    again = site.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert [c for c in consents(site.store) if c[0] == "unsubscribe"] == [("unsubscribe", "web", "testclient")]


def test_one_click_as_multipart_form_data(site, reader):
    boundary = "----mailclient7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    response = site.client.post(f"/unsubscribe/{token_of(site, reader)}", content=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200
    assert lists_of(site.store)["readers"] == "unsubscribed"


def test_token_without_list_unsubscribes_from_everything(site, reader):
    response = site.client.post(f"/unsubscribe/{token_of(site, reader, list_id=None)}",
                                data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert set(lists_of(site.store).values()) == {"unsubscribed"}
    with site.store.session() as session:
        assert q.suppression_reason(session, _hash("reader@example.org")) == "unsubscribed"


def test_page_buttons_leave_every_list_and_resubscribe(site, reader):
    path = f"/unsubscribe/{token_of(site, reader)}"
    response = site.client.post(path, data={"action": "all"})
    assert response.status_code == 200 and "every list" in response.text
    assert set(lists_of(site.store).values()) == {"unsubscribed"}
    assert manage.describe(site.store, "reader@example.org")["status"] == "unsubscribed"
    assert 'value="resubscribe"' in site.client.get(path).text
    back = site.client.post(path, data={"action": "resubscribe"})
    assert back.status_code == 200 and "subscribed to Clinic Readers again" in back.text
    assert lists_of(site.store) == {"clinic-news": "unsubscribed", "readers": "confirmed"}
    shown = manage.describe(site.store, "reader@example.org")
    assert shown["status"] == "active" and shown["suppressed"] is None
    assert consents(site.store)[-1] == ("resubscribe", "web", "testclient")


@pytest.mark.parametrize("mangle, status", [
    (lambda t: t[:-6] + ("AAAA" if "AAAA" not in t[-6:] else "BBBB") + t[-2:], 400),  # signature changed
    (lambda t: "9" + t, 404),                                                         # no such subscriber
    (lambda t: "not-a-token", 400),
])
def test_tampered_token_is_refused_and_changes_nothing(site, reader, mangle, status):
    path = f"/unsubscribe/{mangle(token_of(site, reader))}"
    assert site.client.get(path).status_code == status
    response = site.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == status and "link" in response.text
    assert lists_of(site.store) == {"clinic-news": "confirmed", "readers": "confirmed"}


def test_token_of_another_purpose_or_unknown_subscriber_is_refused(site, reader):
    confirm_token = token_of(site, reader, purpose=CONFIRM)
    assert site.client.post(f"/unsubscribe/{confirm_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    ghost = make_token(site.settings.secret_keys, UNSUBSCRIBE, 999_999, reader.list_id, reader.email)
    assert site.client.post(f"/unsubscribe/{ghost}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert lists_of(site.store) == {"clinic-news": "confirmed", "readers": "confirmed"}


def test_key_rotation(site, reader):
    old_token = token_of(site, reader)
    rotated = dataclasses.replace(site.settings, secret_keys=("a-brand-new-key",) + site.settings.secret_keys)
    new_site = Site(rotated, site.store, keys=None)
    assert new_site.client.get(f"/unsubscribe/{old_token}").status_code == 200  # old mail keeps working
    retired = dataclasses.replace(site.settings, secret_keys=("a-brand-new-key",))
    assert Site(retired, site.store, keys=None).client.post(
        f"/unsubscribe/{old_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert lists_of(site.store)["readers"] == "confirmed"


def test_post_without_instructions_is_refused(site, reader):
    response = site.client.post(f"/unsubscribe/{token_of(site, reader)}", data={"something": "else"})
    assert response.status_code == 400
    assert lists_of(site.store)["readers"] == "confirmed"


def test_nothing_after_the_token(site, reader):
    assert site.client.get(f"/unsubscribe/{token_of(site, reader)}/extra").status_code == 404


# -- double opt-in ------------------------------------------------------------------------------

@pytest.fixture
def double(site):
    with site.store.session() as session:
        q.create_list(session, "letters", double_opt_in=True, public=True)
        q.create_list(session, "open-list", double_opt_in=False, public=True)


def signup(site, **fields):
    data = {"email": "new@example.org", "list": "letters", **fields}
    return site.client.post("/subscribe", data=data, headers={"Referer": "https://clinic.example/blog"})


def test_signup_confirmation_by_email(site, double):
    response = signup(site, name="New Reader")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert lists_of(site.store, "new@example.org") == {"letters": "pending"}
    [message] = site.transport.outbox
    assert message["To"] == "New Reader <new@example.org>"  # the posted name greets the new reader
    assert "List-Unsubscribe" not in message
    [link] = site.confirm_links()
    assert link.startswith("https://news.clinic.example/confirm/")
    page = site.client.get(path_of(link))
    assert page.status_code == 200 and 'id="confirm"' in page.text
    assert lists_of(site.store, "new@example.org") == {"letters": "pending"}  # a GET changes nothing
    done = site.client.post(path_of(link))
    assert done.status_code == 200 and "subscribed" in done.text
    assert lists_of(site.store, "new@example.org") == {"letters": "confirmed"}
    assert site.client.post(path_of(link)).status_code == 200  # idempotent
    recorded = consents(site.store, "new@example.org")
    assert recorded == [("subscribe", "web https://clinic.example/blog", "testclient"),
                        ("confirm", "web", "testclient")]
    shown = manage.describe(site.store, "new@example.org")
    assert shown["name"] == "New Reader" and all(c["at"] for c in shown["consent"])


def test_confirm_token_is_checked(site, double):
    signup(site)
    [link] = site.confirm_links()
    token = link.rsplit("/", 1)[1]
    # A middle character: every one of its bits counts (the last base64
    # character may carry unused bits, so changing it can leave the bytes alone).
    middle = next(i for i in range(len(token) // 2, len(token)) if token[i].isalnum())
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    assert tampered != token
    assert site.client.post(f"/confirm/{tampered}").status_code == 400
    assert site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert lists_of(site.store, "new@example.org") == {"letters": "pending"}


def test_honeypot_pretends_and_stores_nothing(site, double):
    response = signup(site, website="http://spam.example")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert site.transport.outbox == []
    with site.store.session() as session:
        assert q.find_subscriber(session, "new@example.org") is None


def test_rate_limit_per_address(site, double):
    for _ in range(3):
        assert signup(site).status_code == 200
    assert len(site.transport.outbox) == 3
    refused = signup(site, email="NEW@example.org")
    assert refused.status_code == 429 and len(site.transport.outbox) == 3
    assert signup(site, email="other@example.org").status_code == 200  # per address, not global
    site.clock.now += 3601
    assert signup(site).status_code == 200 and len(site.transport.outbox) == 5


@pytest.mark.parametrize("fields, words", [
    ({"email": "not-an-address"}, "address"),
    ({"email": ""}, "mpty address"),
    ({"list": "no-such-list"}, "no list named"),
])
def test_signup_validation(site, double, fields, words):
    response = signup(site, **fields)
    assert response.status_code == 400 and words in response.text
    with site.store.session() as session:
        assert q.find_list(session, "no-such-list") is None
    assert site.transport.outbox == []


def test_signup_json_answers(site, double):
    ok = site.client.post("/subscribe", data={"email": "j@example.org", "list": "letters"},
                          headers={"Accept": "application/json"})
    assert ok.status_code == 200 and ok.json() == {"ok": True, "status": "pending"}
    bad = site.client.post("/subscribe", data={"email": "nope", "list": "letters"},
                           headers={"Accept": "application/json"})
    assert bad.status_code == 400 and bad.json()["ok"] is False and bad.json()["error"]


def test_single_opt_in_list_subscribes_directly(site, double):
    response = signup(site, list="open-list")
    assert response.status_code == 200 and "Thank you" in response.text
    assert lists_of(site.store, "new@example.org") == {"open-list": "confirmed"}
    assert site.transport.outbox == []


def test_signup_reveals_nothing_and_changes_nothing_for_known_addresses(site, double, reader):
    manage.add_subscriber(site.store, "gone@example.org", list_name="letters", confirmed=True)
    manage.unsubscribe(site.store, "gone@example.org")  # suppressed
    manage.add_subscriber(site.store, "reader@example.org", list_name="letters", confirmed=True)
    for email in ("gone@example.org", "reader@example.org"):
        response = signup(site, email=email, name="Mallory")
        assert response.status_code == 200 and "Check your inbox" in response.text
    assert site.transport.outbox == []
    assert lists_of(site.store, "gone@example.org") == {"letters": "unsubscribed"}
    assert manage.describe(site.store, "reader@example.org")["name"] == "Ann Reader"


def test_signup_form_page(site, double):
    page = site.client.get("/subscribe")
    assert page.status_code == 200 and 'name="website"' in page.text
    assert '<option value="letters">letters</option>' in page.text


def _hash(email):
    from newsletter.vocabulary.addresses import address_hash

    return address_hash(email)
