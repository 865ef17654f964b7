"""The scale-out workers' caps: counted in Redis by the shared gate, across processes; a cap reached pauses
the campaign for every worker, and the chunks go on when the window opens. Injected UTC clocks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime

import pytest

from support.services import need_service

pytest.importorskip("dramatiq")
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        need_service(f"Redis at {REDIS_URL} is not reachable: {exc}")
    prefix = f"test-quotas-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def gate(client, prefix, clock, **limits):
    from newsletter.config import Limits
    from newsletter.distributed.limits import SendGate

    return SendGate(client, 0, "smtp", prefix=prefix, limits=Limits(**limits), scope="smtp:acct", utc_clock=clock)


def test_the_gate_counts_caps_and_gives_back(redis_client):
    from newsletter.engine.quotas import QuotaReached

    client, prefix = redis_client
    clock = Clock(datetime(2026, 12, 2, 10, 15, tzinfo=UTC))
    shared = gate(client, prefix, clock, hourly_cap=10, daily_cap=25)
    granted, windows = shared.take_quota(8)
    assert granted == 8
    shared.give_back(windows, 3)  # three of them were skipped at the claim
    assert shared.take_quota(8)[0] == 5
    with pytest.raises(QuotaReached) as reached:
        shared.take_quota(1)
    assert reached.value.resume_at == datetime(2026, 12, 2, 11, tzinfo=UTC)
    assert reached.value.reason == "hourly cap of 10 for transport smtp reached; resumes at 2026-12-02 11:00 UTC"
    clock.now = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert gate(client, prefix, clock, hourly_cap=10, daily_cap=25).take_quota(100)[0] == 10  # a new worker
    clock.now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert shared.take_quota(100)[0] == 5
    with pytest.raises(QuotaReached) as reached:
        shared.take_quota(1)
    assert reached.value.window.kind == "day" and reached.value.resume_at == datetime(2026, 12, 3, tzinfo=UTC)


CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    import redis
    from newsletter.config import Limits
    from newsletter.distributed.limits import SendGate
    from newsletter.engine.quotas import QuotaReached

    client = redis.Redis.from_url(sys.argv[1])
    gate = SendGate(client, 0, "smtp", prefix=sys.argv[2], limits=Limits(daily_cap=500), scope="smtp:acct",
                    utc_clock=lambda: datetime(2026, 12, 2, 9, tzinfo=UTC))
    print("ready", flush=True)
    sys.stdin.readline()
    total = 0
    while True:
        try:
            total += gate.take_quota(3)[0]
        except QuotaReached:
            break
    print(total, flush=True)
""")


def test_the_gate_holds_a_daily_cap_across_two_worker_processes(redis_client):
    client, prefix = redis_client
    children = [subprocess.Popen([sys.executable, "-c", CHILD, REDIS_URL, prefix], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    totals = [int(child.communicate(timeout=120)[0].strip()) for child in children]
    assert sum(totals) == 500 and all(totals), totals


def test_workers_pause_the_campaign_at_a_cap_and_go_on_when_the_window_opens(workspace, cli, tmp_path,
                                                                            redis_client):
    from dramatiq.brokers.stub import StubBroker
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.delivery.base import Transport, results_for
    from newsletter.delivery.message import Outcome
    from newsletter.distributed.chunks import WorkerContext, run_chunk
    from newsletter.distributed.dispatch import enqueue_campaign, resume_distributed
    from newsletter.engine.campaigns import create_campaign, describe_campaign
    from newsletter.store.db import open_store
    from newsletter.store.distributed import campaign_chunks

    from support.cli import populate

    emails = populate(cli, tmp_path, 2500)
    settings = load_settings()
    store = open_store(settings)
    edition = compose_edition(workspace / "articles" / "welcome.md", settings)
    campaign_id = create_campaign(store, settings, edition, "readers", "memory")
    client, prefix = redis_client
    clock = Clock(datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    sent: list[str] = []

    class Recording(Transport):
        name, max_batch = "memory", 1000

        def _send(self, message, recipients):
            sent.extend(r.email for r in recipients)
            return results_for(recipients, Outcome.QUEUED, provider_id="p")

    class Context(WorkerContext):
        def transport(self, name):
            return Recording()

    shared = gate(client, prefix, clock, daily_cap=1800)
    context = Context(store, settings, gate_for=lambda name: shared)
    broker = StubBroker()
    try:
        enqueue_campaign(store, settings, campaign_id, broker=broker)
        with store.session() as session:
            ranges = [(c.first_id, c.last_id) for c in campaign_chunks(session, campaign_id)]
        reports = [run_chunk(context, campaign_id, a, b) for a, b in ranges]
        assert [r.outcome for r in reports] == ["done", "paused", "not-sending"]
        assert len(sent) == 1800
        shown = describe_campaign(store, campaign_id)
        assert shown["status"] == "paused"
        assert shown["pause_reason"] == "daily cap of 1800 for transport smtp reached; resumes at 2026-12-03 00:00 UTC"
        clock.now = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
        assert resume_distributed(store, settings, campaign_id, broker=broker) == 2
        with store.session() as session:
            again = [(c.first_id, c.last_id) for c in campaign_chunks(session, campaign_id) if c.status != "done"]
        assert [run_chunk(context, campaign_id, a, b).outcome for a, b in again] == ["done", "done"]
        assert sorted(sent) == sorted(emails)  # each reader once
        shown = describe_campaign(store, campaign_id)
        assert (shown["status"], shown["pause_reason"], shown["resume_at"]) == ("sent", None, None)
    finally:
        broker.close()
        store.close()
