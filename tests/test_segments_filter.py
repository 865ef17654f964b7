"""The segment filter language: the parser (errors name the column), and SQL that agrees with Python.

The property test generates people (attributes of every JSON type, tags,
other lists, join dates on day boundaries, ledger rows and event records)
and filters (every construct of the grammar), stores the people on SQLite
and PostgreSQL, and checks that the compiled SQL selects exactly the people
the Python evaluation of the same tree (tests/support/filter_oracle.py)
selects. Filters go through text (render, then parse), so the parser is in
the loop too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.errors import InputError
from newsletter.vocabulary.filters import (
    And,
    Bounced,
    Compare,
    Dormant,
    Exists,
    HasTag,
    In,
    Not,
    OnList,
    Or,
    Within,
    parse_filter,
    render,
)

from support.filter_oracle import Person, Sent, evaluate

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


# -- the parser --------------------------------------------------------------------------------

def test_the_issue_example_parses_to_the_tree_it_says():
    tree = parse_filter('city = "London" and tag:vip and joined > 2026-01-01 and not opened_within(90d)')
    assert tree == And((Compare("city", "=", "London"), HasTag("vip"), Compare("joined", ">", date(2026, 1, 1)),
                        Not(Within("opened", 90))))


def test_and_binds_tighter_than_or_and_parentheses_group():
    assert parse_filter("a = 1 or b = 2 and c = 3") == Or((Compare("a", "=", 1),
                                                          And((Compare("b", "=", 2), Compare("c", "=", 3)))))
    assert parse_filter("(a = 1 or b = 2) and c = 3") == And((Or((Compare("a", "=", 1), Compare("b", "=", 2))),
                                                             Compare("c", "=", 3)))


def test_every_construct_parses():
    tree = parse_filter("x in (1, 2.5, 'it\\'s', true) or list:readers:pending or list:\"the list\" or dormant "
                        "or bounced or y exists or z contains \"ab\" or tag:\"Early  Adopter\" or sent_within(2w)")
    assert tree == Or((In("x", (1, 2.5, "it's", True)), OnList("readers", "pending"), OnList("the list"), Dormant(),
                       Bounced(), Exists("y"), Compare("z", "contains", "ab"), HasTag("early adopter"),
                       Within("sent", 14)))


@pytest.mark.parametrize(("text", "column", "expected"), [
    ("city = and tag:vip", 8, "expected a value"),
    ("x = 1 and city = and y = 2", 18, "expected a value"),
    ("city = London", 8, "expected a value"),
    ("tag:vip and", 12, "expected a condition"),
    ("(a = 1", 7, "expected ')'"),
    ("opened_within(90)", 15, "expected a duration"),
    ("a < true", 5, "expected = or != with true and false"),
    ("joined > \"x\"", 10, "expected a date"),
    ('city = "London', 8, "a string that is never closed"),
    ("city ~ 1", 6, "unexpected character"),
    ("a = 1 b = 2", 7, "expected 'and', 'or' or the end"),
    ("list:readers:gone", 14, "expected a list status"),
    ("joined > 2026-02-30", 10, "not a date"),
])
def test_a_parse_error_is_one_line_naming_the_column(text, column, expected):
    with pytest.raises(InputError) as caught:
        parse_filter(text)
    message = caught.value.message
    assert message.startswith("--where: ")
    assert expected in message
    assert f"at column {column}: " in message
    assert "\n" not in message
    assert caught.value.hint


def test_empty_too_long_and_too_deep_filters_are_refused():
    for text in ("", "   ", "a = 1 and " * 300 + "a = 1", "not " * 40 + "dormant", "(" * 40 + "dormant" + ")" * 40):
        with pytest.raises(InputError):
            parse_filter(text)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80) | st.lists(st.sampled_from(
    ["a", "=", "!=", "<", "(", ")", ",", '"x"', "'y", "1", "2.5", "2026-01-01", "90d", "tag:", "list:", ":",
     "and", "or", "not", "in", "contains", "exists", "true", "opened_within", "\n", "\x00", " "]),
    max_size=12).map("".join))
def test_any_text_parses_or_is_a_one_line_error_naming_a_column(text):
    try:
        tree = parse_filter(text)
    except InputError as exc:
        assert "\n" not in exc.message and "\r" not in exc.message
        assert "column" in exc.message or "empty" in exc.message or "too long" in exc.message
    else:
        assert parse_filter(render(tree)) == tree


# -- generated filters and people ----------------------------------------------------------------

TEXTS = ["London", "london", "Paris", "", "Zoë", 'a"b', "x'y", "back\\slash", "10", "2026-01-05", "日本", "😀",
         "Lon", "on"]
ATTRIBUTE_KEYS = ["city", "age", "vip", "score"]
FIELDS = [*ATTRIBUTE_KEYS, "missing", "email", "name", "timezone"]
NUMBERS = st.integers(-8, 8).map(lambda n: n / 4) | st.integers(-3, 12)
ATTRIBUTE_VALUES = st.one_of(st.sampled_from(TEXTS), st.text(alphabet="aoLnZë\"'\\日😀 ", max_size=4), NUMBERS,
                             st.booleans(), st.none())
DAYS = st.integers(0, 12).map(lambda n: date(2026, 1, 1) + timedelta(days=n))
AGO = st.sampled_from([0, 1, 6, 7, 8, 29, 30, 31, 89, 90, 91, 400]).map(lambda d: NOW - timedelta(days=d))


@st.composite
def comparisons(draw):
    field = draw(st.sampled_from([*FIELDS, "joined"]))
    if field == "joined":
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", ">", "<=", ">="])), draw(DAYS))
    if field in ("email", "name", "timezone"):
        value = draw(st.sampled_from([*TEXTS, "p1@example.org", "EXAMPLE", "Europe/London", "Ann"]))
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", ">", "<=", ">=", "contains"])), value)
    value = draw(st.one_of(st.sampled_from(TEXTS), NUMBERS, st.booleans(), DAYS))
    if isinstance(value, bool):
        op = draw(st.sampled_from(["=", "!="]))
    elif isinstance(value, str):
        op = draw(st.sampled_from(["=", "!=", "<", ">", "<=", ">=", "contains"]))
    else:
        op = draw(st.sampled_from(["=", "!=", "<", ">", "<=", ">="]))
    return Compare(field, op, value)


LEAVES = st.one_of(
    comparisons(),
    st.builds(In, st.sampled_from(ATTRIBUTE_KEYS + ["name"]),
              st.lists(st.sampled_from(TEXTS[:6]) | NUMBERS, min_size=1, max_size=3).map(tuple))
    .filter(lambda node: node.field != "name" or all(isinstance(v, str) for v in node.values)),
    st.builds(Exists, st.sampled_from([*FIELDS, "joined"])),
    st.builds(HasTag, st.sampled_from(["vip", "trial", "early adopter"])),
    st.builds(OnList, st.just("other"), st.sampled_from(["confirmed", "pending", "unsubscribed"])),
    st.just(Dormant()), st.just(Bounced()),
    st.builds(Within, st.sampled_from(["opened", "clicked", "sent", "joined"]), st.sampled_from([1, 7, 30, 90])),
)
FILTERS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
    st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    inner.map(Not)), max_leaves=6)


@st.composite
def people(draw):
    count = draw(st.integers(1, 6))
    result = []
    for i in range(count):
        joined = datetime.combine(draw(DAYS), datetime.min.time(), tzinfo=UTC) + timedelta(
            hours=draw(st.sampled_from([0, 12, 23])))
        result.append(Person(
            email=draw(st.sampled_from([f"p{i}@example.org", f"P{i}@Example.ORG", f"ann{i}@mail.test"])),
            joined=joined,
            name=draw(st.sampled_from(["", "Ann", "Zoë", "London", 'a"b'])),
            timezone=draw(st.sampled_from([None, "", "Europe/London", "Asia/Tokyo"])),
            attributes=draw(st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), ATTRIBUTE_VALUES, max_size=4)),
            tags=set(draw(st.lists(st.sampled_from(["vip", "trial", "early adopter"]), max_size=3))),
            lists=draw(st.sampled_from([{}, {"other": "confirmed"}, {"other": "pending"},
                                        {"other": "unsubscribed"}])),
            dormant=draw(st.booleans()),
            sent=draw(st.lists(st.builds(Sent, st.sampled_from(["sent", "failed"]), AGO, st.none() | AGO,
                                         st.none() | AGO, st.sampled_from([None, "hard", "soft", "rejected"])),
                               max_size=2)),
            events=draw(st.lists(st.tuples(st.sampled_from(["opened", "clicked", "bounced", "delivered"]), AGO),
                                 max_size=2)),
        ))
    return result


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded CI machine draws slowly
@given(FILTERS)
def test_render_then_parse_gives_the_same_tree(tree):
    assert parse_filter(render(tree)) == tree


@pytest.fixture
def filter_store(database_url):
    from newsletter.store.db import Store
    from newsletter.store.models import Campaign, Edition, MailingList

    store = Store(database_url)
    with store.session() as session:
        main, other = MailingList(name="main"), MailingList(name="other")
        edition = Edition(slug="e", subject="s", html="h", text="t")
        session.add_all([main, other, edition])
        session.flush()
        campaigns = [Campaign(edition_id=edition.id, list_id=main.id, list_name="main", status="sent",
                              transport="file") for _ in range(2)]
        session.add_all(campaigns)
        session.flush()
        ids = {"main": main.id, "other": other.id, "campaigns": [c.id for c in campaigns]}
    yield store, ids
    store.close()


def _load(store, ids, persons) -> dict[int, Person]:
    from newsletter.store.events import ProviderEvent
    from newsletter.store.models import Delivery, Membership, Subscriber, SubscriberTag, Tag
    from newsletter.store.segments import tag_many
    from newsletter.vocabulary import address_hash
    from sqlalchemy import delete

    by_id = {}
    with store.session() as session:
        for model in (ProviderEvent, Delivery, SubscriberTag, Tag, Membership, Subscriber):
            session.execute(delete(model))
        for n, person in enumerate(persons):
            person.email = f"{n}.{person.email}"  # unique, case kept
            subscriber = Subscriber(email=person.email, email_key=person.email.lower(),
                                    email_hash=address_hash(person.email), name=person.name,
                                    timezone=person.timezone, attributes=person.attributes,
                                    dormant_at=NOW - timedelta(days=3) if person.dormant else None)
            session.add(subscriber)
            session.flush()
            by_id[subscriber.id] = person
            session.add(Membership(subscriber_id=subscriber.id, list_id=ids["main"], status="confirmed",
                                   subscribed_at=person.joined))
            for name, status in person.lists.items():
                session.add(Membership(subscriber_id=subscriber.id, list_id=ids[name], status=status,
                                       subscribed_at=person.joined))
            for campaign_id, row in zip(ids["campaigns"], person.sent, strict=False):
                session.add(Delivery(campaign_id=campaign_id, subscriber_id=subscriber.id, email=person.email,
                                     status=row.status, updated_at=row.updated_at, opened_at=row.opened_at,
                                     clicked_at=row.clicked_at, refused=row.refused))
            for k, (kind, at) in enumerate(person.events):
                session.add(ProviderEvent(provider="test", event_id=f"{subscriber.id}-{k}", kind=kind,
                                          subscriber_id=subscriber.id, email=person.email, occurred_at=at, raw={}))
            session.flush()
            tag_many(session, [(subscriber.id, tag) for tag in person.tags])
    return by_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(persons=people(), trees=st.lists(FILTERS, min_size=1, max_size=4))
def test_sql_selects_exactly_whom_the_python_evaluation_selects(filter_store, persons, trees):
    from newsletter.store.segments import audience_count, audience_ids

    store, ids = filter_store
    by_id = _load(store, ids, persons)
    for tree in trees:
        tree = parse_filter(render(tree))
        expected = {sid for sid, person in by_id.items() if evaluate(tree, person, NOW)}
        with store.session() as session:
            selected = set(audience_ids(session, [ids["main"]], tree, now=NOW, include_dormant=True))
            counted = audience_count(session, [ids["main"]], tree, now=NOW, include_dormant=True)
        assert selected == expected, render(tree)
        assert counted == len(expected)


def test_dormant_subscribers_are_left_out_unless_asked_for(filter_store):
    from newsletter.store.segments import audience_ids

    store, ids = filter_store
    by_id = _load(store, ids, [Person("a@x.org", NOW, dormant=True), Person("b@x.org", NOW)])
    awake = {sid for sid, person in by_id.items() if not person.dormant}
    with store.session() as session:
        assert set(audience_ids(session, [ids["main"]], None)) == awake
        assert set(audience_ids(session, [ids["main"]], None, include_dormant=True)) == set(by_id)
