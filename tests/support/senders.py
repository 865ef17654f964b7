"""Helpers for the tests of who sends a campaign: a campaign ready to send, and scriptable transports."""

from __future__ import annotations

import dataclasses
import threading
import time

from newsletter.delivery.base import Transport, results_for
from newsletter.delivery.message import Outcome


class Scripted(Transport):
    """Accepts every recipient and records it; ``on_batch(number, recipients)`` runs before each answer."""

    name, max_batch = "memory", 1000

    def __init__(self, on_batch=None):
        super().__init__()
        self.sent: list[str] = []
        self.batches = 0
        self.on_batch = on_batch

    def _send(self, message, recipients):
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(self.batches, recipients)
        self.sent.extend(r.email for r in recipients)
        return results_for(recipients, Outcome.QUEUED, provider_id=f"batch-{self.batches}")


class Blocking(Scripted):
    """Blocks its first batch until ``release`` is set (a 429 wait, a slow provider); ``entered`` says it is waiting."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        super().__init__(self._hold)

    def _hold(self, number, _recipients):
        if number == 1:
            self.entered.set()
            assert self.release.wait(60), "the test never released the transport"


def ready_campaign(store_settings, workspace, list_name="readers", batch_size=None):
    """A draft campaign of the welcome article to ``list_name``; returns (store, settings, campaign_id)."""
    from newsletter.compose.edition import compose_edition
    from newsletter.engine.campaigns import create_campaign

    store, settings = store_settings
    if batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=batch_size)
    edition = compose_edition(workspace / "articles" / "welcome.md", settings)
    return settings, create_campaign(store, settings, edition, list_name, "memory")


def campaign_row(store, campaign_id):
    from newsletter.store.models import Campaign

    with store.session() as session:
        campaign = session.get(Campaign, campaign_id)
        session.expunge(campaign)
        return campaign


def ledger_counts(store, campaign_id) -> dict[str, int]:
    from newsletter.store import ledger

    with store.session() as session:
        return ledger.counts(session, campaign_id)


def wait_until(condition, timeout: float = 30.0, what: str = "a condition") -> None:
    """Poll ``condition()`` (a database row, a counter) until true; fail after ``timeout`` (a safety net)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
