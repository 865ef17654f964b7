"""A/B subject tests, on SQLite and PostgreSQL: the split, the test phase, the decision in the scheduler
daemon (injected clock), the winner phase, `campaigns show`, and a SIGKILL between the phases.

Clicks are real first-party clicks on the messages' own links, through the public app: people (a
browser) and a scanner (counted machine, so never part of the decision).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from newsletter.engine.abtests import VARIANTS, deal, pick

from support.web import open_site, path_of

ARTICLE = Path(__file__).parent / "articles" / "front-matter-budget.md"
SUBJECT_B = "Where the budget went: the short version"
SUBJECT_C = "Five numbers from this year's budget"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"
SCANNER = "python-requests/2.32"


class Clock:
    """An injected UTC clock."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------- the split and the pick, without a database

@given(st.lists(st.integers(1, 10**6), unique=True, max_size=400), st.integers(2, 90), st.integers(2, 3),
       st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
def test_the_split_is_even_sized_and_reproducible(ids, share, variants, seed):
    dealt = deal(seed, ids, share, variants)
    assert dealt == deal(seed, list(reversed(ids)), share, variants)  # the seed decides, not the order read
    assert set(dealt) <= set(ids)
    expected = max(round(len(ids) * share / 100), min(len(ids), variants))
    assert len(dealt) == expected
    sizes = Counter(dealt.values())
    assert set(sizes) <= set(VARIANTS[:variants])
    if dealt:
        assert max(sizes.values()) - min(sizes.get(v, 0) for v in VARIANTS[:variants]) <= 1


def test_two_seeds_split_differently():
    ids = list(range(1, 1001))
    assert deal("a" * 32, ids, 20, 2) != deal("b" * 32, ids, 20, 2)


def _n(sent, clicked=0, opened=0):
    return {"sent": sent, "clicked": clicked, "opened": opened}


def test_the_pick_takes_the_best_rate_and_falls_back_to_a_and_says_so():
    best = pick({"A": _n(100, 3), "B": _n(100, 9), "C": _n(100, 4)}, "clicks", 50)
    assert (best.winner, best.fallback) == ("B", False)
    assert best.reason == "B had the highest click rate (A 3.0%, B 9.0%, C 4.0%)"
    tie = pick({"A": _n(100, 3), "B": _n(100, 9), "C": _n(100, 9)}, "clicks", 50)
    assert (tie.winner, tie.fallback) == ("A", True) and tie.reason.startswith("tie between B and C")
    short = pick({"A": _n(100, 3), "B": _n(40, 9)}, "clicks", 50)
    assert (short.winner, short.fallback) == ("A", True)
    assert short.reason == "too little data: reached B 40, under the minimum sample of 50 per variant; sent A"
    silent = pick({"A": _n(100), "B": _n(100)}, "opens", 50)
    assert (silent.winner, silent.reason) == ("A", "too little data: no opens recorded in any variant; sent A")
    rates = pick({"A": _n(3, opened=1), "B": _n(6, opened=2)}, "opens", 1)  # equal rates: exact, not floats
    assert (rates.winner, rates.fallback) == ("A", True)


# ---------------------------------------------------------------- end to end

def _people(tmp_path, count: int) -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(count)]
    (tmp_path / "people.csv").write_text("email,name,tracking_consent\n" + "".join(
        f"{e},Reader {i},yes\n" for i, e in enumerate(emails)))
    return emails


def _import(cli, tmp_path, count):
    emails = _people(tmp_path, count)
    result = cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "readers", "--json")
    assert result.json()["added"] == count, result.stderr
    shutil.copy(ARTICLE, Path("articles") / "budget.md")
    return emails


def _outbox(workspace) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((workspace / "outbox").glob("*.eml"))]


def _to(message) -> str:
    return message["To"].addresses[0].addr_spec


def _first_link(message) -> str:
    html = message.get_body(("html",)).get_content()
    return path_of(re.findall(r'href="(https://news\.clinic\.example/c/[^"]+)"', html)[0])


def _send(workspace, clock, *options, article_b=None):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.abtests import ab_choice
    from newsletter.usecases.dispatch import Watch

    settings = load_settings(workspace)
    store = open_store(settings)
    abtest = ab_choice(*options, track_clicks=True, track_opens=False, article_b=article_b, settings=settings)
    plan = use.plan_send(store, settings, "articles/budget.md", "readers", abtest=abtest)
    notes: list[str] = []
    report = use.send_now(store, settings, plan, Watch(note=notes.append, clock=clock, waiter=lambda when: False))
    store.close()
    return report, notes


