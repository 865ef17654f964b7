"""Delivery: the message model, the transports and their retry policy.

``get_transport(settings, name=None)`` returns the configured transport
(``sendgrid``, ``smtp``, ``file``, ``console`` or ``memory``), not yet
opened; use it as a context manager. See ``newsletter.delivery.base`` for the
contract and what each outcome means to the engine.
"""

from __future__ import annotations

from newsletter.errors import ConfigError

TRANSPORTS = {
    "sendgrid": ("newsletter.delivery.sendgrid", "SendGridTransport"),
    "smtp": ("newsletter.delivery.smtp", "SmtpTransport"),
    "file": ("newsletter.delivery.file", "FileTransport"),
    "console": ("newsletter.delivery.console", "ConsoleTransport"),
    "memory": ("newsletter.delivery.memory", "MemoryTransport"),
}


def transport_class(name: str):
    """The class registered under ``name``; ConfigError for an unknown name."""
    try:
        module_name, class_name = TRANSPORTS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown transport {name!r}",
            hint=f"set NEWSLETTER_TRANSPORT (or --transport) to one of: {', '.join(TRANSPORTS)}",
        ) from None
    import importlib

    return getattr(importlib.import_module(module_name), class_name)


def get_transport(settings, name: str | None = None, **overrides):
    """The transport ``name`` (default ``settings.transport``) built from ``settings``.

    Raises :class:`~newsletter.errors.ConfigError` (one line and a hint) for
    an unknown name or a missing setting such as SENDGRID_API_KEY or
    NEWSLETTER_SMTP_URL. ``overrides`` go to the transport's constructor.
    """
    chosen = name or getattr(settings, "transport", None) or "file"
    return transport_class(chosen).from_settings(settings, **overrides)
