"""Consent to personal tracking, asked apart from the subscription, on SQLite and PostgreSQL.

Through the public app (Starlette's TestClient): the signup page and a
hosted form show an unticked checkbox in the configured words; ticking it
records a ``tracking`` consent row (text, version, IP, user agent) for a new
subscriber, leaving it unticked records nothing, and a public form never
decides for a known address. End to end with the memory transport in
personal mode: a consenting reader's message has personal links and the
withdrawal line, another reader's aggregate links and no line; the line's
link shows a button (a GET changes nothing), its POST withdraws, and the
next send is aggregate for that reader too. The preference centre in a
browser: test_preferences_browser.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from newsletter.audience import tracking_consent as tc
from newsletter.compose import clicks
from newsletter.delivery.memory import MemoryTransport
from newsletter.store import audience as q
from newsletter.store.models import Consent
from sqlalchemy import select

from support.web import NO_PROOF_OF_WORK, open_site, path_of

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"
ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
OURS = {"Referer": "https://news.clinic.example/subscribe", "User-Agent": AGENT}
WORDS = "Zählen Sie, welche Links ich öffne (persönliche Statistik) – jederzeit widerrufbar."


@pytest.fixture
def site(workspace):
    # about tracking consent: the proof of work (on by default) has its own tests
    with open_site(None, **NO_PROOF_OF_WORK) as site:
        with site.store.session() as session:
            q.create_list(session, "news", public=True, double_opt_in=False, display_name="Clinic News")
        yield site


def tracking_rows(site, email: str) -> list[Consent]:
    with site.store.session() as session:
        subscriber = q.find_subscriber(session, email)
        rows = session.scalars(select(Consent).where(Consent.subscriber_id == subscriber.id,
                                                     Consent.action == "tracking").order_by(Consent.id)).all()
        session.expunge_all()
        return list(rows)


def attributes(site, email: str) -> dict:
    with site.store.session() as session:
        return dict(q.find_subscriber(session, email).attributes or {})


def test_the_signup_page_asks_apart_with_an_unticked_box_in_configurable_words(site):
    page = site.client.get("/subscribe").text
    box = re.search(r'<input type="checkbox" id="tracking-consent" name="tracking_consent" value="yes"\s*>', page)
    assert box is not None  # present and not ticked
    assert tc.DEFAULT_TEXT in page
    with open_site(None, tracking_consent_text=WORDS, **NO_PROOF_OF_WORK) as worded:
        assert WORDS in worded.client.get("/subscribe").text


def test_a_ticked_box_records_the_consent_with_its_proof_and_an_unticked_one_nothing(site, cli):
    ticked = site.client.post("/subscribe", data={"email": "ada@example.org", "list": "news",
                                                  "tracking_consent": "yes"}, headers=OURS)
    unticked = site.client.post("/subscribe", data={"email": "bob@example.org", "list": "news"}, headers=OURS)
    assert ticked.status_code == unticked.status_code == 200
    assert clicks.consents(attributes(site, "ada@example.org"))
    assert not clicks.consents(attributes(site, "bob@example.org")) and tracking_rows(site, "bob@example.org") == []
    [row] = tracking_rows(site, "ada@example.org")
    assert (row.detail, row.consent_text, row.form) == ("given", tc.DEFAULT_TEXT, tc.version_of(tc.DEFAULT_TEXT))
    assert (row.source, row.ip, row.user_agent) == ("web https://news.clinic.example/subscribe", "testclient", AGENT)
    assert row.list_id is None and row.requested_at is not None
    proof = cli("subscribers", "consent", "ada@example.org", "--json").json()["consent"]
    assert [(c["action"], c.get("detail")) for c in proof] == [("subscribe", None), ("tracking", "given")]


def test_a_changed_text_is_a_new_version_and_old_rows_keep_theirs(site):
    site.client.post("/subscribe", data={"email": "ada@example.org", "list": "news", "tracking_consent": "yes"},
                     headers=OURS)
    with open_site(None, tracking_consent_text=WORDS, **NO_PROOF_OF_WORK) as worded:
        worded.client.post("/subscribe", data={"email": "cy@example.org", "list": "news", "tracking_consent": "on"},
                           headers=OURS)
    [old], [new] = tracking_rows(site, "ada@example.org"), tracking_rows(site, "cy@example.org")
    assert (old.consent_text, new.consent_text) == (tc.DEFAULT_TEXT, WORDS)
    assert old.form != new.form and new.form == tc.version_of(WORDS)


def test_a_public_form_never_decides_for_a_known_address(site, cli):
    assert cli("subscribers", "add", "known@example.org", "--list", "news").exit_code == 0
    site.client.post("/subscribe", data={"email": "known@example.org", "list": "news", "tracking_consent": "yes"},
                     headers=OURS)
    assert not clicks.consents(attributes(site, "known@example.org"))
    assert tracking_rows(site, "known@example.org") == []


def test_the_hosted_form_shows_the_box_unticked_even_when_the_link_says_yes(site, cli):
    assert cli("forms", "create", "clinic", "--list", "news", "--field", "city:text").exit_code == 0
    page = site.client.get("/forms/clinic?email=ada@example.org&tracking_consent=yes").text
    assert re.search(r'name="tracking_consent" value="yes"\s*>', page) and " checked" not in page
    assert page.count('name="tracking_consent"') == 1 and tc.DEFAULT_TEXT in page
    posted = site.client.post("/forms/clinic", data={"email": "ada@example.org", "city": "Lyon",
                                                     "tracking_consent": "yes"},
                              headers={"Referer": "https://news.clinic.example/forms/clinic", "User-Agent": AGENT})
    assert posted.status_code == 200
    assert attributes(site, "ada@example.org") == {"city": "Lyon", "tracking_consent": "yes"}
    [row] = tracking_rows(site, "ada@example.org")
    assert row.detail == "given" and row.consent_text == tc.DEFAULT_TEXT
    snippet = cli("forms", "list", "--json").json()[0]["snippet"]
    assert f'<input type="checkbox" name="tracking_consent" value="yes"> {tc.DEFAULT_TEXT}' in snippet


def test_the_preference_centre_gives_and_withdraws_by_post_only(site):
    from newsletter.audience import manage
    from newsletter.audience.tokens import preferences_url

    reader = manage.add_subscriber(site.store, "ann@example.org", list_name="news", confirmed=True)
    path = path_of(preferences_url(site.settings, reader.subscriber_id, reader.email))
    token = path.rsplit("/", 1)[1]
    page = site.client.get(path).text
    assert 'id="tracking-give"' in page and "We do not record which links you open" in page
    headers = {"User-Agent": AGENT, "Sec-Fetch-Site": "same-origin"}
    given = site.client.post(path, data={"token": token, "action": "tracking", "choice": "give"}, headers=headers)
    assert given.status_code == 200 and 'id="tracking-withdraw"' in given.text
    assert clicks.consents(attributes(site, "ann@example.org"))
    withdrawn = site.client.post(path, data={"token": token, "action": "tracking", "choice": "withdraw"},
                                 headers=headers)
    assert withdrawn.status_code == 200 and 'id="tracking-give"' in withdrawn.text
    assert attributes(site, "ann@example.org") == {"tracking_consent": "no"}
    rows = tracking_rows(site, "ann@example.org")
    assert [(r.detail, r.source, r.consent_text, r.user_agent) for r in rows] == [
        ("given", "web", tc.DEFAULT_TEXT, AGENT), ("withdrawn", "web", tc.DEFAULT_TEXT, AGENT)]
    bad = site.client.post(path, data={"token": token, "action": "tracking", "choice": "maybe"}, headers=headers)
    assert bad.status_code == 400 and len(tracking_rows(site, "ann@example.org")) == 2


# -- end to end: personal mode ----------------------------------------------------------------------

PEOPLE = "email,name,tracking_consent\nyes@example.org,Yes Reader,yes\nno@example.org,No Reader,\n"


def send(cli, *options: str) -> dict:
    MemoryTransport.clear_shared()
    result = cli("send", "articles/budget.md", "--list", "readers", "--transport", "memory", "--yes", "--json",
                 *options)
    assert result.exit_code == 0, result.stderr
    return {m["To"].split("<")[-1].rstrip(">"): m for m in MemoryTransport.shared_outbox}


def parts(message) -> tuple[str, str]:
    return message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content()


def tokens(html: str) -> list[list[str]]:
    return [t.split(".") for t in re.findall(r'href="https://news\.clinic\.example/c/([^"]+)"', html)]


def test_personal_links_and_the_withdrawal_line_only_for_consent_and_withdrawal_ends_them(site, cli, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    (tmp_path / "people.csv").write_text(PEOPLE)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    messages = send(cli)
    (yes_html, yes_text), (no_html, no_text) = parts(messages["yes@example.org"]), parts(messages["no@example.org"])
    assert tokens(yes_html) and all(len(t) == 5 for t in tokens(yes_html))  # personal
    assert tokens(no_html) and all(len(t) == 3 for t in tokens(no_html))  # aggregate
    [link] = re.findall(r'href="(https://news\.clinic\.example/preferences/[^"/]+/tracking)"', yes_html)
    assert clicks.NOTICE_WORDS in yes_html and f"Withdraw this consent: {link}" in " ".join(yes_text.split())
    assert "/tracking" not in no_html + no_text and clicks.NOTICE_WORDS not in no_html + no_text
    assert "%%" not in yes_html + yes_text + no_html + no_text

    # the line's link: a GET shows a button and changes nothing (mail scanners follow links) ...
    page = site.client.get(path_of(link))
    assert page.status_code == 200 and 'id="withdraw-tracking"' in page.text
    assert clicks.consents(attributes(site, "yes@example.org"))
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    # ... its button withdraws
    done = site.client.post(action, data={"token": token, "action": "tracking", "choice": "withdraw"},
                            headers={"Sec-Fetch-Site": "same-origin", "User-Agent": AGENT})
    assert done.status_code == 200 and "no longer record which links" in done.text
    assert not clicks.consents(attributes(site, "yes@example.org"))
    [row] = tracking_rows(site, "yes@example.org")
    assert (row.detail, row.ip, row.user_agent, row.consent_text) == ("withdrawn", "testclient", AGENT,
                                                                      tc.DEFAULT_TEXT)
    assert "nothing to withdraw" in site.client.get(path_of(link)).text

    again = send(cli, "--again")
    html, text = parts(again["yes@example.org"])
    assert tokens(html) and all(len(t) == 3 for t in tokens(html))  # aggregate for them now
    assert "/tracking" not in html + text and clicks.NOTICE_WORDS not in html + text


def test_aggregate_mode_never_carries_the_withdrawal_line(site, cli, tmp_path):
    (tmp_path / "people.csv").write_text(PEOPLE)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    html, text = parts(send(cli)["yes@example.org"])
    assert all(len(t) == 3 for t in tokens(html)) and "%%" not in html + text
    assert clicks.NOTICE_WORDS not in html + text
