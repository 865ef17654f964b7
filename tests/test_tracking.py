"""First-party click and open tracking through `newsletter serve`, on SQLite and PostgreSQL.

A campaign is sent with the memory transport; its messages' links are
followed through the public app (Starlette's TestClient) with a settable
clock: redirects are signed and go only to stored URLs, machines are
counted apart from people, opens are opt-in, aggregate links name no one,
and personal links only readers who consented.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st_
from newsletter.compose import clicks
from newsletter.delivery.memory import MemoryTransport
from newsletter.store import tracking as st
from newsletter.store.events import ProviderEvent
from newsletter.store.models import Delivery

from support.web import open_site, path_of

ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
SURVEY = "https://blog.example.org/survey-2026"
RAINY = "https://blog.example.org/rainy-day-fund"
BROWSER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"
LATER = 3600.0  # seconds after the send: well past the scanner window


def send(cli, tmp_path, *options: str, people: str | None = None) -> tuple[int, dict]:
    """Import readers, send the budget article to them; (campaign id, {email: message})."""
    rows = people or "email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(3))
    (tmp_path / "people.csv").write_text(rows)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    MemoryTransport.clear_shared()
    result = cli("send", "articles/budget.md", "--list", "readers", "--transport", "memory", "--yes", "--json",
                 *options)
    assert result.exit_code == 0, result.stderr
    messages = {m["To"].split("<")[-1].rstrip(">"): m for m in MemoryTransport.shared_outbox}
    return result.json()["campaign_id"], messages


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def tracked_links(message) -> list[str]:
    return re.findall(r'href="(https://news\.clinic\.example/c/[^"]+)"', html_of(message))


def counts(site, campaign_id: int, kind: str = "click") -> dict[int, tuple[int, int]]:
    with site.store.session() as session:
        return st.counts_by_link(session, campaign_id, kind)


def row_of(site, email: str) -> Delivery:
    with site.store.session() as session:
        return session.query(Delivery).filter_by(email=email).one()


def link_for(site, campaign_id: int, url: str) -> str:
    """The tracked link a message carries for ``url`` (its position from the campaign's links)."""
    with site.store.session() as session:
        plan = st.load_plan(session, campaign_id)
    assert plan is not None
    return next(p for p, u in plan.links.items() if u == url)


@pytest.fixture
def site(workspace):
    with open_site(None) as site:
        yield site


def later(site) -> None:
    site.clock.now = datetime.now(UTC).timestamp() + LATER


# -- aggregate (the default) ------------------------------------------------------------------------

def test_aggregate_links_are_the_same_for_everyone_and_name_no_one(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path)
    links = {email: tracked_links(m) for email, m in messages.items()}
    assert len(links) == 3
    first = links["reader0@example.org"]
    assert len(first) == 2 and all(other == first for other in links.values())
    with site.store.session() as session:
        ids = {str(d.id) for d in session.query(Delivery)} | {str(d.subscriber_id) for d in session.query(Delivery)}
    for link in first:
        token = link.rsplit("/", 1)[1]
        assert len(token.split(".")) == 3 and token.split(".")[0] == str(campaign_id)
        assert "reader" not in link and "example.org" not in token
    # the text part carries the same tracked links; unsubscribe and web version are left alone
    for message in messages.values():
        text = text_of(message)
        assert all(link in text for link in first) and SURVEY not in text
        assert re.search(r'href="https://news\.clinic\.example/unsubscribe/[^"]+"', html_of(message))
        assert 'href="https://news.clinic.example/archive/' in html_of(message)
    assert ids  # the ledger exists, and no delivery id appeared in any token (checked above by the 3 parts)


def test_click_redirects_303_to_the_stored_url_and_counts_a_person(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path)
    later(site)
    link = tracked_links(messages["reader1@example.org"])[0]
    response = site.client.get(path_of(link), headers={"User-Agent": BROWSER_AGENT})
    assert response.status_code == 303
    assert response.headers["location"] == SURVEY
    assert response.headers["referrer-policy"] == "no-referrer"
    assert counts(site, campaign_id) == {link_for(site, campaign_id, SURVEY): (1, 0)}
    # aggregate: nothing per delivery; the report's click rate is people's clicks over delivered messages
    assert row_of(site, "reader1@example.org").clicked_at is None
    report = cli("campaigns", "report", str(campaign_id), "--json").json()
    assert report["click_basis"] == "clicks" and report["counts"]["unique_clicks"] == 0
    assert report["counts"]["clicks"] == 1 and report["rates"]["click_rate"] == pytest.approx(1 / 3)
    assert report["tracking"] == {"mode": "aggregate", "clicks": True, "opens": False}


def test_tampered_or_unknown_tokens_never_redirect(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path)
    later(site)
    token = tracked_links(messages["reader0@example.org"])[0].rsplit("/", 1)[1]
    head, position, mac = token.split(".")
    middle = len(mac) // 2
    swapped = mac[:middle] + ("A" if mac[middle] != "A" else "B") + mac[middle + 1:]
    bad = [f"{head}.{position}.{swapped}",  # a changed signature
           f"{head}.{int(position) + 1}.{mac}",  # another link under this link's signature
           f"{int(head) + 1}.{position}.{mac}",  # another campaign
           f"{head}.{position}.{mac}.1.{mac}",  # a personal suffix made up
           "https%3A%2F%2Fevil.example", "x" * 500, "1.1"]
    for candidate in bad:
        response = site.client.get(f"/c/{candidate}", headers={"User-Agent": BROWSER_AGENT})
        assert response.status_code == 404, candidate
        assert "location" not in response.headers
        assert "evil.example" not in response.text
    assert counts(site, campaign_id) == {}


def test_machines_are_counted_apart(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path)
    later(site)
    survey = link_for(site, campaign_id, SURVEY)
    link = path_of(tracked_links(messages["reader0@example.org"])[0])
    assert site.client.head(link, headers={"User-Agent": BROWSER_AGENT}).status_code == 303
    for agent in ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "python-requests/2.32", ""):
        assert site.client.get(link, headers={"User-Agent": agent}).status_code == 303
    assert counts(site, campaign_id) == {survey: (0, 4)}
    site.client.get(link, headers={"User-Agent": BROWSER_AGENT})
    assert counts(site, campaign_id) == {survey: (1, 4)}


