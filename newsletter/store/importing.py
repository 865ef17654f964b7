"""Bulk writes for imports: one chunk of validated rows at a time.

The importer (``newsletter.audience.importer``) reads and validates the file;
this module decides, per chunk, who is new, who changed and who is skipped,
and writes them with a handful of bulk statements on the caller's
connection, inside the caller's single transaction (so an interrupted import
leaves the store as it was).

Rows of our own export carry a status per list (``ValidRow.lists``): those
memberships are restored as given, and leaving always wins over an existing
membership, while joining again needs ``resubscribe``. Every skipped row is
returned with its line and the reason (:attr:`ChunkCounts.skipped_rows`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from newsletter.store import webhooks
from newsletter.store.models import Consent, MailingList, Membership, Subscriber, Suppression, utcnow
from newsletter.vocabulary import ArrivalStatus as Arrival
from newsletter.vocabulary import ConsentAction, MembershipStatus, SubscriberStatus, SuppressionReason

subscribers_t = Subscriber.__table__
memberships_t = Membership.__table__
suppressions_t = Suppression.__table__
consents_t = Consent.__table__

# ImportRow.status (an ArrivalStatus value) -> (subscriber status, membership status, suppression reason)
_ARRIVAL: dict[str, tuple[SubscriberStatus, MembershipStatus, SuppressionReason | None]] = {
    Arrival.SUBSCRIBED: (SubscriberStatus.ACTIVE, MembershipStatus.CONFIRMED, None),
    Arrival.PENDING: (SubscriberStatus.ACTIVE, MembershipStatus.PENDING, None),
    Arrival.UNSUBSCRIBED: (SubscriberStatus.UNSUBSCRIBED, MembershipStatus.UNSUBSCRIBED,
                           SuppressionReason.UNSUBSCRIBED),
    Arrival.BOUNCED: (SubscriberStatus.BOUNCED, MembershipStatus.UNSUBSCRIBED, SuppressionReason.BOUNCED),
    Arrival.COMPLAINED: (SubscriberStatus.COMPLAINED, MembershipStatus.UNSUBSCRIBED, SuppressionReason.COMPLAINED),
}
_SUBSCRIBER_COLUMNS = ("email", "email_key", "email_hash", "name", "attributes", "timezone", "status",
                       "created_at", "updated_at")
_MEMBERSHIP_COLUMNS = ("subscriber_id", "list_id", "status", "subscribed_at", "confirmed_at", "unsubscribed_at",
                       "consent_source", "consent_ip")
_CONSENT_COLUMNS = ("subscriber_id", "list_id", "action", "source", "ip", "created_at")
# After a chunk guessed all new was not, this many chunks are looked up first (a re-import is all known people).
CAREFUL_CHUNKS = 8


class ValidRow(NamedTuple):
    """A row that passed validation: its line, normalised address, key and hash, and what it says.

    A flat tuple, because a million of them cross from the parsing process.
    """

    line: int
    email: str
    key: str
    hash: str
    name: str
    attributes: dict[str, Any]
    timezone: str | None
    status: str
    ip: str | None
    # our own export: ((list name, membership status), ...) to restore, or None
    lists: tuple[tuple[str, str], ...] | None = None
    # tags (normalised) and the consent times another tool recorded (Mailchimp OPTIN_TIME, CONFIRM_TIME)
    tags: tuple[str, ...] = ()
    opted_in_at: datetime | None = None
    confirmed_at: datetime | None = None


@dataclass
class ChunkCounts:
    """What a chunk did; ``skipped_rows`` says which lines were skipped and why."""

    added: int = 0
    updated: int = 0
    skipped: int = 0
    skipped_rows: list[tuple[int, str]] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        self.skipped += 1
        self.skipped_rows.append((line, reason))


@contextmanager
def import_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction for a whole import: committed at the end, rolled back on error.

    SQLite: 64 MB of page cache (used only as needed; a big import updates
    random places of the address index, and the default thrashes), and no
    foreign-key checks while it runs. Every reference an import writes is to
    a row it created or read in this same transaction, which holds the write
    lock throughout (``BEGIN IMMEDIATE``): nobody can delete a list or a
    subscriber under it, and the checks were a fifth of the membership
    insert. The pragma only works outside a transaction, so it is set before
    the transaction begins and set back after it ends, whatever happened.
    """
    with engine.connect() as connection:
        driver = connection.connection.dbapi_connection if connection.dialect.name == "sqlite" else None
        if driver is not None:
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if driver is not None:
                    connection.exec_driver_sql("PRAGMA cache_size=-65536")
                yield connection
        finally:
            if driver is not None:
                driver.execute("PRAGMA foreign_keys=ON")


