"""The segment filter evaluated in Python: the oracle the SQL compilation must agree with.

It follows the meanings written in ``newsletter/store/segments.py`` from the
syntax tree alone, over plain Python records (:class:`Person`), without SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

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
    Within,
)


@dataclass
class Sent:
    """One ledger row of the person: its status, when it last changed, its outcomes."""

    status: str = "sent"
    updated_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    refused: str | None = None


@dataclass
class Person:
    email: str
    joined: datetime                        # subscribed_at on the list being sent to
    name: str = ""
    timezone: str | None = None
    attributes: dict = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    lists: dict[str, str] = field(default_factory=dict)   # other list name -> membership status
    dormant: bool = False
    sent: list[Sent] = field(default_factory=list)
    events: list[tuple[str, datetime]] = field(default_factory=list)  # (kind, occurred_at)


def evaluate(node: Node, person: Person, now: datetime) -> bool:
    if isinstance(node, And):
        return all(evaluate(item, person, now) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, person, now) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, person, now)
    if isinstance(node, Compare):
        if node.op == "!=":
            return not _compare(person, node.field, "=", node.value)
        return _compare(person, node.field, node.op, node.value)
    if isinstance(node, In):
        return any(_compare(person, node.field, "=", value) for value in node.values)
    if isinstance(node, Exists):
        return _exists(person, node.field)
    if isinstance(node, HasTag):
        return node.name in person.tags
    if isinstance(node, OnList):
        return person.lists.get(node.name) == node.status
    if isinstance(node, Dormant):
        return person.dormant
    if isinstance(node, Bounced):
        return (any(row.refused in ("hard", "soft") for row in person.sent)
                or any(kind == "bounced" for kind, _ in person.events))
    if isinstance(node, Within):
        since = now - timedelta(days=node.days)
        if node.kind == "joined":
            return person.joined >= since
        if node.kind == "sent":
            return any(row.status == "sent" and row.updated_at is not None and row.updated_at >= since
                       for row in person.sent)
        column = "opened_at" if node.kind == "opened" else "clicked_at"
        return (any(getattr(row, column) is not None and getattr(row, column) >= since for row in person.sent)
                or any(kind == node.kind and at >= since for kind, at in person.events))
    raise TypeError(node)


def _compare(person: Person, name: str, op: str, value) -> bool:
    if name == "joined":
        start = datetime.combine(value, datetime.min.time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        at = person.joined
        return {"=": start <= at < end, "<": at < start, "<=": at < end, ">": at >= end, ">=": at >= start}[op]
    if name in ("email", "name", "timezone"):
        current = {"email": person.email.lower(), "name": person.name, "timezone": person.timezone}[name]
        wanted = value.lower() if name == "email" else value
        return current is not None and _text(current, op, wanted)
    if name not in person.attributes:
        return False
    current = person.attributes[name]
    if isinstance(value, bool):
        return isinstance(current, bool) and current == value
    if isinstance(value, (int, float)):
        return isinstance(current, (int, float)) and not isinstance(current, bool) and _order(current, op, value)
    wanted = value.isoformat() if isinstance(value, date) else value
    return isinstance(current, str) and _text(current, op, wanted)


def _text(current: str, op: str, wanted: str) -> bool:
    return wanted in current if op == "contains" else _order(current, op, wanted)


def _order(current, op: str, wanted) -> bool:
    return {"=": current == wanted, "<": current < wanted, ">": current > wanted, "<=": current <= wanted,
            ">=": current >= wanted}[op]


def _exists(person: Person, name: str) -> bool:
    if name == "joined":
        return True
    if name == "email":
        return person.email != ""
    if name in ("name", "timezone"):
        current = person.name if name == "name" else person.timezone
        return bool(current)
    return name in person.attributes and person.attributes[name] is not None