def test_every_link_at_once_is_a_machine(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path)
    later(site)
    first, second = (path_of(link) for link in tracked_links(messages["reader2@example.org"]))
    agent = {"User-Agent": BROWSER_AGENT}
    site.client.get(first, headers=agent)
    site.clock.now += 0.5
    site.client.get(second, headers=agent)  # another link from the same client half a second later
    found = counts(site, campaign_id)
    assert found[link_for(site, campaign_id, SURVEY)] == (1, 0)
    assert found[link_for(site, campaign_id, RAINY)] == (0, 1)
    site.clock.now += 60
    site.client.get(first, headers=agent)  # a minute later: a person again
    assert counts(site, campaign_id)[link_for(site, campaign_id, SURVEY)] == (2, 0)


def test_no_track_clicks_and_mode_off_leave_links_alone(site, cli, tmp_path, monkeypatch):
    _, messages = send(cli, tmp_path, "--no-track-clicks")
    message = messages["reader0@example.org"]
    assert tracked_links(message) == [] and f'href="{SURVEY}"' in html_of(message)
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "off")
    _, messages = send(cli, tmp_path, "--again", "--track-opens")
    message = messages["reader0@example.org"]
    assert tracked_links(message) == [] and "/o/" not in html_of(message)


def test_the_archive_copy_is_never_tracked(site, cli, tmp_path):
    send(cli, tmp_path)
    page = site.client.get("/archive/five-budgeting-habits-that-actually-stick")
    assert page.status_code == 200
    assert SURVEY in page.text and "/c/" not in page.text


# -- opens -----------------------------------------------------------------------------------------

def test_opens_are_off_by_default(site, cli, tmp_path):
    _, messages = send(cli, tmp_path)
    assert "/o/" not in html_of(messages["reader0@example.org"])


