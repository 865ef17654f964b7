"""Delivery: the message model, the simple transports and their retry policy.

``get_transport(settings, name=None)`` returns the configured transport
(any name of ``newsletter.transports``: ``sendgrid``, ``smtp``,
``file``, ``console`` or ``memory``), not yet opened; use it as a context
manager. See ``newsletter.delivery.base`` for the contract and what each
outcome means to the engine. Transports of providers that also report
events (SendGrid) live in ``newsletter.providers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from newsletter import transports as registry
from newsletter.delivery.base import Transport
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Settings


def transport_class(name: str) -> type[Transport]:
    """The class registered under ``name``; ConfigError for an unknown name."""
    try:
        found = registry.transport_class(name.lower())
    except KeyError:
        raise ConfigError(
            f"unknown transport {name!r}",
            hint=f"set NEWSLETTER_TRANSPORT (or --transport) to one of: {', '.join(registry.names())}",
        ) from None
    if not (isinstance(found, type) and issubclass(found, Transport)):  # the registry loads dotted paths
        raise TypeError(f"transport {name!r} is registered as {found!r}, not a Transport class")
    return found


def get_transport(settings: Settings, name: str | None = None, **overrides: Any) -> Transport:
    """The transport ``name`` (default ``settings.transport``) built from ``settings``.

    Raises :class:`~newsletter.errors.ConfigError` (one line and a hint) for
    an unknown name or a missing setting such as SENDGRID_API_KEY or
    NEWSLETTER_SMTP_URL. ``overrides`` go to the transport's constructor.
    """
    chosen = name or getattr(settings, "transport", None) or "file"
    return transport_class(chosen).from_settings(settings, **overrides)
