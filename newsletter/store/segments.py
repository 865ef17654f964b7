"""Tags, segments, and the segment filter compiled to SQL.

:func:`filter_condition` turns a filter's syntax tree
(:mod:`newsletter.vocabulary.filters`) into one SQLAlchemy Core boolean over
the audience query's ``subscribers`` and ``memberships`` rows. Every value is
a bound parameter; attribute names become JSON paths that are bound too.

Meanings (the tests' Python evaluation implements the same):

- Attributes are JSON: a value matches an attribute of the same JSON type
  only (``age > 30`` never matches the string ``"45"``); strings compare by
  code point (PostgreSQL: ``COLLATE "C"``), ``contains`` is case-sensitive;
  a date compares with a string attribute as its ``YYYY-MM-DD`` text;
  ``exists``: present and not null.
- ``email`` compares in lower case; ``name exists``: not empty;
  ``timezone`` may be unset (then only ``!=`` and ``not`` match it).
- ``joined``: the UTC day the subscriber joined the list (``joined >
  2026-01-01``: from 2 January on).
- ``x != v`` is ``not (x = v)``: true when ``x`` is missing. Missing values
  make comparisons false, never unknown (``not`` reads SQL's NULL as false).
- Engagement: ``opened_within(90d)`` / ``clicked_within``: an open/click in
  the ledger (``deliveries.opened_at``) or an event record
  (``provider_events``, kinds opened/clicked) in the last 90 days;
  ``sent_within``: a ledger row sent in that time; ``bounced``: a ledger row
  refused as a hard or soft bounce, or a bounce event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    String,
    and_,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.errors import Conflict, NotFound
from newsletter.store.events import ProviderEvent
from newsletter.store.models import (
    Campaign,
    Delivery,
    MailingList,
    Membership,
    Segment,
    Subscriber,
    SubscriberTag,
    Suppression,
    Tag,
    utcnow,
)
from newsletter.store.sql import dialect_insert, rowcount
from newsletter.tracking import EventKind
from newsletter.vocabulary import LedgerStatus, MembershipStatus, SubscriberStatus
from newsletter.vocabulary.filters import (
    And,
    Bounced,
    Compare,
    Dormant,
    Exists,
    HasTag,
    In,
    Node,
    Not,
    OnList,
    Or,
    Value,
    Within,
    parse_filter,
)

subscribers_t = Subscriber.__table__
memberships_t = Membership.__table__
deliveries_t = Delivery.__table__
events_t = ProviderEvent.__table__
tags_t = Tag.__table__
subscriber_tags_t = SubscriberTag.__table__
lists_t = MailingList.__table__
suppressions_t = Suppression.__table__


# -- the filter as SQL -------------------------------------------------------------------------

def filter_condition(node: Node, dialect: str, now: datetime) -> ColumnElement[bool]:
    """``node`` as a boolean over ``subscribers`` and ``memberships`` (the list being sent to).

    ``now`` anchors ``opened_within(90d)`` and the like (injected by tests).
    The result may be NULL where a value is missing; a WHERE treats that as
    false, and ``not`` does too (it reads ``coalesce(x, false)``).
    """
    return _Compiler(dialect, now).node(node)


class _Compiler:
    def __init__(self, dialect: str, now: datetime):
        self.postgres = dialect == "postgresql"
        self.now = now

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.node(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.node(item) for item in node.items))
        if isinstance(node, Not):
            return not_(func.coalesce(self.node(node.item), false()))
        if isinstance(node, Compare):
            if node.op == "!=":
                return self.node(Not(Compare(node.field, "=", node.value)))
            return self.compare(node.field, node.op, node.value)
        if isinstance(node, In):
            return or_(*(self.compare(node.field, "=", value) for value in node.values))
        if isinstance(node, Exists):
            return self.exists(node.field)
        if isinstance(node, HasTag):
            # An uncorrelated IN, not a correlated EXISTS: SQLite can then start from the tag's
            # subscribers (or build their set once) instead of probing per audience row.
            tag_id = select(tags_t.c.id).where(tags_t.c.name == node.name).scalar_subquery()
            return subscribers_t.c.id.in_(select(subscriber_tags_t.c.subscriber_id)
                                          .where(subscriber_tags_t.c.tag_id == tag_id))
        if isinstance(node, OnList):
            other = memberships_t.alias("other_membership")
            return (select(other.c.list_id).join(lists_t, lists_t.c.id == other.c.list_id)
                    .where(other.c.subscriber_id == subscribers_t.c.id, lists_t.c.name == node.name,
                           other.c.status == node.status)
                    .exists())
        if isinstance(node, Dormant):
            return subscribers_t.c.dormant_at.is_not(None)
        if isinstance(node, Bounced):
            return or_(self.ledger_rows(deliveries_t.c.refused.in_(("hard", "soft"))),
                       self.events(EventKind.BOUNCED))
        if isinstance(node, Within):
            return self.within(node.kind, self.now - timedelta(days=node.days))
        raise TypeError(f"not a filter node: {node!r}")

    # engagement: the ledger's outcome columns and the event records, one subscriber at a time
    def ledger_rows(self, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        return select(deliveries_t.c.id).where(deliveries_t.c.subscriber_id == subscribers_t.c.id,
                                               *conditions).exists()

    def events(self, kind: str, since: datetime | None = None) -> ColumnElement[bool]:
        conditions = [events_t.c.subscriber_id == subscribers_t.c.id, events_t.c.kind == kind]
        if since is not None:
            conditions.append(events_t.c.occurred_at >= since)
        return select(events_t.c.id).where(*conditions).exists()

    def within(self, kind: str, since: datetime) -> ColumnElement[bool]:
        if kind == "joined":
            return memberships_t.c.subscribed_at >= since
        if kind == "sent":
            return self.ledger_rows(deliveries_t.c.status == LedgerStatus.SENT, deliveries_t.c.updated_at >= since)
        column = deliveries_t.c.opened_at if kind == "opened" else deliveries_t.c.clicked_at
        event = EventKind.OPENED if kind == "opened" else EventKind.CLICKED
        return or_(self.ledger_rows(column >= since), self.events(event, since))

    # comparisons
    def compare(self, field: str, op: str, value: Value) -> ColumnElement[bool]:
        if field == "joined":
            assert isinstance(value, date)
            return _day_compare(memberships_t.c.subscribed_at, op, value)
        if field in ("email", "name", "timezone"):
            assert isinstance(value, str)
            column: ColumnElement[Any] = {"email": subscribers_t.c.email_key, "name": subscribers_t.c.name,
                                          "timezone": subscribers_t.c.timezone}[field]
            return self.text_compare(column, op, value.lower() if field == "email" else value)
        return self.attribute_compare(field, op, value)

    def text_compare(self, column: ColumnElement[Any], op: str, value: str) -> ColumnElement[bool]:
        if op == "contains":
            position = func.strpos(column, value) if self.postgres else func.instr(column, value)
            return position > 0
        if op in ("<", ">", "<=", ">=") and self.postgres:
            column = column.collate("C")  # code point order, as SQLite's BINARY and Python compare
        return _operate(column, op, literal(value, String))

    def attribute_compare(self, key: str, op: str, value: Value) -> ColumnElement[bool]:
        kind, text, number = self.attribute(key)
        if isinstance(value, bool):
            if self.postgres:
                return and_(kind == "boolean", text == ("true" if value else "false"))
            return kind == ("true" if value else "false")
        if isinstance(value, (int, float)):
            return _operate(number, op, literal(float(value), Float))
        as_text = value.isoformat() if isinstance(value, date) else value
        # The value test first: it rejects most rows with one JSON read (the type test is a second one).
        return and_(self.text_compare(text, op, as_text), kind == ("string" if self.postgres else "text"))

    def exists(self, field: str) -> ColumnElement[bool]:
        if field == "joined":
            return true()
        if field == "email":
            return subscribers_t.c.email_key != ""
        if field in ("name", "timezone"):
            column = subscribers_t.c.name if field == "name" else subscribers_t.c.timezone
            return and_(column.is_not(None), column != "")
        kind, _, _ = self.attribute(field)
        return and_(kind.is_not(None), kind != "null")

    def attribute(self, key: str) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
        """(JSON type name, value as text, value as a number or NULL) of one attribute."""
        attributes = subscribers_t.c.attributes
        if self.postgres:
            kind = func.json_typeof(attributes[key])
            text = attributes[key].as_string()
            return kind, text, case((kind == "number", cast(text, Float)), else_=None)
        # the key is [A-Za-z_][A-Za-z0-9_-]* (the parser's rule): quoted, it is one path step
        path = literal(f'$."{key}"', String)
        kind = func.json_type(attributes, path)
        extracted = func.json_extract(attributes, path)
        return kind, extracted, case((kind.in_(("integer", "real")), extracted), else_=None)


def _operate(column: ColumnElement[Any], op: str, value: ColumnElement[Any]) -> ColumnElement[bool]:
    if op == "=":
        return column == value
    if op == "<":
        return column < value
    if op == ">":
        return column > value
    if op == "<=":
        return column <= value
    if op == ">=":
        return column >= value
    raise ValueError(f"unknown comparison {op!r}")


def _day_compare(column: ColumnElement[Any], op: str, day: date) -> ColumnElement[bool]:
    """A timestamp against a UTC day: ``> D`` from D+1 00:00 on, ``<= D`` before it, ``= D`` within D."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    if op == "=":
        return and_(column >= start, column < end)
    if op == "<":
        return column < start
    if op == "<=":
        return column < end
    if op == ">":
        return column >= end
    if op == ">=":
        return column >= start
    raise ValueError(f"joined takes =, !=, <, >, <=, >=, not {op!r}")


