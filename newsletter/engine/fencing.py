"""Who is sending a campaign, whether they are alive, and fencing a sender that lost it.

Every run of the send loop has a unique identity, ``host:pid:random``
(:func:`new_sender_id`), recorded on the campaign when it claims it. Two
rules keep a campaign from being sent twice:

- *Liveness*: a sender on this host is alive while its process exists; one
  on another host while its heartbeat is younger than the staleness limit
  (:func:`stale_seconds`). A :class:`Heartbeat` thread beats every few
  seconds for the whole run, so a long 429 wait or a backoff never makes a
  live sender look dead.
- *Fencing*: every claim of ledger rows and every write of results first
  runs :func:`newsletter.store.ledger.fence` in the same transaction: a
  conditional update of the campaign row on ``sender = this run``. A
  takeover updates the same row, so on PostgreSQL the two serialise on its
  row lock (SQLite serialises all writers). A sender whose fence fails raises
  :class:`Fenced`, writes nothing more and sends nothing more.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from newsletter.errors import Conflict
from newsletter.store.models import utcnow

if TYPE_CHECKING:
    from newsletter.config import Settings

log = logging.getLogger("newsletter.engine")

# A sender on another machine that has not beaten for this long is taken for dead.
DEFAULT_STALE_SECONDS = 120.0


class Fenced(Conflict):
    """This sender is no longer the campaign's recorded sender: another process took it over."""

    def __init__(self, campaign_id: int):
        super().__init__(f"campaign {campaign_id} was taken over by another sender; this one stopped "
                         "without sending anything more",
                         hint=f"see where it stands with: newsletter campaigns show {campaign_id}")
        self.campaign_id = campaign_id


def new_sender_id() -> str:
    """A fresh identity for one run of the send loop: ``host:pid:random`` (never reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


def stale_seconds(settings: Settings | None = None) -> float:
    """The staleness limit: ``settings.sender_stale_seconds`` (``[delivery] sender_stale_seconds`` or
    NEWSLETTER_SENDER_STALE_SECONDS, validated when the settings load), else the default."""
    return DEFAULT_STALE_SECONDS if settings is None else settings.sender_stale_seconds


def beat_interval(stale: float) -> float:
    """How often a live sender beats: several times within the staleness limit."""
    return max(0.2, min(10.0, stale / 5))


def sender_alive(sender: str | None, heartbeat: datetime | None, stale: float = DEFAULT_STALE_SECONDS) -> bool:
    """Whether the run recorded as sending a campaign may still be at it.

    On this host the process table answers at once (a SIGKILLed sender is dead
    now); a sender on another host is alive while its heartbeat is fresher
    than ``stale`` seconds. ``sender`` is ``host:pid:random`` (or the older
    ``host:pid``).
    """
    host, pid = _host_pid(sender)
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return False  # this process is not sending it (a run in this process would not ask)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and (utcnow() - heartbeat).total_seconds() < stale


def dead_on_this_host(identity: str | None) -> bool:
    """True when ``identity`` (a sender, a daemon's lease holder) names a process on this host that is gone."""
    host, pid = _host_pid(identity)
    if host != socket.gethostname() or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def same_process(one: str | None, other: str | None) -> bool:
    """Whether two identities (``host:pid:random`` senders, daemon holders) name the same process."""
    host, pid = _host_pid(one)
    return pid is not None and (host, pid) == _host_pid(other)


def _host_pid(sender: str | None) -> tuple[str, int | None]:
    parts = (sender or "").split(":")
    if len(parts) >= 3 and parts[-2].isdigit():
        return ":".join(parts[:-2]), int(parts[-2])
    if len(parts) >= 2 and parts[-1].isdigit():
        return ":".join(parts[:-1]), int(parts[-1])
    return "", None


class Heartbeat:
    """A thread that beats for one send run until stopped; ``lost`` is set when the run was fenced.

    ``beat()`` returns False when this run is no longer the owner. Database
    errors are logged and retried at the next beat (the send loop's own
    writes will fail or fence it anyway).
    """

    def __init__(self, beat: Callable[[], bool], interval: float, name: str = "newsletter-heartbeat"):
        self._beat, self.interval = beat, interval
        self.lost = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._halt.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                if not self._beat():
                    self.lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - a database hiccup: beat again next time
                log.warning("heartbeat failed (%s); retrying", type(exc).__name__)


class StopSignal(Protocol):
    """What the send loop polls to stop early: a ``threading.Event``, or :class:`AnyStop`."""

    def is_set(self) -> bool: ...


class AnyStop:
    """``is_set()`` when any of several events (or None) is set: a user's stop, a lost fence."""

    def __init__(self, *events: StopSignal | None):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)