def _daemon_decides(workspace, clock, campaign_id, decide_at):
    """The scheduler daemon's job, with the injected clock: nothing before ``decide_at``, the winner then."""
    from newsletter.config import load_settings
    from newsletter.scheduler import jobs
    from newsletter.scheduler.sync import paused_due
    from newsletter.store.db import open_store

    settings = load_settings(workspace)
    store = open_store(settings)
    runtime = jobs.Runtime(store, settings, "test-daemon", clock=clock)
    jobs.install(runtime)
    try:
        clock.now = decide_at - timedelta(seconds=1)
        assert paused_due(runtime) == []
        jobs.resume_after_quota(campaign_id)  # early: it checks the time itself, and does nothing
        clock.now = decide_at
        assert paused_due(runtime) == [campaign_id]
        jobs.resume_after_quota(campaign_id)
    finally:
        jobs.install(None)
        store.close()


def test_the_test_phase_the_decision_by_people_and_the_winner_phase(workspace, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRACKING_MODE", "personal")
    emails = _import(cli, tmp_path, 60)
    start = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    clock = Clock(start)
    report, notes = _send(workspace, clock, SUBJECT_B, SUBJECT_C, "30%", "4h", "clicks", 3)
    decide_at = start + timedelta(hours=4)
    # the test phase: 30% of 60, split evenly, each with its subject; the rest waits
    assert (report.status, report.sent) == ("paused", 18)
    assert report.pause_reason == "A/B test: the winner is picked at 2026-12-02 13:00 UTC"
    assert report.resume_at == decide_at
    assert report.counts["held"] == 42
    test_phase = _outbox(workspace)
    subjects = Counter(m["Subject"] for m in test_phase)
    with open_site(None) as site:
        with site.store.session() as session:
            from newsletter.store.models import Campaign, Edition

            subject_a = session.get(Edition, session.get(Campaign, report.campaign_id).edition_id).subject
        assert subjects == {subject_a: 6, SUBJECT_B: 6, SUBJECT_C: 6}
        by_subject = {s: [m for m in test_phase if m["Subject"] == s] for s in subjects}
        site.clock.now = time.time() + 3600  # well past the scanner window
        # C: three people click; A: one person, and a scanner follows every A link (machine: not counted)
        for message in by_subject[SUBJECT_C][:3] + by_subject[subject_a][:1]:
            site.clock.now += 30
            assert site.client.get(_first_link(message), headers={"User-Agent": BROWSER}).status_code == 303
        for message in by_subject[subject_a]:
            site.clock.now += 30
            assert site.client.get(_first_link(message), headers={"User-Agent": SCANNER}).status_code == 303

    shown = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert shown["abtest"]["winner"] is None and shown["abtest"]["rest"]["held"] == 42
    assert [(v["variant"], v["sent"], v["clicked"]) for v in shown["abtest"]["variants"]] == [
        ("A", 6, 1), ("B", 6, 0), ("C", 6, 3)]

    _daemon_decides(workspace, clock, report.campaign_id, decide_at)
    everything = _outbox(workspace)
    received = [_to(m) for m in everything]
    assert sorted(received) == sorted(emails)  # everyone once: nobody twice, nobody missed
    rest = [m for m in everything if _to(m) not in {_to(t) for t in test_phase}]
    assert len(rest) == 42 and {m["Subject"] for m in rest} == {SUBJECT_C}

    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    test = data["abtest"]
    assert data["status"] == "sent" and data["counts"]["sent"] == 60 and "held" not in data["counts"]
    assert (test["winner"], test["reason"]) == ("C", "C had the highest click rate (A 16.7%, B 0.0%, C 50.0%)")
    assert test["decided_at"].startswith("2026-12-02T13:00:00")
    assert [(v["variant"], v["recipients"], v["winner"]) for v in test["variants"]] == [
        ("A", 6, False), ("B", 6, False), ("C", 6, True)]
    assert test["rest"] == {"recipients": 42, "sent": 42, "held": 0}
    table = " ".join(cli("campaigns", "show", str(report.campaign_id)).stdout.split())
    assert "A/B test: 30% split evenly, winner by clicks" in table
    assert "Decision: C (C had the highest click rate" in table


def test_too_little_data_sends_a_to_the_rest_and_says_so(workspace, cli, tmp_path):
    _import(cli, tmp_path, 20)
    start = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    clock = Clock(start)
    report, _ = _send(workspace, clock, SUBJECT_B, None, "20%", "2h", "clicks", None)  # default minimum: 100
    assert (report.status, report.sent) == ("paused", 4)
    _daemon_decides(workspace, clock, report.campaign_id, start + timedelta(hours=2))
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    assert data["abtest"]["winner"] == "A"
    assert data["abtest"]["reason"] == ("too little data: reached A 2, B 2, under the minimum sample of 100 per "
                                        "variant; sent A")
    rest = [m for m in _outbox(workspace) if m["Subject"] == SUBJECT_B]
    assert len(rest) == 2 and data["counts"]["sent"] == 20


def test_sigkill_between_the_phases_then_the_daemon_sends_the_rest_once(workspace, cli, tmp_path):
    """The foreground send finishes the test phase and waits for the decision; it is killed while waiting;
    the daemon (injected clock) decides and sends the rest: every address exactly once."""
    emails = _import(cli, tmp_path, 30)
    sender = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "articles/budget.md", "--list", "readers", "--yes",
         "--subject-b", SUBJECT_B, "--test-share", "40%", "--decide-after", "2h", "--min-sample", "1"],
        cwd=workspace, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        waiting = ""
        for line in sender.stderr:  # the note printed once the test phase is done and the wait begins
            if "Paused: A/B test" in line:
                waiting = line
                break
        assert "Waiting until" in waiting, sender.stderr.read()
        sender.send_signal(signal.SIGKILL)
        sender.wait()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    test_phase = _outbox(workspace)
    assert len(test_phase) == 12
    before = cli("campaigns", "show", "1", "--json").json()
    assert before["status"] == "paused" and before["counts"]["held"] == 18
    decide_at = datetime.fromisoformat(before["abtest"]["decide_at"])
    _daemon_decides(workspace, Clock(decide_at), 1, decide_at)
    received = [_to(m) for m in _outbox(workspace)]
    assert sorted(received) == sorted(emails)
    after = cli("campaigns", "show", "1", "--json").json()
    assert after["status"] == "sent" and after["abtest"]["winner"] == "A"
    assert after["abtest"]["reason"] == "too little data: no clicks recorded in any variant; sent A"