def ensure_list(connection: Connection, name: str) -> int:
    """The id of the list ``name`` (already validated), created (single opt-in) if missing."""
    table = MailingList.__table__
    found = connection.execute(select(table.c.id).where(table.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(connection.execute(
        insert(table).values(name=name, double_opt_in=False, created_at=utcnow()).returning(table.c.id)
    ).scalar_one())


class ImportWriter:
    """Writes chunks of one import to ``list_id`` (or to no list) on ``connection``."""

    def __init__(self, connection: Connection, list_id: int | None, source: str, resubscribe: bool = False,
                 list_name: str | None = None):
        self.connection = connection
        self.list_id = list_id
        self.list_name = list_name
        self._list_ids: dict[str, int] = {list_name: list_id} if list_name and list_id is not None else {}
        self.source = source
        self.resubscribe = resubscribe
        # Subscribers with a higher id were added by this import: a second line
        # for them is a duplicate within the file, and the first line wins.
        self.baseline_id = int(connection.execute(select(func.coalesce(func.max(subscribers_t.c.id), 0))).scalar_one())
        if connection.dialect.name == "sqlite":
            # The table is AUTOINCREMENT so that an erased subscriber's id is never given to
            # someone else (a token carrying only an id would name them): number from the
            # highest id ever used, not the highest still there.
            used = connection.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'").scalar()
            self.baseline_id = max(self.baseline_id, int(used or 0))
        self.next_id = self.baseline_id + 1
        # Most imports meet an empty suppression list: then no chunk needs to ask it.
        self.suppressions_exist = connection.execute(select(suppressions_t.c.email_hash).limit(1)).first() is not None
        self.written = 0  # subscribers added so far
        self._careful_chunks = 0  # chunks left to look up before guessing all new again
        self._analyzed_at = 0  # subscribers written by this import when PostgreSQL last sampled the tables
        if connection.dialect.name == "postgresql":
            self._statistics_if_stale()

    def write(self, rows: list[ValidRow]) -> ChunkCounts:
        counts = ChunkCounts()
        unique: dict[str, ValidRow] = {}
        for valid in rows:
            if valid.key in unique:
                counts.skip(valid.line, f"the same address as line {unique[valid.key].line}")
            else:
                unique[valid.key] = valid
        all_lists = any(v.lists is not None for v in unique.values())
        plan = _Plan(utcnow(), self.connection.dialect.name)
        if self._guess_all_new(plan, unique, all_lists):
            counts.added += len(plan.new)
            unique = {}
        existing = self._existing(list(unique), all_lists)
        suppressed = self._suppressed([v.hash for v in unique.values()])
        for key, valid in unique.items():
            if valid.hash in suppressed:
                if not (self.resubscribe and valid.status in (Arrival.SUBSCRIBED, Arrival.PENDING)):
                    counts.skip(valid.line, f"on the suppression list ({suppressed[valid.hash]}); "
                                            "--resubscribe adds it again if they asked")
                    continue
                plan.unsuppress.append(valid.hash)
            current = existing.get(key)
            if current is None:
                plan.new.append(valid)
                counts.added += 1
            elif current["id"] > self.baseline_id:
                counts.skip(valid.line, "the same address as an earlier line")
            elif self._plan_update(plan, valid, current):
                counts.updated += 1
                if valid.tags or valid.opted_in_at or valid.confirmed_at:
                    plan.extras.append((int(current["id"]), valid))
            elif (self.list_id is not None and current.get("membership") == MembershipStatus.UNSUBSCRIBED
                  and valid.lists is None):
                counts.skip(valid.line, f"unsubscribed from {self.list_name}; --resubscribe adds them again "
                                        "if they asked")
            else:
                counts.skip(valid.line, "already there, nothing to change")
        self._apply(plan)
        self._tags_and_consent_times(plan)
        self._report_created(plan)
        if plan.new and not plan.sqlite and self.written > max(10_000, 2 * self._analyzed_at):
            self._analyze()
        return counts

    def _report_created(self, plan: _Plan) -> None:
        """``subscriber.created`` for each subscriber this chunk added, when an endpoint wants it (else free)."""
        if not plan.new or not webhooks.wanted(self.connection, "subscriber.created"):
            return
        webhooks.emit_many(self.connection, "subscriber.created", [
            (f"subscriber:{sid}", {"id": sid, "email": valid.email, "name": valid.name,
                                   "status": _ARRIVAL[valid.status][0], "list": self.list_name,
                                   "list_status": _ARRIVAL[valid.status][1] if self.list_id is not None else None,
                                   "source": self.source})
            for sid, valid in zip(plan.new_ids, plan.new, strict=True)])
    def _guess_all_new(self, plan: _Plan, unique: dict[str, ValidRow], all_lists: bool) -> bool:
        """Insert the chunk's rows as new people without looking them up first; True when they all were.

        A big first import is all new people, and looking 2,000 addresses up
        in the index costs about what inserting them does. The rows go in
        in a savepoint (SQLite: with ``ON CONFLICT DO NOTHING``; PostgreSQL:
        by ``COPY``, which stops at the first address already there): when
        not all went in (an address already stored, or met in an earlier
        chunk), the savepoint is rolled back, nothing of the chunk stays, and
        it takes the careful path (look up, then decide row by row), as do
        the next ``CAREFUL_CHUNKS`` chunks. Chunks that may touch other
        tables' decisions (suppressions stored, our export's lists) are
        never guessed.
        """
        if self._careful_chunks:
            self._careful_chunks -= 1
            return False
        if self.suppressions_exist or all_lists or not unique:
            return False
        plan.new = list(unique.values())
        next_id, written = self.next_id, self.written
        savepoint = self.connection.begin_nested()
        try:
            inserted = self._insert_new(plan, skip_existing=True)
        except Exception as exc:  # PostgreSQL's COPY met an address already stored
            if getattr(exc, "sqlstate", None) != "23505":  # unique_violation
                raise
            inserted = -1
        if inserted == len(plan.new):
            savepoint.commit()
            plan.inserted = True
            return True
        savepoint.rollback()
        self.next_id, self.written = next_id, written
        plan.new, plan.new_ids, plan.memberships, plan.extras, plan.suppress = [], [], [], [], []
        self._careful_chunks = CAREFUL_CHUNKS
        return False

    def _statistics_if_stale(self) -> None:
        """PostgreSQL: sample the tables an import reads when they changed a lot since last sampled.

        Rows written in bulk (an earlier import, not yet seen by autovacuum)
        leave the planner believing the tables are nearly empty: it then
        answers a chunk's lookups by scanning a whole table (EXPLAIN showed
        0.4 s a chunk on 50,000 rows).
        """
        stale = self.connection.exec_driver_sql(
            "SELECT coalesce(sum(n_mod_since_analyze), 0) > 1000 + 0.2 * coalesce(sum(n_live_tup), 0) "
            "FROM pg_stat_user_tables WHERE relid IN ('subscribers'::regclass, 'memberships'::regclass)").scalar()
        if stale:
            self._analyze()

    def _analyze(self) -> None:
        """PostgreSQL: ANALYZE the tables this import reads (it counts this transaction's own new rows).

        Run as the rows grow (at 10,000, then each doubling) so the lookups of
        later chunks stay index lookups; a few tenths of a second each. Not the
        tables' owner: PostgreSQL skips it with a warning. ANALYZE's lock is
        held to the end of the import's transaction, so an import that cannot
        have it at once (another import holds it) goes on without: in a
        savepoint, with a short lock timeout, never waiting behind another.
        """
        self._analyzed_at = self.written
        try:
            with self.connection.begin_nested():
                before = self.connection.exec_driver_sql("SHOW lock_timeout").scalar()
                self.connection.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                self.connection.exec_driver_sql("ANALYZE subscribers, memberships")
                self.connection.exec_driver_sql("SELECT set_config('lock_timeout', %s, true)", (before,))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise

    def _list_id_of(self, name: str) -> int:
        if name not in self._list_ids:
            self._list_ids[name] = ensure_list(self.connection, name)
        return self._list_ids[name]

    def _wanted_lists(self, valid: ValidRow) -> dict[int, str]:
        """list id -> membership status for a row of our own export (``--list`` joins rows that lack it)."""
        wanted = {self._list_id_of(name): status for name, status in valid.lists or ()}
        if self.list_id is not None and self.list_id not in wanted:
            wanted[self.list_id] = _ARRIVAL[valid.status][1]
        return wanted

    def _existing(self, keys: list[str], all_lists: bool = False) -> dict[str, dict[str, Any]]:
        """The subscribers of this chunk already stored, by key, with their membership of the list.

        With ``all_lists``, ``memberships`` holds every membership (list id -> status) too.
        """
        if self.connection.dialect.name == "postgresql" and keys:
            # One index probe per key, in a shape the planner cannot turn into a scan of the
            # whole table (it prices 2,000 probes above a parallel scan, which grows with the
            # table: 12-26 ms a chunk at 200,000 rows against 3 ms; LIMIT 1 keeps the lateral
            # subquery a subquery, and the address key is unique).
            rows = self.connection.exec_driver_sql(
                "SELECT s.id, s.email_key, s.name, s.attributes::text, s.timezone, s.status "
                "FROM unnest(string_to_array(%s, E'\\n')) AS k(key) CROSS JOIN LATERAL (SELECT id, email_key, "
                "name, attributes, timezone, status FROM subscribers WHERE email_key = k.key LIMIT 1) AS s",
                (_lines(keys),)).all()
        else:
            rows = self._where_in("SELECT id, email_key, name, attributes, timezone, status FROM subscribers "
                                  "WHERE email_key IN ({})", keys)
        found: dict[str, dict[str, Any]] = {
            key: {"id": id_, "name": name, "attributes": _as_dict(attributes), "timezone": zone, "status": status}
            for id_, key, name, attributes, zone, status in rows}
        if self.list_id is not None and found:
            member = dict(self._where_in(
                f"SELECT subscriber_id, status FROM memberships WHERE list_id = {int(self.list_id)} "
                "AND subscriber_id IN ({})", [row["id"] for row in found.values()]))
            for row in found.values():
                row["membership"] = member.get(row["id"])
        if all_lists and found:
            by_id = {row["id"]: row for row in found.values()}
            for row in by_id.values():
                row["memberships"] = {}
            for sid, list_id, status in self._where_in(
                    "SELECT subscriber_id, list_id, status FROM memberships WHERE subscriber_id IN ({})", list(by_id)):
                by_id[sid]["memberships"][list_id] = status
        return found

    def _suppressed(self, hashes: list[str]) -> dict[str, str]:
        """Suppressed hashes of this chunk -> reason."""
        if not self.suppressions_exist:
            return {}
        return dict(self._where_in("SELECT email_hash, reason FROM suppressions WHERE email_hash IN ({})", hashes))

    def _where_in(self, sql: str, values: Sequence[object]) -> Sequence[Row[*tuple[Any, ...]]]:
        """Run ``sql`` (with one ``IN ({})``) for ``values``, bound at the driver.

        A 2,000-value IN list through SQLAlchemy's expanding parameters cost
        more than the query; the driver binds them directly (SQLite: one
        placeholder per value; PostgreSQL: ``= ANY(array)`` from one string).
        """
        if not values:
            return []
        if self.connection.dialect.name != "sqlite":
            # One array parameter: psycopg parses a query's placeholders in
            # Python, which cost more than the lookup on 2,000 of them.
            # The array's type said outright (psycopg would send small ints as smallint[]).
            array = "::integer[]" if isinstance(values[0], int) else ""
            return self.connection.exec_driver_sql(
                sql.replace("IN ({})", f"= ANY(string_to_array(%s, E'\\n'){array})"), (_lines(values),)).all()
        return self.connection.exec_driver_sql(sql.format(", ".join(["?"] * len(values))), tuple(values)).all()

    def _plan_update(self, plan: _Plan, valid: ValidRow, current: dict[str, Any]) -> bool:
        """Queue what changes for an existing subscriber; False when nothing does."""
        changes: dict[str, Any] = {}
        if valid.name and valid.name != current["name"]:
            changes["name"] = valid.name
        merged = {**(current["attributes"] or {}), **valid.attributes}
        if merged != (current["attributes"] or {}):
            changes["attributes"] = merged
        if valid.timezone and valid.timezone != current["timezone"]:
            changes["timezone"] = valid.timezone
        subscriber_status, membership_status, reason = _ARRIVAL[valid.status]
        if reason and current["status"] == SubscriberStatus.ACTIVE:
            changes["status"] = subscriber_status
            plan.suppress.append((valid.hash, reason))
        elif self.resubscribe and not reason and current["status"] != SubscriberStatus.ACTIVE:
            changes["status"] = SubscriberStatus.ACTIVE
        membership_changed = False
        if valid.lists is not None:
            for list_id, status in self._wanted_lists(valid).items():
                membership_changed |= self._plan_membership(plan, current["id"], list_id, status,
                                                            current["memberships"].get(list_id), valid.ip)
        elif self.list_id is not None:
            membership_changed = self._plan_membership(plan, current["id"], self.list_id, membership_status,
                                                       current.get("membership"), valid.ip)
        if changes:
            plan.updates.append({"b_id": current["id"], "name": changes.get("name", current["name"]),
                                 "attributes": changes.get("attributes", current["attributes"] or {}),
                                 "timezone": changes.get("timezone", current["timezone"]),
                                 "status": changes.get("status", current["status"])})
        return bool(changes) or membership_changed

    def _plan_membership(self, plan: _Plan, sid: int, list_id: int, wanted: str, membership: str | None,
                         ip: str | None) -> bool:
        """Queue the change of one membership; leaving always wins, rejoining needs ``resubscribe``."""
        if membership is None:
            plan.memberships.append((sid, list_id, wanted, ip))
        elif wanted == MembershipStatus.UNSUBSCRIBED and membership != MembershipStatus.UNSUBSCRIBED:
            plan.leave.append((sid, list_id))
        elif (self.resubscribe and wanted != MembershipStatus.UNSUBSCRIBED
              and membership == MembershipStatus.UNSUBSCRIBED):
            plan.rejoin.append((sid, list_id, wanted))
        else:
            return False
        return True

    def _apply(self, plan: _Plan) -> None:
        conn, now = self.connection, plan.now
        if plan.unsuppress:
            conn.execute(suppressions_t.delete().where(suppressions_t.c.email_hash.in_(plan.unsuppress)))
        if plan.new and not plan.inserted:
            self._insert_new(plan)
        if plan.updates and not plan.sqlite:
            _update_subscribers_pg(conn, plan.updates, now)
        elif plan.updates:
            conn.execute(
                update(subscribers_t).where(subscribers_t.c.id == bindparam("b_id"))
                .values(name=bindparam("name"), attributes=bindparam("attributes"),
                        timezone=bindparam("timezone"), status=bindparam("status"), updated_at=now),
                plan.updates,
            )
        self._write_memberships(plan)
        if plan.suppress:
            self.suppressions_exist = True
            bulk_insert(conn, suppressions_t, ("email_hash", "reason", "detail", "created_at"),
                        [(h, reason, self.source, plan.stamp) for h, reason in dict(plan.suppress).items()])

    def _insert_new(self, plan: _Plan, skip_existing: bool = False) -> int:
        """Insert the chunk's new subscribers and queue their memberships (one pass over the rows).

        Returns how many rows went in; with ``skip_existing`` an address already stored is left out
        (SQLite) or stops the ``COPY`` with a unique violation (PostgreSQL), instead of failing the
        statement.
        """
        stamp, json_of, new = plan.stamp, plan.json, plan.new
        ids = self._new_ids(len(new))
        plan.new_ids = ids
        rows, memberships, extras = [], plan.memberships, plan.extras
        list_id = self.list_id
        for subscriber_id, valid in zip(ids, new, strict=True):
            subscriber_status, membership_status, reason = _ARRIVAL[valid.status]
            rows.append((subscriber_id, valid.email, valid.key, valid.hash, valid.name, json_of(valid.attributes),
                         valid.timezone, subscriber_status, stamp, stamp))
            if reason:
                plan.suppress.append((valid.hash, reason))
            if valid.lists is not None:
                memberships += [(subscriber_id, wanted_list, status, valid.ip)
                                for wanted_list, status in self._wanted_lists(valid).items()]
            elif list_id is not None:
                memberships.append((subscriber_id, list_id, membership_status, valid.ip))
            if valid.tags or valid.opted_in_at or valid.confirmed_at:
                extras.append((subscriber_id, valid))
        self.written += len(rows)
        if skip_existing and plan.sqlite:
            columns = ("id",) + _SUBSCRIBER_COLUMNS
            return int(self.connection.exec_driver_sql(
                f"INSERT INTO subscribers ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                "ON CONFLICT (email_key) DO NOTHING", rows).rowcount)
        bulk_insert(self.connection, subscribers_t, ("id",) + _SUBSCRIBER_COLUMNS, rows)
        return len(rows)

    def _tags_and_consent_times(self, plan: _Plan) -> None:
        """Tags of the rows added or updated; consent times of the memberships this chunk created.

        Few rows carry either, so they go after the bulk writes as their own
        small statements (the million-row plain CSV never gets here).
        """
        if not plan.extras:
            return
        tagged = [(sid, name) for sid, valid in plan.extras for name in valid.tags]
        if tagged:
            from newsletter.store.segments import tag_many_on

            tag_many_on(self.connection, tagged)
        timed = {sid: valid for sid, valid in plan.extras if valid.opted_in_at or valid.confirmed_at}
        changes = []
        for sid, list_id, status, _ip in plan.memberships:
            valid = timed.get(sid)
            if valid is None or status == MembershipStatus.UNSUBSCRIBED:
                continue
            opted_in = valid.opted_in_at or valid.confirmed_at
            confirmed = (valid.confirmed_at or valid.opted_in_at) if status == MembershipStatus.CONFIRMED else None
            changes.append({"b_sid": sid, "b_list": list_id, "subscribed_at": opted_in, "confirmed_at": confirmed})
        if changes:
            self.connection.execute(
                update(memberships_t).where(memberships_t.c.subscriber_id == bindparam("b_sid"),
                                            memberships_t.c.list_id == bindparam("b_list"))
                .values(subscribed_at=bindparam("subscribed_at"), confirmed_at=bindparam("confirmed_at")), changes)

    def _new_ids(self, count: int) -> list[int]:
        """Ids for ``count`` new subscribers, in order."""
        if self.connection.dialect.name == "sqlite":
            # The import holds SQLite's write lock (BEGIN IMMEDIATE), so it may
            # number rows itself; RETURNING with executemany runs row by row there.
            first = self.next_id
            self.next_id += count
            return list(range(first, self.next_id))
        # PostgreSQL: take the ids from the table's own sequence in one
        # statement (they are this transaction's alone, whatever else runs),
        # then COPY the rows with them: no RETURNING, no per-row statement.
        return sorted(self.connection.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence('subscribers', 'id')) FROM generate_series(1, %s)",
            (count,)).scalars().all())

    def _insert_memberships(self, plan: _Plan) -> None:
        """New memberships, one statement per (list, status, IP) group.

        Almost every column is the same for a whole chunk, so the subscriber
        ids go in as one JSON array (SQLite's json_each) or one string split
        on the server (PostgreSQL) instead of a bound or copied row each: on
        SQLite a third of the time, foreign-key checks included; on
        PostgreSQL no per-row formatting in Python.
        """
        stamp, groups = plan.stamp, dict[tuple[int, str, str | None], list[int]]()
        for sid, list_id, status, ip in plan.memberships:
            groups.setdefault((list_id, status, ip), []).append(sid)
        if plan.sqlite and len(groups) <= 8 and sqlite3.sqlite_version_info >= (3, 38):
            for (list_id, status, ip), ids in groups.items():
                self.connection.exec_driver_sql(
                    f"INSERT INTO memberships ({', '.join(_MEMBERSHIP_COLUMNS)}) "
                    "SELECT value, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)",
                    (list_id, status, stamp, stamp if status == MembershipStatus.CONFIRMED else None,
                     stamp if status == MembershipStatus.UNSUBSCRIBED else None, self.source, ip, json.dumps(ids)))
            return
        if not plan.sqlite and len(groups) <= 8:
            now = plan.now
            for (list_id, status, ip), ids in groups.items():
                self.connection.exec_driver_sql(
                    f"INSERT INTO memberships ({', '.join(_MEMBERSHIP_COLUMNS)}) "
                    "SELECT unnest(string_to_array(%s, E'\\n')::integer[]), %s::integer, %s::text, "
                    "%s::timestamptz, %s::timestamptz, %s::timestamptz, %s::text, %s::text",
                    (_lines(ids), list_id, str(status), now, now if status == MembershipStatus.CONFIRMED else None,
                     now if status == MembershipStatus.UNSUBSCRIBED else None, self.source, ip))
            return
        bulk_insert(self.connection, memberships_t, _MEMBERSHIP_COLUMNS, [
            (sid, list_id, status, stamp, stamp if status == MembershipStatus.CONFIRMED else None,
             stamp if status == MembershipStatus.UNSUBSCRIBED else None, self.source, ip)
            for sid, list_id, status, ip in plan.memberships
        ])

    def _write_memberships(self, plan: _Plan) -> None:
        conn, now = self.connection, plan.now
        if plan.memberships:
            self._insert_memberships(plan)
        changes = ([(sid, list_id, ConsentAction.UNSUBSCRIBE) for sid, list_id in plan.leave]
                   + [(sid, list_id, ConsentAction.RESUBSCRIBE) for sid, list_id, _ in plan.rejoin])
        bulk_insert(conn, consents_t, _CONSENT_COLUMNS,
                    [(sid, list_id, action, self.source, None, plan.stamp) for sid, list_id, action in changes])
        leaving: dict[int, list[int]] = {}
        for sid, list_id in plan.leave:
            leaving.setdefault(list_id, []).append(sid)
        for list_id, sids in leaving.items():
            conn.execute(update(memberships_t)
                         .where(memberships_t.c.list_id == list_id, memberships_t.c.subscriber_id.in_(sids))
                         .values(status=MembershipStatus.UNSUBSCRIBED, unsubscribed_at=now))
        for sid, list_id, status in plan.rejoin:
            conn.execute(update(memberships_t)
                         .where(memberships_t.c.list_id == list_id, memberships_t.c.subscriber_id == sid)
                         .values(status=status, subscribed_at=now, unsubscribed_at=None,
                                 confirmed_at=now if status == MembershipStatus.CONFIRMED else None))


def bulk_insert(connection: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows (tuples in ``columns`` order, values already in storage form).

    On SQLite the rows go straight to the driver's executemany: SQLAlchemy's
    per-value type processing cost more than the insert itself on a
    million-row import. Storage forms come from :meth:`_Plan.stamp` and
    :meth:`_Plan.json`.
    """
    if not rows:
        return
    if connection.dialect.name == "sqlite":
        placeholders = ", ".join("?" * len(columns))
        connection.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", rows)
    else:
        copy_rows(connection, table.name, columns, rows)


def copy_rows(connection: Connection, table_name: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: ``COPY table (columns) FROM STDIN`` with ``rows``, in the connection's transaction.

    COPY is the server's bulk path (no statement per row, no placeholders to
    parse); psycopg escapes each value for the text format (JSON goes as its
    text, timestamps aware).
    """
    dbapi = connection.connection.dbapi_connection
    if dbapi is None:
        raise RuntimeError("the connection was closed before COPY")
    cursor = dbapi.cursor()
    try:
        with cursor.copy(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False).encode


def _as_dict(attributes: str | dict[str, Any] | None) -> dict[str, Any]:
    """A JSON column's value: as text (SQLite; PostgreSQL's lookup casts it), or a dict."""
    if isinstance(attributes, str):
        return dict(_parsed_json(attributes)) if attributes else {}
    return attributes or {}


@functools.lru_cache(maxsize=4096)
def _parsed_json(text: str) -> dict[str, Any]:
    """Parsed once per distinct text: a list's attributes repeat (a city, a plan); callers copy it."""
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _lines(values: Sequence[object]) -> str:
    """Values (ids, address keys, hashes: never a line break) as one parameter, one per line.

    ``string_to_array`` splits it on the server: psycopg builds an array
    parameter element by element in Python, 13 ms for 2,000 keys.
    """
    return "\n".join(map(str, values))


def _update_subscribers_pg(connection: Connection, updates: list[dict[str, Any]], now: datetime) -> None:
    """PostgreSQL: every changed subscriber of a chunk in one ``UPDATE ... FROM unnest(arrays)``."""
    connection.exec_driver_sql(
        "UPDATE subscribers AS s SET name = u.name, attributes = u.attributes::json, timezone = u.timezone, "
        "status = u.status, updated_at = %s "
        "FROM unnest(%s::integer[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS u(id, name, attributes, timezone, status) WHERE s.id = u.id",
        (now, [u["b_id"] for u in updates], [u["name"] for u in updates],
         [_ENCODE_JSON(u["attributes"] or {}) for u in updates], [u["timezone"] for u in updates],
         [str(u["status"]) for u in updates]))


class _Plan:
    """What one chunk will write, and the storage forms of its values."""

    def __init__(self, now: datetime, dialect: str):
        self.now = now
        self.sqlite = dialect == "sqlite"
        # SQLite stores timestamps as text in SQLAlchemy's format (naive UTC).
        # PostgreSQL's COPY takes it as text too: formatted once, not once per row by the driver.
        self.stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now.isoformat()
        self.new: list[ValidRow] = []
        self.inserted = False  # the new rows are already in (guessed all new)
        self.new_ids: list[int] = []  # the ids given to ``new``, in its order (subscriber.created reports them)
        self.updates: list[dict[str, Any]] = []
        self.memberships: list[tuple[int, int, str, str | None]] = []  # subscriber, list, status, IP
        self.leave: list[tuple[int, int]] = []  # subscriber, list
        self.rejoin: list[tuple[int, int, str]] = []  # subscriber, list, status
        self.suppress: list[tuple[str, str]] = []
        self.unsuppress: list[str] = []
        # subscribers added or updated whose row carries tags or consent times, with their row
        self.extras: list[tuple[int, ValidRow]] = []

    def json(self, value: dict[str, Any]) -> str:
        """The JSON column's storage form: its text (SQLite stores it; COPY hands it to PostgreSQL)."""
        return _encoded_json(tuple(value.items())) if value else "{}"


@functools.lru_cache(maxsize=4096)
def _encoded_json(items: tuple[tuple[str, Any], ...]) -> str:
    """Attributes (text keys and values) encoded once per distinct value: a list's attributes repeat."""
    return _ENCODE_JSON(dict(items))