# -- audiences ---------------------------------------------------------------------------------

def audience_base(list_ids: Sequence[int], *, include_dormant: bool = False) -> ColumnElement[bool]:
    """Confirmed members of any of the lists, active, not suppressed, and (unless asked) not dormant."""
    suppressed = select(suppressions_t.c.email_hash).where(
        suppressions_t.c.email_hash == subscribers_t.c.email_hash).exists()
    on_lists = (memberships_t.c.list_id == list_ids[0] if len(list_ids) == 1
                else memberships_t.c.list_id.in_(list(list_ids)))
    conditions = [on_lists, memberships_t.c.status == MembershipStatus.CONFIRMED,
                  subscribers_t.c.status == SubscriberStatus.ACTIVE, ~suppressed]
    if not include_dormant:
        conditions.append(subscribers_t.c.dormant_at.is_(None))
    return and_(*conditions)


def audience_count(session: Session, list_ids: Sequence[int], node: Node | None, *, now: datetime | None = None,
                   include_dormant: bool = False) -> int:
    """How many subscribers a send to these lists with this filter would reach (each person once)."""
    conditions = [audience_base(list_ids, include_dormant=include_dormant)]
    if node is not None:
        conditions.append(filter_condition(node, _dialect(session), now or utcnow()))
    counted = func.count() if len(list_ids) == 1 else func.count(func.distinct(memberships_t.c.subscriber_id))
    query = (select(counted).select_from(memberships_t)
             .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id).where(*conditions))
    return session.execute(query).scalar() or 0