@pytest.mark.parametrize(("options", "message"), [
    (["--test-share", "20%"], "--test-share belongs to an A/B test, which needs --subject-b"),
    (["--subject-b", "X", "--test-share", "95%"], "--test-share must be between 2% and 90%"),
    (["--subject-b", "X", "--decide-after", "soon"], "--decide-after 'soon' is not a duration"),
    (["--subject-b", "X", "--by", "opens"], "--by opens needs the open pixel"),
    (["--subject-b", "X", "--no-track-clicks"], "--by clicks needs click tracking"),
    (["--subject-b", "  "], "--subject-b is empty"),
])
def test_bad_ab_options_are_one_line_errors(workspace, cli, tmp_path, options, message):
    _import(cli, tmp_path, 3)
    result = cli("send", "articles/budget.md", "--list", "readers", "--yes", *options)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not _outbox(workspace)


def test_aggregate_links_count_each_variant_and_name_no_one(workspace, cli, tmp_path):
    """The default mode: every B message carries the same links, naming the variant and no one; human clicks
    on them decide, a scanner's do not, and a tampered variant token redirects nowhere."""
    _import(cli, tmp_path, 40)
    start = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    clock = Clock(start)
    report, _ = _send(workspace, clock, SUBJECT_B, None, "50%", "1h", "clicks", 5)
    assert (report.status, report.sent) == ("paused", 20)
    test_phase = _outbox(workspace)
    links = {s: {_first_link(m) for m in test_phase if m["Subject"] == s} for s in {m["Subject"] for m in test_phase}}
    assert len(links) == 2 and all(len(v) == 1 for v in links.values())  # one link per variant: nobody named
    (link_b,), (link_a,) = links[SUBJECT_B], next(v for s, v in links.items() if s != SUBJECT_B)
    assert link_b.split("/c/")[1].split(".")[3] == "B" and link_a.split("/c/")[1].split(".")[3] == "A"
    with open_site(None) as site:
        site.clock.now = time.time() + 3600
        for _ in range(3):
            site.clock.now += 30
            assert site.client.get(link_b, headers={"User-Agent": BROWSER}).status_code == 303
        for _ in range(6):
            site.clock.now += 30
            assert site.client.get(link_a, headers={"User-Agent": SCANNER}).status_code == 303
        site.clock.now += 30
        assert site.client.get(link_a, headers={"User-Agent": BROWSER}).status_code == 303
        token = link_b.split("/c/")[1]
        middle = token.split(".")
        middle[4] = middle[4][:5] + ("x" if middle[4][5] != "x" else "y") + middle[4][6:]
        assert site.client.get("/c/" + ".".join(middle), headers={"User-Agent": BROWSER}).status_code == 404
    _daemon_decides(workspace, clock, report.campaign_id, start + timedelta(hours=1))
    data = cli("campaigns", "show", str(report.campaign_id), "--json").json()
    test = data["abtest"]
    assert [(v["variant"], v["sent"], v["clicked"], v["machine_requests"]) for v in test["variants"]] == [
        ("A", 10, 1, 6), ("B", 10, 3, 0)]
    assert (test["winner"], test["reason"]) == ("B", "B had the highest click rate (A 10.0%, B 30.0%)")
    assert [m["Subject"] for m in _outbox(workspace)].count(SUBJECT_B) == 30


