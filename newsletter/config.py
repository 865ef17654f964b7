"""Settings from ``newsletter.toml`` and the environment, validated once.

The workspace is the folder holding ``newsletter.toml``. It is found from an
explicit path, then ``NEWSLETTER_HOME``, then the current folder and its
parents. Environment variables (README, "Configuration") override the file. Every
problem is reported as a :class:`ConfigError` naming the file, the key and
what is wrong.

The secret key is not kept in ``newsletter.toml`` (a file people commit) but
in ``.newsletter/secret_key`` beside the database; one key a line, the first
signs new tokens and all of them verify (key rotation).

Numbers must be finite (``nan`` would silently disable a limit). The base
URL may carry no query or fragment; when mail leaves this machine
(:func:`mail_leaves_machine`), it must also be a public https:// address
(:func:`base_url_problem`), checked by ``check``, ``send`` and ``schedule``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter import transports as registry
from newsletter.errors import ConfigError, WorkspaceNotFound

CONFIG_NAME = "newsletter.toml"
STATE_DIR = ".newsletter"
SECRET_FILE = "secret_key"
TRANSPORTS = registry.names()  # every registered transport (newsletter.transports)
DEFAULT_SENDGRID_HOST = "https://api.sendgrid.com"
DEFAULT_POSTMARK_HOST = "https://api.postmarkapp.com"
TRACKING_MODES = ("off", "aggregate", "personal")  # newsletter.vocabulary.TrackingMode's values
MAILGUN_REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}

# (section, key) -> environment variable that overrides it; each provider's section from the registry
ENV_OVERRIDES = {
    ("database", "url"): "NEWSLETTER_DATABASE_URL",
    ("delivery", "transport"): "NEWSLETTER_TRANSPORT",
    ("newsletter", "from"): "NEWSLETTER_FROM",
    ("newsletter", "postal_address"): "NEWSLETTER_POSTAL_ADDRESS",
    ("newsletter", "base_url"): "NEWSLETTER_BASE_URL",
    ("broker", "url"): "NEWSLETTER_BROKER_URL",
    ("delivery", "processes"): "NEWSLETTER_SEND_PROCESSES",
    ("scheduler", "misfire_grace_seconds"): "NEWSLETTER_MISFIRE_GRACE_SECONDS",
    ("delivery", "sender_stale_seconds"): "NEWSLETTER_SENDER_STALE_SECONDS",
    ("web", "confirm_token_days"): "NEWSLETTER_CONFIRM_TOKEN_DAYS",
    ("web", "signup_origins"): "NEWSLETTER_SIGNUP_ORIGINS",
    ("web", "logo"): "NEWSLETTER_LOGO",
    ("events", "soft_bounce_limit"): "NEWSLETTER_SOFT_BOUNCE_LIMIT",
    ("events", "soft_bounce_days"): "NEWSLETTER_SOFT_BOUNCE_DAYS",
    ("doctor", "dns_server"): "NEWSLETTER_DNS_SERVER",
    ("audience", "sunset_after_sends"): "NEWSLETTER_SUNSET_AFTER_SENDS",
    ("audience", "sunset_after_days"): "NEWSLETTER_SUNSET_AFTER_DAYS",
    ("tracking", "mode"): "NEWSLETTER_TRACKING_MODE",
    ("signups", "proof_of_work"): "NEWSLETTER_SIGNUP_PROOF_OF_WORK",
    **registry.env_overrides(),
}


@dataclass(frozen=True)
class Limits:
    """A transport's sending limits: ``rate`` messages a second, ``hourly_cap`` and ``daily_cap``
    messages per UTC hour and day (0: no limit)."""

    rate: float = 0.0
    hourly_cap: int = 0
    daily_cap: int = 0


@dataclass(frozen=True)
class Breaker:
    """When a running campaign pauses by itself (``[delivery] breaker_*``, newsletter.engine.breaker).

    Rates count once ``min_sample`` messages of the campaign were sent; a
    rate at a threshold trips it (0 turns that check off).
    """

    complaint_warn: float = 0.001       # Gmail's "keep under 0.1%"
    complaint_pause: float = 0.003      # Gmail's "never reach 0.3%"
    hard_bounce_pause: float = 0.02
    min_sample: int = 1000
    transport_failures: int = 50        # failures in a row of one kind (DNS, connection, ...)
    check_seconds: float = 5.0          # read the rates at most this often (a scan of the campaign's rows)


@dataclass(frozen=True)
class Warmup:
    """``[delivery.warmup]``: the day's cap is ``start * factor ** days`` since ``start_date`` (UTC days),
    never above the daily cap; days before ``start_date`` count as the first."""

    start: int
    factor: float
    start_date: date


@dataclass(frozen=True)
class SmtpRelay:
    """One of ``[[smtp.relays]]``: where, who (the password read from the ``password_env`` variable),
    its share of the messages (``weight``), its own rate (0: none) and connection pool."""

    host: str
    port: int | None = None
    tls: str = ""  # empty: as an smtp:// URL to this host would (STARTTLS, none on loopback)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    weight: float = 1.0
    rate: float = 0.0
    pool_size: int = 4


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one workspace."""

    workspace: Path
    config_file: Path
    name: str
    sender_name: str
    sender_address: str
    postal_address: str
    base_url: str
    theme: str
    language: str
    transport: str
    database_url: str
    secret_keys: tuple[str, ...] = field(repr=False)
    send_rate: float = 0.0
    batch_size: int = 1000
    send_processes: int = 0
    smtp_url: str | None = field(default=None, repr=False)
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_key_file: str | None = None
    dkim_ed25519_selector: str | None = None  # a second, Ed25519 signature beside the main (RSA) one
    dkim_ed25519_key_file: str | None = None
    dns_server: str | None = None  # "host" or "host:port" newsletter doctor asks; empty: the system's resolver
    smtp_ehlo_name: str | None = None  # empty: the From domain (never this machine's name)
    smtp_return_path: str | None = None  # the envelope sender; empty: the From address
    smtp_verp: bool = False  # envelope sender bounces+<delivery tag>@domain, for newsletter bounces read
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_host: str = DEFAULT_SENDGRID_HOST
    sendgrid_sandbox: bool = False
    sendgrid_webhook_key: str | None = field(default=None, repr=False)
    postmark_server_token: str | None = field(default=None, repr=False)
    postmark_host: str = DEFAULT_POSTMARK_HOST
    postmark_message_stream: str = "broadcast"
    postmark_webhook_user: str | None = field(default=None, repr=False)
    postmark_webhook_password: str | None = field(default=None, repr=False)
    mailgun_api_key: str | None = field(default=None, repr=False)
    mailgun_domain: str = ""
    mailgun_region: str = "us"
    mailgun_host: str = ""  # an explicit API base URL (a proxy, a stand-in); empty: the region's
    mailgun_test_mode: bool = False
    mailgun_webhook_signing_key: str | None = field(default=None, repr=False)
    # Amazon SES ([ses]; credentials only from the AWS_* environment, read by boto3 itself)
    ses_region: str | None = None
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None
    ses_max_send_rate: float = 0.0  # 0: the account's MaxSendRate (GetAccount)
    ses_concurrency: int = 0  # requests in flight; 0: enough for the rate
    ses_topic_arns: tuple[str, ...] = ()  # the SNS topics whose notifications /webhooks/ses accepts
    ses_sns_allow_loopback: bool = False  # tests only: certificates and confirmations from http://127.0.0.1
    broker_url: str | None = field(default=None, repr=False)
    misfire_grace_seconds: int = 3600
    # A sender on another machine silent this long is taken for dead (engine/fencing.py).
    sender_stale_seconds: float = 120.0
    confirm_token_days: float = 7.0
    # Sites (besides base_url) whose forms may post to /subscribe: "https://host[:port]" each.
    signup_origins: tuple[str, ...] = ()
    # Soft bounces (a full mailbox, a server refusing for now) suppress an address after this many within
    # soft_bounce_days (newsletter.events.pipeline).
    soft_bounce_limit: int = 3
    soft_bounce_days: float = 30.0
    # Quotas (newsletter.engine.quotas): [delivery] hourly_cap / daily_cap for every transport, and
    # rate / hourly_cap / daily_cap in a transport's own section ([smtp], [sendgrid]...) for it alone.
    hourly_cap: int = 0
    daily_cap: int = 0
    transport_limits: Mapping[str, Limits] = field(default_factory=dict)
    warmup: Warmup | None = None
    # Several SMTP relays ([[smtp.relays]]) instead of one [smtp] url (newsletter.delivery.relays).
    smtp_relays: tuple[SmtpRelay, ...] = field(default=(), repr=False)
    relay_failures: int = 3  # consecutive connection or login failures before a relay is skipped
    # The circuit breaker (newsletter.engine.breaker): [delivery] breaker_* keys.
    breaker: Breaker = field(default_factory=Breaker)
    # Gmail's list identity (newsletter.delivery.mime.list_headers): the domain of List-Id (default the
    # sender's), the sender field of Feedback-ID (default the sender's domain), and the RFC 9477
    # complaints mailbox (CFBL-Address; none by default).
    list_id_domain: str = ""
    feedback_sender_id: str = ""
    complaints_address: str = ""
    # The sender of confirmation and other non-subscription mail ([web] confirm_from; default: sender).
    confirm_from: str = ""
    relay_cooldown_seconds: float = 300.0  # for this long

    def limits_for(self, transport: str | None = None) -> Limits:
        """The limits of ``transport`` (default: the workspace's): its own section's, else [delivery]'s."""
        own = self.transport_limits.get(transport or self.transport, Limits())
        return Limits(rate=own.rate or self.send_rate, hourly_cap=own.hourly_cap or self.hourly_cap,
                      daily_cap=own.daily_cap or self.daily_cap)
    # The sunset policy (usecases/segments.py): no open or click in this many sends / days makes a
    # subscriber dormant (skipped unless --to-dormant). 0: off (the default).
    sunset_after_sends: int = 0
    sunset_after_days: float = 0.0
    # The public pages' logo: an image file (PNG, JPEG, GIF, WebP, SVG), relative to the workspace; empty: none.
    logo: str = ""
    # First-party click and open tracking (newsletter.compose.clicks): off, aggregate (no one named) or
    # personal (only readers whose tracking consent is recorded); a click this soon after its message was
    # sent is a link scanner's.
    tracking_mode: str = "aggregate"
    tracking_machine_seconds: float = 10.0
    # Per-list modes (``[tracking] lists = { patients = "off" }``): list name -> mode, overriding tracking_mode.
    tracking_list_modes: tuple[tuple[str, str], ...] = ()
    # The tracking-consent checkbox's words on the signup forms and the preference centre ([tracking]
    # consent_text; empty: newsletter.audience.tracking_consent.DEFAULT_TEXT). Each consent row keeps the
    # text and its version (a hash of it), so changing it never rewrites what someone agreed to.
    tracking_consent_text: str = ""
    # Signup protection (newsletter.audience.protection): a signup without a solved proof-of-work challenge
    # is quarantined when proof_of_work is on (the default: the compliant choice; its PBKDF2 iterations per
    # try: proof_of_work_cost); a
    # network (/24, /48) past network_quarantine signups an hour has the next ones quarantined, past
    # network_limit refused; domains in deny_domains are quarantined, allow_domains are never held as
    # disposable.
    signup_proof_of_work: bool = True
    signup_proof_of_work_cost: int = 2000
    signup_network_quarantine: int = 10
    signup_network_limit: int = 100
    signup_allow_domains: tuple[str, ...] = ()
    signup_deny_domains: tuple[str, ...] = ()

    def tracking_mode_for(self, list_name: str) -> str:
        """The tracking mode of a list: its own when ``[tracking] lists`` names it, else the workspace's."""
        return dict(self.tracking_list_modes).get(list_name, self.tracking_mode)

    @property
    def sender(self) -> str:
        """The From header value, ``Name <address>``."""
        return formataddr((self.sender_name, self.sender_address))

    @property
    def transactional_sender(self) -> str:
        """The From of confirmation and other non-subscription mail: ``[web] confirm_from``, else :attr:`sender`
        (Gmail asks that it differ from the newsletters' where it can)."""
        return self.confirm_from or self.sender

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2].lower()

    @property
    def mailgun_base_url(self) -> str:
        """The Mailgun API base URL: ``[mailgun] host`` when set, else the region's."""
        return self.mailgun_host or MAILGUN_REGIONS[self.mailgun_region]

    @property
    def secret_key(self) -> str:
        """The key that signs new tokens."""
        return self.secret_keys[0]

    @property
    def state_dir(self) -> Path:
        return self.workspace / STATE_DIR

    @property
    def outbox_dir(self) -> Path:
        return self.workspace / "outbox"


