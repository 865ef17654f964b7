"""Properties of the event pipeline over random event streams, on both backends.

Each example draws a pool of events (every kind, hard and soft bounces,
our messages and others', hostile recipients) and a stream over it
(repeats, any order), cut into batches. The same stream is applied to
four copies of one campaign (four namespaces in one database): once;
twice over; by two threads at once, the second taking the batches in
reverse order; and backwards, last event first. The four end states (subscribers, suppressions,
memberships, soft-bounce counts, ledger rows) must be equal, every
suppression must have a reason, and nothing may raise.
"""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.config import load_settings
from newsletter.events.pipeline import SoftBounceLimit, record_events
from newsletter.store.db import open_store
from newsletter.store.models import Suppression
from newsletter.tracking import EventKind, RejectReason
from newsletter.vocabulary import SuppressionReason
from sqlalchemy import select

from support.events import SECRET, WHEN, event, seed_campaign, state

READERS = 2
NOW = WHEN + timedelta(days=1)
LIMIT = SoftBounceLimit(limit=2, days=30)
_namespaces = itertools.count()

HOSTILE = st.sampled_from(["", " ", "x" * 320, "Zoë <zoe@exämple.org>", "\"quoted, name\"@example.org",
                           "a\r\nBcc: b@example.org", "用户@例子.广告", "ctrl\x01\x1f@example.org"])
# One event of the pool: (kind, whose: reader index or -1 for a stranger, ours: matched through our Message-ID,
# hard, reject reason, minutes after WHEN).
# Every kind, the ones that change the audience drawn more often (so conflicts between them are common).
KINDS = [*EventKind, *[EventKind.BOUNCED] * 3, *[EventKind.COMPLAINED] * 2, EventKind.REJECTED, EventKind.UNSUBSCRIBED]
EVENT = st.tuples(st.sampled_from(KINDS), st.integers(-1, READERS - 1), st.booleans(), st.booleans(),
                  st.sampled_from([None, *RejectReason]), st.integers(-60 * 24 * 40, 60))


@pytest.fixture
def store(workspace):
    store = open_store(load_settings())
    yield store
    store.close()


def reader(ns: int, i: int) -> str:
    return f"zoë.{ns}.{i}@example.org"  # accented local part, as people have them


def make_batches(store, ns: int, pool, picks, cuts, stranger) -> list[list]:
    """The stream for namespace ``ns``: the picked pool events (event ids unique per namespace), cut into batches."""
    seeded = seed_campaign(store, [reader(ns, i) for i in range(READERS)], list_name=f"list{ns}",
                           other_list=f"other{ns}")
    events = []
    for index in picks:
        kind, whose, ours, hard, reject, minutes = pool[index]
        email = reader(ns, whose) if whose >= 0 else stranger
        mid = seeded.message_ids[email] if ours and whose >= 0 else None
        events.append(event(kind, email, f"ns{ns}-ev{index}", message_id=mid, hard=hard,
                            reject_reason=reject if kind is EventKind.REJECTED else None,
                            when=WHEN + timedelta(minutes=minutes), detail=f"detail {index}"))
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    return [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def apply_all(store, batches) -> None:
    for batch in batches:
        record_events(store, batch, [SECRET], NOW, LIMIT)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(pool=st.lists(EVENT, min_size=1, max_size=10), data=st.data(), stranger=HOSTILE)
def test_a_stream_applied_twice_or_in_parallel_equals_it_applied_once(store, pool, data, stranger):
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=30), label="stream")
    cuts = data.draw(st.lists(st.integers(0, 40), max_size=4), label="cuts")
    once, twice, parallel, backwards = (next(_namespaces) for _ in range(4))
    batches = {ns: make_batches(store, ns, pool, picks, cuts, stranger) for ns in (once, twice, parallel, backwards)}

    apply_all(store, batches[once])
    apply_all(store, batches[twice])
    apply_all(store, batches[twice])
    apply_all(store, [batch[::-1] for batch in batches[backwards][::-1]])
    errors: list[BaseException] = []

    def run(order):
        try:
            apply_all(store, order)
        except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(batches[parallel],)),
               threading.Thread(target=run, args=(batches[parallel][::-1],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    def end_state(ns):
        shown = state(store, [reader(ns, i) for i in range(READERS)],
                      rename=lambda email: email.split(".")[2].split("@")[0])
        for person in shown.values():  # the lists are the namespace's own
            person["memberships"] = [(name.rstrip("0123456789"), status) for name, status in person["memberships"]]
        return shown

    assert end_state(twice) == end_state(once)
    assert end_state(parallel) == end_state(once)
    assert end_state(backwards) == end_state(once)
    with store.session() as session:
        reasons = set(session.scalars(select(Suppression.reason)))
    assert reasons <= {r.value for r in SuppressionReason} and None not in reasons
