"""Tags and segments: tag people, save filters as segments, count them, and say whom a send reaches.

A segment is a saved filter over lists, never a copy of people: a send to a
segment is a campaign to its base list whose snapshot applies the filter,
so unsubscribes and consent stay with that list (the footer and one-click
link name it) and suppression applies as for any send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from newsletter.errors import InputError
from newsletter.vocabulary.filters import Node, normalise_tag, parse_filter, tag_problem

MAX_SEGMENT_NAME = 100


@dataclass(frozen=True)
class Audience:
    """Whom a send reaches: a list, optionally narrowed by a filter (from a segment or --where)."""

    list_name: str
    filter_text: str | None = None
    segment: str | None = None
    to_dormant: bool = False

    @property
    def node(self) -> Node | None:
        return parse_filter(self.filter_text) if self.filter_text else None

    def describe(self) -> str:
        """``readers`` / ``segment london of readers`` / ``readers where tag:vip``, for messages."""
        if self.segment:
            text = f"segment {self.segment} of {self.list_name}"
        elif self.filter_text:
            text = f"{self.list_name} where {self.filter_text}"
        else:
            text = self.list_name
        return text + (" (dormant included)" if self.to_dormant else "")


def resolve_audience(store, list_name: str | None, segment: str | None = None, where: str | None = None,
                     to_dormant: bool = False) -> Audience:
    """The Audience of ``--list``/``--segment``/``--where``/``--to-dormant``; InputError when they do not fit.

    A segment over one list sends to that list; over several, ``--list``
    says which one is the base list (one campaign, one consent). ``--where``
    with a segment narrows it further (both must hold).
    """
    from newsletter.store.segments import get_segment

    filters = []
    if segment is not None:
        with store.session() as session:
            saved = get_segment(session, segment)
            lists, text = list(saved.lists), saved.filter_text
        if list_name is None:
            if len(lists) != 1:
                raise InputError(f"segment {segment!r} covers the lists {', '.join(lists)}: say which one to send to",
                                 hint=f"add --list {lists[0]} (its consent and unsubscribe link are that list's)")
            list_name = lists[0]
        elif list_name not in lists:
            raise InputError(f"segment {segment!r} does not cover the list {list_name!r}",
                             hint=f"its lists: {', '.join(lists)}")
        filters.append(text)
    if list_name is None:
        raise InputError("say which list to send to", hint="add --list NAME (or --segment NAME)")
    if where is not None:
        parse_filter(where, "--where")
        filters.append(where)
    combined = f"({filters[0]}) and ({filters[1]})" if len(filters) == 2 else (filters[0] if filters else None)
    return Audience(list_name, combined, segment, to_dormant)


def audience_size(store, audience: Audience) -> int:
    """How many a send to ``audience`` would reach now; InputError when nobody would."""
    from newsletter.store.segments import audience_count, list_ids

    with store.session() as session:
        size = audience_count(session, list_ids(session, [audience.list_name]), audience.node,
                              include_dormant=audience.to_dormant)
    if size == 0:
        raise InputError(f"nobody in {audience.describe()} can be sent to now",
                         hint="check it with: newsletter segments count --list LIST --where '...' "
                              "(dormant subscribers need --to-dormant)")
    return size


def first_member(store, audience: Audience) -> int | None:
    """The id of the first subscriber a send to ``audience`` would reach (for samples), or None."""
    from newsletter.store.segments import audience_ids, list_ids

    with store.session() as session:
        found = audience_ids(session, list_ids(session, [audience.list_name]), audience.node,
                             include_dormant=audience.to_dormant, limit=1)
    return found[0] if found else None


def members(store, audience: Audience, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` subscribers a send to ``audience`` would reach (``email``, ``name``, ``status``)."""
    from sqlalchemy import select

    from newsletter.store.models import Subscriber
    from newsletter.store.segments import audience_ids, list_ids

    with store.session() as session:
        ids = audience_ids(session, list_ids(session, [audience.list_name]), audience.node,
                           include_dormant=audience.to_dormant, limit=limit)
        rows = session.execute(select(Subscriber.email, Subscriber.name, Subscriber.status)
                               .where(Subscriber.id.in_(ids)).order_by(Subscriber.id)).all()
    return [{"email": email, "name": name, "status": status} for email, name, status in rows]


# -- segments ---------------------------------------------------------------------------------

def create_segment(store, name: str, lists: list[str], where: str) -> dict[str, Any]:
    from newsletter.store import segments

    name = name.strip()
    if not name or len(name) > MAX_SEGMENT_NAME or any(not c.isprintable() for c in name):
        raise InputError(f"a segment name is one line of 1 to {MAX_SEGMENT_NAME} characters",
                         hint="e.g. newsletter segments create london --list readers --where 'city = \"London\"'")
    if not lists:
        raise InputError("say which lists the segment is over", hint="add --list NAME (repeat for more)")
    node = parse_filter(where, "--where")
    lists = list(dict.fromkeys(lists))
    with store.session() as session:
        ids = segments.list_ids(session, lists)
        segments.create_segment(session, name, lists, where)
        size = segments.audience_count(session, ids, node)
    return {"name": name, "lists": lists, "where": where, "count": size}


