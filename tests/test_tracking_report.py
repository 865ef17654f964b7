"""`newsletter campaigns report` and `compare` from a seeded ledger and event set, number by number.

Two campaigns of the budget article go to the same ten readers (six at
gmail.com, four at yahoo.com) through the memory transport. Provider events
(as SendGrid's parser makes them) go through the event pipeline; people and
machines click tracked links through the public app with a settable clock;
one reader unsubscribes with the message's one-click link. Every count, rate,
link, domain, timeline bucket and comparison is then checked against what
was seeded, through the CLI's JSON, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from newsletter.cli.reports import SPARK, sparkline
from newsletter.delivery.memory import MemoryTransport
from newsletter.events.pipeline import record_events
from newsletter.tracking import EventKind, TrackingEvent

from support.web import open_site, path_of
from test_tracking import BROWSER_AGENT, RAINY, SURVEY, tracked_links

ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
READERS = [f"reader{i}@{'gmail.com' if i < 6 else 'yahoo.com'}" for i in range(10)]


def send_campaign(cli, again: bool) -> tuple[int, dict]:
    MemoryTransport.clear_shared()
    args = ["send", "articles/budget.md", "--list", "readers", "--transport", "memory", "--yes", "--json"]
    result = cli(*args, *(["--again"] if again else []))
    assert result.exit_code == 0, result.stderr
    messages = {m["To"].split("<")[-1].rstrip(">"): m for m in MemoryTransport.shared_outbox}
    return result.json()["campaign_id"], messages


def provider_event(kind: EventKind, message, n: str, when: datetime, hard: bool = False) -> TrackingEvent:
    email = message["To"].split("<")[-1].rstrip(">")
    return TrackingEvent("sendgrid", kind, f"sg-{n}", email, when, {"n": n},
                         message_id=message["Message-ID"].strip("<>"), hard=hard)


@pytest.fixture
def seeded(workspace, cli, tmp_path):
    (tmp_path / "people.csv").write_text("email,name\n" + "".join(f"{e},R\n" for e in READERS))
    assert cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers").exit_code == 0
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    with open_site(None) as site:
        keys = site.settings.secret_keys
        # The previous campaign: all ten delivered, two clicked (provider events).
        first, messages = send_campaign(cli, again=False)
        when = datetime.now().astimezone()
        record_events(site.store, [provider_event(EventKind.DELIVERED, messages[e], f"a-d{i}", when)
                                   for i, e in enumerate(READERS)]
                      + [provider_event(EventKind.CLICKED, messages[e], f"a-c{i}", when)
                         for i, e in enumerate(READERS[:2])], keys, when)
        # The campaign under report.
        second, messages = send_campaign(cli, again=True)
        start = cli("campaigns", "report", str(second), "--json").json()["timeline"]["start"]
        hour0 = datetime.fromisoformat(start)
        events = [provider_event(EventKind.DELIVERED, messages[e], f"b-d{i}", hour0)
                  for i, e in enumerate(READERS[:8])]
        events += [provider_event(EventKind.BOUNCED, messages[READERS[8]], "b-hard", hour0, hard=True),
                   provider_event(EventKind.BOUNCED, messages[READERS[9]], "b-soft", hour0),
                   provider_event(EventKind.COMPLAINED, messages[READERS[7]], "b-spam", hour0 + timedelta(hours=3)),
                   provider_event(EventKind.UNSUBSCRIBED, messages[READERS[6]], "b-unsub", hour0),
                   provider_event(EventKind.CLICKED, messages[READERS[0]], "b-c0", hour0 + timedelta(hours=1.2)),
                   provider_event(EventKind.CLICKED, messages[READERS[1]], "b-c1", hour0 + timedelta(hours=30.5)),
                   # a second click of reader 0: one unique click still
                   provider_event(EventKind.CLICKED, messages[READERS[0]], "b-c0b", hour0 + timedelta(hours=2.5))]
        record_events(site.store, events, keys, hour0)
        survey, rainy = (path_of(link) for link in tracked_links(messages[READERS[2]]))
        agent = {"User-Agent": BROWSER_AGENT}
        for minutes in (90, 100, 110):  # three people on the survey link in hour 1
            site.clock.now = (hour0 + timedelta(minutes=minutes)).timestamp()
            assert site.client.get(survey, headers=agent).status_code == 303
        site.clock.now = (hour0 + timedelta(hours=5.2)).timestamp()
        assert site.client.get(rainy, headers=agent).status_code == 303  # a person in hour 5
        assert site.client.head(rainy, headers=agent).status_code == 303  # a link checker in hour 5
        # reader 5 unsubscribes with the one-click link of this campaign's message
        unsubscribe = messages[READERS[5]]["List-Unsubscribe"].split("<")[1].split(">")[0]
        assert site.client.post(path_of(unsubscribe), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    return first, second


def test_report_numbers(seeded, cli):
    first, second = seeded
    result = cli("campaigns", "report", str(second), "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["counts"] == {
        "recipients": 10, "sent": 10, "delivered": 8, "bounced": 2, "hard_bounced": 1, "soft_bounced": 1,
        "complained": 1, "unsubscribed": 2, "unique_clicks": 2, "clicks": 4, "machine_clicks": 1,
        "unique_opens": 0, "opens": 0, "machine_opens": 0}
    assert report["click_basis"] == "unique" and report["delivered_estimated"] is False
    assert report["rates"] == {"delivery_rate": 0.8, "bounce_rate": 0.2, "complaint_rate": 1 / 8,
                               "unsubscribe_rate": 2 / 8, "click_rate": 2 / 8, "open_rate": None}
    assert report["previous"]["campaign_ids"] == [first]
    assert report["previous"]["rates"]["delivery_rate"] == 1.0
    assert report["previous"]["rates"]["click_rate"] == 0.2
    assert report["compared"]["delivery_rate"] == pytest.approx(-0.2)
    assert report["compared"]["click_rate"] == pytest.approx(0.05)
    assert report["compared"]["open_rate"] is None
    assert [(link["url"], link["clicks"], link["machine_clicks"], link["unique_clicks"])
            for link in report["links"]] == [(SURVEY, 3, 0, 0), (RAINY, 1, 1, 0)]
    assert report["domains"] == [
        {"domain": "gmail.com", "recipients": 6, "sent": 6, "delivered": 6, "bounced": 0, "complained": 0,
         "clicked": 2},
        {"domain": "yahoo.com", "recipients": 4, "sent": 4, "delivered": 2, "bounced": 2, "complained": 1,
         "clicked": 0}]
    timeline = report["timeline"]
    expected_clicks = [0] * 72
    expected_clicks[1] = 4  # three people on the survey link, reader 0's provider click
    expected_clicks[2] = 1  # reader 0's second provider click (an event, though not a unique click)
    expected_clicks[5] = 1
    expected_clicks[30] = 1
    expected_machine = [0] * 72
    expected_machine[5] = 1
    assert timeline["clicks"] == expected_clicks
    assert timeline["machine_clicks"] == expected_machine
    assert timeline["opens"] == [0] * 72


def test_report_terminal_and_compare(seeded, cli):
    first, second = seeded
    shown = cli("campaigns", "report", str(second))
    assert shown.exit_code == 0, shown.stderr
    assert "80.0%" in shown.stdout and "25.0%" in shown.stdout and SURVEY in shown.stdout
    assert "−20.0 pts vs before" in shown.stdout and "+5.0 pts vs before" in shown.stdout
    compared = cli("campaigns", "compare", "--last", "5", "--json")
    rows = compared.json()
    assert [r["campaign_id"] for r in rows] == [first, second]
    assert [r["rates"]["click_rate"] for r in rows] == [0.2, 0.25]
    assert [r["rates"]["unsubscribe_rate"] for r in rows] == [0.0, 0.25]
    table = cli("campaigns", "compare")
    assert table.exit_code == 0 and "25.0%" in table.stdout


def test_report_of_a_missing_campaign_is_one_line(workspace, cli):
    result = cli("campaigns", "report", "99")
    assert result.exit_code == 1 and "campaign 99 does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# -- the HTML report in Chromium ------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from browser import launch_chromium

    with launch_chromium() as chromium:
        yield chromium


def test_html_report_reads_in_chromium_at_375_and_1200_px_without_script_or_network(seeded, cli, browser,
                                                                                   tmp_path, database_url):
    from browser import artefact_path, local_only

    _first, second = seeded
    page_file = tmp_path / "report.html"
    result = cli("campaigns", "report", str(second), "--html", str(page_file), "--json")
    assert result.exit_code == 0, result.stderr
    html = page_file.read_text()
    assert "<script" not in html.lower() and "http-equiv" not in html.lower()
    backend = "postgres" if database_url.startswith("postgresql") else "sqlite"
    layout = {}
    for width in (375, 1200):
        context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=False)
        page = context.new_page()
        refused = local_only(page, "file://")
        page.goto(page_file.as_uri())
        assert refused == []  # nothing fetched from the network
        assert page.locator("svg:visible").count() >= 4  # timeline (one of its two drawings), rates, link bars
        assert page.locator(".tile b").first.inner_text() == "10"
        assert page.get_by_text("Clicks per hour, first 72 hours").is_visible()
        assert page.locator("td.url").first.inner_text().startswith(SURVEY)
        # nothing wider than the screen: no sideways scrolling on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        boxes = [page.locator("section.card").nth(i).bounding_box() for i in (1, 2)]
        layout[width] = boxes
        page.screenshot(path=str(artefact_path(f"report-{backend}-{width}.png")), full_page=True)
        context.close()
    rates_box, links_box = layout[1200]
    assert rates_box["y"] == links_box["y"] and links_box["x"] > rates_box["x"]  # two columns on a desktop
    rates_box, links_box = layout[375]
    assert links_box["y"] > rates_box["y"] + rates_box["height"] - 1  # one column on a phone


def test_png_report_is_drawn_with_matplotlib(seeded, cli, tmp_path):
    import struct

    _first, second = seeded
    image = tmp_path / "report.png"
    result = cli("campaigns", "report", str(second), "--png", str(image), "--json")
    assert result.exit_code == 0, result.stderr
    data = image.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR: 10 x 7 inches at 120 dpi
    assert (width, height) == (1200, 840)


def test_png_without_matplotlib_is_one_line_with_a_hint(seeded, cli, tmp_path, monkeypatch):
    import sys

    _first, second = seeded
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = cli("campaigns", "report", str(second), "--png", str(tmp_path / "r.png"))
    assert result.exit_code == 1
    assert "--png needs matplotlib" in result.stderr and "newsletter[charts]" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.png").exists()


@settings(deadline=None)  # the first example pays for importing the CLI module on a busy machine
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=72))
def test_sparkline_has_one_character_an_hour_and_the_peak_is_full(values):
    line = sparkline(values)
    assert len(line) == len(values)
    assert all(ch == SPARK[0] for ch, v in zip(line, values, strict=True) if v == 0)
    if max(values):
        assert all(ch == SPARK[-1] for ch, v in zip(line, values, strict=True) if v == max(values))
