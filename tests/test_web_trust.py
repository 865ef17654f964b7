"""Never misdirect: ids and tokens, public and private lists, forms from other sites, forged hosts, the archive.

Every test runs on a SQLite file and on PostgreSQL (the ``workspace``
fixture), through the ASGI test client; the clock is the app's own
(``Site.clock``), so expiry needs no sleeping.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from newsletter.audience import manage
from newsletter.audience.tokens import CONFIRM, UNSUBSCRIBE, check_address, make_token, read_token
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.store import audience as q
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.store.models import Consent, Subscriber, utcnow
from sqlalchemy import insert, select

from support.web import NO_PROOF_OF_WORK, KeyPair, Site, open_site, path_of

DAY = 86400


@pytest.fixture
def site(workspace):
    # these tests are about tokens, origins and limits: the proof of work (on by default) has its own tests
    with open_site(KeyPair(), **NO_PROOF_OF_WORK) as site:
        yield site


@pytest.fixture
def lists(site):
    """``weekly`` (public, double opt-in, shown as "Clinic News Weekly"), ``open-list`` (public, single opt-in)
    and ``patients`` (private, as the CLI creates lists by default)."""
    with site.store.session() as session:
        q.create_list(session, "weekly", double_opt_in=True, public=True, display_name="Clinic News Weekly")
        q.create_list(session, "open-list", public=True)
        q.create_list(session, "patients")


def lists_of(store, email) -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in manage.describe(store, email)["lists"]}


def consent_rows(store, action: str) -> int:
    with store.session() as session:
        return len(session.scalars(select(Consent).where(Consent.action == action)).all())


def signup(site, headers=None, **fields):
    data = {"email": "new@example.org", "list": "weekly", **fields}
    return site.client.post("/subscribe", data=data, headers=headers or {})


# -- ids are never reused, tokens bind to the address ---------------------------------------------

def test_an_erased_readers_old_links_do_nothing_to_the_next_subscriber(site, lists):
    gone = manage.add_subscriber(site.store, "gone@example.org", list_name="weekly")
    assert gone.list_status == "pending"
    manage.add_subscriber(site.store, "gone@example.org", list_name="open-list")
    keys = site.settings.secret_keys
    old_unsubscribe = make_token(keys, UNSUBSCRIBE, gone.subscriber_id, None, gone.email)
    old_confirm = make_token(keys, CONFIRM, gone.subscriber_id, gone.list_id, gone.email, issued=site.clock())
    manage.erase(site.store, "gone@example.org")
    stranger = manage.add_subscriber(site.store, "stranger@example.org", list_name="weekly")
    manage.add_subscriber(site.store, "stranger@example.org", list_name="open-list")
    assert stranger.subscriber_id != gone.subscriber_id  # ids are never handed out twice

    for path in (f"/unsubscribe/{old_unsubscribe}", f"/confirm/{old_confirm}"):
        assert 400 <= site.client.get(path).status_code < 500
    assert 400 <= site.client.post(f"/confirm/{old_confirm}").status_code < 500
    response = site.client.post(f"/unsubscribe/{old_unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert 400 <= response.status_code < 500 and "s•••@example.org" not in response.text
    assert lists_of(site.store, "stranger@example.org") == {"weekly": "pending", "open-list": "confirmed"}
    assert consent_rows(site.store, "unsubscribe") == consent_rows(site.store, "confirm") == 0


def test_a_token_for_one_address_never_verifies_for_another_under_the_same_id(site, lists):
    """Even if an id came back (a restored backup, a hand-edited database), the signature covers the address."""
    first = manage.add_subscriber(site.store, "first@example.org", list_name="weekly")
    old_unsubscribe = make_token(site.settings.secret_keys, UNSUBSCRIBE, first.subscriber_id, first.list_id,
                                 first.email)
    old_confirm = make_token(site.settings.secret_keys, CONFIRM, first.subscriber_id, first.list_id, first.email,
                             issued=site.clock())
    manage.erase(site.store, "first@example.org")
    with site.store.session() as session:  # the next person gets the freed id
        session.execute(insert(Subscriber.__table__).values(
            id=first.subscriber_id, email="second@example.org", email_key="second@example.org",
            email_hash="0" * 64, name="", attributes={}, status="active",
            created_at=utcnow(), updated_at=utcnow()))
    manage.add_subscriber(site.store, "second@example.org", list_name="weekly")
    assert site.client.post(f"/confirm/{old_confirm}").status_code == 400
    assert site.client.post(f"/unsubscribe/{old_unsubscribe}",
                            data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert lists_of(site.store, "second@example.org") == {"weekly": "pending"}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.emails(), second=st.emails(), subscriber_id=st.integers(1, 2**31 - 1),
       list_id=st.one_of(st.none(), st.integers(1, 2**31 - 1)), purpose=st.sampled_from([UNSUBSCRIBE, CONFIRM]))
def test_tokens_verify_only_for_their_own_address(first, second, subscriber_id, list_id, purpose):
    keys = ("k" * 40,)
    token = make_token(keys, purpose, subscriber_id, list_id, first, issued=1_800_000_000)
    data = read_token(keys, purpose, token, now=1_800_000_000)
    assert (data.subscriber_id, data.list_id) == (subscriber_id, list_id)
    assert check_address(data, first) and check_address(data, first.upper())
    assert check_address(data, second) is (first.lower() == second.lower())
    assert "@" not in token and "/" not in token


# -- token lifetimes -------------------------------------------------------------------------------

def test_confirmation_links_expire_after_seven_days_and_expired_ones_change_nothing(site, lists):
    assert signup(site).status_code == 200
    [link] = site.confirm_links()
    site.clock.now += 7 * DAY + 1
    page = site.client.get(path_of(link))
    assert page.status_code == 410 and "expired" in page.text and "subscribe again" in page.text.lower()
    assert site.client.post(path_of(link)).status_code == 410
    assert lists_of(site.store, "new@example.org") == {"weekly": "pending"}
    assert consent_rows(site.store, "confirm") == 0


def test_confirmation_links_work_within_their_lifetime(site, lists):
    assert signup(site).status_code == 200
    [link] = site.confirm_links()
    site.clock.now += 7 * DAY - 60
    assert site.client.post(path_of(link)).status_code == 200
    assert lists_of(site.store, "new@example.org") == {"weekly": "confirmed"}


def test_confirmation_lifetime_is_configurable(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_CONFIRM_TOKEN_DAYS", "1")
    monkeypatch.setenv("NEWSLETTER_SIGNUP_PROOF_OF_WORK", "0")  # about the tokens' lifetime, not the proof of work
    settings = load_settings()
    assert settings.confirm_token_days == 1
    store = open_store(settings)
    try:
        site = Site(settings, store, keys=None)
        with store.session() as session:
            q.create_list(session, "weekly", double_opt_in=True, public=True)
        assert signup(site).status_code == 200
        [link] = site.confirm_links()
        site.clock.now += DAY + 1
        assert site.client.post(path_of(link)).status_code == 410
        assert lists_of(store, "new@example.org") == {"weekly": "pending"}
    finally:
        store.close()


def test_unsubscribe_links_keep_working_long_after_the_send(site, lists):
    reader = manage.add_subscriber(site.store, "reader@example.org", list_name="open-list")
    token = make_token(site.settings.secret_keys, UNSUBSCRIBE, reader.subscriber_id, reader.list_id, reader.email)
    site.clock.now += 400 * DAY
    response = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert lists_of(site.store, "reader@example.org") == {"open-list": "unsubscribed"}


# -- public and private lists, display names --------------------------------------------------------

def test_the_form_offers_only_public_lists_by_their_display_names(site, lists):
    page = site.client.get("/subscribe")
    assert page.status_code == 200
    assert "Clinic News Weekly" in page.text and 'value="open-list"' in page.text
    assert "patients" not in page.text


def test_a_private_list_cannot_be_joined_from_the_web_and_is_not_revealed(site, lists):
    private = signup(site, list="patients", headers={"Accept": "application/json"})
    unknown = signup(site, list="no-such-list", headers={"Accept": "application/json"})
    assert private.status_code == unknown.status_code == 400
    assert private.json()["error"].replace("patients", "X") == unknown.json()["error"].replace("no-such-list", "X")
    assert signup(site, list="patients").status_code == 400
    with site.store.session() as session:
        assert q.find_subscriber(session, "new@example.org") is None
    assert site.transport.outbox == []


def test_lists_created_on_the_fly_by_the_cli_are_private(site, lists):
    manage.add_subscriber(site.store, "x@example.org", list_name="staff-only")  # created as it is named
    assert signup(site, list="staff-only").status_code == 400
    assert "staff-only" not in site.client.get("/subscribe").text


def test_readers_see_display_names_never_internal_names(site, lists):
    assert signup(site, name="Ann").status_code == 200
    [message] = site.transport.outbox
    body = message.get_body(("plain",)).get_content() + message.get_body(("html",)).get_content()
    assert "Clinic News Weekly" in body and "weekly" not in body.replace("Weekly", "")
    [link] = site.confirm_links()
    for response in (site.client.get(path_of(link)), site.client.post(path_of(link))):
        assert "Clinic News Weekly" in response.text and "weekly" not in response.text.replace("Weekly", "")
    patient = manage.add_subscriber(site.store, "patient@example.org", list_name="patients", confirmed=True)
    token = make_token(site.settings.secret_keys, UNSUBSCRIBE, patient.subscriber_id, patient.list_id,
                       patient.email)
    for response in (site.client.get(f"/unsubscribe/{token}"),
                     site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
                     site.client.get(f"/unsubscribe/{token}")):
        assert response.status_code == 200
        assert "patients" not in response.text and site.settings.name in response.text


def test_single_opt_in_public_list_page_names_the_display_name(site, lists):
    with site.store.session() as session:
        q.update_list(session, "open-list", display_name="Clinic Alerts")
    response = signup(site, list="open-list")
    assert response.status_code == 200 and "Clinic Alerts" in response.text and "open-list" not in response.text


# -- the form from other sites, and the limits -----------------------------------------------------------

@pytest.mark.parametrize("headers, why", [
    ({"Origin": "https://evil.example"}, "another website"),
    ({"Referer": "https://evil.example/page"}, "another website"),
    ({"Sec-Fetch-Site": "cross-site"}, "another website"),
    ({"Sec-Fetch-Site": "same-site", "Origin": "https://blog.news.clinic.example"}, "another website"),
    ({"Origin": "https://news.clinic.example.evil.example"}, "another website"),
    ({"Origin": "null"}, "hides its origin"),
])
def test_cross_site_posts_are_refused(site, lists, headers, why):
    response = signup(site, headers=headers)
    assert response.status_code == 403 and why in response.text
    with site.store.session() as session:
        assert q.find_subscriber(session, "new@example.org") is None
    assert site.transport.outbox == []


@pytest.mark.parametrize("headers", [
    {},                                                            # not a browser: the limits still apply
    {"Origin": "https://news.clinic.example"},                     # our own origin (base_url)
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"},  # our own page, behind a proxy
    {"Referer": "https://news.clinic.example/subscribe"},
])
def test_same_origin_posts_go_through(site, lists, headers):
    assert signup(site, headers=headers).status_code == 200
    assert lists_of(site.store, "new@example.org") == {"weekly": "pending"}


def test_the_publishers_own_website_can_be_allowed(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SIGNUP_ORIGINS", "https://www.clinic.example, https://clinic.example:8443")
    monkeypatch.setenv("NEWSLETTER_SIGNUP_PROOF_OF_WORK", "0")  # about the origins, not the proof of work
    settings = load_settings()
    assert settings.signup_origins == ("https://www.clinic.example", "https://clinic.example:8443")
    store = open_store(settings)
    try:
        site = Site(settings, store, keys=None)
        with store.session() as session:
            q.create_list(session, "weekly", double_opt_in=True, public=True)
        assert signup(site, headers={"Origin": "https://www.clinic.example"}).status_code == 200
        assert signup(site, email="b@example.org", headers={"Origin": "https://clinic.example"}).status_code == 403
    finally:
        store.close()


def test_bad_signup_origins_setting_is_a_config_error(workspace, cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SIGNUP_ORIGINS", "www.clinic.example/blog")
    result = cli("lists", "list")
    assert result.exit_code != 0 and "NEWSLETTER_SIGNUP_ORIGINS" in result.stderr and "Traceback" not in result.stderr


def test_per_address_limit_holds_on_single_opt_in_lists_too(site, lists):
    for _ in range(3):
        assert signup(site, list="open-list").status_code == 200
    assert signup(site, list="open-list").status_code == 429
    assert signup(site, list="weekly").status_code == 429  # the address's limit, whatever the list
    assert site.transport.outbox == []


def test_per_ip_limit_across_addresses_and_lists(site, lists):
    from newsletter.usecases.signups import MAX_PER_IP

    for i in range(MAX_PER_IP):
        assert signup(site, email=f"person{i}@example.org", list=("weekly", "open-list")[i % 2]).status_code == 200
    refused = signup(site, email="one-more@example.org", list="open-list")
    assert refused.status_code == 429
    with site.store.session() as session:
        assert q.find_subscriber(session, "one-more@example.org") is None
    site.clock.now += 3601
    assert signup(site, email="one-more@example.org", list="open-list").status_code == 200


# -- request bodies and webhook ids ----------------------------------------------------------------

def _asgi_post(app, path: str, *, total: int, chunk: int = 64 * 1024, declared: bool,
               content_type: bytes = b"application/json") -> tuple[int, int]:
    """POST ``total`` bytes to ``path`` of the ASGI app, streamed in chunks; returns (status, bytes the app read)."""
    import anyio

    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read >= total:
            return {"type": "http.request", "body": b"", "more_body": False}
        size = min(chunk, total - read)
        read += size
        return {"type": "http.request", "body": b"a" * size, "more_body": read < total}

    async def send(message):
        sent.append(message)

    raw_headers = [(b"content-type", content_type)]
    if declared:
        raw_headers.append((b"content-length", str(total).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw_headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    anyio.run(app, scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), read


@pytest.mark.parametrize("declared", [True, False], ids=["with-content-length", "streamed"])
def test_a_huge_webhook_body_is_refused_without_reading_it(site, declared):
    from newsletter.web.webhook import MAX_BODY_BYTES

    status, read = _asgi_post(site.app, "/webhooks/sendgrid", total=MAX_BODY_BYTES + 20 * 1024 * 1024,
                              declared=declared)
    assert status == 413
    assert read <= (0 if declared else MAX_BODY_BYTES + 64 * 1024)  # stopped at the cap, or before the first byte
    with site.store.session() as session:
        assert session.scalars(select(ProviderEvent)).all() == []


@pytest.mark.parametrize("declared", [True, False], ids=["with-content-length", "streamed"])
def test_a_huge_form_post_is_refused_without_reading_it(site, lists, declared):
    status, read = _asgi_post(site.app, "/subscribe", total=5 * 1024 * 1024, declared=declared,
                              content_type=b"application/x-www-form-urlencoded")
    assert status == 413 and read <= (0 if declared else 128 * 1024)


@pytest.mark.parametrize("message_id", [
    "nl.{tag}.1.{big}@news.clinic.example",        # delivery id far beyond any integer column
    "nl.{tag}.1.2147483648@news.clinic.example",   # one past PostgreSQL's integer
])
def test_impossible_ids_in_a_signed_event_are_ignored_not_a_500(site, message_id):
    from newsletter.delivery.message_id import tag as message_id_tag

    manage.add_subscriber(site.store, "a@example.org", list_name="readers", confirmed=True)
    mid = message_id.format(tag=message_id_tag(site.settings.secret_keys[0]), big=10**30)
    events = [{"email": "a@example.org", "event": "delivered", "timestamp": 1_790_000_000, "sg_event_id": "ev-1",
               "message_id": mid, "campaign_id": str(10**30), "subscriber_id": "1"},
              {"email": "a@example.org", "event": "open", "timestamp": 1_790_000_001, "sg_event_id": "ev-2"}]
    response = site.post_events(events)
    assert response.status_code == 200 and response.json() == {"received": 2, "new": 2, "matched": 0,
                                                                    "unmatched": 2, "applied": 0}
    with site.store.session() as session:
        rows = session.scalars(select(ProviderEvent).order_by(ProviderEvent.id)).all()
    assert [(r.event_id, r.delivery_id, r.campaign_id) for r in rows] == [("ev-1", None, None), ("ev-2", None, None)]


# -- forged Host ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/archive/", "/subscribe/", "/healthz/", "/unsubscribe/"])
def test_a_forged_host_header_never_steers_a_redirect(site, path):
    response = site.client.get(path, headers={"Host": "evil.example"})
    assert "evil.example" not in response.headers.get("location", "")
    assert not 300 <= response.status_code < 400


# -- the archive ---------------------------------------------------------------------------------

def _send_welcome(site, transport: MemoryTransport) -> str:
    """Send the workspace's welcome article to ``readers`` through ``transport``; returns its slug."""
    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign

    edition = compose_edition("articles/welcome.md", site.settings)
    campaign_id = create_campaign(site.store, site.settings, edition, "readers", "memory")
    start_campaign(site.store, site.settings, campaign_id, transport)
    return edition.slug


