"""Segment count speed: a three-clause filter over 1,000,000 subscribers, on SQLite and PostgreSQL.

Goal (issue 16): ``segments count`` with a three-clause filter over a
million-subscriber list in at most 1 s on each backend. The data is made
in SQL (one statement per table): one list, every subscriber confirmed on
it, a ``city`` attribute (one in ten London), the tag ``vip`` on one in
seven, join dates spread over two years. The count is timed in-process
(best of --rounds, the query alone) and through the real CLI in a fresh
process (start-up included); the plan is printed.

Usage: python benchmarks/bench_segments.py [--rows N] [--rounds N] [--postgres URL]
       (PostgreSQL: --postgres, or NEWSLETTER_TEST_POSTGRES_URL; a schema of its own, dropped after)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _cli import NEWSLETTER, run_cli  # noqa: E402

FILTER = 'city = "London" and tag:vip and joined > 2026-01-01'
CITIES = ["London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Dublin", "Vienna", "Prague", "Oslo"]
NOW = "2026-12-01 00:00:00.000000"


def fill_sqlite(connection, rows: int) -> None:
    cities = " ".join(f"WHEN {n} THEN '{city}'" for n, city in enumerate(CITIES))
    connection.exec_driver_sql("INSERT INTO lists (id, name, double_opt_in, public, display_name, created_at) "
                               f"VALUES (1, 'readers', 0, 0, '', '{NOW}')")
    connection.exec_driver_sql(f"""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
        INSERT INTO subscribers (id, email, email_key, email_hash, name, attributes, timezone, status,
                                 created_at, updated_at)
        SELECT i, 'reader.' || i || '@example.org', 'reader.' || i || '@example.org', printf('%064d', i),
               'Reader ' || i, json_object('city', CASE i % 10 {cities} END, 'age', i % 90), NULL, 'active',
               '{NOW}', '{NOW}' FROM n""")
    connection.exec_driver_sql("""
        INSERT INTO memberships (subscriber_id, list_id, status, subscribed_at, consent_source)
        SELECT id, 1, 'confirmed', strftime('%Y-%m-%d %H:%M:%f', '2025-01-01', '+' || (id % 700) || ' days') || '000',
               'bench' FROM subscribers""")
    connection.exec_driver_sql(f"INSERT INTO tags (id, name, created_at) VALUES (1, 'vip', '{NOW}')")
    connection.exec_driver_sql("INSERT INTO subscriber_tags (subscriber_id, tag_id) "
                               "SELECT id, 1 FROM subscribers WHERE id % 7 = 0")
    connection.exec_driver_sql("ANALYZE")


def fill_postgres(connection, rows: int) -> None:
    cities = "ARRAY[" + ", ".join(f"'{city}'" for city in CITIES) + "]"
    connection.exec_driver_sql("INSERT INTO lists (id, name, double_opt_in, public, display_name, created_at) "
                               f"VALUES (1, 'readers', false, false, '', '{NOW}+00')")
    connection.exec_driver_sql(f"""
        INSERT INTO subscribers (id, email, email_key, email_hash, name, attributes, timezone, status,
                                 created_at, updated_at)
        SELECT i, 'reader.' || i || '@example.org', 'reader.' || i || '@example.org', lpad(i::text, 64, '0'),
               'Reader ' || i, json_build_object('city', ({cities})[mod(i, 10) + 1], 'age', mod(i, 90)), NULL, 'active',
               '{NOW}+00', '{NOW}+00' FROM generate_series(1, {rows}) AS i""")
    connection.exec_driver_sql("""
        INSERT INTO memberships (subscriber_id, list_id, status, subscribed_at, consent_source)
        SELECT id, 1, 'confirmed', timestamptz '2025-01-01 00:00+00' + mod(id, 700) * interval '1 day', 'bench'
        FROM subscribers""")
    connection.exec_driver_sql(f"INSERT INTO tags (id, name, created_at) VALUES (1, 'vip', '{NOW}+00')")
    connection.exec_driver_sql("INSERT INTO subscriber_tags (subscriber_id, tag_id) "
                               "SELECT id, 1 FROM subscribers WHERE mod(id, 7) = 0")
    for table in ("subscribers", "lists", "tags"):
        connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"(SELECT max(id) FROM {table}))")
    connection.exec_driver_sql("ANALYZE")


def expected(rows: int) -> int:
    """The count the filter must give, computed in Python from the same rules as the SQL that made the data."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    boundary = datetime(2026, 1, 2, tzinfo=UTC)  # joined > 2026-01-01: from 2 January on
    return sum(1 for i in range(1, rows + 1)
               if i % 10 == 0 and i % 7 == 0 and (start.toordinal() + i % 700) >= boundary.toordinal())


def measure(url: str, label: str, rows: int, rounds: int) -> None:
    from newsletter.store.db import Store
    from newsletter.store.segments import audience_count, filter_condition
    from newsletter.vocabulary.filters import parse_filter
    from sqlalchemy import text

    store = Store(url)
    try:
        started = time.perf_counter()
        with store.engine.begin() as connection:
            (fill_postgres if store.dialect == "postgresql" else fill_sqlite)(connection, rows)
        print(f"  (set-up: {rows:,} subscribers made in {time.perf_counter() - started:.1f} s)")
        node = parse_filter(FILTER)
        times = []
        for _ in range(rounds):
            with store.session() as session:
                begin = time.perf_counter()
                count = audience_count(session, [1], node)
                times.append(time.perf_counter() - begin)
        want = expected(rows)
        assert count == want, (count, want)
        print(f"{label}: count {count:,} of {rows:,} in {min(times):.3f} s (best of {rounds}; "
              f"all: {', '.join(f'{t:.3f}' for t in times)}) {'OK' if min(times) <= 1 else 'OVER the 1 s goal'}")
        with store.session() as session:
            from newsletter.store.segments import audience_base, memberships_t, subscribers_t
            from sqlalchemy import func, select

            query = (select(func.count()).select_from(memberships_t)
                     .join(subscribers_t, subscribers_t.c.id == memberships_t.c.subscriber_id)
                     .where(audience_base([1]), filter_condition(node, store.dialect, datetime.now(UTC))))
            compiled = query.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
            plan = session.execute(text(explain + str(compiled))).all()
            for row in plan:
                print("    plan:", str(row[-1])[:110])
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "letter"
            subprocess.run(NEWSLETTER + ["init", str(folder)], check=True, capture_output=True)
            env = {**os.environ, "NEWSLETTER_DATABASE_URL": url}
            seconds, peak, output = run_cli(["segments", "count", "--list", "readers", "--where", FILTER, "--json"],
                                            folder, env)
            print(f"{label}: `newsletter segments count` in a fresh process {seconds:.2f} s, {peak:.0f} MB ({output})")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(f"Filter: {FILTER}")
    with tempfile.TemporaryDirectory() as scratch:
        measure(f"sqlite:///{scratch}/bench.db", "SQLite", args.rows, args.rounds)
    if not args.postgres:
        print("PostgreSQL: skipped (give --postgres URL or set NEWSLETTER_TEST_POSTGRES_URL)")
        return
    from newsletter.store.db import normalise_url
    from sqlalchemy import create_engine

    base = normalise_url(args.postgres)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        measure(f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", "PostgreSQL", args.rows,
                args.rounds)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
