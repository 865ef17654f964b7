"""PostgreSQL at the database's speed (issue 20), measured in one run on the local server.

Prints, for the same 2-core machine and the same run:

- import of a realistic CSV (``subscribers import``) against PostgreSQL's own
  ``COPY`` of the same file into equivalent tables (subscribers with a unique
  ``lower(email)`` index, memberships): the limit; target <= 3x, <= 250 MB;
- ``subscribers list --json`` and ``subscribers export`` from PostgreSQL:
  rate and peak memory (streamed: flat whatever the size);
- ``send`` through the SendGrid stand-in (tests/fake_sendgrid.py --fast) on
  PostgreSQL against the same send on SQLite (target >= 0.8; the two
  alternated ``--send-rounds`` times, median ratio) and against the
  ready-made limit (target >= 0.5): ready-made v3 bodies posted to the same
  stand-in, the same measure as bench_send.py's (benchmarks/_ready_made.py),
  taken around each PostgreSQL send; the older figure against the SendGrid
  transport alone on ready-made recipients is printed too, labelled;
- the ledger's hot statements on PostgreSQL, run as the engine runs them
  (1,000-row batches): mean time per statement, and each one's
  ``EXPLAIN ANALYZE`` plan.

Every CLI measurement runs the real CLI in a fresh process (peak memory is
its max RSS). Each run works in a schema of its own, dropped at the end.

Usage: python benchmarks/bench_postgres.py [--rows N] [--postgres-url URL] [--send-rounds N]
       (default 200,000 rows; the URL defaults to NEWSLETTER_TEST_POSTGRES_URL)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _cli import NEWSLETTER, run_cli, run_cli_cpu  # noqa: E402
from _ready_made import API_KEY, composed_html, ready_made_seconds  # noqa: E402
from bench_import import children_cpu, write_csv  # noqa: E402

BATCH = 1000
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- schemas and workspaces --------------------------------------------------------------

class Schemas:
    """Fresh schemas on the server (search_path URLs), all dropped by :meth:`drop`."""

    def __init__(self, url: str):
        from newsletter.store.db import normalise_url
        from sqlalchemy import create_engine

        self.base = normalise_url(url)
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def new(self) -> str:
        from sqlalchemy import text

        name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        self.names.append(name)
        return f"{self.base}{'&' if '?' in self.base else '?'}options=-csearch_path%3D{name}"

    def drop(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as connection:
            for name in self.names:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        self.admin.dispose()


def new_workspace(scratch: Path, name: str, env: dict) -> Path:
    folder = scratch / name
    subprocess.run(NEWSLETTER + ["init", str(folder), "--postal-address", "1 Bench Street",
                                 "--base-url", "https://news.example.org"], check=True, capture_output=True, env=env)
    return folder


def cli(args: list[str], folder: Path, env: dict) -> tuple[float, float, str]:
    return run_cli(args, folder, env, ok=(0, 2))


# --- import vs COPY ----------------------------------------------------------------------

def copy_limit(url: str, data: Path) -> float:
    """Seconds for PostgreSQL's own COPY of ``data`` into equivalent tables, memberships included."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE limit_subscribers (id bigserial PRIMARY KEY, email text NOT NULL, "
                       "name text, city text)")
        cursor.execute("CREATE UNIQUE INDEX limit_subscribers_key ON limit_subscribers (lower(email))")
        cursor.execute("CREATE TABLE limit_memberships (subscriber_id bigint REFERENCES limit_subscribers(id), "
                       "list_id integer, PRIMARY KEY (subscriber_id, list_id))")
        connection.commit()
        start = time.perf_counter()
        with cursor.copy("COPY limit_subscribers (email, name, city) FROM STDIN (FORMAT csv, HEADER true)") as copy, \
                data.open("rb") as handle:
            while block := handle.read(1 << 20):
                copy.write(block)
        cursor.execute("INSERT INTO limit_memberships SELECT id, 1 FROM limit_subscribers")
        connection.commit()
        return time.perf_counter() - start


