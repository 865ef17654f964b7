"""Several SMTP relays (``[[smtp.relays]]``) as one transport: by weight, each with its own rate and pool.

Each relay is an :class:`~newsletter.delivery.smtp.SmtpTransport` with its
own connection pool (``pool_size``) and pacer (``rate``, no catch-up burst).
The recipients of a batch are shared out by smooth weighted round robin
(relays of equal weight take turns), and the relays send their parts side by
side.

A relay that fails ``failures`` times in a row (no connection could be made,
or the login or TLS was refused) is skipped for ``cooldown`` seconds; after
it, one more try decides. The recipients such a failure left are sent
through another relay, but only those whose message certainly was not
accepted: FAILED and retryable (no connection, the connection lost before
the message went out in full, a 4xx answer, not attempted). An UNKNOWN
outcome (the connection dropped after the message went out) is never sent
again, nor anything SENT or REJECTED: a recipient is never sent twice
because a relay failed. Each recipient tries each relay at most once a
batch; when no relay is left, the rest stay FAILED and retryable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.delivery.base import PermanentTransportError, Transport
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.pacing import RatePacer
from newsletter.delivery.smtp import DEFAULT_PORTS, RelayRefused, SmtpTransport

if TYPE_CHECKING:
    from newsletter.config import Settings, SmtpRelay


@dataclass
class Relay:
    """One relay: its transport, share, and health."""

    label: str  # host:port, for messages (never the user or password)
    transport: SmtpTransport
    weight: float
    failures: int = 0  # consecutive failed attempts
    down_until: float = 0.0  # skipped until this time (the relay transport's clock)
    current: float = 0.0  # smooth weighted round robin's running score
    refusal: PermanentTransportError | None = None  # its last refusal of our login or TLS, until it sends again


class RelayTransport(Transport):
    """Sends through several SMTP relays (see the module docstring)."""

    name = "smtp"
    max_batch = 100

    def __init__(self, relays: list[tuple[str, SmtpTransport, float]], *, failures: int = 3,
                 cooldown: float = 300.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        if not relays:
            raise ValueError("RelayTransport needs at least one relay")
        self.relays = [Relay(label, transport, weight) for label, transport, weight in relays]
        self.failures, self.cooldown, self.clock = max(1, failures), cooldown, clock
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RelayTransport:
        options = SmtpTransport.options_from(settings, overrides)
        relays = [(_label(relay), _relay_transport(relay, options), relay.weight) for relay in settings.smtp_relays]
        return cls(relays, failures=settings.relay_failures, cooldown=settings.relay_cooldown_seconds)

    def open(self) -> None:
        """Open every relay; one that cannot be reached now counts a failure, and is tried again later."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(len(self.relays), thread_name_prefix="relay")
        for relay in self.relays:
            before = relay.transport.connect_failures
            try:
                relay.transport.open()
            except RelayRefused as exc:
                relay.transport.close()
                relay.refusal = exc
                self._failed(relay)
                continue
            if relay.transport.connect_failures > before:
                self._failed(relay)
        super().open()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for relay in self.relays:
            relay.transport.close()
        super().close()

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        tried: dict[str, set[int]] = {r.message_id: set() for r in recipients}
        todo = list(recipients)
        error: PermanentTransportError | None = None  # the message itself refused: no relay helps
        while todo and error is None:
            plan = self._share(todo, tried)
            if not plan:
                break
            todo = []
            for index, (part_results, part_error) in self._send_parts(message, plan).items():
                self._judge(self.relays[index], part_results, part_error)
                if part_error is not None and not _relay_problem(part_error):
                    error = error or part_error
                for recipient, result in zip(plan[index], part_results, strict=True):
                    tried[recipient.message_id].add(index)
                    results[recipient.message_id] = result
                    if result.outcome == Outcome.FAILED and result.retryable:
                        todo.append(recipient)  # certainly not accepted: another relay may take it
        ordered = [results.get(r.message_id) or SendResult(
            r.message_id, Outcome.FAILED, retryable=True, error="not attempted: no SMTP relay is available "
            "(each failed recently)") for r in recipients]
        now = self.clock()
        if error is None and all(r.down_until > now and r.refusal is not None for r in self.relays):
            error = self.relays[0].refusal  # every relay refuses us: stop, as one server refusing the login would
        if error is not None:
            error.results = ordered
            raise error
        return ordered

    def _share(self, todo: list[Recipient], tried: dict[str, set[int]]) -> dict[int, list[Recipient]]:
        """Each recipient to a relay that is up and that it has not tried, by smooth weighted round robin."""
        now = self.clock()
        plan: dict[int, list[Recipient]] = {}
        with self._lock:
            for recipient in todo:
                usable = [i for i, relay in enumerate(self.relays)
                          if relay.down_until <= now and i not in tried[recipient.message_id]]
                if not usable:
                    continue
                total = sum(self.relays[i].weight for i in usable)
                for i in usable:
                    self.relays[i].current += self.relays[i].weight
                chosen = max(usable, key=lambda i: self.relays[i].current)
                self.relays[chosen].current -= total
                plan.setdefault(chosen, []).append(recipient)
        return plan

    def _send_parts(self, message: Message, plan: dict[int, list[Recipient]]
                    ) -> dict[int, tuple[list[SendResult], PermanentTransportError | None]]:
        executor = self._executor
        if executor is None:
            raise RuntimeError("the relay transport was closed during a send")
        futures = {index: executor.submit(self._send_part, self.relays[index], message, part)
                   for index, part in plan.items()}
        return {index: future.result() for index, future in futures.items()}

    @staticmethod
    def _send_part(relay: Relay, message: Message, part: list[Recipient]
                   ) -> tuple[list[SendResult], PermanentTransportError | None]:
        before = relay.transport.connect_failures
        try:
            results = relay.transport.send_batch(message, part)
        except PermanentTransportError as exc:
            answered = {r.message_id: r for r in exc.results or []}
            results = [answered.get(r.message_id) or SendResult(
                r.message_id, Outcome.FAILED, retryable=True, error=f"not attempted: {exc.message}") for r in part]
            return results, exc
        if relay.transport.connect_failures > before and not any(r.outcome == Outcome.SENT for r in results):
            return results, _Unreachable(relay.label)
        return results, None

    def _judge(self, relay: Relay, results: list[SendResult], error: PermanentTransportError | None) -> None:
        """Count a failed attempt of the relay (skip it for the cool-down after ``failures``), or clear its count."""
        if error is not None and _relay_problem(error):
            if isinstance(error, RelayRefused):
                relay.refusal = error
            self._failed(relay)
        elif any(r.outcome != Outcome.FAILED or not r.retryable for r in results):
            with self._lock:
                relay.failures, relay.refusal = 0, None

    def _failed(self, relay: Relay) -> None:
        with self._lock:
            relay.failures += 1
            if relay.failures >= self.failures:
                relay.down_until = self.clock() + self.cooldown
                relay.failures = self.failures - 1  # after the cool-down, one more failure skips it again

    def __repr__(self) -> str:
        return f"<RelayTransport {', '.join(r.label for r in self.relays)}>"


class _Unreachable(PermanentTransportError):
    """A relay no connection could be made to (its recipients were not attempted)."""

    def __init__(self, label: str):
        super().__init__(f"the SMTP relay {label} could not be reached")


def _relay_problem(error: PermanentTransportError) -> bool:
    """A failure of the relay itself (unreachable, login or TLS refused), not of the message."""
    return isinstance(error, (_Unreachable, RelayRefused))


def _label(relay: SmtpRelay) -> str:
    return f"{relay.host}:{relay.port or DEFAULT_PORTS[_tls(relay)]}"


def _tls(relay: SmtpRelay) -> str:
    if relay.tls:
        return relay.tls
    from newsletter.config import is_loopback_host

    return "none" if is_loopback_host(relay.host) else "starttls"


def _relay_transport(relay: SmtpRelay, options: dict[str, Any]) -> SmtpTransport:
    tls = _tls(relay)
    transport = SmtpTransport(relay.host, relay.port or DEFAULT_PORTS[tls], tls=tls, username=relay.user,
                              password=relay.password, connections=relay.pool_size, **options)
    if relay.rate > 0:
        transport.pacer = RatePacer(relay.rate).take
    return transport