def test_a_scheduled_test_is_started_by_the_daemon_itself_even_with_workers(workspace, cli, tmp_path):
    """`schedule --subject-b`: the daemon's job starts it on its own machine (never the workers, which would
    send one subject to everyone), by the daemon's clock; then decides as usual."""
    import dataclasses

    from newsletter.config import load_settings
    from newsletter.scheduler import jobs
    from newsletter.store.db import open_store
    from newsletter.store.models import Campaign

    emails = _import(cli, tmp_path, 10)
    at = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    result = cli("schedule", "articles/budget.md", "--list", "readers", "--at", at, "--subject-b", SUBJECT_B,
                 "--test-share", "40%", "--decide-after", "30m", "--min-sample", "1", "--json")
    assert result.exit_code == 0, result.stderr
    campaign_id = result.json()["campaign_id"]
    settings = dataclasses.replace(load_settings(workspace), broker_url="amqp://guest:guest@127.0.0.1:9/%2F")
    store = open_store(settings)
    clock = Clock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    runtime = jobs.Runtime(store, settings, "test-daemon", clock=clock)
    jobs.install(runtime)
    try:
        with store.session() as session:  # its time has come
            session.get(Campaign, campaign_id).scheduled_at = datetime.now(UTC)
        jobs.fire_campaign(campaign_id)
        assert len(_outbox(workspace)) == 4
        shown = cli("campaigns", "show", str(campaign_id), "--json").json()
        assert shown["status"] == "paused" and shown["abtest"]["decide_at"].startswith("2026-12-02T09:30:00")
        clock.now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        jobs.resume_after_quota(campaign_id)
    finally:
        jobs.install(None)
        store.close()
    assert sorted(_to(m) for m in _outbox(workspace)) == sorted(emails)
    assert cli("campaigns", "show", str(campaign_id), "--json").json()["abtest"]["winner"] == "A"


def test_content_variants_send_another_article_and_track_its_links(workspace, cli, tmp_path):
    """`--article-b`: variant B is another article (its own subject, body and tracked links); people's clicks
    on B's links decide, and the rest get B's article."""
    _import(cli, tmp_path, 20)
    other = Path("articles") / "rainy.md"
    other.write_text('---\ntitle: "How much for a rainy day?"\n---\n\nThree months of rent, says '
                     "[the calculator](https://blog.example.org/rainy-calculator).\n")
    report, _ = _send(workspace, Clock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC)), None, None, "50%", "1h", "clicks",
                      3, article_b=str(other))
    campaign_id = report.campaign_id
    test_phase = _outbox(workspace)
    b_messages = [m for m in test_phase if m["Subject"] == "How much for a rainy day?"]
    a_messages = [m for m in test_phase if m not in b_messages]
    assert len(b_messages) == len(a_messages) == 5
    assert all("Three months of rent" in m.get_body(("html",)).get_content() for m in b_messages)
    assert not any("Three months of rent" in m.get_body(("html",)).get_content() for m in a_messages)
    with open_site(None) as site:
        site.clock.now = time.time() + 3600
        for _ in range(2):
            site.clock.now += 30
            response = site.client.get(_first_link(b_messages[0]), headers={"User-Agent": BROWSER})
            assert (response.status_code, response.headers["location"]) == (
                303, "https://blog.example.org/rainy-calculator")
    shown = cli("campaigns", "show", str(campaign_id), "--json").json()["abtest"]
    assert [(v["variant"], v["article"], v["clicked"]) for v in shown["variants"]] == [
        ("A", "articles/budget.md", 0), ("B", str(other), 2)]
    decide_at = datetime.fromisoformat(shown["decide_at"])
    _daemon_decides(workspace, Clock(decide_at), campaign_id, decide_at)
    everything = _outbox(workspace)
    assert len({_to(m) for m in everything}) == len(everything) == 20
    assert sum(m["Subject"] == "How much for a rainy day?" for m in everything) == 15
    assert cli("campaigns", "show", str(campaign_id), "--json").json()["abtest"]["winner"] == "B"