def test_a_campaign_nobody_received_is_not_in_the_archive(site):
    for email in ("a@example.org", "b@example.org"):
        manage.add_subscriber(site.store, email, list_name="readers", confirmed=True)
    slug = _send_welcome(site, MemoryTransport(reject={"a@example.org"}, fail={"b@example.org"}))
    assert f"/archive/{slug}" not in site.client.get("/archive").text
    assert site.client.get(f"/archive/{slug}").status_code == 404
    assert b"<entry" not in site.client.get("/feed.xml").content


def test_the_archived_copy_has_no_greeting_and_no_artefacts(site):
    manage.add_subscriber(site.store, "zoe.obrien@example.org", name="Zoë O'Brien", list_name="readers",
                          confirmed=True)
    manage.add_subscriber(site.store, "nobody@example.org", list_name="readers", confirmed=True)
    slug = _send_welcome(site, MemoryTransport())
    assert f"/archive/{slug}" in site.client.get("/archive").text
    page = site.client.get(f"/archive/{slug}")
    assert page.status_code == 200
    text = " ".join(page.text.split())
    for artefact in ("Hi there,", "Hi reader,", "Hello,", "at .", "Hi ,", "%%", "Zoë", "nobody@example.org"):
        assert artefact not in text  # the greeting line is left out: nobody in particular reads it
    assert f"You get this as a subscriber of {site.settings.name} at your email address." in text


