"""Sequence use cases: create, list, show, pause, resume, the dry run, and the daemon's round.

A sequence is a folder of articles, one step each, in file-name order; each
article's front matter says when it goes (``after: 3d``, optionally ``at:
"09:00"``, see :mod:`newsletter.scheduling.sequences`). Every article is
composed and checked when the sequence is created, like a send; the
editions are stored, so later edits of the files change nothing already
created.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from newsletter.compose.readers import HTML_SUFFIXES, MARKDOWN_SUFFIXES
from newsletter.errors import Conflict, InputError, NotFound

ARTICLE_SUFFIXES = (*MARKDOWN_SUFFIXES, *HTML_SUFFIXES, ".txt")
MAX_STEPS = 50
NAME = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,99}\Z")
NAME_HINT = "e.g. newsletter sequences create onboarding --list readers --folder sequences/onboarding"
DRY_RUN_ROWS = 1000


def _check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InputError("a sequence name is 1 to 100 lowercase letters, digits, '.', '_' or '-'", hint=NAME_HINT)
    return name


def read_steps(settings, folder: str) -> list[dict[str, Any]]:
    """The folder's articles in name order with their timing; InputError on the first problem."""
    from newsletter.compose.readers import split_front_matter
    from newsletter.scheduling.sequences import parse_at, parse_delay

    path = Path(folder)
    if not path.is_absolute():
        path = Path(settings.workspace) / path
    if not path.is_dir():
        raise InputError(f"no folder {folder}", hint="give the folder of the sequence's articles, " + NAME_HINT[5:])
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES)
    if not files:
        raise InputError(f"{folder} holds no article (.md, .txt or .html)",
                         hint="put one article per step in it, named in order: 01-welcome.md, 02-tips.md, ...")
    if len(files) > MAX_STEPS:
        raise InputError(f"{folder} holds {len(files)} articles; a sequence has at most {MAX_STEPS} steps",
                         hint="split it into several sequences")
    steps = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{file}: cannot be read as UTF-8 text", hint="save the article as UTF-8") from None
        meta, _body = split_front_matter(text, file)
        steps.append({"path": file, "after": parse_delay(meta.get("after"), str(file)),
                      "at": parse_at(meta.get("at"), str(file))})
    return steps


def create(store, settings, name: str, list_name: str, folder: str, *, transport: str | None = None,
           zone: str | None = None, enrol_existing: bool = False, restart: bool = False) -> dict:
    """Compose every step, store the sequence; returns what ``show`` returns."""
    from newsletter.delivery import get_transport
    from newsletter.engine.campaigns import require_sendable
    from newsletter.scheduling.times import get_zone
    from newsletter.store import ledger
    from newsletter.store import sequences as q
    from newsletter.store.audience import get_list
    from newsletter.usecases.editions import prepare_edition
    from newsletter.vocabulary import SequenceStatus

    _check_name(name)
    zone = zone or "UTC"
    get_zone(zone)
    chosen = transport or settings.transport
    require_sendable(settings, chosen)
    get_transport(settings, chosen)  # a missing API key or SMTP URL fails now, not in the daemon
    with store.session() as session:
        get_list(session, list_name)
        if q.get_sequence(session, name) is not None:
            raise Conflict(f"a sequence named {name!r} exists", hint=f"see it with: newsletter sequences show {name}")
    steps = read_steps(settings, folder)
    editions = [prepare_edition(settings, str(step["path"])) for step in steps]
    with store.session() as session:
        mailing_list = get_list(session, list_name)
        if q.get_sequence(session, name) is not None:
            raise Conflict(f"a sequence named {name!r} exists", hint=f"see it with: newsletter sequences show {name}")
        sequence = q.Sequence(name=name, list_id=mailing_list.id, folder=folder, transport=chosen, timezone=zone,
                              status=SequenceStatus.ACTIVE, enrol_existing=enrol_existing,
                              restart_on_rejoin=restart)
        session.add(sequence)
        session.flush()
        for position, (step, edition) in enumerate(zip(steps, editions, strict=True)):
            stored = ledger.save_edition(
                session, slug=edition.slug, subject=edition.subject, preheader=edition.preheader or "",
                html=edition.html, text=edition.text, theme=edition.theme, article_path=str(step["path"]),
                tags=list(edition.article.tags or []))
            session.add(q.SequenceStep(sequence_id=sequence.id, position=position, after_seconds=step["after"],
                                       at_time=step["at"], article_path=str(step["path"]), edition_id=stored.id))
            session.flush()
            q.step_campaign(session, sequence, position, 0, stored.id)
    return show(store, name)


def _get(session, name: str):
    from newsletter.store import sequences as q

    sequence = q.get_sequence(session, name)
    if sequence is None:
        raise NotFound(f"no sequence named {name!r}", hint="see them with: newsletter sequences list")
    return sequence


def list_all(store) -> list[dict]:
    from newsletter.store import sequences as q

    with store.session() as session:
        out = []
        for sequence in q.all_sequences(session):
            counts = q.enrolment_counts(session, sequence.id)
            out.append({"name": sequence.name, "list": q.list_name_of(session, sequence), "status": sequence.status,
                        "steps": len(q.steps_of(session, sequence.id)), "folder": sequence.folder,
                        "enrolled": sum(counts.values()), **{f"readers_{k}": v for k, v in counts.items()}})
    return out