def bench_import(schemas: Schemas, scratch: Path, data: Path, rows: int, env: dict) -> str:
    # The limit is taken just before and just after the import and averaged: on a shared
    # machine the load moves between measurements, and the ratio is what matters.
    before = copy_limit(schemas.new(), data)
    url = schemas.new()
    folder = new_workspace(scratch, "letter-pg", env)
    pg_env = dict(env, NEWSLETTER_DATABASE_URL=url)
    cpu = children_cpu()
    seconds, peak, _ = cli(["subscribers", "import", str(data), "--list", "readers", "--json"], folder, pg_env)
    cpu = children_cpu() - cpu
    after = copy_limit(schemas.new(), data)
    again, again_peak, _ = cli(["subscribers", "import", str(data), "--list", "readers", "--json"], folder, pg_env)
    limit = (before + after) / 2
    ratio = seconds / limit
    verdict = "met" if ratio <= 3 and peak <= 250 else "NOT MET"
    print(f"import, {rows:,} rows on PostgreSQL: {seconds:.1f} s ({rows / seconds:,.0f} rows/s), peak {peak:.0f} MB; "
          f"COPY limit {limit:.2f} s ({before:.2f} before, {after:.2f} after) -> {ratio:.1f}x "
          f"[target <= 3x, <= 250 MB: {verdict}]")
    print(f"  CPU seconds of the import command and its reader process (user + system): {cpu:.2f}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"re-import (nothing changes): {again:.1f} s, peak {again_peak:.0f} MB")
    return url


# --- streaming lists and exports ---------------------------------------------------------

def bench_streaming(url: str, scratch: Path, rows: int, env: dict) -> None:
    folder = scratch / "letter-pg"
    pg_env = dict(env, NEWSLETTER_DATABASE_URL=url)
    for label, args in (("subscribers list --json", ["subscribers", "list", "--json"]),
                        ("subscribers export (CSV)", ["subscribers", "export", "--output", str(scratch / "out.csv")]),
                        ("subscribers export --format json", ["subscribers", "export", "--format", "json",
                                                              "--output", str(scratch / "out.json")])):
        seconds, peak, _ = cli(args, folder, pg_env)
        print(f"{label}, {rows:,} subscribers from PostgreSQL: {seconds:.1f} s ({rows / seconds:,.0f}/s), "
              f"peak {peak:.0f} MB")


# --- send: PostgreSQL vs SQLite vs ready-made bodies -------------------------------------

def stand_in() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_sendgrid.py"), "--fast",
                                "--api-key", API_KEY], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def timed_send(folder: Path, env: dict, again: bool = False, limits: list[float] | None = None,
               recipients: int = 0, html: str = "") -> tuple[float, float, str, float]:
    """One send to a fresh stand-in: (seconds, peak MB, last line, CPU seconds). With ``limits``, the
    ready-made limit for ``recipients`` (``html`` in each body) is taken on the same stand-in before
    and after the send, and its mean appended."""
    process, url = stand_in()
    try:
        before = ready_made_seconds(url, recipients, html) if limits is not None else 0.0
        result = run_cli_cpu(["send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "sendgrid"]
                             + (["--again"] if again else []),
                             folder, dict(env, SENDGRID_API_KEY=API_KEY, NEWSLETTER_SENDGRID_HOST=url), ok=(0, 2))
        if limits is not None:
            limits.append((before + ready_made_seconds(url, recipients, html)) / 2)
        return result
    finally:
        process.kill()
        process.wait()


def transport_alone_seconds(rows: int) -> tuple[float, float]:
    """Seconds for ``rows`` recipients through the SendGrid transport alone (ready-made recipients,
    no database: bodies built, encoded and posted, as benchmarks/bench_sendgrid_transport.py), and
    seconds to POST the same number as pre-encoded bodies (the stand-in's own limit)."""
    from newsletter.delivery.retry import RetryPolicy
    from newsletter.providers.sendgrid.body import build_body
    from newsletter.providers.sendgrid.client import MailSendClient
    from newsletter.providers.sendgrid.transport import SendGridTransport

    from support.delivery import make_message, make_recipients, realistic_html

    message = make_message(html=realistic_html())
    batches = [make_recipients(BATCH, start) for start in range(0, BATCH * 10, BATCH)]
    payloads = [json.dumps(build_body(message, batch)[0], separators=(",", ":")).encode() for batch in batches]
    count = max(1, rows // BATCH)
    process, url = stand_in()
    try:
        start = time.perf_counter()
        with SendGridTransport(API_KEY, host=url, timeout=30, retry=RetryPolicy(max_attempts=1)) as transport:
            for number in range(count):
                transport.send_batch(message, batches[number % len(batches)])
        transport_seconds = time.perf_counter() - start
        client = MailSendClient(API_KEY, url, timeout=30)
        opener = urllib.request.build_opener()
        start = time.perf_counter()
        for number in range(count):
            request = urllib.request.Request(client.url, data=payloads[number % len(payloads)],
                                             headers=client.headers, method="POST")
            opener.open(request, timeout=30).read()
        return transport_seconds, time.perf_counter() - start
    finally:
        process.kill()
        process.wait()


def bench_send(url: str, scratch: Path, data: Path, rows: int, env: dict, rounds: int = 3) -> None:
    """The same send on SQLite and PostgreSQL, alternated ``rounds`` times (the same edition again, with
    --again): on a shared machine the load moves by a third between single runs, so the ratio printed
    is the median of the rounds' ratios, and the times are each side's median. The ready-made limit
    (benchmarks/_ready_made.py, the same measure as bench_send.py's) is taken before and after each
    PostgreSQL send and averaged; each round's PostgreSQL send is divided by its own limit."""
    sqlite_folder = new_workspace(scratch, "letter-sqlite", env)
    cli(["subscribers", "import", str(data), "--list", "readers"], sqlite_folder, env)
    pg_env = dict(env, NEWSLETTER_DATABASE_URL=url)
    html = composed_html(scratch / "letter-pg")
    sent = rows - rows // 50_000  # the file's broken rows
    sqlite_runs, pg_runs, limits = [], [], []
    for number in range(max(1, rounds)):
        sqlite_runs.append(timed_send(sqlite_folder, env, again=number > 0))
        pg_runs.append(timed_send(scratch / "letter-pg", pg_env, again=number > 0, limits=limits,
                                  recipients=sent, html=html))
    ratios = sorted(s[0] / p[0] for s, p in zip(sqlite_runs, pg_runs, strict=True))
    to_limits = sorted(limit / p[0] for limit, p in zip(limits, pg_runs, strict=True))
    if len(ratios) > 1:
        print("send rounds (SQLite / PostgreSQL seconds, ready-made limit): "
              + ", ".join(f"{s[0]:.1f}/{p[0]:.1f}, {limit:.1f}"
                          for s, p, limit in zip(sqlite_runs, pg_runs, limits, strict=True)))
    sqlite_seconds, sqlite_peak, sqlite_last, sqlite_cpu = sorted(sqlite_runs)[len(sqlite_runs) // 2]
    pg_seconds, pg_peak, pg_last, pg_cpu = sorted(pg_runs)[len(pg_runs) // 2]
    limit = sorted(limits)[len(limits) // 2]
    ready, posts = transport_alone_seconds(rows)
    to_sqlite, to_limit, to_ready = ratios[len(ratios) // 2], to_limits[len(to_limits) // 2], ready / pg_seconds
    print(f"send, {sent:,} recipients through the SendGrid stand-in: PostgreSQL {pg_seconds:.1f} s "
          f"({sent / pg_seconds:,.0f}/s, peak {pg_peak:.0f} MB, CPU {pg_cpu:.1f} s), SQLite {sqlite_seconds:.1f} s "
          f"(peak {sqlite_peak:.0f} MB, CPU {sqlite_cpu:.1f} s); ready-made limit {limit:.1f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"  PostgreSQL / SQLite {to_sqlite:.2f} [target >= 0.8: {'met' if to_sqlite >= 0.8 else 'NOT MET'}]; "
          f"PostgreSQL / ready-made limit {to_limit:.2f} [target >= 0.5: {'met' if to_limit >= 0.5 else 'NOT MET'}]")
    print(f"  (the older measure, not the target's: PostgreSQL / the SendGrid transport alone on ready-made "
          f"recipients {to_ready:.2f}: {ready:.1f} s; pre-encoded bodies posted: {posts:.1f} s)")
    print(f"  PostgreSQL: {pg_last}")
    print(f"  SQLite: {sqlite_last}")


# --- the ledger's hot statements ---------------------------------------------------------

class StatementClock:
    """Times every hot statement an engine runs, by a short label.

    While ``explaining`` is set, the first run of each labelled statement is
    also run under ``EXPLAIN ANALYZE`` just before it, in a savepoint rolled
    back (so the plan shows the real rows of that moment and changes nothing).
    """

    LABELS = (("FOR UPDATE", "claim: read pending rows (FOR UPDATE SKIP LOCKED)"),
              ("RETURNING deliveries.id", "claim: pending -> sending (RETURNING)"),
              ("FOR SHARE", "fence: the campaign's sender (FOR SHARE)"),
              ("INSERT INTO deliveries", "snapshot: the campaign's rows (INSERT ... SELECT)"),
              ("unnest", "record: per-row outcomes (one statement a batch)"),
              ("ANY (", "record: a list of rows (= ANY(array))"),
              ("BETWEEN", "record: a batch accepted (id range)"),
              ("UPDATE deliveries", "other ledger updates"))

    def __init__(self, engine):
        from sqlalchemy import event

        self.times: dict[str, list[float]] = defaultdict(list)
        self.plans: dict[str, list[str]] = {}
        self.explaining = True
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def label(self, statement: str) -> str | None:
        for marker, label in self.LABELS:
            if marker in statement:
                return label
        return None

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        label = self.label(statement)
        if label and self.explaining and not executemany and label not in self.plans:
            cursor.execute("SAVEPOINT bench_explain")
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + statement, parameters)
            self.plans[label] = [row[0] for row in cursor.fetchall()]
            cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")
        conn.info["bench_start"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        label = self.label(statement)
        if label:
            self.times[label].append(time.perf_counter() - conn.info.pop("bench_start"))


def bench_ledger(url: str, rows: int) -> None:
    """Run the engine's ledger statements over the sent campaign's rows (put back to pending), timed."""
    from newsletter.store import ledger
    from newsletter.store.db import Store
    from newsletter.store.models import Campaign, MailingList
    from sqlalchemy import select

    store = Store(url)
    clock = StatementClock(store.engine)
    sender = "bench:1"
    with store.session() as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.name == "readers"))
        edition = ledger.save_edition(session, slug="bench", subject="Bench", html="<p>x</p>", text="x")
        campaign = Campaign(edition_id=edition.id, list_id=list_id, list_name="readers", status="sending",
                            transport="sendgrid", sender=sender)
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    with store.session() as session:
        ledger.snapshot_audience(session, campaign_id, list_id)
    clock.explaining = False  # the plans of the other statements are taken halfway through the campaign
    updates_before = hot_updates(store)
    after, batches, start = 0, 0, time.perf_counter()
    while True:
        clock.explaining = batches >= rows // BATCH // 2
        with store.session() as session:
            ledger.fence(session, campaign_id, sender, beat=False)
            claim = ledger.claim_pending(session, campaign_id, list_id, after, BATCH)
        if claim is None:
            break
        after, batches = claim.last_id, batches + 1
        ids = [c.delivery_id for c in claim.rows]
        with store.session() as session:
            ledger.fence(session, campaign_id, sender, beat=False)
            if batches % 10 == 0:  # one batch in ten answered per row (some refused): the engine's slow path
                ledger.mark(session, ids[1:], "sent", "sending", provider_id="bench-id")
                ledger.mark_each(session, [{"b_id": ids[0], "status": "failed", "provider_id": None,
                                            "error": "refused"}], "sending")
            elif batches % 10 == 5:
                ledger.mark_each(session, [{"b_id": i, "status": "sent", "provider_id": f"id-{i}", "error": None}
                                           for i in ids], "sending")
            else:
                ledger.mark_range(session, campaign_id, min(ids), max(ids), "sent", "sending",
                                  provider_id="bench-id")
    seconds = time.perf_counter() - start
    print(f"ledger alone on PostgreSQL, {rows:,} rows in {batches} batches of {BATCH:,} (claim, then record): "
          f"{seconds:.1f} s, {rows / seconds:,.0f} rows/s")
    store.engine.dispose()  # the backends report their statistics as they end: wait for every row's two updates
    deadline = time.monotonic() + 10
    while hot_updates(store)[0] - updates_before[0] < 2 * rows and time.monotonic() < deadline:
        time.sleep(0.2)
    (updated, hot), (updated_before, hot_before) = hot_updates(store), updates_before
    if updated > updated_before:
        print(f"  row updates on deliveries: {updated - updated_before:,}, of which HOT (no index touched): "
              f"{hot - hot_before:,} ({(hot - hot_before) / (updated - updated_before):.0%}; migration 0025: the "
              f"claim index without status, fillfactor 60)")
    for _marker, label in StatementClock.LABELS:
        times = clock.times.get(label)
        if times:
            print(f"  {label}: {len(times)} runs, mean {1000 * sum(times) / len(times):.2f} ms, "
                  f"max {1000 * max(times):.2f} ms")
    print_plans(clock)
    store.close()


def hot_updates(store) -> tuple[int, int]:
    """(row updates, HOT updates) of this schema's ``deliveries`` so far (statistics flushed first)."""
    from sqlalchemy import text

    with store.engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()
        row = connection.execute(text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                                      "WHERE relname = 'deliveries' AND schemaname = current_schema()")).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def print_plans(clock: StatementClock) -> None:
    print("query plans (EXPLAIN ANALYZE halfway through the campaign, rolled back):")
    for _marker, label in StatementClock.LABELS:
        if label in clock.plans:
            print(f"  {label}:")
            for line in clock.plans[label]:
                print(f"    {line if len(line) <= 200 else line[:200] + ' ...'}")  # an id array runs to 1,000 ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--postgres-url", default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--send-rounds", type=int, default=3,
                        help="SQLite and PostgreSQL sends alternated this many times (the median ratio is printed)")
    parser.add_argument("--parts", default="import,streaming,send,ledger",
                        help="which measurements (comma-separated; the import always runs: the others need it)")
    options = parser.parse_args()
    parts = set(options.parts.split(","))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and k != "SENDGRID_API_KEY"}
    scratch = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    schemas = Schemas(options.postgres_url)
    try:
        data = scratch / "subscribers.csv"
        write_csv(data, options.rows)
        print(f"rows: {options.rows:,} ({data.stat().st_size / 1e6:.1f} MB CSV)")
        url = bench_import(schemas, scratch, data, options.rows, env)
        if "streaming" in parts:
            bench_streaming(url, scratch, options.rows, env)
        if "send" in parts:
            bench_send(url, scratch, data, options.rows, env, options.send_rounds)
        if "ledger" in parts:
            bench_ledger(url, options.rows - options.rows // 50_000)  # the file's broken rows are not there
    finally:
        schemas.drop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