def test_track_opens_adds_a_pixel_and_apple_prefetch_is_a_machine(site, cli, tmp_path):
    campaign_id, messages = send(cli, tmp_path, "--track-opens")
    pixel = re.search(r'src="(https://news\.clinic\.example/o/[^"]+)"', html_of(messages["reader0@example.org"]))
    assert pixel is not None
    later(site)
    response = site.client.get(path_of(pixel.group(1)), headers={"User-Agent": BROWSER_AGENT})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    site.client.get(path_of(pixel.group(1)), headers={"User-Agent": "Mozilla/5.0"})  # Apple MPP's proxy
    assert counts(site, campaign_id, "open") == {0: (1, 1)}
    report = cli("campaigns", "report", str(campaign_id), "--json").json()
    assert (report["counts"]["opens"], report["counts"]["machine_opens"], report["counts"]["unique_opens"]) == (1, 1, 0)
    assert report["rates"]["open_rate"] == pytest.approx(1 / 3) and report["opens_are_estimates"] is True
    # a click token is no open token
    click_token = tracked_links(messages["reader0@example.org"])[0].rsplit("/", 1)[1]
    assert site.client.get(f"/o/{click_token}").status_code == 404


# -- personal ----------------------------------------------------------------------------------------

CONSENTING = ("email,name,tracking_consent\nyes@example.org,Yes Reader,yes\nno@example.org,No Reader,\n")


