"""Check what receiving servers will see of this workspace's mail: ``newsletter doctor``.

The From domain's SPF and DMARC (policy, and alignment of the DKIM and
Return-Path domains with From), each configured DKIM selector's record
against its key, the MX of the bounce (Return-Path) domain, and the SMTP
relay's TLS. Nothing is sent. What could not be checked (offline, the
resolver or the relay unreachable) is reported as ``unknown``, with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.delivery.dkimsign import DkimKey, read_key
from newsletter.delivery.receiving import (
    Check,
    Lookup,
    check_dkim,
    check_dmarc,
    check_mx,
    check_relay_tls,
    check_spf,
)
from newsletter.errors import ConfigError
from newsletter.vocabulary import CheckResult

if TYPE_CHECKING:
    from newsletter.config import Settings


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]

    @property
    def failed(self) -> bool:
        return any(check.result is CheckResult.FAIL for check in self.checks)

    def counts(self) -> dict[str, int]:
        return {str(result): sum(1 for c in self.checks if c.result is result) for result in CheckResult}

    def as_dict(self) -> dict[str, object]:
        return {"checks": [check.as_dict() for check in self.checks], "counts": self.counts(),
                "failed": self.failed}


def _ascii_domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip().rstrip(".")
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.lower()


def configured_keys(settings: Settings) -> tuple[list[DkimKey], list[Check]]:
    """The DKIM keys the smtp transport signs with, and a failed check for each that cannot be read."""
    keys, problems = [], []
    pairs = [(settings.dkim_selector, settings.dkim_key_file),
             (settings.dkim_ed25519_selector, settings.dkim_ed25519_key_file)]
    for selector, path in pairs:
        if not (selector or path):
            continue
        name = f"DKIM {selector or '?'}._domainkey.{settings.dkim_domain or '?'}"
        if not (selector and path and settings.dkim_domain):
            problems.append(Check(name, CheckResult.FAIL, "a selector, dkim_domain and a key file are needed",
                                  "newsletter dkim keygen prints the [smtp] lines to use"))
            continue
        try:
            keys.append(read_key(selector, settings.dkim_domain, path))
        except ConfigError as exc:
            problems.append(Check(name, CheckResult.FAIL, str(exc), exc.hint or ""))
    return keys, problems


def run_doctor(settings: Settings, *, dns_timeout: float | None = None, tls_timeout: float = 10.0) -> DoctorReport:
    """Every check, in order; never raises for what it finds (a bad record is a failed check)."""
    lookup = Lookup(settings.dns_server) if dns_timeout is None else Lookup(settings.dns_server, dns_timeout)
    from_domain = _ascii_domain(settings.sender_address)
    smtp = settings.transport == "smtp"
    checks = [check_spf(lookup, from_domain)]
    envelope = _ascii_domain(settings.smtp_return_path) if smtp and settings.smtp_return_path else from_domain
    if smtp and envelope != from_domain:
        checks.append(check_spf(lookup, envelope))  # SPF authenticates the Return-Path domain
    if smtp:
        keys, problems = configured_keys(settings)
        checks += problems
        checks += [check_dkim(lookup, key) for key in keys]
        if not keys and not problems:
            checks.append(Check("DKIM", CheckResult.FAIL, "mail is not DKIM-signed: Gmail and Yahoo require "
                                "it from bulk senders", "newsletter dkim keygen, then the [smtp] lines it prints"))
        checks += check_dmarc(lookup, from_domain, [k.domain for k in keys], envelope)
        checks.append(check_mx(lookup, envelope))
        checks.append(_relay(settings, tls_timeout))
    else:
        skipped = f"the {settings.transport} transport: the provider signs and receives the bounces"
        checks.append(Check("DKIM", CheckResult.SKIPPED, skipped))
        checks += check_dmarc(lookup, from_domain, None, None)
        checks.append(Check("MX (bounces)", CheckResult.SKIPPED, skipped))
        checks.append(Check("TLS (relay)", CheckResult.SKIPPED, f"the {settings.transport} transport uses no "
                            "SMTP relay"))
    return DoctorReport(checks)


def _relay(settings: Settings, timeout: float) -> Check:
    from newsletter.delivery.smtp import parse_smtp_url

    if not settings.smtp_url:
        return Check("TLS (relay)", CheckResult.FAIL, "no relay configured",
                     "set NEWSLETTER_SMTP_URL=smtp://user:password@host:587?tls=starttls")
    try:
        config = parse_smtp_url(settings.smtp_url)
    except ConfigError as exc:
        return Check("TLS (relay)", CheckResult.FAIL, str(exc), exc.hint or "")
    return check_relay_tls(config.host, config.port, config.tls, timeout=timeout,
                           local_hostname=settings.smtp_ehlo_name or _ascii_domain(settings.sender_address))
