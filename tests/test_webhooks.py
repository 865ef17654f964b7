"""Outgoing webhooks: the outbox written with the change, signed delivery to a real local receiver, retries on a
moved clock, ordering per subscriber, disabling, two senders, and the command line.

Every test that takes ``workspace`` runs on a SQLite file and on PostgreSQL. The receiver is a real
HTTP server on 127.0.0.1 (tests/support/hook_receiver.py); signatures are checked with the independent
``standardwebhooks`` package.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from newsletter.audience import manage, rules
from newsletter.config import load_settings
from newsletter.engine import webhooks as engine
from newsletter.errors import Conflict
from newsletter.store import webhooks as hooks
from newsletter.store.db import open_store
from newsletter.store.models import utcnow
from newsletter.store.webhook_outbox import backlog
from newsletter.usecases import webhooks as usecase
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from support.hook_receiver import receiver


@pytest.fixture
def store(workspace):
    store = open_store(load_settings(workspace))
    yield store
    store.close()


@pytest.fixture
def hook():
    with receiver() as running:
        yield running


def outbox_types(store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(hooks.WebhookEvent.type).order_by(hooks.WebhookEvent.id)))


class Clock:
    """The delivery loop's time, moved by the test."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def test_cli_adds_an_endpoint_and_the_receiver_verifies_each_delivery(store, hook, cli):
    added = cli("webhooks", "add", hook.url, "--event", "subscriber.created", "--json")
    assert added.exit_code == 0, added.stderr
    secret = added.json()["secret"]
    assert secret.startswith("whsec_")
    result = cli("subscribers", "add", "Renée@Bücher.example", "--name", "Zoë\r\nBcc: x", "--list", "readers")
    assert result.exit_code == 0, result.stderr
    delivered = cli("webhooks", "deliver", "--json")
    assert delivered.json()["delivered"] == 1, delivered.stderr
    [got] = hook.wait_for(1)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "subscriber.created"
    assert payload["data"]["email"] == "Renée@bücher.example"
    assert payload["data"]["name"] == "Zoë Bcc: x"  # the door's cleaning: no CR/LF reaches a receiver
    assert payload["data"]["list"] == "readers" and payload["data"]["list_status"] == "confirmed"
    assert got.id.startswith("evt_") and got.headers["content-type"] == "application/json"
    # One changed byte in the middle of the body, and the signature no longer holds.
    middle = len(got.body) // 2
    tampered = got.body[:middle] + bytes([got.body[middle] ^ 1]) + got.body[middle + 1:]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(usecase.wire.new_secret()).verify(got.body, got.headers)


def test_no_event_is_written_unless_an_endpoint_wants_it(store, hook):
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    assert outbox_types(store) == []
    usecase.add_endpoint(store, hook.url, ["subscriber.unsubscribed"])
    manage.add_subscriber(store, "bob@example.org", list_name="readers")
    assert outbox_types(store) == []
    manage.unsubscribe(store, "bob@example.org")
    assert outbox_types(store) == ["subscriber.unsubscribed"]


def test_the_event_rolls_back_with_the_change(store, hook):
    usecase.add_endpoint(store, hook.url, ["*"])
    with pytest.raises(RuntimeError), store.session() as session:
        manage.add_subscriber_in(session, "ada@example.org", list_name="readers")
        raise RuntimeError("the caller's transaction fails after the change")
    assert outbox_types(store) == []
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    manage.unsubscribe(store, "ada@example.org")
    with pytest.raises(Conflict):  # suppressed now: refused, and nothing is reported
        manage.add_subscriber(store, "ada@example.org", list_name="readers")
    assert outbox_types(store) == ["subscriber.created", "subscriber.unsubscribed"]


def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(store, hook, cli):
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    hook.answer(500, 503)
    clock = Clock()
    first = engine.deliver_pass(store, clock=clock)
    assert (first.delivered, first.retrying) == (0, 1)
    clock.advance(seconds=20)  # before the first backoff (30 s, +-10 %) ends: nothing is due
    assert not engine.deliver_pass(store, clock=clock).busy
    clock.advance(seconds=20)
    assert engine.deliver_pass(store, clock=clock).retrying == 1
    clock.advance(seconds=50)  # the second backoff is 60 s
    assert not engine.deliver_pass(store, clock=clock).busy
    clock.advance(seconds=20)
    assert engine.deliver_pass(store, clock=clock).delivered == 1
    got = hook.wait_for(3)
    assert [r.status for r in got] == [500, 503, 200]
    assert len({r.id for r in got}) == 1 and len({r.body for r in got}) == 1  # the same event, byte for byte
    attempts = usecase.attempts(store)
    assert [(a["attempt"], a["ok"], a["status_code"]) for a in attempts] == [(3, True, 200), (2, False, 503),
                                                                               (1, False, 500)]
    assert [a["state"] for a in attempts] == ["delivered"] * 3
    [endpoint] = usecase.list_endpoints(store)
    assert endpoint["failures"] == 0 and endpoint["delivered"] == 1 and endpoint["pending"] == 0
    shown = cli("webhooks", "deliveries")  # for people: one row per attempt, newest first
    assert shown.exit_code == 0 and "3 attempts" in shown.stderr
    rows = [line for line in shown.stdout.splitlines() if got[0].id in line]
    assert len(rows) == 3 and "HTTP 500" in rows[2] and "subscriber.created" in rows[0]