def audience_ids(session: Session, list_ids: Sequence[int], node: Node | None, *, now: datetime | None = None,
                 include_dormant: bool = False, limit: int | None = None) -> list[int]:
    """The ids of the subscribers :func:`audience_count` counts, in id order (``limit``: the first ones)."""
    conditions = [audience_base(list_ids, include_dormant=include_dormant)]
    if node is not None:
        conditions.append(filter_condition(node, _dialect(session), now or utcnow()))
    query = (select(subscribers_t.c.id).distinct().select_from(memberships_t)
             .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id).where(*conditions)
             .order_by(subscribers_t.c.id))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def campaign_audience(session: Session, campaign_id: int) -> tuple[bool, list[ColumnElement[bool]]]:
    """What a campaign's snapshot does beyond its list's audience: (include dormant?, the filter's conditions).

    The filter text recorded on the campaign is parsed again here, at
    snapshot time, so engagement predicates are measured from then.
    """
    row = session.execute(select(Campaign.audience_filter, Campaign.to_dormant)
                          .where(Campaign.id == campaign_id)).first()
    if row is None:
        return False, []
    text, to_dormant = row
    conditions: list[ColumnElement[bool]] = []
    if text:
        conditions.append(filter_condition(parse_filter(text, "the campaign's filter"), _dialect(session), utcnow()))
    return bool(to_dormant), conditions


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# -- the sunset policy ------------------------------------------------------------------------

