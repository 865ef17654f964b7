"""Creating a workspace: ``newsletter.toml``, its folders and a secret key."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from newsletter.config import CONFIG_NAME, SECRET_FILE, STATE_DIR, TRANSPORTS
from newsletter.errors import Conflict, InputError
from newsletter.fileio import write_atomically

FOLDERS = ("templates", "subscribers", "articles")

CONFIG_TEMPLATE = """\
# The newsletter workspace. Environment variables override these settings
# (NEWSLETTER_FROM, NEWSLETTER_BASE_URL, NEWSLETTER_TRANSPORT, ...).
# The secret key lives in .newsletter/secret_key, not here: this file is safe to commit.

[newsletter]
name = {name}
# The sender: "Name <address>"
from = {sender}
# Your postal address, shown in every email's footer (required by CAN-SPAM to send)
postal_address = {postal_address}
# Public https URL of 'newsletter serve': unsubscribe and web-version links point here
base_url = {base_url}
theme = "default"
language = "en"

[delivery]
# sendgrid, postmark, mailgun, ses, smtp, file (an outbox folder of .eml files) or console
transport = {transport}
# messages per second, 0 for no limit
rate = 0
# recipients per provider request (SendGrid takes up to 1,000)
batch_size = 1000
# processes sending one large campaign (0: one per core, at most 4)
processes = 0
# caps per UTC hour and day, for every transport (0: none); a transport's own section may set
# rate, hourly_cap and daily_cap for it alone. A campaign at a cap pauses until the window opens.
# hourly_cap = 0
# daily_cap = 0

# A warm-up plan for a new domain or IP: the day's cap is start * factor ** days, up to daily_cap
# [delivery.warmup]
# start = 500
# factor = 2.0
# start_date = 2026-12-01

[smtp]
# url = "smtp://user:password@smtp.example.org:587?tls=starttls"
# DKIM signing (optional): selector, domain and the private key's file
# (`newsletter dkim keygen` makes one and prints these lines and the DNS record)
# dkim_selector = "news"
# dkim_domain = "example.org"
# dkim_key_file = "/etc/newsletter/dkim.pem"
# A second, Ed25519 signature beside the RSA one: keygen --type ed25519
# dkim_ed25519_selector = "newse"
# dkim_ed25519_key_file = "/etc/newsletter/dkim-ed25519.pem"
# The name we greet the server with (default: the From address's domain)
# ehlo_name = "mail.example.org"
# Where bounces go (default: the From address); verp = true gives each message its own
# bounce address so `newsletter bounces read MAILBOX` matches bounces to deliveries
# return_path = "bounces@example.org"
# verp = true

[sendgrid]
# The API key is read from the SENDGRID_API_KEY environment variable only.
host = "https://api.sendgrid.com"
sandbox = false

[postmark]
# The server token is read from the POSTMARK_SERVER_TOKEN environment variable only
# (docs/providers/postmark.md); newsletters go out on a Broadcast message stream.
# message_stream = "broadcast"
# webhook_user = "postmark-hook"
[mailgun]
# The API key is read from MAILGUN_API_KEY, the webhook signing key from
# MAILGUN_WEBHOOK_SIGNING_KEY (environment only). See docs/providers/mailgun.md.
# domain = "mg.example.org"
# "us" or "eu": the region the sending domain was made in
region = "us"

[ses]
# Amazon SES: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY only (docs/providers/ses.md).
# region = "eu-west-1"
# configuration_set = "newsletter-events"
# max_send_rate = 0    # messages a second; 0 reads the account's rate
# topic_arns = ""      # SNS topics whose events /webhooks/ses accepts

[database]
# Empty: a SQLite file in .newsletter/. For PostgreSQL: postgresql+psycopg://user@host/db
url = ""

[scheduler]
# A send whose time passed while 'newsletter run' was down still goes out this late
misfire_grace_seconds = 3600

[events]
# Provider events: this many soft bounces (full mailbox, server refusing for now) within
# soft_bounce_days suppress an address; a hard bounce or a spam complaint does at once
soft_bounce_limit = 3
soft_bounce_days = 30
"""

SAMPLE_ARTICLE = """\
---
title: Welcome to our newsletter
preheader: What to expect from us, and how often
author: The Editors
recently_published:
  title: How we started
  url: https://example.org/blog/how-we-started
---

Thank you for subscribing. Every few weeks we send one article, written
with care, and nothing else.

## What you will get

- One article per issue
- No tracking beyond what you allow
- A one-click unsubscribe in every email
"""


def init_workspace(
    folder: Path,
    sender: str = "My Newsletter <newsletter@example.org>",
    postal_address: str = "",
    base_url: str = "http://127.0.0.1:8000",
    transport: str = "file",
    name: str | None = None,
) -> Path:
    """Create a workspace in ``folder`` and return its newsletter.toml path.

    Refuses a folder that already holds a newsletter.toml (nothing is changed).
    The values are validated by loading the result, so a bad ``--from`` or
    ``--base-url`` is reported before anything is written.
    """
    folder = folder.expanduser().resolve()
    config_path = folder / CONFIG_NAME
    if config_path.exists():
        raise Conflict(f"{config_path} already exists", hint="edit it, or choose another folder")
    if transport not in TRANSPORTS:
        raise InputError(f"unknown transport {transport!r}", hint=f"choose one of {', '.join(TRANSPORTS)}")
    text = CONFIG_TEMPLATE.format(
        name=_toml_string(name or folder.name),
        sender=_toml_string(sender),
        postal_address=_toml_string(postal_address),
        base_url=_toml_string(base_url),
        transport=_toml_string(transport),
    )
    _validate(text, config_path)
    for sub in FOLDERS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _write_secret(folder / STATE_DIR / SECRET_FILE)
    (folder / ".gitignore").write_text(f"{STATE_DIR}/\noutbox/\nbuild/\n")
    article = folder / "articles" / "welcome.md"
    if not article.exists():
        article.write_text(SAMPLE_ARTICLE)
    write_atomically(config_path, text)
    return config_path


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def _validate(text: str, config_path: Path) -> None:
    """Load the would-be config with a throwaway key so errors surface before writing."""
    import tempfile

    from newsletter.config import load_settings
    from newsletter.errors import ConfigError

    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / CONFIG_NAME).write_text(text)
        try:
            load_settings(scratch, environ={"NEWSLETTER_SECRET_KEY": "check"})
        except ConfigError as exc:
            message = exc.message.replace(str(Path(scratch).resolve() / CONFIG_NAME), str(config_path))
            raise InputError(message, hint=exc.hint) from None


def _write_secret(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
