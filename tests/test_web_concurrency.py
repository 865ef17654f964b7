"""The public endpoints under parallel load: a real uvicorn server, 100+ simultaneous clients, both backends.

PostgreSQL is where these broke (READ COMMITTED lets two transactions read
the same "before" state); SQLite runs them too. Each test releases all
clients at once (a barrier) and then checks the database: no 500s, exactly
one row where one is expected, the limits exact, and no address in any log
record.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import CONFIRM, UNSUBSCRIBE, make_token
from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.store import audience as q
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.store.models import Consent, Membership, Subscriber
from sqlalchemy import func, select

from support.web import KeyPair, Site
from support.web_server import in_parallel, running

# Requests released at once: more than the app's worker threads (anyio's 40) and far more than the
# database pool (SQLAlchemy's 5 + 10 overflow), so every connection is contested in every round.
# (100 only queued 60 more behind the same 15 connections: twice the time, the same races.)
PARALLEL = 40
# PostgreSQL: a race shows most of the time in one round; three make missing it unlikely.
# SQLite transactions begin IMMEDIATE (one writer at a time): one round shows the same.
ROUNDS = {"postgresql": 3, "sqlite": 1}
ADDRESS = "Zoë.Parallel-Signup@Example.org"


@pytest.fixture
def site(workspace):
    # about races, not the proof of work (on by default, tested in test_signup_protection.py)
    settings = dataclasses.replace(load_settings(), signup_proof_of_work=False)
    store = open_store(settings)
    site = Site(settings, store, keys=KeyPair())
    MemoryTransport.clear_shared()
    # A transport per confirmation email, as in production (one connection each).
    site.app.state.ctx.transport_factory = lambda _settings: MemoryTransport()
    yield site
    store.close()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def count(store, *where, of=Consent) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(of).where(*where))


def assert_private(logs, *secrets: str) -> None:
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in logs.records).lower()
    for secret in secrets:
        assert secret.lower() not in text


def test_parallel_signups_of_one_new_address(site, logs):
    with site.store.session() as session:
        q.create_list(session, "weekly", double_opt_in=True, public=True)
    with running(site.app) as base:
        answers = in_parallel(PARALLEL, lambda client, _i: client.post(
            f"{base}/subscribe", data={"email": ADDRESS, "list": "weekly"}, headers={"Accept": "application/json"}))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 3 + [429] * (PARALLEL - 3)
    assert len(MemoryTransport.shared_outbox) == 3  # the three-an-hour limit, exactly
    assert count(site.store, of=Subscriber) == 1 and count(site.store, of=Membership) == 1
    assert_private(logs, ADDRESS, "parallel-signup")


def test_parallel_one_click_unsubscribes(site, logs):
    readers = [manage.add_subscriber(site.store, f"round{i}.{ADDRESS}", list_name="weekly", confirmed=True)
               for i in range(ROUNDS[site.store.dialect])]
    with running(site.app) as base:
        for reader in readers:
            token = make_token(site.settings.secret_keys, UNSUBSCRIBE, reader.subscriber_id, reader.list_id,
                               reader.email)
            answers = in_parallel(PARALLEL, lambda client, _i, token=token: client.post(
                f"{base}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}))
            assert {a.status_code for a in answers} == {200}
            assert count(site.store, Consent.action == "unsubscribe",
                         Consent.subscriber_id == reader.subscriber_id) == 1
            assert manage.describe(site.store, reader.email)["lists"][0]["status"] == "unsubscribed"
    assert_private(logs, ADDRESS)


def test_parallel_resubscribes(site, logs):
    readers = [manage.add_subscriber(site.store, f"round{i}.{ADDRESS}", list_name="weekly", confirmed=True)
               for i in range(ROUNDS[site.store.dialect])]
    for reader in readers:
        manage.unsubscribe(site.store, reader.email, "weekly")
    with running(site.app) as base:
        for reader in readers:
            token = make_token(site.settings.secret_keys, UNSUBSCRIBE, reader.subscriber_id, reader.list_id,
                               reader.email)
            answers = in_parallel(PARALLEL, lambda client, _i, token=token: client.post(
                f"{base}/unsubscribe/{token}", data={"action": "resubscribe"}))
            assert {a.status_code for a in answers} == {200}
            assert count(site.store, Consent.action == "resubscribe",
                         Consent.subscriber_id == reader.subscriber_id) == 1
            shown = manage.describe(site.store, reader.email)
            assert (shown["status"], shown["suppressed"], shown["lists"][0]["status"]) == ("active", None, "confirmed")
    assert_private(logs, ADDRESS)


def test_parallel_unsubscribes_from_everything(site, logs):
    reader = manage.add_subscriber(site.store, ADDRESS, list_name="weekly", confirmed=True)
    manage.add_subscriber(site.store, ADDRESS, list_name="monthly", confirmed=True)
    token = make_token(site.settings.secret_keys, UNSUBSCRIBE, reader.subscriber_id, None, reader.email)
    with running(site.app) as base:
        answers = in_parallel(PARALLEL, lambda client, _i: client.post(
            f"{base}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}))
    assert {a.status_code for a in answers} == {200}
    assert count(site.store, Consent.action == "unsubscribe") == 2  # one per list
    assert manage.describe(site.store, ADDRESS)["suppressed"] == "unsubscribed"
    assert_private(logs, ADDRESS)


def test_parallel_confirmations(site, logs):
    with site.store.session() as session:
        q.create_list(session, "weekly", double_opt_in=True, public=True)
    pending = [manage.add_subscriber(site.store, f"round{i}.{ADDRESS}", list_name="weekly")
               for i in range(ROUNDS[site.store.dialect])]
    with running(site.app) as base:
        for reader in pending:
            token = make_token(site.settings.secret_keys, CONFIRM, reader.subscriber_id, reader.list_id, reader.email)
            answers = in_parallel(PARALLEL, lambda client, _i, token=token: client.post(f"{base}/confirm/{token}"))
            assert {a.status_code for a in answers} == {200}
            assert count(site.store, Consent.action == "confirm", Consent.subscriber_id == reader.subscriber_id) == 1
            assert manage.describe(site.store, reader.email)["lists"][0]["status"] == "confirmed"
    assert_private(logs, ADDRESS)


def test_one_webhook_batch_delivered_in_parallel_is_applied_once(site, logs):
    for i in range(5):
        manage.add_subscriber(site.store, f"reader{i}@example.org", list_name="weekly", confirmed=True)
    events = [{"email": f"reader{i}@example.org", "event": "spamreport", "timestamp": 1_790_000_000 + i,
               "sg_event_id": f"spam-{i}"} for i in range(5)]
    events += [{"email": "stranger@example.org", "event": "open", "timestamp": 1_790_000_100,
                "sg_event_id": f"open-{i}"} for i in range(50)]
    body = json.dumps(events).encode()
    headers = site.keys.headers(body, int(site.clock.now))
    with running(site.app) as base:
        answers = in_parallel(PARALLEL, lambda client, _i: client.post(f"{base}/webhooks/sendgrid", content=body,
                                                                      headers=headers))
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["new"] for a in answers) == 55
    assert sum(a.json()["applied"] for a in answers) == 5
    assert count(site.store, of=ProviderEvent) == 55
    for i in range(5):
        assert manage.describe(site.store, f"reader{i}@example.org")["suppressed"] == "complained"
    assert_private(logs, "reader0@example.org", "stranger@example.org")