def _engaged_since(since: ColumnElement[Any] | datetime) -> ColumnElement[bool]:
    """An open or click of the subscriber at or after ``since``: in the ledger or in the event records."""
    in_ledger = select(deliveries_t.c.id).where(
        deliveries_t.c.subscriber_id == subscribers_t.c.id,
        or_(deliveries_t.c.opened_at >= since, deliveries_t.c.clicked_at >= since)).exists()
    in_events = select(events_t.c.id).where(
        events_t.c.subscriber_id == subscribers_t.c.id, events_t.c.kind.in_((EventKind.OPENED, EventKind.CLICKED)),
        events_t.c.occurred_at >= since).exists()
    return or_(in_ledger, in_events)


def observed_campaigns(session: Session) -> list[int]:
    """The campaigns with at least one open or click recorded (ledger or event records), in id order.

    Only their sends can show that someone stopped engaging: a campaign
    nobody opened or clicked was most likely not tracked (tracking off, or
    aggregate only), and silence there says nothing about anyone.
    """
    in_ledger = select(deliveries_t.c.campaign_id).where(
        or_(deliveries_t.c.opened_at.is_not(None), deliveries_t.c.clicked_at.is_not(None))).distinct()
    in_events = select(events_t.c.campaign_id).where(
        events_t.c.kind.in_((EventKind.OPENED, EventKind.CLICKED)), events_t.c.campaign_id.is_not(None)).distinct()
    found = set(session.scalars(in_ledger)) | {cid for cid in session.scalars(in_events) if cid is not None}
    return sorted(found)


def engagement_recorded(session: Session) -> bool:
    """Whether the store holds any open or click at all (none: tracking is off, so nobody can be judged)."""
    return bool(observed_campaigns(session))


def sunset_condition(now: datetime, after_sends: int, after_days: float,
                     observed: Sequence[int]) -> ColumnElement[bool]:
    """Active, awake subscribers with no open or click in their last ``after_sends`` sends and/or ``after_days``.

    Only sends of ``observed`` campaigns (:func:`observed_campaigns`) count.
    Sends: the ``after_sends``-th most recent such message sent to them, and
    no engagement since it (fewer sends: not judged). Days: such a message
    sent to them within the last ``after_days`` and no engagement in that
    time. With both set, both must hold. 0 turns a rule off.
    """
    conditions: list[ColumnElement[bool]] = [subscribers_t.c.status == SubscriberStatus.ACTIVE,
                                             subscribers_t.c.dormant_at.is_(None)]
    observed_ids = list(observed) or [-1]
    if after_sends:
        # An alias, correlated to the subscriber only: inside _engaged_since's own query over deliveries,
        # a plain reference would correlate to that query's row instead.
        sends = deliveries_t.alias("sends")
        nth_last_send = (select(sends.c.updated_at)
                         .where(sends.c.subscriber_id == subscribers_t.c.id, sends.c.status == LedgerStatus.SENT,
                                sends.c.campaign_id.in_(observed_ids))
                         .order_by(sends.c.updated_at.desc()).limit(1).offset(after_sends - 1)
                         .correlate(subscribers_t).scalar_subquery())
        conditions += [nth_last_send.is_not(None), ~_engaged_since(nth_last_send)]
    if after_days:
        since = now - timedelta(days=after_days)
        sent_lately = select(deliveries_t.c.id).where(
            deliveries_t.c.subscriber_id == subscribers_t.c.id, deliveries_t.c.status == LedgerStatus.SENT,
            deliveries_t.c.updated_at >= since, deliveries_t.c.campaign_id.in_(observed_ids)).exists()
        conditions += [subscribers_t.c.created_at < since, sent_lately, ~_engaged_since(since)]
    return and_(*conditions)


