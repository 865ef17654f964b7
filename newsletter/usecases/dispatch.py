"""The composition root: who sends a campaign, chosen once from the settings.

With a broker URL (``NEWSLETTER_BROKER_URL``) the Dramatiq workers send
(:class:`OnWorkers`); without one, this machine does (:class:`ThisMachine`:
the engine runs in this process, or in several when the campaign is large,
see :mod:`newsletter.engine.parallel`). :func:`dispatcher_for` is the only
place that makes this choice; the command line, the scheduler daemon and any
other entry point ask it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


def _ignore(_message: str) -> None:
    return None


@dataclass
class Watch:
    """How the caller follows a send.

    ``stop``: set it to stop after the batch in flight (on the workers: to
    stop following; they carry on). ``on_progress(done, total)``: called as
    recipients are done. ``note(text)``: a line for people. ``follow``: on
    the workers, watch the ledger until they are done (the daemon does not).
    ``clock``: the UTC clock the quotas count windows by (tests inject one);
    :meth:`wait_until` waits for a quota's window to open (False: stopped).
    """

    stop: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[int, int | None], None] | None = None
    note: Callable[[str], None] = _ignore
    follow: bool = True
    clock: Callable[[], datetime] | None = None
    waiter: Callable[[datetime], bool] | None = None

    def now(self) -> datetime:
        from newsletter.store.models import utcnow

        return (self.clock or utcnow)()

    def wait_until(self, when: datetime) -> bool:
        """Wait until ``when`` (UTC); False when stopped first."""
        if self.waiter is not None:
            return self.waiter(when)
        while not self.stop.is_set():
            left = (when - self.now()).total_seconds()
            if left <= 0:
                return True
            self.stop.wait(min(left, 60.0))  # a long wait, checked again each minute (the clock may jump)
        return False


class Dispatcher(Protocol):
    """Starts and resumes campaigns; returns the engine's SendReport (None: queued, not followed)."""

    on_workers: bool

    def start(self, campaign_id: int, watch: Watch, *, limit: int | None = None): ...

    def resume(self, campaign_id: int, watch: Watch, *, retry: str | None = None): ...


def dispatcher_for(store, settings) -> Dispatcher:
    """The dispatcher the settings call for (see the module docstring)."""
    if settings.broker_url:
        return OnWorkers(store, settings)
    return ThisMachine(store, settings)


class ThisMachine:
    """The engine sends here, through the campaign's own transport."""

    on_workers = False

    def __init__(self, store, settings):
        self.store, self.settings = store, settings

    def start(self, campaign_id: int, watch: Watch, *, limit: int | None = None):
        from newsletter.engine.sender import start_campaign

        return self._run(campaign_id, lambda transport: start_campaign(
            self.store, self.settings, campaign_id, transport, limit=limit, on_progress=watch.on_progress,
            stop=watch.stop, clock=watch.clock))

    def resume(self, campaign_id: int, watch: Watch, *, retry: str | None = None):
        from newsletter.engine.sender import resume_campaign, retry_campaign

        def run(transport):
            if retry:
                return retry_campaign(self.store, self.settings, campaign_id, transport, retry,
                                      on_progress=watch.on_progress, stop=watch.stop, clock=watch.clock)
            return resume_campaign(self.store, self.settings, campaign_id, transport,
                                   on_progress=watch.on_progress, stop=watch.stop, clock=watch.clock)

        return self._run(campaign_id, run)

    def _run(self, campaign_id: int, run):
        from newsletter.delivery import get_transport
        from newsletter.engine.campaigns import get_campaign

        with self.store.session() as session:
            transport_name = get_campaign(session, campaign_id).transport
        # Opened by its first batch, not here: a login refused then pauses the started campaign with every
        # recipient pending (engine.sender.send_claimed) instead of failing before it starts.
        transport = get_transport(self.settings, transport_name)
        try:
            return run(transport)
        finally:
            transport.close()


class OnWorkers:
    """``newsletter worker`` processes send: queue the campaign's chunks, then (``watch.follow``)
    follow the ledger until they are done."""

    on_workers = True

    def __init__(self, store, settings):
        self.store, self.settings = store, settings

    def start(self, campaign_id: int, watch: Watch, *, limit: int | None = None):
        from newsletter.distributed.dispatch import enqueue_campaign

        return self._follow(campaign_id, enqueue_campaign(self.store, self.settings, campaign_id, limit=limit),
                            watch)

    def resume(self, campaign_id: int, watch: Watch, *, retry: str | None = None):
        from newsletter.distributed.dispatch import resume_distributed

        return self._follow(campaign_id, resume_distributed(self.store, self.settings, campaign_id, retry=retry),
                            watch)

    def _follow(self, campaign_id: int, chunks: int, watch: Watch):
        from newsletter.distributed.dispatch import follow_campaign

        if not watch.follow:
            watch.note(f"queued {chunks} chunk(s) for the workers")
            return None
        watch.note(f"Queued {chunks} chunk(s) for the workers ('newsletter worker'); following progress "
                   f"(Ctrl-C stops following, not the send)")

        def on_state(state):
            if watch.on_progress:
                counts = state["counts"]
                watch.on_progress(sum(counts.values()) - counts["pending"] - counts["sending"],
                                  sum(counts.values()))

        report = follow_campaign(self.store, campaign_id, stop=watch.stop, on_progress=on_state)
        if report.status == "sending":
            watch.note(f"Stopped following; the workers carry on. Follow with: newsletter campaigns show "
                       f"{campaign_id}")
        return report