def test_personal_links_only_for_readers_who_consented(site, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    campaign_id, messages = send(cli, tmp_path, "--track-opens", people=CONSENTING)
    consenting, other = tracked_links(messages["yes@example.org"]), tracked_links(messages["no@example.org"])
    yes_row, no_row = row_of(site, "yes@example.org"), row_of(site, "no@example.org")
    assert all(len(link.rsplit("/", 1)[1].split(".")) == 5 for link in consenting)
    assert all(f".{yes_row.id}." in link for link in consenting)
    assert all(len(link.rsplit("/", 1)[1].split(".")) == 3 for link in other)
    assert [link.rsplit("/", 1)[1].split(".")[:2] for link in other] == [[str(campaign_id), "1"],
                                                                         [str(campaign_id), "2"]]
    assert no_row.id != yes_row.id
    assert "yes@example.org" not in " ".join(consenting)


def test_personal_click_lands_in_the_delivery_record_once(site, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    campaign_id, messages = send(cli, tmp_path, people=CONSENTING)
    later(site)
    link = path_of(tracked_links(messages["yes@example.org"])[0])
    for _ in range(2):
        site.clock.now += 30
        assert site.client.get(link, headers={"User-Agent": BROWSER_AGENT}).status_code == 303
    row = row_of(site, "yes@example.org")
    assert row.clicked_at is not None
    assert row.clicked_at.timestamp() == pytest.approx(site.clock.now - 30, abs=1)
    with site.store.session() as session:
        events = session.query(ProviderEvent).filter_by(provider="newsletter").all()
    assert [(e.kind, e.delivery_id, e.campaign_id) for e in events] == [("clicked", row.id, campaign_id)]
    assert counts(site, campaign_id) == {link_for(site, campaign_id, SURVEY): (2, 0)}


def test_personal_click_seconds_after_sending_is_a_scanner(site, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    campaign_id, messages = send(cli, tmp_path, people=CONSENTING)
    row = row_of(site, "yes@example.org")
    site.clock.now = row.updated_at.timestamp() + 2  # two seconds after the provider took it
    link = path_of(tracked_links(messages["yes@example.org"])[0])
    assert site.client.get(link, headers={"User-Agent": BROWSER_AGENT}).status_code == 303
    assert row_of(site, "yes@example.org").clicked_at is None
    assert counts(site, campaign_id) == {link_for(site, campaign_id, SURVEY): (0, 1)}


def test_a_list_can_have_its_own_mode(site, cli, tmp_path):
    with Path("newsletter.toml").open("a") as config:
        config.write('\n[tracking]\nmode = "personal"\nlists = { readers = "off" }\n')
    _, messages = send(cli, tmp_path, "--track-opens", people=CONSENTING)
    message = messages["yes@example.org"]
    assert tracked_links(message) == [] and "/o/" not in html_of(message) and f'href="{SURVEY}"' in html_of(message)


def test_a_bad_list_mode_is_one_line(workspace, cli):
    with Path("newsletter.toml").open("a") as config:
        config.write('\n[tracking]\nlists = { readers = "everything" }\n')
    result = cli("campaigns", "list")
    assert result.exit_code == 1
    assert "[tracking] lists gives list 'readers' the mode 'everything'" in result.stderr
    assert "use one of off, aggregate, personal" in result.stderr and "Traceback" not in result.stderr


# -- tokens (properties) ---------------------------------------------------------------------------

IDS = st_.integers(min_value=1, max_value=2**31 - 1)
KEYS = ("current-key", "older-key")


@given(campaign=IDS, position=st_.integers(min_value=1, max_value=500), delivery=st_.none() | IDS,
       where=st_.integers(min_value=0, max_value=10_000), key=st_.sampled_from(KEYS))
def test_tokens_verify_as_made_and_any_changed_mac_character_fails(campaign, position, delivery, where, key):
    token = clicks.link_token(key, campaign, position)
    if delivery is not None:
        token += clicks.person_suffix(key, campaign, delivery)
    assert clicks.read_token(KEYS, token) == clicks.TokenIds(campaign, position, delivery)
    assert clicks.read_token(("another-key",), token) is None  # another workspace's secret
    assert clicks.read_token(KEYS, token, "open") is None  # a click token is no open token
    parts = token.split(".")
    mac_index = 2 if delivery is None or where % 2 == 0 else 4
    mac = parts[mac_index]
    i = 1 + where % (len(mac) - 2)  # a middle character (the last may carry only padding bits)
    parts[mac_index] = mac[:i] + ("A" if mac[i] != "A" else "B") + mac[i + 1:]
    assert clicks.read_token(KEYS, ".".join(parts)) is None


# -- on workers (the distributed path builds its messages the same way) ---------------------------------

def test_worker_chunks_send_tracked_links(workspace, cli, tmp_path, monkeypatch):
    pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.delivery.base import Transport, results_for
    from newsletter.delivery.message import Outcome
    from newsletter.distributed.chunks import WorkerContext, run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign
    from newsletter.engine.campaigns import TrackingChoice, create_campaign
    from newsletter.store.db import open_store

    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    (tmp_path / "people.csv").write_text(CONSENTING)
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    settings = load_settings()
    store = open_store(settings)
    seen: dict[str, str] = {}

    class Recording(Transport):
        name, max_batch = "memory", 1000

        def _send(self, message, recipients):
            from newsletter.delivery.merge import personalise

            seen.update({r.email: personalise(message.html, r.merge_data) for r in recipients})
            return results_for(recipients, Outcome.QUEUED, provider_id="p")

    class Context(WorkerContext):
        def transport(self, name):
            return Recording()

    broker = StubBroker()
    try:
        edition = compose_edition(Path("articles") / "budget.md", settings)
        campaign_id = create_campaign(store, settings, edition, "readers", "memory",
                                      tracking=TrackingChoice(clicks=True, opens=True))
        enqueue_campaign(store, settings, campaign_id, broker=broker)
        from newsletter.store.distributed import campaign_chunks

        with store.session() as session:
            ranges = [(c.first_id, c.last_id) for c in campaign_chunks(session, campaign_id)]
        for first, last in ranges:
            run_chunk(Context(store, settings), campaign_id, first, last)
        with store.session() as session:
            yes_id = session.query(Delivery).filter_by(email="yes@example.org").one().id
    finally:
        broker.close()
        store.close()
    personal = re.findall(r'href="https://news\.clinic\.example/c/([^"]+)"', seen["yes@example.org"])
    aggregate = re.findall(r'href="https://news\.clinic\.example/c/([^"]+)"', seen["no@example.org"])
    assert [t.split(".")[3] for t in personal] == [str(yes_id), str(yes_id)]
    assert [len(t.split(".")) for t in aggregate] == [3, 3]
    assert "/o/" in seen["yes@example.org"] and "/o/" in seen["no@example.org"]