def count_sunset(session: Session, now: datetime, after_sends: int, after_days: float,
                 observed: Sequence[int]) -> int:
    """How many :func:`mark_dormant` would mark now."""
    return session.execute(select(func.count()).select_from(subscribers_t)
                           .where(sunset_condition(now, after_sends, after_days, observed))).scalar() or 0


def mark_dormant(session: Session, now: datetime, after_sends: int, after_days: float,
                 observed: Sequence[int]) -> int:
    """Set ``dormant_at`` on whom the policy sets aside; returns how many."""
    return rowcount(session.execute(update(subscribers_t)
                                    .where(sunset_condition(now, after_sends, after_days, observed))
                                    .values(dormant_at=now)))


def wake_engaged(session: Session, subscriber_ids: Sequence[int] | None = None) -> int:
    """Clear ``dormant_at`` for dormant subscribers who opened or clicked since (all, or these); returns how many."""
    conditions = [subscribers_t.c.dormant_at.is_not(None), _engaged_since(subscribers_t.c.dormant_at)]
    if subscriber_ids is not None:
        if not subscriber_ids:
            return 0
        conditions.append(subscribers_t.c.id.in_(sorted(set(subscriber_ids))))
    return rowcount(session.execute(update(subscribers_t).where(*conditions).values(dormant_at=None)))


# -- tags --------------------------------------------------------------------------------------

