"""Sending one campaign from several processes on this machine.

One Python process tops out near 25,000 SendGrid recipients a second: the
request bodies, their JSON and the HTTP around them hold the interpreter
lock. For a large send the campaign's pending rows are cut into contiguous id
ranges, one per process; each child runs the same loop
(:func:`newsletter.engine.sender.send_range`) with its own database
connection and transport, so the ledger rules hold row by row and a resume
needs nothing special.

Children die with their parent (``PR_SET_PDEATHSIG``): a SIGKILLed send never
leaves a sender behind that ``campaigns resume`` could not see. The parent
forwards a stop request (SIGTERM, Ctrl-C) and every child finishes its batch.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter import transports as registry
from newsletter.delivery.base import PermanentTransportError
from newsletter.engine.fencing import Fenced, StopSignal
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.store import ledger
from newsletter.vocabulary import LedgerStatus

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

    from newsletter.config import Settings
    from newsletter.delivery.base import Transport
    from newsletter.engine.sender import SendReport
    from newsletter.store.db import Store

    # What a child tells its parent: ("progress", rows) | ("done", tallies) | ("error", (kind, message, hint))
    Messages = Queue[tuple[str, Any]]

# Below this many pending rows per process, start-up costs more than it saves.
MIN_ROWS_PER_PROCESS = 20_000
# Transports whose state lives outside the process (a memory outbox does not).
PROCESS_SAFE = registry.process_safe_names()


def processes_for(store: Store, settings: Settings, campaign_id: int, transport: Transport, requested: int | None,
                  options: dict[str, Any]) -> int:
    """How many processes should send this campaign (1 means this one, in-line).

    ``requested`` (or ``[delivery] processes``) is an upper bound; 0 means
    automatic: one per core, at most 4, each with at least
    MIN_ROWS_PER_PROCESS rows. A ``limit`` or a transport that lives in
    memory keeps the send in this process.
    """
    wanted = requested if requested is not None else settings.send_processes
    automatic = wanted == 0
    if automatic:
        wanted = min(os.cpu_count() or 1, 4)
    if wanted <= 1 or options.get("limit") is not None or transport.name not in PROCESS_SAFE:
        return 1
    with store.session() as session:
        pending = ledger.counts(session, campaign_id)[LedgerStatus.PENDING]
    floor = MIN_ROWS_PER_PROCESS if automatic else 1
    return max(1, min(wanted, pending // floor))


def send_in_processes(store: Store, settings: Settings, campaign_id: int, transport_name: str, count: int,
                      report: SendReport, on_progress: Callable[[int, int], None] | None = None,
                      stop: StopSignal | None = None, *, sender: str, **_ignored: Any) -> bool:
    """Send the pending rows from ``count`` child processes; True when stopped early.

    The children send as ``sender`` (this run's identity: they are fenced with
    it). Adds the children's tallies to ``report``. Re-raises a child's
    PermanentTransportError or Fenced (after every child has stopped).
    """
    import multiprocessing

    with store.session() as session:
        total = ledger.counts(session, campaign_id)[LedgerStatus.PENDING]
        # (after_id, up_to] for each process: contiguous, about equal in rows
        ranges = [(first - 1, last) for first, last, _rows in
                  ledger.pending_ranges(session, campaign_id, max(1, -(-total // count)))]
    context = multiprocessing.get_context("spawn")
    messages: Messages = context.Queue()
    halt = context.Event()
    # The rate and the caps are kept in the database (newsletter.engine.quotas): the children share them.
    child_settings = settings
    children = [context.Process(target=_child, name=f"newsletter-send-{index}", daemon=True,
                                args=(child_settings, campaign_id, transport_name, low, high, messages, halt,
                                      os.getpid(), sender))
                for index, (low, high) in enumerate(ranges)]
    for child in children:
        child.start()
    outcome = _follow(children, messages, halt, stop, report, on_progress, total)
    for child in children:
        child.join()
    return outcome


def _follow(children: Sequence[BaseProcess], messages: Messages, halt: Event, stop: StopSignal | None,
            report: SendReport, on_progress: Callable[[int, int], None] | None, total: int) -> bool:
    """Gather progress and results until every child has answered."""
    done, answered, interrupted, failure = 0, 0, False, None
    if on_progress:
        on_progress(0, total)  # the total is known from the snapshot: show it before the first batch
    while answered < len(children):
        if stop is not None and stop.is_set():
            halt.set()
        try:
            kind, payload = messages.get(timeout=0.2)
        except queue.Empty:
            if not any(child.is_alive() for child in children) and messages.empty():
                failure = failure or ("other", "a sender process died without a word", None)
                break
            continue
        if kind == "progress":
            done += payload
            if on_progress:
                on_progress(done, total)
            continue
        answered += 1
        if kind == "done":
            quota = payload.pop("quota", None)
            if quota is not None and report.resume_at is None:  # a cap was reached: the campaign pauses
                report.pause_reason, report.resume_at = quota[0], datetime.fromisoformat(quota[1])
            tripped = payload.pop("breaker", None)
            if tripped is not None and not report.pause_reason:  # the circuit breaker: a person resumes it
                report.pause_reason = tripped
            report.warnings.extend(w for w in payload.pop("warnings", ()) if w not in report.warnings)
            for name, value in payload.items():
                setattr(report, name, getattr(report, name) + value if name != "interrupted" else value)
            interrupted = interrupted or payload["interrupted"]
        else:
            failure = failure or payload
            halt.set()
    if failure:
        kind, message, hint = failure
        if kind == "fenced":
            raise Fenced(int(message))
        raise PermanentTransportError(message, hint=hint) if kind == "permanent" else DeliveryError(message, hint)
    return interrupted or (stop is not None and stop.is_set())


class _Stop:
    """Stop when the parent asks (``halt``) or this child got SIGTERM/SIGINT."""

    def __init__(self, halt: Event):
        self.halt, self.local = halt, threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.local.set())

    def is_set(self) -> bool:
        return self.local.is_set() or self.halt.is_set()


def _child(settings: Settings, campaign_id: int, transport_name: str, low: int, high: int, messages: Messages,
           halt: Event, parent_pid: int, sender: str) -> None:
    """One sending process: its id range through the ordinary loop."""
    from newsletter.delivery import get_transport
    from newsletter.processes import die_with_parent

    die_with_parent(parent_pid)
    from newsletter.engine.sender import SendReport, send_range
    from newsletter.store.db import Store

    store = Store(settings.database_url)
    report, sent = SendReport(campaign_id, "sending"), [0]

    def progress(done: int, _total: int) -> None:
        messages.put(("progress", done - sent[0]))
        sent[0] = done

    from newsletter.engine.breaker import BreakerTripped
    from newsletter.engine.quotas import QuotaReached

    quota: tuple[str, str] | None = None
    tripped: str | None = None
    try:
        # opened by its first batch: a refused login there pauses the campaign (engine.sender.send_claimed)
        with closing(get_transport(settings, transport_name)) as transport:
            try:
                interrupted = send_range(store, settings, campaign_id, transport, report, sender=sender,
                                         after_id=low, up_to=high, on_progress=progress, stop=_Stop(halt))
            except QuotaReached as exc:
                interrupted, quota = True, (exc.reason, exc.resume_at.isoformat())
            except BreakerTripped as exc:
                interrupted, tripped = True, exc.reason
                halt.set()  # the other processes stop too: the cause is theirs as well
        messages.put(("done", {"sent": report.sent, "failed": report.failed, "unknown": report.unknown,
                               "skipped": report.skipped, "interrupted": interrupted, "quota": quota,
                               "breaker": tripped, "warnings": report.warnings}))
    except PermanentTransportError as exc:
        messages.put(("error", ("permanent", exc.message, exc.hint)))
    except Fenced as exc:
        messages.put(("error", ("fenced", str(exc.campaign_id), None)))
    except NewsletterError as exc:
        messages.put(("error", ("other", exc.message, exc.hint)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        messages.put(("error", ("other", f"a sender process failed: {type(exc).__name__}: {exc}", None)))
    finally:
        store.close()
