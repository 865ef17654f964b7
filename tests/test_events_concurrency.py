"""One event batch delivered many times at once, and overlapping batches in opposite orders: applied exactly once.

A real uvicorn server runs the app; many clients post at the same moment
(a barrier releases them), on SQLite and PostgreSQL. Providers deliver at
least once and retry in parallel: between all the copies, each event is
stored once, each soft bounce counted once, each ledger row settled once.
"""

from __future__ import annotations

import json
import time

import pytest
from newsletter.config import load_settings
from newsletter.store.db import open_store
from newsletter.store.events import ProviderEvent
from newsletter.vocabulary import LedgerStatus
from sqlalchemy import func, select

from support.events import seed_campaign, state
from support.web import KeyPair, Site
from support.web_server import in_parallel, running

PARALLEL = 24
PADDING = 200


@pytest.fixture
def site(workspace):
    settings = load_settings()
    store = open_store(settings)
    yield Site(settings, store, keys=KeyPair())
    store.close()


def sg(kind: str, email: str, mid: str | None, n: int, **extra) -> dict:
    """A SendGrid event of the last hour (soft bounces count within the window that ends now)."""
    data = {"email": email, "event": kind, "timestamp": int(time.time()) - 3600 + n, "sg_event_id": f"par-{n}", **extra}
    if mid is not None:
        data["message_id"] = mid
    return data


def test_copies_of_batches_posted_at_once_are_applied_exactly_once(site):
    emails = [f"reader{i}@example.org" for i in range(6)]
    seeded = seed_campaign(site.store, emails, secret=site.settings.secret_keys[0], other_list="offers")
    unknown = seed_campaign(site.store, ["lost@example.org"], status=LedgerStatus.UNKNOWN,
                            secret=site.settings.secret_keys[0], list_name="later")
    mid = {**seeded.message_ids, **unknown.message_ids}
    events = [sg("bounce", emails[0], mid[emails[0]], n, type="blocked") for n in range(3)]  # three soft bounces
    events += [sg("spamreport", emails[1], mid[emails[1]], 3), sg("bounce", emails[2], mid[emails[2]], 4)]
    events += [sg("delivered", e, mid[e], 10 + i) for i, e in enumerate(emails)]
    events += [sg("open", emails[3], mid[emails[3]], 20 + n) for n in range(5)]
    events += [sg("delivered", "lost@example.org", mid["lost@example.org"], 30),
               sg("open", "stranger@example.org", None, 31)]
    batches = [json.dumps(events).encode(), json.dumps(events[::-1]).encode(),
               json.dumps(events[len(events) // 2:] + events[:len(events) // 2]).encode()]
    signed = [(body, site.keys.headers(body, int(site.clock.now))) for body in batches]
    with running(site.app) as base:
        answers = in_parallel(PARALLEL, lambda client, i: client.post(
            f"{base}/webhooks/sendgrid", content=signed[i % 3][0], headers=signed[i % 3][1]))
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["new"] for a in answers) == len(events)
    assert sum(a.json()["applied"] for a in answers) == 3  # soft-bounce limit reached, complaint, hard bounce
    assert sum(a.json()["unmatched"] for a in answers) == 1
    with site.store.session() as session:
        assert session.scalar(select(func.count()).select_from(ProviderEvent)) == len(events)
    shown = state(site.store, emails + ["lost@example.org"])
    assert shown[emails[0]]["soft_bounces"] == 3 and shown[emails[0]]["suppressed"] == "bounced"
    assert shown[emails[1]]["suppressed"] == "complained"
    assert shown[emails[1]]["memberships"] == [("offers", "unsubscribed"), ("readers", "unsubscribed")]
    assert shown[emails[2]]["suppressed"] == "bounced" and shown[emails[2]]["ledger"][0]["refused"] == "hard"
    assert all(shown[e]["ledger"][0]["delivered_at"] is not None for e in emails)
    assert shown["lost@example.org"]["ledger"][0]["status"] == "sent"
    assert [shown[e]["suppressed"] for e in emails[3:]] == [None, None, None]


def test_soft_bounces_of_one_address_in_parallel_batches_all_count(site):
    """Three batches, each with one soft bounce of the same address, posted at once: the third suppresses.

    Without batches applied one at a time, each transaction would count its
    own bounce and not the others' (uncommitted), and none would reach three.
    """
    rounds = 3
    emails = [f"soft{r}@example.org" for r in range(rounds)]
    seed_campaign(site.store, emails, secret=site.settings.secret_keys[0])
    signed = []
    for r, email in enumerate(emails):
        for copy in range(3):
            # Work after the bounce is counted (hard bounces to suppress): the transactions overlap.
            padding = [sg("bounce", f"pad{r}.{copy}.{i}@example.org", None, 1000 * (3 * r + copy + 1) + i)
                       for i in range(PADDING)]
            # Not through a ledger row (whose update would serialise the three): mail the provider sent for
            # another sender on the account counts for the address all the same.
            body = json.dumps([sg("bounce", email, None, 100 * r + copy, type="blocked")]
                              + padding).encode()
            signed.append((body, site.keys.headers(body, int(site.clock.now))))
    with running(site.app) as base:
        for r in range(rounds):
            answers = in_parallel(3, lambda client, i, r=r: client.post(
                f"{base}/webhooks/sendgrid", content=signed[3 * r + i][0], headers=signed[3 * r + i][1]))
            assert {a.status_code for a in answers} == {200}
            assert sum(a.json()["applied"] for a in answers) == 1 + 3 * PADDING
    shown = state(site.store, emails)
    assert [shown[e]["suppressed"] for e in emails] == ["bounced"] * rounds
