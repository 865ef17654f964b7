"""The contract of a provider's event source (the half of a provider that reads its webhook).

An event source is built once per web app from the settings
(``from_settings(settings, clock)``; ``clock()`` gives epoch seconds) and
then, for each request:

- ``verify(headers, raw_body) -> None``: raises :class:`Refused` when the
  request is not genuine or not fresh (the web layer answers 403 and
  stores nothing), OSError when what it must fetch to decide (an SNS
  signing certificate) cannot be had now (503: the provider retries);
  it runs in the thread pool;
- ``parse(raw_body) -> list[TrackingEvent]``: raises ValueError when the
  body is not an event batch (400).

A source whose provider also posts control messages (Amazon SNS's
subscription confirmation) may define ``handshake(raw_body) -> dict | None``,
called after ``verify``: it answers a control message itself (the dict
is the 200 response's JSON; Refused gives 403, OSError 502) and returns
None for an event batch, which then goes to ``parse``.

``from_settings`` raises :class:`NotConfigured` when the provider's
verification key is not set (503: the provider retries, no event is lost)
and :class:`~newsletter.errors.ConfigError` when it is malformed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from newsletter.tracking import TrackingEvent

if TYPE_CHECKING:
    from newsletter.config import Settings


class Refused(Exception):
    """A webhook request that is not genuine or not fresh; the message says why (no secrets)."""


class NotConfigured(Exception):
    """The provider's webhook cannot be verified: its key is not set."""


class EventSource(Protocol):
    """A provider's webhook: verify requests, parse bodies into tracking events."""

    name: str

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> EventSource: ...

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None: ...

    def parse(self, raw_body: bytes) -> list[TrackingEvent]: ...