def find_workspace(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    """Return the workspace folder, or raise :class:`WorkspaceNotFound`."""
    if explicit is None:
        explicit = os.environ.get("NEWSLETTER_HOME") or None
    if explicit is not None:
        folder = Path(explicit).expanduser().resolve()
        if not (folder / CONFIG_NAME).is_file():
            raise WorkspaceNotFound(
                f"no {CONFIG_NAME} in {folder}",
                hint=f"create one with: newsletter init {folder}",
            )
        return folder
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise WorkspaceNotFound(
        f"no {CONFIG_NAME} found in {here} or any folder above it",
        hint="run 'newsletter init my-letter && cd my-letter', or pass --workspace DIR",
    )


def load_settings(
    workspace: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Find the workspace, read its ``newsletter.toml`` and apply the environment."""
    env = os.environ if environ is None else environ
    folder = find_workspace(workspace)
    path = folder / CONFIG_NAME
    raw = _read_toml(path)
    reader = _Reader(path, raw, env)
    sender_name, sender_address = reader.sender()
    return Settings(
        workspace=folder,
        config_file=path,
        name=reader.text("newsletter", "name", default=sender_name or folder.name),
        sender_name=sender_name,
        sender_address=sender_address,
        postal_address=reader.text("newsletter", "postal_address", default=""),
        base_url=reader.base_url(),
        theme=reader.text("newsletter", "theme", default="default"),
        language=reader.text("newsletter", "language", default="en"),
        transport=reader.choice("delivery", "transport", TRANSPORTS, default="file"),
        database_url=reader.text("database", "url", default="")
        or f"sqlite:///{folder / STATE_DIR / 'newsletter.db'}",
        secret_keys=_secret_keys(folder, env),
        send_rate=reader.number("delivery", "rate", default=0.0, minimum=0.0),
        batch_size=int(reader.number("delivery", "batch_size", default=1000, minimum=1)),
        send_processes=int(reader.number("delivery", "processes", default=0, minimum=0)),
        smtp_url=reader.text("smtp", "url", default="") or None,
        dkim_selector=reader.text("smtp", "dkim_selector", default="") or None,
        dkim_domain=reader.text("smtp", "dkim_domain", default="") or None,
        dkim_key_file=reader.text("smtp", "dkim_key_file", default="") or None,
        dkim_ed25519_selector=reader.text("smtp", "dkim_ed25519_selector", default="") or None,
        dkim_ed25519_key_file=reader.text("smtp", "dkim_ed25519_key_file", default="") or None,
        smtp_ehlo_name=reader.hostname("smtp", "ehlo_name") or None,
        smtp_return_path=reader.address("smtp", "return_path") or None,
        smtp_verp=reader.flag("smtp", "verp", default=False),
        sendgrid_api_key=env.get("SENDGRID_API_KEY") or None,
        sendgrid_host=reader.text("sendgrid", "host", default=DEFAULT_SENDGRID_HOST).rstrip("/"),
        sendgrid_sandbox=reader.flag("sendgrid", "sandbox", default=False),
        sendgrid_webhook_key=reader.text("sendgrid", "webhook_key", default="") or None,
        postmark_server_token=env.get("POSTMARK_SERVER_TOKEN") or None,
        postmark_host=reader.text("postmark", "host", default=DEFAULT_POSTMARK_HOST).rstrip("/"),
        postmark_message_stream=reader.text("postmark", "message_stream", default="broadcast") or "broadcast",
        postmark_webhook_user=reader.text("postmark", "webhook_user", default="") or None,
        postmark_webhook_password=env.get("NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD") or None,
        mailgun_api_key=env.get("MAILGUN_API_KEY") or None,
        mailgun_domain=reader.text("mailgun", "domain", default="").lower(),
        mailgun_region=reader.choice("mailgun", "region", tuple(MAILGUN_REGIONS), default="us"),
        mailgun_host=reader.text("mailgun", "host", default="").rstrip("/"),
        mailgun_test_mode=reader.flag("mailgun", "test_mode", default=False),
        mailgun_webhook_signing_key=env.get("MAILGUN_WEBHOOK_SIGNING_KEY") or None,
        ses_region=reader.text("ses", "region", default="") or None,
        ses_endpoint_url=reader.text("ses", "endpoint_url", default="").rstrip("/") or None,
        ses_configuration_set=reader.text("ses", "configuration_set", default="") or None,
        ses_max_send_rate=reader.number("ses", "max_send_rate", default=0.0, minimum=0.0),
        ses_concurrency=int(reader.number("ses", "concurrency", default=0, minimum=0)),
        ses_topic_arns=tuple(reader.text("ses", "topic_arns", default="").replace(",", " ").split()),
        ses_sns_allow_loopback=reader.flag("ses", "sns_allow_loopback", default=False),
        broker_url=reader.text("broker", "url", default="") or None,
        misfire_grace_seconds=int(
            reader.number("scheduler", "misfire_grace_seconds", default=3600, minimum=1)
        ),
        sender_stale_seconds=reader.number("delivery", "sender_stale_seconds", default=120.0, minimum=1),
        confirm_token_days=reader.number("web", "confirm_token_days", default=7.0, minimum=0.01),
        signup_origins=reader.origins("web", "signup_origins"),
        soft_bounce_limit=int(reader.number("events", "soft_bounce_limit", default=3, minimum=1)),
        soft_bounce_days=reader.number("events", "soft_bounce_days", default=30.0, minimum=0.01),
        hourly_cap=reader.count("delivery", "hourly_cap"),
        daily_cap=reader.count("delivery", "daily_cap"),
        transport_limits=reader.transport_limits(),
        warmup=reader.warmup(),
        smtp_relays=reader.relays(env),
        relay_failures=int(reader.number("smtp", "relay_failures", default=3, minimum=1)),
        breaker=reader.breaker(),
        list_id_domain=reader.text("delivery", "list_id_domain", default="").lower().strip("."),
        feedback_sender_id=reader.text("delivery", "feedback_sender_id", default=""),
        complaints_address=reader.address("delivery", "complaints_address"),
        confirm_from=reader.mailbox("web", "confirm_from"),
        relay_cooldown_seconds=reader.number("smtp", "relay_cooldown_seconds", default=300.0, minimum=0),
        dns_server=reader.text("doctor", "dns_server", default="") or None,
        sunset_after_sends=int(reader.number("audience", "sunset_after_sends", default=0, minimum=0)),
        sunset_after_days=reader.number("audience", "sunset_after_days", default=0, minimum=0),
        logo=reader.text("web", "logo", default=""),
        tracking_mode=reader.choice("tracking", "mode", TRACKING_MODES, default="aggregate"),
        tracking_machine_seconds=reader.number("tracking", "machine_seconds", default=10.0, minimum=0.0),
        tracking_list_modes=reader.list_modes("tracking", "lists", TRACKING_MODES),
        tracking_consent_text=reader.text("tracking", "consent_text", default="")[:500],
        signup_proof_of_work=reader.flag("signups", "proof_of_work", default=True),
        signup_proof_of_work_cost=int(reader.number("signups", "proof_of_work_cost", default=2000, minimum=1)),
        signup_network_quarantine=int(reader.number("signups", "network_quarantine", default=10, minimum=0)),
        signup_network_limit=int(reader.number("signups", "network_limit", default=100, minimum=1)),
        signup_allow_domains=reader.domains("signups", "allow_domains"),
        signup_deny_domains=reader.domains("signups", "deny_domains"),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", hint="fix the line it names, or re-create it with newsletter init"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _secret_keys(folder: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    keys: list[str] = []
    if env.get("NEWSLETTER_SECRET_KEY"):
        keys.append(env["NEWSLETTER_SECRET_KEY"])
    secret_file = folder / STATE_DIR / SECRET_FILE
    if secret_file.is_file():
        keys += [line.strip() for line in secret_file.read_text().splitlines() if line.strip()]
    if not keys:
        raise ConfigError(
            f"{secret_file}: no secret key",
            hint="set NEWSLETTER_SECRET_KEY, or run 'newsletter init' again in this folder to generate one",
        )
    return tuple(dict.fromkeys(keys))


# Host names that never resolve on the public internet
_PRIVATE_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa", ".localdomain")


def is_private_host(host: str | None) -> bool:
    """True for loopback, private, link-local and other non-public addresses, and local-only names."""
    if not host or is_loopback_host(host):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        name = host.rstrip(".").lower()
        return "." not in name or name.endswith(_PRIVATE_SUFFIXES)


def mail_host(settings: Settings, transport: str | None = None) -> str | None:
    """The host the chosen transport hands mail to, or None when mail stays here (file, console, memory)."""
    transport = transport or settings.transport
    if transport == "smtp":
        if settings.smtp_relays and not settings.smtp_url:  # the first relay that leaves this machine, if any
            hosts = [relay.host for relay in settings.smtp_relays]
            return next((host for host in hosts if not is_loopback_host(host)), hosts[0])
        return urlsplit(settings.smtp_url or "").hostname or "(no SMTP URL)"
    if transport == "sendgrid":
        return urlsplit(settings.sendgrid_host or DEFAULT_SENDGRID_HOST).hostname or "(no SendGrid host)"
    if transport == "postmark":
        return urlsplit(settings.postmark_host or DEFAULT_POSTMARK_HOST).hostname or "(no Postmark host)"
    if transport == "mailgun":
        return urlsplit(settings.mailgun_base_url).hostname or "(no Mailgun host)"
    if transport == "ses":
        if settings.ses_endpoint_url:
            return urlsplit(settings.ses_endpoint_url).hostname or "(no SES endpoint)"
        return f"email.{settings.ses_region or 'us-east-1'}.amazonaws.com"
    return None


def mail_leaves_machine(settings: Settings, transport: str | None = None) -> bool:
    """Whether mail leaves this machine: an SMTP or provider host that is not loopback.

    Local set-ups (file, console, memory; a Mailpit or stand-in on
    127.0.0.1) keep mail here, and may use any base URL.
    """
    host = mail_host(settings, transport)
    return host is not None and not is_loopback_host(host)


def base_url_problem(settings: Settings, transport: str | None = None) -> ConfigError | None:
    """Why readers could not follow the links of mail sent now, or None.

    When mail leaves this machine, unsubscribe and web-version links must
    point to a public https:// address: a loopback (the default
    ``http://127.0.0.1:8000``), private or plain-http base URL is a problem.
    """
    if not settings.base_url or not mail_leaves_machine(settings, transport):
        return None
    parts = urlsplit(settings.base_url)
    if parts.scheme != "https":
        why = "not an https:// address"
    elif is_loopback_host(parts.hostname):
        why = "a loopback address"
    elif is_private_host(parts.hostname):
        why = "a private address"
    else:
        return None
    return ConfigError(
        f"base_url {settings.base_url!r} is {why}, but mail leaves this machine through "
        f"{mail_host(settings, transport)}: readers could not unsubscribe",
        hint="set base_url in newsletter.toml (or NEWSLETTER_BASE_URL) to the public https:// address "
             "of 'newsletter serve'",
    )


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback IP addresses (where plain http is allowed)."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class _Reader:
    """Reads typed values from the TOML tree, the environment winning."""

    def __init__(self, path: Path, raw: dict[str, Any], env: Mapping[str, str]):
        self.path, self.raw, self.env = path, raw, env

    def _where(self, section: str, key: str) -> str:
        variable = ENV_OVERRIDES.get((section, key))
        if variable and self.env.get(variable):
            return f"environment variable {variable}"
        return f"{self.path}: [{section}] {key}"

    def get(self, section: str, key: str, default: Any) -> Any:
        variable = ENV_OVERRIDES.get((section, key))
        if variable and self.env.get(variable):
            return self.env[variable]
        table = self.raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self.path}: [{section}] must be a table", hint=f"write it as a [{section}] section")
        return table.get(key, default)

    def fail(self, section: str, key: str, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self._where(section, key)} {problem}", hint=hint)

    def text(self, section: str, key: str, default: str) -> str:
        value = self.get(section, key, default)
        if not isinstance(value, str):
            raise self.fail(section, key, f"must be a string (got {value!r})", hint='quote it: key = "value"')
        if "\n" in value or "\r" in value:
            raise self.fail(section, key, "must be on one line", hint="remove the line break")
        return value.strip()

    def number(self, section: str, key: str, default: float, minimum: float) -> float:
        value = self.get(section, key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.fail(section, key, f"must be a number (got {value!r})",
                            hint=f"write a plain number such as {default:g}") from None
        if not math.isfinite(number):  # nan compares false with everything: it would disable the check below
            raise self.fail(section, key, f"must be a finite number (got {value!r})",
                            hint="write a plain number such as 100")
        if number < minimum:
            raise self.fail(section, key, f"must be at least {minimum:g} (got {number:g})",
                            hint=f"the default is {default:g}")
        return number

    def count(self, section: str, key: str) -> int:
        """A whole number of messages, 0 (the default) meaning no limit."""
        number = self.number(section, key, default=0, minimum=0)
        if number != int(number):
            raise self.fail(section, key, f"must be a whole number (got {number:g})", hint="e.g. 10000")
        return int(number)

    def breaker(self) -> Breaker:
        """``[delivery] breaker_*``: the circuit breaker's thresholds (rates as fractions: 0.003 is 0.3%)."""
        default = Breaker()

        def rate(key: str, value: float) -> float:
            number = self.number("delivery", f"breaker_{key}", default=value, minimum=0.0)
            if number > 1:
                raise self.fail("delivery", f"breaker_{key}", f"is a fraction, at most 1 (got {number:g})",
                                hint=f"0.003 means 0.3%; the default is {value:g}")
            return number

        def whole(key: str, value: int) -> int:
            number = self.number("delivery", f"breaker_{key}", default=value, minimum=0)
            if number != int(number):
                raise self.fail("delivery", f"breaker_{key}", f"must be a whole number (got {number:g})",
                                hint=f"the default is {value}")
            return int(number)

        return Breaker(complaint_warn=rate("complaint_warn", default.complaint_warn),
                       complaint_pause=rate("complaint_pause", default.complaint_pause),
                       hard_bounce_pause=rate("hard_bounce_pause", default.hard_bounce_pause),
                       min_sample=whole("min_sample", default.min_sample),
                       transport_failures=whole("transport_failures", default.transport_failures),
                       check_seconds=self.number("delivery", "breaker_check_seconds", default=default.check_seconds,
                                                 minimum=0.0))

    def transport_limits(self) -> dict[str, Limits]:
        """``rate``, ``hourly_cap`` and ``daily_cap`` of each transport's own section, where set."""
        result = {}
        for name in TRANSPORTS:
            table = self.raw.get(name, {})
            if isinstance(table, dict) and any(key in table for key in ("rate", "hourly_cap", "daily_cap")):
                result[name] = Limits(rate=self.number(name, "rate", default=0.0, minimum=0.0),
                                      hourly_cap=self.count(name, "hourly_cap"),
                                      daily_cap=self.count(name, "daily_cap"))
        return result

    def warmup(self) -> Warmup | None:
        """``[delivery.warmup]``: start (messages on the first day), factor (daily growth), start_date."""
        table = self.get("delivery", "warmup", None)
        if table is None:
            return None
        where = f"{self.path}: [delivery.warmup]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table", hint="write it as a [delivery.warmup] section")
        unknown = set(table) - {"start", "factor", "start_date"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}",
                              hint="it takes start, factor and start_date")
        sub = _Reader(self.path, {"delivery.warmup": table}, {})
        start = sub.count("delivery.warmup", "start")
        factor = sub.number("delivery.warmup", "factor", default=2.0, minimum=1.0)
        if start < 1:
            raise ConfigError(f"{where} start must be at least 1 message a day",
                              hint="e.g. start = 500 (the first day's volume)")
        if factor > 100:
            raise ConfigError(f"{where} factor must be at most 100 (got {factor:g})", hint="e.g. factor = 2.0")
        value = table.get("start_date")
        try:
            when = value if isinstance(value, date) else date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{where} start_date must be a date such as 2026-12-01 (got {value!r})",
                              hint="the first day of the warm-up, in UTC") from None
        if isinstance(when, datetime):  # a TOML date-time: its day
            when = when.date()
        return Warmup(start, factor, when)

    def relays(self, env: Mapping[str, str]) -> tuple[SmtpRelay, ...]:
        """``[[smtp.relays]]``: host, port, tls, user, password_env, weight, rate, pool_size."""
        table = self.raw.get("smtp", {})
        items = table.get("relays", []) if isinstance(table, dict) else []
        where = f"{self.path}: [[smtp.relays]]"
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ConfigError(f"{where} must be a list of tables", hint="write each relay as a [[smtp.relays]] table")
        if len(items) > 32:
            raise ConfigError(f"{where}: at most 32 relays (got {len(items)})")
        result = []
        for index, item in enumerate(items, 1):
            name = f"relays.{index}"
            unknown = set(item) - {"host", "port", "tls", "user", "password_env", "weight", "rate", "pool_size"}
            if unknown:
                raise ConfigError(f"{where} number {index} has unknown keys: {', '.join(sorted(unknown))}",
                                  hint="a relay takes host, port, tls, user, password_env, weight, rate, pool_size")
            sub = _Reader(self.path, {name: item}, {})
            host = sub.hostname(name, "host") if not _is_ip(str(item.get("host", ""))) else str(item["host"])
            if not host:
                raise ConfigError(f"{where} number {index} has no host", hint='host = "relay1.example.org"')
            password_env = sub.text(name, "password_env", default="")
            if password_env and not env.get(password_env):
                raise ConfigError(f"{where} number {index}: the environment variable {password_env} is not set",
                                  hint=f"set {password_env} to the relay's password")
            tls = sub.text(name, "tls", default="").lower()
            if tls not in ("", "starttls", "ssl", "none"):
                raise ConfigError(f"{where} number {index}: tls must be starttls, ssl or none (got {tls!r})")
            port = int(sub.number(name, "port", default=0, minimum=0))
            if port > 65535:
                raise ConfigError(f"{where} number {index}: port must be at most 65535 (got {port})")
            result.append(SmtpRelay(
                host=host, port=port or None, tls=tls, user=sub.text(name, "user", default="") or None,
                password=env.get(password_env) if password_env else None,
                weight=sub.number(name, "weight", default=1.0, minimum=0.001),
                rate=sub.number(name, "rate", default=0.0, minimum=0.0),
                pool_size=max(1, min(64, int(sub.number(name, "pool_size", default=4, minimum=1))))))
        return tuple(result)

    def flag(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise self.fail(section, key, f"must be true or false (got {value!r})")

    def domains(self, section: str, key: str) -> tuple[str, ...]:
        """Mail domains, a list or one string separated by commas or spaces (lower-cased, IDN as ASCII)."""
        value = self.get(section, key, [])
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.fail(section, key, "must be a list of domains", hint='write it as ["example.org"]')
        result = []
        for item in items:
            try:
                name = item.strip().lstrip("@").encode("idna").decode("ascii").lower()
            except UnicodeError:
                name = ""
            if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
                raise self.fail(section, key, f"is not a domain (got {item[:80]!r})",
                                hint="write mail domains such as example.org")
            result.append(name)
        return tuple(result)

    def hostname(self, section: str, key: str) -> str:
        """A DNS host name (letters, digits, dots, hyphens; IDN as its ASCII form), or empty."""
        value = self.text(section, key, default="")
        if not value:
            return ""
        try:
            ascii_name = value.encode("idna").decode("ascii").lower()
        except UnicodeError:
            ascii_name = ""
        labels = ascii_name.split(".")
        if (not ascii_name or len(ascii_name) > 253
                or not all(_HOST_LABEL.fullmatch(label) for label in labels)):
            raise self.fail(section, key, f"is not a host name (got {value[:80]!r})",
                            hint="write the sending host's name, e.g. mail.example.org")
        return ascii_name

    def address(self, section: str, key: str) -> str:
        """An email address (normalised), or empty."""
        value = self.text(section, key, default="")
        if not value:
            return ""
        from newsletter.errors import InvalidAddress
        from newsletter.vocabulary.addresses import normalise_address

        try:
            return normalise_address(value)
        except InvalidAddress as exc:
            raise self.fail(section, key, f"is not an email address: {exc}",
                            hint="write a plain address, e.g. bounces@example.org") from None

    def list_modes(self, section: str, key: str, choices: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """A table of list name -> one of ``choices`` (``lists = { patients = "off" }``); empty when absent."""
        value = self.get(section, key, {})
        if not isinstance(value, dict):
            raise self.fail(section, key, "must be a table of list names", hint='write lists = { patients = "off" }')
        modes = []
        for name, mode in value.items():
            if not isinstance(mode, str) or mode.strip().lower() not in choices:
                raise self.fail(section, key, f"gives list {name!r} the mode {mode!r}",
                                hint=f"use one of {', '.join(choices)}")
            modes.append((str(name), mode.strip().lower()))
        return tuple(modes)

    def choice(self, section: str, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(section, key, default).lower()
        if value not in choices:
            raise self.fail(section, key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def mailbox(self, section: str, key: str) -> str:
        """A ``Name <address>`` (the name optional), normalised; empty when absent."""
        value = self.text(section, key, default="")
        if not value:
            return ""
        from newsletter.errors import InvalidAddress
        from newsletter.vocabulary.addresses import normalise_address

        name, address = parseaddr(value)
        try:
            return formataddr((name, normalise_address(address)))
        except InvalidAddress as exc:
            raise self.fail(section, key, f"is not a valid sender ({exc.message})",
                            hint='write it as "Name <you@example.org>"') from None

    def sender(self) -> tuple[str, str]:
        """The ``from`` key: ``Name <address>``; empty until configured."""
        value = self.text("newsletter", "from", default="")
        if not value:
            return "", ""
        from newsletter.errors import InvalidAddress
        from newsletter.vocabulary.addresses import normalise_address

        name, address = parseaddr(value)
        try:
            return name, normalise_address(address)
        except InvalidAddress as exc:
            raise self.fail(
                "newsletter", "from", f"is not a valid sender ({exc.message})",
                hint='write it as "Name <you@example.org>"',
            ) from None

    def origins(self, section: str, key: str) -> tuple[str, ...]:
        """Web origins (``scheme://host[:port]``), separated by commas or spaces."""
        result = []
        for item in self.text(section, key, default="").replace(",", " ").split():
            parts = urlsplit(item.rstrip("/"))
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
                raise self.fail(section, key, f"must list origins such as https://www.example.org (got {item!r})",
                                hint="give the scheme and host of each site whose form posts to /subscribe")
            result.append(f"{parts.scheme}://{parts.netloc}".lower())
        return tuple(result)

    def base_url(self) -> str:
        value = self.text("newsletter", "base_url", default="").rstrip("/")
        if not value:
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise self.fail("newsletter", "base_url", f"is not a URL (got {value!r})",
                            hint="write it as https://news.example.org") from None
        if "?" in value or "#" in value:
            raise self.fail("newsletter", "base_url", f"must not have a query or fragment (got {value!r})",
                            hint="links are built by appending paths such as /unsubscribe/...: "
                                 "give the address alone, e.g. https://news.example.org")
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and is_loopback_host(parts.hostname):
            return value
        raise self.fail(
            "newsletter",
            "base_url",
            f"must be an https:// URL (got {value!r})",
            hint="use the public https address of 'newsletter serve'; plain http is allowed only for localhost",
        )
