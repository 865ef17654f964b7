"""The transport registry: every transport by name, with what it needs, in one table.

This module is data: it imports no other module of the project, so the
configuration (the lowest layer) can validate names and read each
provider's settings section from it. Classes are named as
``"module:Class"`` and imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Provider:
    """One registered transport.

    ``transport`` and ``events`` name classes as ``"module:Class"``;
    ``events`` is None for a transport that reports nothing back.
    ``section`` is the ``newsletter.toml`` section holding its settings and
    ``env`` maps its keys there to the environment variables that override
    them; ``secrets`` are environment variables it reads that never go in a
    file. ``process_safe``: several sender processes may each open one.
    ``offered_by_init``: ``newsletter init --transport`` offers it.
    ``shared_throttle``: its transport takes a ``retry=`` policy, so scale-out
    workers share one pause when the provider throttles (HTTP 429) instead
    of each discovering the limit alone.
    """

    name: str
    transport: str
    events: str | None = None
    section: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    process_safe: bool = True
    offered_by_init: bool = True
    shared_throttle: bool = False


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("sendgrid", "newsletter.providers.sendgrid.transport:SendGridTransport",
             events="newsletter.providers.sendgrid.events:SendGridEvents", section="sendgrid",
             env={"host": "NEWSLETTER_SENDGRID_HOST", "webhook_key": "NEWSLETTER_SENDGRID_WEBHOOK_KEY"},
             secrets=("SENDGRID_API_KEY",), shared_throttle=True),
    Provider("postmark", "newsletter.providers.postmark.transport:PostmarkTransport",
             events="newsletter.providers.postmark.events:PostmarkEvents", section="postmark",
             env={"host": "NEWSLETTER_POSTMARK_HOST", "message_stream": "NEWSLETTER_POSTMARK_MESSAGE_STREAM",
                  "webhook_user": "NEWSLETTER_POSTMARK_WEBHOOK_USER"},
             secrets=("POSTMARK_SERVER_TOKEN", "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD"), shared_throttle=True),
    Provider("mailgun", "newsletter.providers.mailgun.transport:MailgunTransport",
             events="newsletter.providers.mailgun.events:MailgunEvents", section="mailgun",
             env={"domain": "NEWSLETTER_MAILGUN_DOMAIN", "region": "NEWSLETTER_MAILGUN_REGION",
                  "host": "NEWSLETTER_MAILGUN_HOST"},
             secrets=("MAILGUN_API_KEY", "MAILGUN_WEBHOOK_SIGNING_KEY"), shared_throttle=True),
    # Not process_safe: its pacing to the account's SES rate lives in one process (threads send in parallel).
    Provider("ses", "newsletter.providers.ses.transport:SesTransport",
             events="newsletter.providers.ses.events:SesEvents", section="ses",
             env={"region": "NEWSLETTER_SES_REGION", "endpoint_url": "NEWSLETTER_SES_ENDPOINT_URL",
                  "configuration_set": "NEWSLETTER_SES_CONFIGURATION_SET",
                  "max_send_rate": "NEWSLETTER_SES_MAX_SEND_RATE", "concurrency": "NEWSLETTER_SES_CONCURRENCY",
                  "topic_arns": "NEWSLETTER_SES_TOPIC_ARNS", "sns_allow_loopback": "NEWSLETTER_SES_SNS_ALLOW_LOOPBACK"},
             secrets=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
             process_safe=False, shared_throttle=True),
    Provider("smtp", "newsletter.delivery.smtp:SmtpTransport", section="smtp",
             env={"url": "NEWSLETTER_SMTP_URL", "ehlo_name": "NEWSLETTER_SMTP_EHLO_NAME",
                  "return_path": "NEWSLETTER_SMTP_RETURN_PATH", "verp": "NEWSLETTER_SMTP_VERP"}),
    Provider("file", "newsletter.delivery.file:FileTransport"),
    Provider("console", "newsletter.delivery.console:ConsoleTransport"),
    # In-process outbox for tests and previews: other processes would not share it.
    Provider("memory", "newsletter.delivery.memory:MemoryTransport", process_safe=False, offered_by_init=False),
)}


def names(*, offered_by_init: bool = False) -> tuple[str, ...]:
    """Every registered transport name (only those ``init`` offers, when asked)."""
    return tuple(p.name for p in PROVIDERS.values() if p.offered_by_init or not offered_by_init)


def process_safe_names() -> tuple[str, ...]:
    """The transports several sender processes may use at once."""
    return tuple(p.name for p in PROVIDERS.values() if p.process_safe)


def event_provider_names() -> tuple[str, ...]:
    """The providers that post events to ``/webhooks/<name>``."""
    return tuple(p.name for p in PROVIDERS.values() if p.events)


def env_overrides() -> dict[tuple[str, str], str]:
    """(section, key) -> the environment variable overriding it, for every provider's section."""
    return {(p.section, key): var for p in PROVIDERS.values() if p.section for key, var in p.env.items()}


def transport_class(name: str) -> Any:
    """The transport class registered as ``name``; KeyError for an unknown name."""
    return _load(PROVIDERS[name].transport)


def event_source_class(name: str) -> Any | None:
    """The event source class of provider ``name``; None for an unknown name or one without events."""
    provider = PROVIDERS.get(name)
    return _load(provider.events) if provider and provider.events else None


def _load(spec: str) -> Any:
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
