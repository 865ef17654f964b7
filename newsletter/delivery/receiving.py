"""What receiving servers check of a sender: published DNS records (SPF, DKIM, DMARC, MX) and the relay's TLS.

Each check answers a :class:`Check` (a ``CheckResult``, what was found, and
a hint when something is wrong); nothing here raises for a bad record.
Lookups go through dnspython, to the system's resolver or to the one
named ``host[:port]`` (``[doctor] dns_server``). A resolver that does not
answer makes the check ``unknown`` ("could not check"), never ``fail``;
after the first such answer the remaining lookups are not tried, so an
offline machine answers at once.

Organisational domains (DMARC's relaxed alignment, the DMARC record of a
subdomain) are taken as the last two labels: right for ``example.org``,
not for ``example.co.uk`` (no public suffix list here); the detail says so
when it matters.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from newsletter.delivery.dkimsign import DkimKey
from newsletter.errors import ConfigError
from newsletter.vocabulary import CheckResult

DNS_TIMEOUT = 3.0  # seconds for one lookup, all retries included
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: more DNS-querying terms is a permerror
CERT_WARN_DAYS = 14

if TYPE_CHECKING:
    import dns.resolver


@dataclass(frozen=True)
class Check:
    """One check's outcome, for people (detail, hint) and scripts (``as_dict``)."""

    name: str
    result: CheckResult
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "result": str(self.result), "detail": self.detail, "hint": self.hint}


class Unreachable(Exception):
    """The resolver gave no answer (timeout, refused, no resolver configured)."""