def test_events_of_one_subscriber_arrive_in_order(store, hook):
    usecase.add_endpoint(store, hook.url, ["subscriber.created", "subscriber.unsubscribed"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    manage.unsubscribe(store, "ada@example.org")
    hook.answer(500)
    clock = Clock()
    engine.deliver_pass(store, clock=clock)
    assert hook.types() == ["subscriber.created"]  # the unsubscribe waits for the failed creation
    clock.advance(minutes=1)
    assert engine.deliver_pass(store, clock=clock).delivered == 2
    hook.wait_for(3)
    assert hook.types() == ["subscriber.created", "subscriber.created", "subscriber.unsubscribed"]


def test_a_dead_endpoint_gives_up_after_a_day_is_disabled_and_comes_back(store, hook, cli):
    endpoint = usecase.add_endpoint(store, hook.url, ["subscriber.created", "subscriber.unsubscribed"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    manage.unsubscribe(store, "ada@example.org")
    hook.answer(then=500)
    clock = Clock()
    given_up = 0
    for _ in range(100):
        report = engine.deliver_pass(store, clock=clock)
        given_up += report.given_up
        if report.disabled:
            break
        clock.advance(hours=1)
    else:
        raise AssertionError("never disabled")
    assert report.disabled == [hook.url]
    assert timedelta(hours=24) <= clock.now - hook.requests[0].event_time <= timedelta(hours=25)
    assert given_up == 1  # the creation, retried for 24 hours; the unsubscribe waited behind it
    types = hook.types()
    last_creation = max(i for i, t in enumerate(types) if t == "subscriber.created")
    assert all(i > last_creation for i, t in enumerate(types) if t == "subscriber.unsubscribed")
    listed = cli("webhooks", "list", "--json").json()
    assert listed[0]["enabled"] is False and "failures in a row" in listed[0]["disabled_reason"]
    assert "HTTP 500" in listed[0]["disabled_reason"]
    failed = cli("webhooks", "deliveries", "--failed", "--json").json()
    assert failed and all(not a["ok"] and a["status_code"] == 500 for a in failed)
    # Disabled: nothing is sent and new events are not queued for it.
    manage.add_subscriber(store, "bob@example.org", list_name="readers")
    assert not engine.deliver_pass(store, clock=clock).busy
    hook.answer(then=200)
    assert cli("webhooks", "enable", str(endpoint["id"])).exit_code == 0
    assert engine.deliver_pass(store, clock=clock).delivered == 1  # what waited goes now
    assert hook.types()[-1] == "subscriber.unsubscribed" and hook.requests[-1].status == 200
    assert "bob@example.org" not in b"".join(r.body for r in hook.requests).decode()


def test_a_second_endpoint_is_not_held_back_by_a_dead_one(store):
    with receiver() as dead, receiver() as alive:
        usecase.add_endpoint(store, dead.url, ["subscriber.created"])
        usecase.add_endpoint(store, alive.url, ["subscriber.created"])
        dead.answer(then=500)
        for i in range(3):
            manage.add_subscriber(store, f"reader{i}@example.org", list_name="readers")
        report = engine.deliver_pass(store, clock=Clock())
        assert report.delivered == 3
        assert len(alive.requests) == 3
        assert len(dead.requests) == 1  # it rests for the rest of the pass: one timeout, not one per event


def test_two_senders_deliver_each_event_once(store, hook):
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    for i in range(40):
        manage.add_subscriber(store, f"reader{i}@example.org", list_name="readers")
    other = open_store(load_settings("."))
    try:
        barrier = threading.Barrier(2)
        reports = []

        def run(db):
            barrier.wait(10)
            reports.append(engine.deliver_pass(db))

        threads = [threading.Thread(target=run, args=(db,)) for db in (store, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    assert sum(r.delivered for r in reports) == 40
    ids = [r.id for r in hook.wait_for(40)]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_erasure_reports_only_the_hash_and_redacts_what_still_waits(store, hook):
    usecase.add_endpoint(store, hook.url, ["*"])
    manage.add_subscriber(store, "ada@example.org", name="Ada Lovelace", list_name="readers")
    manage.erase(store, "ada@example.org")
    engine.deliver_pass(store)
    got = hook.wait_for(2)
    assert [r.event["type"] for r in got] == ["subscriber.created", "subscriber.erased"]
    everything = b"".join(r.body for r in got).decode()
    assert "ada@example.org" not in everything and "Lovelace" not in everything
    assert got[1].event["data"]["email_hash"] == got[0].event["data"]["email_hash"]


def test_complaint_and_bounce_events(store, hook):
    usecase.add_endpoint(store, hook.url, ["subscriber.complained", "subscriber.bounced", "subscriber.unsubscribed"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    manage.add_subscriber(store, "bob@example.org", list_name="readers")
    with store.session() as session:
        rules.complaint(session, "ada@example.org", "ses", detail="abuse")
        rules.suppress_for_event(session, "bob@example.org", "bounced", "sendgrid", detail="550 5.1.1 user unknown")
        rules.suppress_for_event(session, "bob@example.org", "bounced", "sendgrid", detail="again")  # no news
        rules.suppress_for_event(session, "gone@example.org", "bounced", "sendgrid", detail="550")
    assert outbox_types(store) == ["subscriber.complained", "subscriber.unsubscribed", "subscriber.bounced",
                                   "subscriber.bounced"]
    engine.deliver_pass(store)
    got = hook.wait_for(4)
    bounced = sorted((r.event["data"] for r in got if r.event["type"] == "subscriber.bounced"),
                     key=lambda data: data["email"])  # different subjects: no order between them
    assert [(b["email"], b["detail"]) for b in bounced] == [("bob@example.org", "550 5.1.1 user unknown"),
                                                             ("gone@example.org", "550")]
    assert bounced[1]["id"] is None


def test_campaign_events_follow_a_send(store, hook, cli, tmp_path):
    from support.cli import populate

    usecase.add_endpoint(store, hook.url, ["campaign.started", "campaign.sent", "campaign.scheduled"])
    populate(cli, tmp_path, 3)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes")
    assert result.exit_code == 0, result.stderr
    assert outbox_types(store) == ["campaign.started", "campaign.sent"]
    engine.deliver_pass(store)
    got = hook.wait_for(2)
    sent = got[1].event["data"]
    assert sent["status"] == "sent" and sent["list"] == "readers" and sent["subject"]


def test_add_refuses_what_is_not_an_http_url_or_a_known_event(store, cli):
    for url in ("file:///etc/passwd", "gopher://127.0.0.1:25/", "ftp://example.org/x", "https://",
                "https://user:pass@example.org/hook", "https://example.org/a\r\nX-Evil: 1", "javascript:alert(1)",
                "https://example.org:99999/h", "https://bad..idn..bücher/h"):
        result = cli("webhooks", "add", url, "--event", "subscriber.created")
        assert result.exit_code == 1, url
        assert "Traceback" not in result.stderr and result.stderr.count("\n") <= 3, result.stderr
    unknown = cli("webhooks", "add", "https://example.org/h", "--event", "subscriber.eaten")
    assert unknown.exit_code == 1 and "newsletter webhooks events" in unknown.stderr
    none = cli("webhooks", "add", "https://example.org/h")
    assert none.exit_code == 1 and "--event" in none.stderr
    bad_secret = cli("webhooks", "add", "https://example.org/h", "--event", "*", "--secret", "hunter2")
    assert bad_secret.exit_code == 1 and "whsec_" in bad_secret.stderr
    assert cli("webhooks", "list", "--json").json() == []
    idn = cli("webhooks", "add", "https://Bücher.example/hööks", "--event", "*", "--json")
    assert idn.json()["url"] == "https://xn--bcher-kva.example/h%C3%B6%C3%B6ks"  # as it goes on the wire


def test_catalogue_test_remove_and_help(store, hook, cli):
    catalogue = cli("webhooks", "events", "--json").json()
    assert {entry["type"] for entry in catalogue} >= {
        "subscriber.created", "subscriber.confirmed", "subscriber.updated", "subscriber.unsubscribed",
        "subscriber.erased", "subscriber.bounced", "subscriber.complained", "campaign.scheduled",
        "campaign.started", "campaign.sent", "campaign.paused", "campaign.failed", "click"}
    added = cli("webhooks", "add", hook.url, "--event", "*", "--json").json()
    tested = cli("webhooks", "test", hook.url, "--json")
    assert tested.exit_code == 0 and tested.json()["ok"] is True
    [got] = hook.wait_for(1)
    assert Webhook(added["secret"]).verify(got.body, got.headers)["type"] == "webhook.test"
    hook.answer(410)
    refused = cli("webhooks", "test", hook.url)
    assert refused.exit_code == 1 and "HTTP 410" in refused.stderr
    assert cli("webhooks", "remove", str(added["id"])).exit_code == 0
    assert cli("webhooks", "list", "--json").json() == []
    missing = cli("webhooks", "remove", str(added["id"]))
    assert missing.exit_code == 1 and "newsletter webhooks list" in missing.stderr
    for command in ("add", "list", "remove", "enable", "events", "deliveries", "deliver", "test"):
        shown = cli("webhooks", command, "--help")
        assert shown.exit_code == 0 and "Example:" in shown.stdout, command


def test_the_wanted_list_is_cached_per_process_and_forgotten_on_change(store, hook):
    with store.session() as session:
        assert hooks.wanted_types(session) == frozenset()
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])  # forgets this process's list
    with store.session() as session:
        assert hooks.wanted_types(session) == {"subscriber.created"}
    queries = []
    with store.session() as session:
        real = session.scalars

        def counting(*args, **kwargs):
            queries.append(args)
            return real(*args, **kwargs)

        session.scalars = counting
        for _ in range(100):
            hooks.wanted(session, "subscriber.created")
    assert queries == []  # cached: no query per change


def test_backlog_counts(store, hook):
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    with store.session() as session:
        assert list(backlog(session).values()) == [{"pending": 1}]
        assert session.scalar(select(func.count()).select_from(hooks.events_t)) == 1


def test_a_sender_killed_mid_delivery_loses_nothing_and_the_same_event_goes_again(store, hook, workspace):
    import os
    import signal
    import subprocess
    import sys

    usecase.add_endpoint(store, hook.url, ["subscriber.created", "subscriber.unsubscribed"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    manage.unsubscribe(store, "ada@example.org")
    hook.hold()  # the receiver takes the request and never answers while held
    sender = subprocess.Popen([sys.executable, "-m", "newsletter", "webhooks", "deliver"], cwd=workspace,
                              env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [first] = hook.wait_for(1)
        sender.send_signal(signal.SIGKILL)
        sender.wait(20)
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.communicate()
    assert sender.returncode == -signal.SIGKILL
    hook.answer(then=200)
    hook.release()
    clock = Clock()
    assert not engine.deliver_pass(store, clock=clock).busy  # in flight, under the dead sender's lease
    clock.advance(seconds=engine.LEASE.total_seconds() + 1)
    report = engine.deliver_pass(store, clock=clock)
    assert (report.released, report.delivered) == (1, 2)
    got = hook.wait_for(3)
    assert [r.id for r in got][:2] == [first.id, first.id] and got[1].body == first.body
    assert [r.event["type"] for r in got] == ["subscriber.created", "subscriber.created", "subscriber.unsubscribed"]
    with store.session() as session:
        assert backlog(session) == {1: {"delivered": 2}}


def test_one_click_unsubscribe_reaches_the_crm(workspace, hook):
    """The README's CRM mirroring: a reader uses the one-click link; the receiver gets subscriber.unsubscribed."""
    from newsletter.audience.tokens import UNSUBSCRIBE, make_token

    from support.web import open_site

    with open_site(None) as site:
        endpoint = usecase.add_endpoint(site.store, hook.url, ["subscriber.unsubscribed"])
        added = manage.add_subscriber(site.store, "renée@bücher.example", name="Renée O'Brien", list_name="readers")
        token = make_token(site.settings.secret_keys, UNSUBSCRIBE, added.subscriber_id, added.list_id, added.email)
        response = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert engine.deliver_pass(site.store).delivered == 1
    [got] = hook.wait_for(1)
    event = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert event["type"] == "subscriber.unsubscribed"
    assert event["data"]["email"] == "renée@bücher.example" and event["data"]["lists"] == ["readers"]
    assert event["data"]["everywhere"] is False and event["data"]["source"] == "web"


def test_the_readme_lists_every_event_and_the_retry_schedule():
    from pathlib import Path

    from newsletter.vocabulary.webhooks import CATALOGUE

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Webhooks", 1)[1].split("\n## ", 1)[0]
    for event_type in CATALOGUE:
        assert f"| `{event_type}` |" in section, event_type
    minutes = [engine.backoff(n, rng=FixedRandom()).total_seconds() / 60 for n in range(1, 12)]
    assert minutes == [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 240, 240]
    assert "30 s, then 1, 2, 4, 8, 16,\n  32, 64, 128 minutes, then every 4 hours" in section


class FixedRandom:
    def random(self) -> float:
        return 0.5  # no jitter


def test_a_web_signup_and_its_confirmation_are_reported_in_order(workspace, hook):
    from newsletter.store import audience as q

    from support.web import NO_PROOF_OF_WORK, open_site, path_of

    with open_site(None, **NO_PROOF_OF_WORK) as site:
        with site.store.session() as session:
            q.create_list(session, "weekly", double_opt_in=True, public=True)
        usecase.add_endpoint(site.store, hook.url, ["subscriber.created", "subscriber.confirmed"])
        answer = site.client.post("/subscribe", data={"email": "Zoë@Bücher.example", "name": "Zoë\r\nBcc: x",
                                                      "list": "weekly"})
        assert answer.status_code == 200
        [link] = site.confirm_links()
        assert site.client.post(path_of(link)).status_code == 200
        assert site.client.post(path_of(link)).status_code == 200  # a second confirmation is no news
        engine.deliver_pass(site.store)
    got = hook.wait_for(2)
    assert [(r.event["type"], r.event["data"].get("list")) for r in got] == [("subscriber.created", "weekly"),
                                                                           ("subscriber.confirmed", "weekly")]
    assert got[0].event["data"]["list_status"] == "pending" and got[0].event["data"]["source"].startswith("web")
    assert got[0].event["data"]["email"] == "Zoë@bücher.example"
    assert len(hook.requests) == 2


def test_an_import_reports_each_new_subscriber_and_only_when_wanted(store, hook, cli, tmp_path):
    from support.cli import populate

    populate(cli, tmp_path, 5)  # no endpoint: no event, and no cost
    assert outbox_types(store) == []
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    data = tmp_path / "more.csv"
    data.write_text("email,name\nreader0@example.org,Again\nnew1@example.org,\"Doe, Jane\"\nnew2@bücher.example,Zoë\n")
    result = cli("subscribers", "import", str(data), "--list", "readers", "--json")
    assert result.exit_code == 0, result.stderr
    engine.deliver_pass(store)
    got = hook.wait_for(2)
    assert sorted((r.event["data"]["email"], r.event["data"]["name"]) for r in got) == [
        ("new1@example.org", "Doe, Jane"), ("new2@bücher.example", "Zoë")]
    assert {r.event["data"]["list"] for r in got} == {"readers"}
    assert {r.event["data"]["source"].split(":")[0] for r in got} == {"import"}
    assert len(hook.requests) == 2  # the existing reader0 is no creation


def test_redirects_and_silence_are_failures_that_name_the_cause(hook):
    from newsletter.delivery import webhooks as wire

    hook.answer(301, 302)
    for status in (301, 302):
        result = wire.post(hook.url, b"{}", {"content-type": "application/json"})
        assert (result.ok, result.status) == (False, status) and result.error.startswith(f"HTTP {status} ")
    assert len(hook.requests) == 2  # neither redirect was followed
    hook.hold()
    silent = wire.post(hook.url, b"{}", {"content-type": "application/json"}, timeout=0.5)
    assert (silent.ok, silent.status) == (False, None) and "0.5" in silent.error
    hook.release()
    with receiver() as other:
        port = other.url.split(":")[2].split("/")[0]
    refused = wire.post(f"http://127.0.0.1:{port}/gone", b"{}", {})  # nobody listens there any more
    assert (refused.ok, refused.status) == (False, None) and "refused" in refused.error.lower()


def test_removing_an_endpoint_drops_what_waited_for_it(store, hook, cli):
    endpoint = usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    manage.add_subscriber(store, "ada@example.org", list_name="readers")
    assert cli("webhooks", "remove", str(endpoint["id"])).exit_code == 0
    assert not engine.deliver_pass(store).busy
    assert hook.requests == []
    with store.session() as session:
        assert backlog(session) == {}


def test_events_of_different_subscribers_are_in_flight_together(store, hook):
    usecase.add_endpoint(store, hook.url, ["subscriber.created"])
    for i in range(5):
        manage.add_subscriber(store, f"reader{i}@example.org", list_name="readers")
    hook.hold(after=1)  # the first request (the endpoint's probe) is answered; the others wait
    reports = []
    sender = threading.Thread(target=lambda: reports.append(engine.deliver_pass(store)))
    sender.start()
    try:
        hook.wait_for(5)  # all five arrived while four were still unanswered: sent side by side
    finally:
        hook.release()
        sender.join(60)
    assert reports[0].delivered == 5 and len({r.id for r in hook.requests}) == 5
