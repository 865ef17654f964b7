"""SendGrid Event Webhook: one signed batch of 1,000 events, end to end (target: under 1 s).

A temporary workspace (SQLite by default, or the database URL given) holds a
campaign sent to 1,000 subscribers through the memory transport; the batch
matches every ledger row through our custom_args (a mix of delivered, open,
click and processed events, plus a few hard bounces and spam reports that
suppress). Figures:

- the POST through the ASGI app (signature check + parse + dedupe query +
  ledger match + bulk insert + suppressions, one transaction);
- the same batch replayed (everything deduplicated);
- signature verification alone.

Usage: python benchmarks/bench_webhook.py [POSTGRES_URL]
(a PostgreSQL run works in a schema of its own, dropped at the end)
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from test_web_support import KeyPair  # noqa: E402

EVENTS = 1000
KINDS = ["delivered", "open", "click", "processed"]


def setup(folder: Path, url: str | None):
    from newsletter.audience import manage
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.engine.campaigns import create_campaign
    from newsletter.engine.sender import start_campaign
    from newsletter.store.db import open_store
    from newsletter.workspace import init_workspace

    init_workspace(folder, sender="Bench <news@bench.example>", postal_address="1 Main St",
                   base_url="https://news.bench.example", transport="memory")
    if url:
        os.environ["NEWSLETTER_DATABASE_URL"] = url
    settings = load_settings(folder)
    store = open_store(settings)
    for i in range(EVENTS):
        manage.add_subscriber(store, f"reader{i}@example.org", list_name="readers", confirmed=True)
    edition = compose_edition(folder / "articles" / "welcome.md", settings)
    campaign_id = create_campaign(store, settings, edition, "readers", "memory")
    transport = MemoryTransport()
    start_campaign(store, settings, campaign_id, transport)
    recipients = [r for _message, batch in transport.batches for r in batch]
    return settings, store, campaign_id, recipients


def batch_of(campaign_id: int, recipients) -> bytes:
    events = []
    for i, recipient in enumerate(recipients):
        kind = "bounce" if i % 250 == 7 else "spamreport" if i % 500 == 9 else KINDS[i % len(KINDS)]
        events.append({"email": recipient.email, "event": kind, "timestamp": 1_790_000_000 + i,
                       "sg_event_id": f"bench-{i}", "sg_message_id": f"msg{i}.filter", "type": "bounce",
                       **recipient.metadata})
    return json.dumps(events).encode()


def postgres_schema(base: str):
    """A URL whose search_path is a fresh schema, and a function that drops it."""
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop():
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}", drop


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else None
    drop = None
    if url:
        url, drop = postgres_schema(url)
    try:
        run(url)
    finally:
        if drop:
            drop()


def run(url: str | None) -> None:
    from newsletter.providers.sendgrid.events import SendGridEvents
    from newsletter.web.app import create_app
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        settings, store, campaign_id, recipients = setup(Path(tmp) / "ws", url)
        keys = KeyPair()
        settings = dataclasses.replace(settings, sendgrid_webhook_key=keys.public)
        client = TestClient(create_app(settings, store))
        body = batch_of(campaign_id, recipients)
        now = int(time.time())
        headers = keys.headers(body, now)
        print(f"batch: {EVENTS} events, {len(body) / 1e3:.0f} kB, backend {store.dialect}")
        for label in ("first delivery", "replayed (all duplicates)"):
            start = time.perf_counter()
            response = client.post("/webhooks/sendgrid", content=body, headers=headers)
            seconds = time.perf_counter() - start
            verdict = "PASS" if seconds < 1 else "OVER"
            print(f"{label}: {seconds * 1000:.0f} ms -> {response.status_code} {response.json()} "
                  f"(target < 1 s: {verdict})")
        source = SendGridEvents(keys.public, clock=lambda: now)
        start = time.perf_counter()
        for _ in range(100):
            source.verify(headers, body)
        print(f"signature check alone: {(time.perf_counter() - start) * 10:.2f} ms")
        start = time.perf_counter()
        for _ in range(10):
            source.parse(body)
        print(f"parse into tracking events alone: {(time.perf_counter() - start) * 100:.2f} ms")
        store.close()


if __name__ == "__main__":
    main()