def describe_segment(store, name: str) -> dict[str, Any]:
    """A segment, how many it selects now (each person once) and how many per list."""
    from newsletter.store import segments

    with store.session() as session:
        saved = segments.get_segment(session, name)
        node = parse_filter(saved.filter_text, f"segment {name}")
        ids = segments.list_ids(session, saved.lists)
        per_list = {list_name: segments.audience_count(session, [list_id], node)
                    for list_name, list_id in zip(saved.lists, ids, strict=True)}
        total = segments.audience_count(session, ids, node)
        dormant = segments.audience_count(session, ids, node, include_dormant=True) - total
        return {"name": saved.name, "lists": list(saved.lists), "where": saved.filter_text, "count": total,
                "per_list": per_list, "dormant_left_out": dormant, "created_at": saved.created_at}


def all_segments(store) -> list[dict[str, Any]]:
    from newsletter.store import segments

    with store.session() as session:
        return [{"name": s.name, "lists": list(s.lists), "where": s.filter_text, "created_at": s.created_at}
                for s in segments.all_segments(session)]


def count(store, lists: list[str], where: str | None, segment: str | None = None,
          to_dormant: bool = False) -> dict[str, Any]:
    """How many ``--where`` (or a segment) selects on these lists now, each person once."""
    from newsletter.store import segments

    with store.session() as session:
        if segment is not None:
            saved = segments.get_segment(session, segment)
            lists = lists or list(saved.lists)
            where = f"({saved.filter_text}) and ({where})" if where else saved.filter_text
        if not lists:
            raise InputError("say which lists to count on", hint="add --list NAME (repeat for more)")
        node = parse_filter(where, "--where") if where else None
        size = segments.audience_count(session, segments.list_ids(session, lists), node, include_dormant=to_dormant)
    return {"lists": lists, "where": where, "count": size, "to_dormant": to_dormant}


def delete_segment(store, name: str) -> None:
    from newsletter.store import segments

    with store.session() as session:
        segments.delete_segment(session, name)


# -- tags -------------------------------------------------------------------------------------

def tag_names(values: tuple[str, ...] | list[str], option: str = "--add") -> list[str]:
    """Tag names from options (each may be a comma list), normalised and checked."""
    names = []
    for value in values:
        for part in value.split(","):
            name = normalise_tag(part)
            if not name and not part.strip():
                continue
            problem = tag_problem(name)
            if problem:
                raise InputError(f"{option} {part!r}: {problem}", hint=f"e.g. {option} vip")
            names.append(name)
    return list(dict.fromkeys(names))


def tag(store, emails: list[str], add: list[str], remove: list[str]) -> dict[str, Any]:
    """Add and remove tags on these subscribers, all or none (an unknown address changes nobody)."""
    from newsletter.store import audience as q
    from newsletter.store import segments
    from newsletter.vocabulary import address_key, normalise_address

    if not add and not remove:
        raise InputError("say which tags to add or remove", hint="e.g. --add vip --remove trial")
    if set(add) & set(remove):
        raise InputError(f"tag {sorted(set(add) & set(remove))[0]!r} is both added and removed",
                         hint="give each tag to --add or to --remove")
    with store.session() as session:
        ids = []
        for email in emails:
            address = normalise_address(email)
            found = q.find_subscriber(session, address_key(address))
            if found is None:
                from newsletter.errors import NotFound

                raise NotFound(f"no subscriber {address}; no tags were changed",
                               hint=f"add them with: newsletter subscribers add {address}")
            ids.append(found.id)
        added, removed = segments.tag_subscribers(session, ids, add, remove)
    return {"subscribers": len(set(ids)), "added": added, "removed": removed, "tags_added": add,
            "tags_removed": remove}


# -- the sunset policy --------------------------------------------------------------------------

NO_ENGAGEMENT_NOTE = ("the sunset policy is on, but no open or click is recorded (is tracking off?): "
                      "nobody was marked dormant")


def apply_sunset(store, settings, *, now=None, dry_run: bool = False) -> dict[str, Any]:
    """Apply ``[audience] sunset_after_sends`` / ``sunset_after_days``: wake those who engaged, mark the rest.

    Dormant subscribers are skipped by sends unless ``--to-dormant``. Where
    the store holds no open or click at all, engagement is unknown, not
    absent: nobody is marked and ``engagement_data`` is False. Likewise only
    sends of campaigns someone opened or clicked count (an untracked
    campaign's silence proves nothing). ``dry_run``
    counts without writing. Returns ``policy`` (off/on), ``marked``,
    ``woken``, ``dormant`` (now), ``engagement_data`` and a ``note``.
    """
    from newsletter.store import segments
    from newsletter.store.models import Subscriber, utcnow

    sends, days = settings.sunset_after_sends, settings.sunset_after_days
    now = now or utcnow()
    result: dict[str, Any] = {"policy": "on" if sends or days else "off", "after_sends": sends, "after_days": days,
                              "marked": 0, "woken": 0, "engagement_data": None, "note": None, "dry_run": dry_run}
    with store.session() as session:
        if sends or days:
            observed = segments.observed_campaigns(session)
            result["engagement_data"] = bool(observed)
            if not observed:
                result["note"] = NO_ENGAGEMENT_NOTE
            elif dry_run:
                result["marked"] = segments.count_sunset(session, now, sends, days, observed)
            else:
                result["woken"] = segments.wake_engaged(session)
                result["marked"] = segments.mark_dormant(session, now, sends, days, observed)
        from sqlalchemy import func, select

        result["dormant"] = session.scalar(select(func.count()).where(Subscriber.dormant_at.is_not(None))) or 0
    return result