def show(store, name: str) -> dict:
    """The sequence, its steps with per-step counts, and its readers by status."""
    from newsletter.scheduling.sequences import Timing
    from newsletter.store import sequences as q
    from newsletter.store.models import Edition

    with store.session() as session:
        sequence = _get(session, name)
        counts = q.step_counts(session, sequence.id)
        campaigns = q.campaigns_of(session, sequence.id)
        steps = []
        for step in q.steps_of(session, sequence.id):
            edition = session.get(Edition, step.edition_id)
            row = counts.get(step.position, {})
            steps.append({
                "step": step.position, "after": Timing(step.after_seconds, step.at_time).label(),
                "subject": edition.subject if edition else "", "article": step.article_path,
                "campaigns": [c for p, _r, c in campaigns if p == step.position],
                "sent": row.get("sent", 0), "skipped": row.get("skipped", 0), "failed": row.get("failed", 0),
                "unknown": row.get("unknown", 0),
                "pending": row.get("pending", 0) + row.get("sending", 0) + row.get("waiting", 0),
            })
        return {"name": sequence.name, "list": q.list_name_of(session, sequence), "status": sequence.status,
                "folder": sequence.folder, "transport": sequence.transport, "timezone": sequence.timezone,
                "enrol_existing": sequence.enrol_existing, "restart": sequence.restart_on_rejoin,
                "created_at": sequence.created_at, "readers": q.enrolment_counts(session, sequence.id),
                "steps": steps}


def set_paused(store, name: str, paused: bool) -> dict:
    """Pause (the daemon leaves it alone) or resume; Conflict when it already is."""
    from newsletter.store import sequences as q
    from newsletter.vocabulary import SequenceStatus

    to, frm = ((SequenceStatus.PAUSED, SequenceStatus.ACTIVE) if paused else
               (SequenceStatus.ACTIVE, SequenceStatus.PAUSED))
    with store.session() as session:
        sequence = _get(session, name)
        if not q.set_status(session, sequence.id, to, frm):
            raise Conflict(f"sequence {name} is already {sequence.status}",
                           hint=f"see it with: newsletter sequences show {name}")
    return {"name": name, "status": str(to)}


def dry_run(store, settings, name: str, days: float, *, now: datetime | None = None) -> dict:
    """Who gets which step when over the next ``days`` days (readers enrolled, and members the
    daemon enrols at its next round). Steps already later than the grace show as ``missed``."""
    from newsletter.scheduling.sequences import Timing, due_after, schedule_from
    from newsletter.scheduling.times import show as show_time
    from newsletter.store import sequences as q
    from newsletter.store.models import Edition, utcnow

    if not 0 < days <= 366:
        raise InputError("--days is between 0 and 366", hint="e.g. --dry-run --days 14")
    now = now or utcnow()
    until = now + timedelta(days=days)
    grace = settings.misfire_grace_seconds
    with store.session() as session:
        sequence = _get(session, name)
        steps = q.steps_of(session, sequence.id)
        timings = [Timing(s.after_seconds, s.at_time) for s in steps]
        subjects = [(session.get(Edition, s.edition_id) or Edition(subject="")).subject for s in steps]
        plans: list[tuple[str, str | None, list[tuple[int, datetime]]]] = []
        for reader in q.upcoming(session, sequence.id, until, DRY_RUN_ROWS):
            first = [(reader.next_position, reader.next_due_at)]
            rest = schedule_from(reader.next_due_at, timings, reader.next_position + 1, reader.timezone,
                                 sequence.timezone)
            plans.append((reader.email, reader.timezone, first + rest))
        if sequence.status == "active" and timings:
            for email, zone, joined in q.not_enrolled_yet(session, sequence, DRY_RUN_ROWS):
                base = max(joined, sequence.created_at)
                first_due = due_after(base, timings[0], zone, sequence.timezone)
                plans.append((email, zone, [(0, first_due)] + schedule_from(first_due, timings, 1, zone,
                                                                               sequence.timezone)))
    rows = []
    for email, zone, plan in plans:
        for position, due in plan:
            if due > until or position >= len(steps):
                break
            late = (now - due).total_seconds()
            rows.append({"when": due, "local": show_time(due, zone or sequence.timezone), "email": email,
                         "step": position, "subject": subjects[position],
                         "note": "missed" if late > grace else ("due now" if late >= 0 else "")})
    rows.sort(key=lambda r: (r["when"], r["email"], r["step"]))
    return {"name": name, "status": sequence.status, "from": now, "until": until, "rows": rows[:DRY_RUN_ROWS],
            "truncated": len(rows) > DRY_RUN_ROWS}


class Transports:
    """Open transports by name for one daemon round; closes them all at the end."""

    def __init__(self, settings):
        self.settings, self.open = settings, {}

    def __call__(self, name: str):
        if name not in self.open:
            from newsletter.delivery import get_transport

            transport = get_transport(self.settings, name)
            transport.open()
            self.open[name] = transport
        return self.open[name]

    def close(self) -> None:
        for transport in self.open.values():
            transport.close()
        self.open.clear()


def run_round(store, settings, holder: str, *, first: bool = False, enrol: bool = True, stop=None):
    """The daemon's round (see :mod:`newsletter.engine.sequences`), fenced on holding the scheduler lease."""
    from newsletter.engine.sequences import run_round as engine_round
    from newsletter.store.scheduling import lease_of

    def fence(session) -> bool:
        lease = lease_of(session, "scheduler")
        return lease is not None and lease.holder == holder

    transports = Transports(settings)
    try:
        return engine_round(store, settings, transports, fence, first=first, enrol=enrol, stop=stop)
    finally:
        transports.close()
