"""The error family of the project.

Every *expected* failure (bad input, bad configuration, a refused operation)
raises a ``NewsletterError`` carrying a one-line message and a hint that tells
the user what to do next. The CLI prints both and exits 1; anything else is a
bug and may show a traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """An expected error: ``message`` says what is wrong, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(NewsletterError):
    """The workspace configuration is missing or invalid."""


class WorkspaceNotFound(ConfigError):
    """No newsletter.toml was found from the current folder upward."""


class InputError(NewsletterError):
    """A user-supplied value or file is invalid."""


class InvalidAddress(InputError):
    """An email address failed validation."""


class NotFound(NewsletterError):
    """A named object (subscriber, list, campaign) does not exist."""


class Conflict(NewsletterError):
    """The operation conflicts with the current state (already exists, already started)."""


class TemplateError(NewsletterError):
    """A theme template or its MJML failed to render; the message names file and line."""


class DeliveryError(NewsletterError):
    """A send cannot go on (for example the provider rejected our credentials)."""


class DiskFull(NewsletterError):
    """A write failed for lack of space (ENOSPC, EDQUOT); nothing was half-written."""
