"""Scale-out on real services: PostgreSQL, Redis, `newsletter worker` processes, a SendGrid-speaking server.

- three workers send 50,000 recipients; one is SIGKILLed mid-send; every
  recipient is received exactly once, except rows the ledger reports
  ``unknown`` (received at most once), and no row is left pending or sending;
- the broker (our own redis-server, without persistence) is killed and
  restarted mid-send: the lost messages are queued again, same invariants;
- one send rate holds across workers, and a 429 pauses every worker.

Needs NEWSLETTER_TEST_POSTGRES_URL and Redis (NEWSLETTER_TEST_REDIS_URL,
default redis://127.0.0.1:6379/0; these tests use database 13 of that
server and flush it); skips without them, fails when
NEWSLETTER_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fake_sendgrid import FakeSendGrid
from support.services import need_service, postgres_schema_url

REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_DB = 13
API_KEY = "SG.distributed-test.secret"
ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("dramatiq")


@pytest.fixture
def pg_url():
    yield from postgres_schema_url()


@pytest.fixture
def redis_url():
    """A dedicated database of the test Redis, flushed before and after."""
    import redis

    url = urlsplit(REDIS_URL)._replace(path=f"/{REDIS_DB}").geturl()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        need_service(f"Redis at {REDIS_URL} is not reachable: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def sendgrid():
    with FakeSendGrid(api_key=API_KEY, validate=False) as server:
        yield server


@pytest.fixture
def letter(tmp_path, pg_url, sendgrid, cli, monkeypatch):
    """A workspace on PostgreSQL sending through the fake SendGrid; returns a helper."""
    from newsletter.workspace import init_workspace

    folder = tmp_path / "letter"
    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street",
                   base_url="https://news.clinic.example", transport="sendgrid")
    config = folder / "newsletter.toml"
    # Four batches a chunk, so that a kill lands in the middle of one.
    config.write_text(config.read_text().replace("batch_size = 1000", "batch_size = 250"))
    env = {"NEWSLETTER_HOME": str(folder), "NEWSLETTER_DATABASE_URL": pg_url, "SENDGRID_API_KEY": API_KEY,
           "NEWSLETTER_SENDGRID_HOST": sendgrid.url, "NEWSLETTER_TRANSPORT": "sendgrid"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(folder)
    helper = Letter(folder, env, cli, tmp_path)
    yield helper
    helper.stop_all()


class Letter:
    def __init__(self, folder: Path, env: dict, cli, tmp_path: Path):
        self.folder, self.env, self.cli, self.tmp = folder, dict(env), cli, tmp_path
        self.processes: list[subprocess.Popen] = []

    def populate(self, count: int) -> list[str]:
        emails = [f"reader{i}@example.org" for i in range(count)]
        data = self.tmp / "people.csv"
        data.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
        result = self.cli("subscribers", "import", str(data), "--list", "readers", "--json")
        assert result.json()["added"] == count, result.stderr
        return emails

    def start(self, *args: str, broker_url: str, **extra) -> subprocess.Popen:
        env = {**os.environ, **self.env, "NEWSLETTER_BROKER_URL": broker_url, **extra}
        log = open(self.tmp / f"proc-{len(self.processes)}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "newsletter", *args], env=env, cwd=self.folder,
                                   stdout=subprocess.PIPE if args[0] == "send" else log, stderr=log)
        self.processes.append(process)
        return process

    def workers(self, count: int, broker_url: str) -> list[subprocess.Popen]:
        return [self.start("worker", "--idle-requeue", "2", broker_url=broker_url) for _ in range(count)]

    def send(self, broker_url: str) -> subprocess.Popen:
        return self.start("send", "articles/welcome.md", "--list", "readers", "--yes", "--json",
                          broker_url=broker_url)

    def counts(self) -> dict:
        from newsletter.config import load_settings
        from newsletter.engine.campaigns import describe_campaign
        from newsletter.store.db import open_store

        store = open_store(load_settings())
        try:
            return describe_campaign(store, 1)["counts"]
        except Exception:  # noqa: BLE001 - not created yet
            return {}
        finally:
            store.close()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; logs: {self.logs()}"
            time.sleep(0.2)

    def logs(self, tail: int | None = 3000) -> str:
        """Every process's log; only the last ``tail`` characters of each (None: all), for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.read_text()[-tail if tail else 0:]}"
                         for p in sorted(self.tmp.glob("proc-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def ledger_rows() -> dict[str, str]:
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from sqlalchemy import text

    store = open_store(load_settings())
    with store.session() as session:
        rows = dict(session.execute(text("SELECT email, status FROM deliveries WHERE campaign_id = 1")).all())
    store.close()
    return rows


def check_exactly_once(sendgrid: FakeSendGrid, emails: list[str]) -> dict:
    """Each address received once, or at most once when the ledger says unknown; nothing left open."""
    received = Counter(to["email"] for body in sendgrid.bodies for p in body["personalizations"] for to in p["to"])
    rows = ledger_rows()
    assert len(rows) == len(emails)
    statuses = Counter(rows.values())
    assert statuses["pending"] == 0 and statuses["sending"] == 0, statuses
    doubled = [e for e, n in received.items() if n > 1]
    assert doubled == [], f"{len(doubled)} recipients received twice"
    missing = [e for e in emails if received[e] == 0 and rows[e] != "unknown"]
    assert missing == [], f"{len(missing)} recipients never sent"
    assert all(rows[e] in ("sent", "unknown") for e in received)
    return statuses


def finish(send: subprocess.Popen, letter: Letter, timeout: float = 150) -> dict:
    try:
        out, _ = send.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        send.kill()
        pytest.fail(f"the send did not finish in {timeout} s; counts {letter.counts()}; logs: {letter.logs()}")
    assert send.returncode == 0, letter.logs()
    return json.loads(out)


def test_three_workers_one_killed_mid_send_lose_and_double_nothing(letter, redis_url, sendgrid):
    emails = letter.populate(50_000)
    workers = letter.workers(3, redis_url)
    send = letter.send(redis_url)
    letter.wait_for(lambda: letter.counts().get("sent", 0) >= 12_000, 90, "the send to get going")
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()  # reaped, as a supervisor would: a zombie still answers kill(pid, 0)
    report = finish(send, letter)
    assert report["status"] == "sent" and report["campaign_id"] == 1
    statuses = check_exactly_once(sendgrid, emails)
    assert statuses["sent"] + statuses["unknown"] == 50_000
    assert report["counts"]["sent"] == statuses["sent"]
    shown = letter.cli("campaigns", "show", "1", "--json").json()
    assert shown["status"] == "sent" and shown["counts"]["sent"] == statuses["sent"]
    # The survivors stop cleanly on SIGTERM.
    for worker in workers[1:]:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert "rows" in letter.logs() and "sent" in letter.logs()  # chunks are logged with their counts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_server(port: int) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def test_broker_restart_mid_send_loses_and_doubles_nothing(letter, redis_url, sendgrid):
    """Our own redis-server, without persistence: a restart loses every queued message."""
    if not shutil.which("redis-server"):
        need_service("redis-server is not installed (broker restart test)")
    port = _free_port()
    server = _redis_server(port)
    broker_url = f"redis://127.0.0.1:{port}/0"
    try:
        emails = letter.populate(30_000)
        letter.workers(3, broker_url)
        send = letter.send(broker_url)
        letter.wait_for(lambda: letter.counts().get("sent", 0) >= 6_000, 90, "the send to get going")
        server.kill()
        server.wait()
        # The broker stays down until a worker has seen it gone (not for a guessed time).
        letter.wait_for(lambda: "connection error" in letter.logs(tail=None), 60, "a worker to see the broker gone")
        server = _redis_server(port)
        report = finish(send, letter)
        assert report["status"] == "sent"
        check_exactly_once(sendgrid, emails)
        assert "queued again" in letter.logs(tail=None)  # the line may be early in a long log
    finally:
        letter.stop_all()
        server.kill()
        server.wait()


def test_one_send_rate_across_workers(letter, redis_url, sendgrid):
    config = letter.folder / "newsletter.toml"
    config.write_text(config.read_text().replace("rate = 0", "rate = 2000"))
    emails = letter.populate(10_000)
    letter.workers(2, redis_url)
    send = letter.send(redis_url)
    letter.wait_for(lambda: letter.counts().get("sent", 0) > 0, 60, "the first batch")
    started = time.monotonic()
    report = finish(send, letter)
    elapsed = time.monotonic() - started
    # 10,000 at 2,000/s over both workers: about 5 s (the first window may be full at once).
    assert elapsed >= 3.0, f"{elapsed:.1f} s: faster than the global rate allows"
    assert report["status"] == "sent"
    check_exactly_once(sendgrid, emails)


def test_a_429_pauses_every_worker(redis_url, sendgrid):
    """Worker A gets a 429 (reset in 2 s); worker B, which got none, waits for it too."""
    import threading

    import redis
    from newsletter.distributed.limits import SendGate, SharedPausePolicy
    from newsletter.providers.sendgrid.transport import SendGridTransport

    from support.delivery import make_message, make_recipients

    client = redis.Redis.from_url(redis_url)
    gate_a, gate_b = SendGate(client, 0, "sendgrid"), SendGate(client, 0, "sendgrid")
    transport = SendGridTransport(API_KEY, host=sendgrid.url, retry=SharedPausePolicy(gate=gate_a, jitter=0.1))
    sendgrid.fail_next(429, reset_in=2)
    started = time.monotonic()
    results = {}
    thread = threading.Thread(target=lambda: results.update(a=transport.send_batch(make_message(),
                                                                                   make_recipients(3))))
    thread.start()
    time.sleep(0.5)  # A has had its 429 by now and is waiting
    gate_b.wait(1)
    waited_b = time.monotonic() - started
    thread.join(10)
    assert waited_b >= 1.0, "B did not wait for A's rate limit"
    assert all(r.outcome.value in ("queued", "sent") for r in results["a"])
    client.close()


AMQP_URL = os.environ.get("NEWSLETTER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def amqp_url():
    """RabbitMQ with the project's queues purged before and after."""
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker
        need_service(f"RabbitMQ at {AMQP_URL} is not reachable: {exc}")

    def purge():
        channel = connection.channel()
        for queue in ("newsletter", "newsletter.DQ", "newsletter.XQ"):
            channel.queue_delete(queue=queue)
        channel.close()

    purge()
    yield AMQP_URL
    purge()
    connection.close()


def test_workers_on_rabbitmq_send_each_recipient_once(letter, amqp_url, sendgrid):
    emails = letter.populate(5_000)
    letter.workers(2, amqp_url)
    report = finish(letter.send(amqp_url), letter)
    assert report["status"] == "sent"
    statuses = check_exactly_once(sendgrid, emails)
    assert statuses["sent"] == 5_000