class Lookup:
    """DNS lookups through dnspython; an absent name or record is an empty answer, a silent resolver
    :class:`Unreachable` (and every lookup after it too, without trying)."""

    def __init__(self, server: str | None = None, timeout: float = DNS_TIMEOUT):
        """ConfigError at once when ``server`` is not ``ip[:port]``."""
        self.server, self.timeout, self.down = server, timeout, ""
        self._address = split_host_port(server, 53) if server else None
        self._resolver: dns.resolver.Resolver | None = None

    def _get_resolver(self) -> dns.resolver.Resolver:
        import dns.resolver

        if self._resolver is None:
            if self._address:
                host, port = self._address
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [host]
                resolver.port = port
            else:
                try:
                    resolver = dns.resolver.Resolver()
                except dns.resolver.NoResolverConfiguration:
                    raise Unreachable("no DNS resolver is configured on this machine") from None
            resolver.lifetime = self.timeout
            resolver.timeout = min(self.timeout, 2.0)
            self._resolver = resolver
        return self._resolver

    def _answer(self, name: str, rdtype: str) -> tuple[list[Any], bool]:
        """The records, and whether the name exists at all."""
        import dns.exception
        import dns.resolver

        if self.down:
            raise Unreachable(self.down)
        resolver = self._get_resolver()
        try:
            answer = resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return [], False
        except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError) as exc:
            where = f" ({self.server})" if self.server else ""
            self.down = f"the DNS resolver{where} did not answer ({type(exc).__name__})"
            raise Unreachable(self.down) from None
        except dns.exception.DNSException as exc:
            raise Unreachable(f"the lookup of {name} failed: {exc}") from None
        return list(answer.rrset or []), True

    def txt(self, name: str) -> tuple[list[str], bool]:
        """The TXT records at ``name`` (each record's strings joined), and whether the name exists."""
        records, exists = self._answer(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records], exists

    def mx(self, name: str) -> tuple[list[tuple[int, str]], bool]:
        """The MX records at ``name`` as (preference, host), lowest first, and whether the name exists."""
        records, exists = self._answer(name, "MX")
        found = [(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in records]
        return sorted(found), exists

    def address(self, name: str) -> bool:
        """Whether ``name`` has an A or AAAA record."""
        return bool(self._answer(name, "A")[0] or self._answer(name, "AAAA")[0])


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``ip``, ``ip:port``, ``[v6]`` or ``[v6]:port`` as (ip, port); ConfigError for anything else (a
    resolver is named by its address: looking its name up would need a resolver)."""
    text = value.strip()
    host, port = text, str(default_port)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port if bracket and not rest else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError(port)
    except ValueError:
        raise ConfigError(f"the DNS server {value[:80]!r} is not an IP address with an optional port",
                          hint="write it as 127.0.0.1:5353, 192.0.2.53 or [2001:db8::53]:53 "
                               "(NEWSLETTER_DNS_SERVER or [doctor] dns_server)") from None
    return host, number


def organisational(domain: str) -> str:
    """The last two labels of ``domain`` (see the module docstring)."""
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """DMARC identifier alignment (RFC 7489 3.1): exact for ``s``, same organisational domain for ``r``."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return domain == from_domain if mode == "s" else organisational(domain) == organisational(from_domain)


def tags(record: str) -> dict[str, str]:
    """A ``k=v; k=v`` record (DKIM, DMARC) as a dict, names lowercased."""
    found = {}
    for part in record.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            found[name.strip().lower()] = value.strip()
    return found


# -- SPF -------------------------------------------------------------------------------------------

def check_spf(lookup: Lookup, domain: str) -> Check:
    """The domain's SPF record: exactly one, ending in ``-all`` or ``~all``, within the lookup limit."""
    name = f"SPF {domain}"
    try:
        records, exists = lookup.txt(domain)
    except Unreachable as exc:
        return Check(name, CheckResult.UNKNOWN, f"could not check: {exc}", "run it again where DNS works")
    spf = [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    example = f'publish a TXT record at {domain}: "v=spf1 include:<your relay\'s SPF domain> -all"'
    if not exists:
        return Check(name, CheckResult.FAIL, f"{domain} does not exist in DNS", "check the From address's domain")
    if not spf:
        return Check(name, CheckResult.FAIL, "no SPF record: receivers cannot tell your servers from others",
                     example)
    if len(spf) > 1:
        return Check(name, CheckResult.FAIL, f"{len(spf)} SPF records: receivers treat that as an error "
                     "(permerror) and ignore SPF", "merge them into one v=spf1 record")
    terms = spf[0].split()[1:]
    lookups = sum(1 for t in terms if t.lstrip("+-~?").split(":")[0].split("/")[0].lower()
                  in ("include", "a", "mx", "ptr", "exists") or t.lower().startswith("redirect="))
    if lookups > SPF_LOOKUP_LIMIT:
        return Check(name, CheckResult.FAIL, f"{lookups} terms that need DNS lookups (the limit is "
                     f"{SPF_LOOKUP_LIMIT}): receivers answer permerror", "flatten some include: terms")
    final = [t for t in terms if t.lower().lstrip("+-~?") == "all"]
    redirect = [t for t in terms if t.lower().startswith("redirect=")]
    if not final:
        if redirect:
            return Check(name, CheckResult.OK, f"{spf[0]} (delegated to {redirect[0].split('=', 1)[1]}, "
                         "not followed here)")
        return Check(name, CheckResult.WARN, f"{spf[0]}: no 'all' term, so mail from any other server is "
                     "neutral", "end the record with -all (or ~all)")
    qualifier = final[-1][0] if final[-1][0] in "+-~?" else "+"
    if qualifier == "+":
        return Check(name, CheckResult.FAIL, f"{spf[0]}: '+all' lets every server on the Internet send as "
                     f"{domain}", "end the record with -all (or ~all)")
    if qualifier == "?":
        return Check(name, CheckResult.WARN, f"{spf[0]}: '?all' says nothing about other servers",
                     "end the record with -all (or ~all)")
    return Check(name, CheckResult.OK, spf[0])


# -- DKIM ------------------------------------------------------------------------------------------

def check_dkim(lookup: Lookup, key: DkimKey) -> Check:
    """The selector's published record: present, not revoked, of the key's type, with the key's public half."""
    name = f"DKIM {key.record_name}"
    publish = f"publish a TXT record at {key.record_name}: {key.record}"
    try:
        records, _exists = lookup.txt(key.record_name)
    except Unreachable as exc:
        return Check(name, CheckResult.UNKNOWN, f"could not check: {exc}", "run it again where DNS works")
    dkim = [tags(r) for r in records if "p" in tags(r)]
    if not dkim:
        return Check(name, CheckResult.FAIL, "no DKIM record: every signature fails (no key)", publish)
    if len(dkim) > 1:
        return Check(name, CheckResult.FAIL, f"{len(dkim)} DKIM records at one selector: verifiers pick one "
                     "at random", "keep only the record of the configured key")
    record = dkim[0]
    published = "".join(record["p"].split())
    if not published:
        return Check(name, CheckResult.FAIL, "the key is revoked (empty p=)", publish)
    key_type = record.get("k", "rsa").lower()
    if key_type != key.key_type:
        return Check(name, CheckResult.FAIL, f"the record is for a {key_type} key, the configured key is "
                     f"{key.key_type}", publish)
    try:
        matches = base64.b64decode(published, validate=True) == key.public
    except (binascii.Error, ValueError):
        return Check(name, CheckResult.FAIL, "the record's p= is not base64", publish)
    if not matches:
        return Check(name, CheckResult.FAIL, "the published key is not the configured key "
                     "(dkim_key_file): every signature fails", publish)
    testing = " (t=y: testing mode, receivers may ignore failures)" if "y" in record.get("t", "").split(":") else ""
    return Check(name, CheckResult.OK, f"{key.key_type} key published, matches the configured key{testing}")


# -- DMARC -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dmarc:
    record: dict[str, str]
    where: str


def find_dmarc(lookup: Lookup, domain: str) -> tuple[Dmarc | None, int]:
    """The DMARC record for ``domain`` (its own, else its organisational domain's) and how many were found
    at that name (more than one is an error). Unreachable when the resolver does not answer."""
    for where in dict.fromkeys((domain, organisational(domain))):
        records, _exists = lookup.txt(f"_dmarc.{where}")
        dmarc = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if dmarc:
            return Dmarc(tags(dmarc[0]), f"_dmarc.{where}"), len(dmarc)
    return None, 0


def check_dmarc(lookup: Lookup, from_domain: str, dkim_domains: Sequence[str] | None,
                envelope_domain: str | None) -> list[Check]:
    """DMARC's policy, and whether mail passes it: DKIM's ``d=`` or the Return-Path domain aligned with From.

    ``dkim_domains`` None, ``envelope_domain`` None: not known here (a
    provider signs and bounces), alignment is skipped.
    """
    policy_name, alignment_name = f"DMARC policy {from_domain}", f"DMARC alignment {from_domain}"
    try:
        found, count = find_dmarc(lookup, from_domain)
    except Unreachable as exc:
        unknown = f"could not check: {exc}"
        return [Check(policy_name, CheckResult.UNKNOWN, unknown, "run it again where DNS works"),
                Check(alignment_name, CheckResult.UNKNOWN, unknown, "run it again where DNS works")]
    example = f'publish a TXT record at _dmarc.{from_domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{from_domain}"'
    checks = []
    if found is None:
        checks.append(Check(policy_name, CheckResult.FAIL, "no DMARC record: Gmail and Yahoo require one from "
                            "bulk senders", example))
        record = {}
    elif count > 1:
        checks.append(Check(policy_name, CheckResult.FAIL, f"{count} DMARC records at {found.where}: receivers "
                            "ignore them all", "keep one"))
        record = found.record
    else:
        record = found.record
        policy = record.get("p", "").lower()
        where = f" (from {found.where})" if found.where != f"_dmarc.{from_domain}" else ""
        if policy not in ("none", "quarantine", "reject"):
            checks.append(Check(policy_name, CheckResult.FAIL, f"p={policy or '(missing)'}{where}: not a "
                                "policy, receivers ignore the record", "write p=none, p=quarantine or p=reject"))
        elif policy == "none":
            checks.append(Check(policy_name, CheckResult.WARN, f"p=none{where}: reports only, nothing is "
                                "protected", "move to p=quarantine once the reports show your mail passing"))
        else:
            pct = record.get("pct", "100")
            share = f", applied to {pct}% of failing mail" if pct != "100" else ""
            checks.append(Check(policy_name, CheckResult.OK, f"p={policy}{share}{where}"))
    if dkim_domains is None or envelope_domain is None:
        checks.append(Check(alignment_name, CheckResult.SKIPPED, "the provider signs and receives the bounces: "
                            "check its domain set-up (custom DKIM and return-path domains)"))
        return checks
    adkim, aspf = record.get("adkim", "r").lower()[:1], record.get("aspf", "r").lower()[:1]
    dkim_ok = [d for d in dkim_domains if aligned(d, from_domain, adkim)]
    spf_ok = aligned(envelope_domain, from_domain, aspf)
    parts = []
    if dkim_domains:
        parts.append(f"DKIM d={dkim_domains[0]} {'aligned' if dkim_ok else 'not aligned'} (adkim={adkim})")
    else:
        parts.append("no DKIM signature")
    parts.append(f"Return-Path domain {envelope_domain} {'aligned' if spf_ok else 'not aligned'} (aspf={aspf})")
    detail = "; ".join(parts)
    if dkim_ok or spf_ok:
        result = CheckResult.OK if dkim_ok else CheckResult.WARN
        hint = "" if dkim_ok else "sign with DKIM for the From domain: SPF alone breaks when mail is forwarded"
        checks.append(Check(alignment_name, result, detail, hint))
    else:
        checks.append(Check(alignment_name, CheckResult.FAIL, f"{detail}: DMARC fails for every message",
                            f"set [smtp] dkim_domain to {from_domain} (newsletter dkim keygen), or a return_path "
                            f"at {from_domain}"))
    return checks


# -- MX of the bounce domain ----------------------------------------------------------------------

def check_mx(lookup: Lookup, domain: str) -> Check:
    """The bounce (Return-Path) domain receives mail: MX records, not a null MX (RFC 7505)."""
    name = f"MX {domain} (bounces)"
    try:
        records, exists = lookup.mx(domain)
        has_address = not records and exists and lookup.address(domain)
    except Unreachable as exc:
        return Check(name, CheckResult.UNKNOWN, f"could not check: {exc}", "run it again where DNS works")
    if not exists:
        return Check(name, CheckResult.FAIL, f"{domain} does not exist: bounces are lost and many receivers "
                     "refuse mail from it", "use a return_path at a domain that receives mail")
    if len(records) == 1 and records[0][1] in ("", "."):
        return Check(name, CheckResult.FAIL, "a null MX (RFC 7505): the domain accepts no mail, so bounces "
                     "are lost and receivers may refuse the sender", "publish the MX of your bounce mailbox")
    if not records:
        if has_address:
            return Check(name, CheckResult.WARN, "no MX record: mail goes to the domain's address record "
                         "(implicit MX)", "publish an MX record for the bounce mailbox's server")
        return Check(name, CheckResult.FAIL, "no MX and no address record: bounces cannot be delivered",
                     "publish the MX of your bounce mailbox")
    return Check(name, CheckResult.OK, ", ".join(f"{host} ({preference})" for preference, host in records))


# -- the relay's TLS -----------------------------------------------------------------------------

def check_relay_tls(host: str, port: int, tls: str, *, timeout: float = 10.0, local_hostname: str | None = None,
                    context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                    now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Check:
    """The relay offers TLS (STARTTLS, or TLS from the start for ``tls=ssl``) with a certificate valid for
    ``host`` (the system's trust store); no credentials are sent."""
    name = f"TLS {host}:{port}"
    if tls == "none":
        if _loopback(host):
            return Check(name, CheckResult.OK, "a relay on this machine, no TLS needed (tls=none)")
        return Check(name, CheckResult.FAIL, "tls=none: messages and the password cross the network in clear",
                     "use ?tls=starttls (port 587) or smtps:// (port 465) in NEWSLETTER_SMTP_URL")
    conn: smtplib.SMTP | None = None
    try:
        if tls == "ssl":
            conn = smtplib.SMTP_SSL(host, port, timeout=timeout, local_hostname=local_hostname,
                                    context=context())
            conn.ehlo()
            how = "TLS from the start"
        else:
            conn = smtplib.SMTP(host, port, timeout=timeout, local_hostname=local_hostname)
            conn.ehlo()
            if not conn.has_extn("starttls"):
                return Check(name, CheckResult.FAIL, "the relay does not offer STARTTLS",
                             "use a relay that does, or smtps:// if it speaks TLS on another port")
            conn.starttls(context=context())
            how = "STARTTLS"
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        certificate, version = sock.getpeercert(), sock.version()
    except ssl.SSLCertVerificationError as exc:
        return Check(name, CheckResult.FAIL, f"the certificate is not valid: {exc.verify_message}",
                     "the relay needs a certificate for its name from a public CA")
    except ssl.SSLError as exc:
        return Check(name, CheckResult.FAIL, f"TLS failed: {exc.reason or exc}", "check the relay's TLS set-up")
    except (OSError, smtplib.SMTPException) as exc:
        reason = str(exc) or type(exc).__name__
        return Check(name, CheckResult.UNKNOWN, f"could not check: cannot talk to the relay ({reason})",
                     "check NEWSLETTER_SMTP_URL and that the relay is reachable from here")
    finally:
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(certificate.get("notAfter"))), UTC) \
        if certificate and certificate.get("notAfter") else None
    detail = f"{how}, {version}, certificate valid for {host}"
    if expires is None:
        return Check(name, CheckResult.OK, detail)
    days = (expires - now()).days
    detail += f" until {expires:%Y-%m-%d}"
    if days < CERT_WARN_DAYS:
        return Check(name, CheckResult.WARN, f"{detail} ({days} days left)", "renew the relay's certificate")
    return Check(name, CheckResult.OK, detail)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False