# -- unsubscribe links mailed before this version ------------------------------------------------------

def _old_style_token(keys, subscriber_id: int, list_id: int) -> str:
    """An unsubscribe token as the previous version signed it: the two ids only."""
    from itsdangerous import Signer

    return Signer(list(reversed(keys)), salt="newsletter.unsubscribe").sign(f"{subscriber_id}.{list_id}").decode()


def test_old_unsubscribe_links_work_only_for_subscribers_from_before_the_upgrade(tmp_path, monkeypatch):
    from newsletter.workspace import init_workspace

    from test_store import _upgrade_to

    folder = tmp_path / "letter"
    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street, Springfield",
                   base_url="https://news.clinic.example", transport="file")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    monkeypatch.chdir(folder)
    _upgrade_to(url, "0005")  # a database of the previous version with one subscriber
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO subscribers (id, email, email_key, email_hash, name, attributes, status,"
                                " created_at, updated_at) VALUES (1, 'old@example.org', 'old@example.org', :h, '',"
                                " '{}', 'active', '2026-01-01', '2026-01-01')"), {"h": "1" * 64})
        connection.execute(text("INSERT INTO lists (id, name, double_opt_in, created_at) VALUES (1, 'readers', 0,"
                                " '2026-01-01')"))
        connection.execute(text("INSERT INTO memberships (subscriber_id, list_id, status, subscribed_at, "
                                "consent_source) VALUES (1, 1, 'confirmed', '2026-01-01', 'cli')"))
    engine.dispose()
    settings = load_settings()
    store = open_store(settings)  # upgrades
    try:
        site = Site(settings, store, keys=None)
        newer = manage.add_subscriber(store, "new@example.org", list_name="readers", confirmed=True)
        keys = settings.secret_keys
        response = site.client.post(f"/unsubscribe/{_old_style_token(keys, 1, 1)}",
                                    data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert lists_of(store, "old@example.org") == {"readers": "unsubscribed"}
        refused = site.client.post(f"/unsubscribe/{_old_style_token(keys, newer.subscriber_id, 1)}",
                                   data={"List-Unsubscribe": "One-Click"})
        assert refused.status_code == 400
        assert lists_of(store, "new@example.org") == {"readers": "confirmed"}
    finally:
        store.close()


# -- hostile form input ----------------------------------------------------------------------------

HOSTILE_NAMES = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["Zoë O'Brien, MD; \"Ann\"", "Ann\r\nBcc: victim@example.org", "nul\x00byte", "x" * 5000,
                     "%%email%% {{ 1/0 }}", "", "\u202eevil", "Renée Dupont-Éluard"]),
)
HOSTILE_ADDRESSES = st.one_of(
    st.emails(),
    st.sampled_from(["renée.dupont@hotmail.com", "user@bücher.example", '"quoted name"@example.org',
                     "a" * 65 + "@example.org", "x@" + "d" * 300 + ".org", "a@b\r\nBcc: c@d.org", "nul\x00@x.org",
                     "", "no-at-sign", "a@" + "é" * 20 + ".example"]),
)