def ensure_tags(session: Session, names: Iterable[str]) -> dict[str, int]:
    """The ids of these (normalised) tag names, creating the missing ones."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    now = utcnow()
    session.execute(dialect_insert(session, tags_t).values([{"name": name, "created_at": now} for name in wanted])
                    .on_conflict_do_nothing(index_elements=["name"]))
    return dict(session.execute(select(tags_t.c.name, tags_t.c.id).where(tags_t.c.name.in_(wanted))).all())


def tag_subscribers(session: Session, subscriber_ids: Sequence[int], add: Sequence[str],
                    remove: Sequence[str]) -> tuple[int, int]:
    """Add and remove tags on these subscribers; returns (tags added, tags removed), counting only changes."""
    added = removed = 0
    ids = sorted(set(subscriber_ids))
    if add and ids:
        tag_ids = ensure_tags(session, add)
        rows = [{"subscriber_id": sid, "tag_id": tid} for sid in ids for tid in tag_ids.values()]
        added = len(session.execute(dialect_insert(session, subscriber_tags_t).values(rows)
                                    .on_conflict_do_nothing().returning(subscriber_tags_t.c.tag_id)).all())
    if remove and ids:
        doomed = select(tags_t.c.id).where(tags_t.c.name.in_(list(remove))).scalar_subquery()
        removed = rowcount(session.execute(delete(subscriber_tags_t).where(
            subscriber_tags_t.c.subscriber_id.in_(ids), subscriber_tags_t.c.tag_id.in_(doomed))))
    return added, removed


def tag_many(session: Session, pairs: Sequence[tuple[int, str]]) -> int:
    """Add (subscriber id, tag name) pairs (the importer's ``TAGS`` column); returns how many were new."""
    if not pairs:
        return 0
    tag_ids = ensure_tags(session, (name for _, name in pairs))
    rows = [{"subscriber_id": sid, "tag_id": tag_ids[name]} for sid, name in sorted(set(pairs))]
    total = 0
    for start in range(0, len(rows), 5000):  # bounded statements: SQLite's variable limit
        total += len(session.execute(dialect_insert(session, subscriber_tags_t).values(rows[start:start + 5000])
                                     .on_conflict_do_nothing().returning(subscriber_tags_t.c.tag_id)).all())
    return total


def tag_many_on(connection: Connection, pairs: Sequence[tuple[int, str]]) -> int:
    """:func:`tag_many` on a Core connection (the importer's transaction)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    names = sorted({name for _, name in pairs})
    now = utcnow()
    connection.execute(upsert(tags_t).values([{"name": name, "created_at": now} for name in names])
                       .on_conflict_do_nothing(index_elements=["name"]))
    ids = {name: tag_id for name, tag_id in
           connection.execute(select(tags_t.c.name, tags_t.c.id).where(tags_t.c.name.in_(names))).all()}
    rows = [{"subscriber_id": sid, "tag_id": ids[name]} for sid, name in sorted(set(pairs))]
    total = 0
    for start in range(0, len(rows), 5000):
        total += len(connection.execute(upsert(subscriber_tags_t).values(rows[start:start + 5000])
                                        .on_conflict_do_nothing().returning(subscriber_tags_t.c.tag_id)).all())
    return total


def tag_counts(session: Session) -> list[dict[str, Any]]:
    """Every tag with how many subscribers carry it, by name."""
    query = (select(tags_t.c.name, func.count(subscriber_tags_t.c.subscriber_id), tags_t.c.created_at)
             .outerjoin(subscriber_tags_t, subscriber_tags_t.c.tag_id == tags_t.c.id)
             .group_by(tags_t.c.id, tags_t.c.name, tags_t.c.created_at).order_by(tags_t.c.name))
    return [{"name": name, "subscribers": count, "created_at": created}
            for name, count, created in session.execute(query)]


def _tag_id(session: Session, name: str) -> int:
    found = session.scalar(select(Tag.id).where(Tag.name == name))
    if found is None:
        raise NotFound(f"no tag named {name!r}", hint="see the tags with: newsletter tags list")
    return found


def rename_tag(session: Session, old: str, new: str) -> int:
    """Rename a tag; Conflict when ``new`` exists. Returns how many subscribers carry it."""
    tag_id = _tag_id(session, old)
    if old != new and session.scalar(select(tags_t.c.id).where(tags_t.c.name == new)) is not None:
        raise Conflict(f"a tag named {new!r} already exists",
                       hint=f"delete one first (newsletter tags delete {new}), or pick another name")
    session.execute(update(tags_t).where(tags_t.c.id == tag_id).values(name=new))
    return session.scalar(select(func.count()).where(subscriber_tags_t.c.tag_id == tag_id)) or 0


def delete_tag(session: Session, name: str) -> int:
    """Delete a tag from everyone; returns how many subscribers carried it."""
    tag_id = _tag_id(session, name)
    carried = rowcount(session.execute(delete(subscriber_tags_t).where(subscriber_tags_t.c.tag_id == tag_id)))
    session.execute(delete(tags_t).where(tags_t.c.id == tag_id))
    return carried


def tags_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each subscriber's tags, sorted by name."""
    found: dict[int, list[str]] = {}
    for start in range(0, len(subscriber_ids), 5000):
        query = (select(subscriber_tags_t.c.subscriber_id, tags_t.c.name)
                 .join(tags_t, tags_t.c.id == subscriber_tags_t.c.tag_id)
                 .where(subscriber_tags_t.c.subscriber_id.in_(list(subscriber_ids[start:start + 5000])))
                 .order_by(tags_t.c.name))
        for sid, name in session.execute(query):
            found.setdefault(sid, []).append(name)
    return found


# -- segments ----------------------------------------------------------------------------------

def create_segment(session: Session, name: str, lists: Sequence[str], filter_text: str) -> Segment:
    """Save a segment (the caller has parsed the filter and checked the lists exist)."""
    if find_segment(session, name) is not None:
        raise Conflict(f"segment {name!r} already exists",
                       hint=f"delete it first (newsletter segments delete {name}) or choose another name")
    segment = Segment(name=name, lists=list(lists), filter_text=filter_text, created_at=utcnow())
    session.add(segment)
    session.flush()
    return segment


def find_segment(session: Session, name: str) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.name == name))


def get_segment(session: Session, name: str) -> Segment:
    found = find_segment(session, name)
    if found is None:
        raise NotFound(f"no segment named {name!r}", hint="see the segments with: newsletter segments list")
    return found


def all_segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.name)))


def delete_segment(session: Session, name: str) -> None:
    session.delete(get_segment(session, name))


def list_ids(session: Session, names: Sequence[str]) -> list[int]:
    """The ids of these lists, in the order given; NotFound names the first missing one."""
    found = dict(session.execute(select(lists_t.c.name, lists_t.c.id).where(lists_t.c.name.in_(list(names))))
                 .all())
    for name in names:
        if name not in found:
            raise NotFound(f"no list named {name!r}", hint=f"create it with: newsletter lists create {name}")
    return [found[name] for name in names]