@hsettings(max_examples=30, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(email=HOSTILE_ADDRESSES, name=HOSTILE_NAMES)
def test_hostile_signups_never_break_the_form(site, lists, email, name):
    site.clock.now += 3601  # a fresh hour: the limits do not mask what the form does
    response = signup(site, email=email, name=name, list="open-list", headers={"Accept": "application/json"})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 400:
        assert body["ok"] is False and body["error"] and "Traceback" not in response.text
        return
    with site.store.session() as session:
        stored = session.scalars(select(Subscriber).order_by(Subscriber.id.desc()).limit(1)).one()
    assert len(stored.name) <= 200 and not any(ord(c) < 32 or ord(c) == 127 for c in stored.name)
    assert "\r" not in stored.email and "\n" not in stored.email


def test_an_unexpected_error_is_a_500_whose_log_holds_no_personal_data(site, lists, caplog):
    who = "secret.person@example.org (Zoë Secret)"

    def broken_transport(_settings):
        raise RuntimeError(f"cannot reach smtp for {who}")  # the kind of message a library writes

    site.app.state.ctx.transport_factory = broken_transport
    response = signup(site, email="secret.person@example.org", name="Zoë Secret")
    assert response.status_code == 500 and "secret.person" not in response.text
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "internal error on POST" in logged and "RuntimeError" in logged and "broken_transport" in logged
    assert "secret.person" not in logged and "Zoë" not in logged


def test_a_signed_event_with_nul_and_huge_fields_is_stored_not_a_500(site):
    events = [{"email": "a\x00b@example.org", "event": "bounce", "timestamp": "not-a-time", "sg_event_id": "ev\x00-1",
               "type": "bounce", "reason": "550 \x00" + "r" * 10_000, "extra": {"nested": ["\x00", 10**40]}}]
    response = site.post_events(events)
    assert response.status_code == 200 and response.json()["new"] == 1
    with site.store.session() as session:
        [row] = session.scalars(select(ProviderEvent)).all()
    assert row.event_id == "ev-1" and row.email == "ab@example.org" and len(row.detail) <= 2000


@pytest.mark.parametrize("token", ["99999999999999999999.1.c2ln", "1.99999999999999999999.c2ln", "2147483648.0.c2ln",
                                   "١.١.c2ln", "1.1.sïg", "1.1.", "1..c2ln", "-1.1.c2ln", "1.1.1.1.1", "9" * 5000])
def test_malformed_tokens_are_400_never_500(site, token):
    for path in (f"/unsubscribe/{token}", f"/confirm/{token}"):
        assert site.client.get(path).status_code == 400
        assert site.client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 400


@pytest.mark.parametrize("fields", [{"list": "week\x00ly"}, {"email": "a\x00@example.org"}, {"name": "A\x00"},
                                    {"list": "l" * 5000}, {"list": "x\r\nBcc: y"}])
def test_control_characters_and_huge_values_in_the_form_are_400(site, lists, fields):
    response = signup(site, **fields)
    assert response.status_code == 400
    with site.store.session() as session:
        assert session.scalars(select(Subscriber)).all() == []


@pytest.mark.parametrize("slug", ["%00", "a%0Ab", "x" * 300, "%C3%A9t%C3%A9"])
def test_odd_archive_slugs_are_404(site, slug):
    assert site.client.get(f"/archive/{slug}").status_code == 404
