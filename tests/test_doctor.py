"""``newsletter doctor`` against a local DNS server (dnslib) and real SMTP relays (aiosmtpd, with and
without STARTTLS), with good and broken records; offline it says what it could not check.

The resolver is pointed at the test's server with NEWSLETTER_DNS_SERVER;
the relay's certificate is trusted through SSL_CERT_FILE (OpenSSL's own
variable), as a real CA's would be through the system's store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from newsletter.delivery import dkimsign
from newsletter.delivery.receiving import Lookup, check_dmarc, check_relay_tls, check_spf
from newsletter.vocabulary import CheckResult

from smtp_server import SmtpServer
from support.dns import ZoneServer, closed_udp_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    from smtp_server import make_self_signed_cert

    return make_self_signed_cert(tmp_path_factory.mktemp("tls"), days=90)


def zone_strings(record: str) -> str:
    return " ".join(f'"{part}"' for part in dkimsign.txt_strings(record))


def good_zone(key: dkimsign.DkimKey, ed_key: dkimsign.DkimKey) -> str:
    return f"""
clinic.example. 300 IN TXT "v=spf1 ip4:192.0.2.10 include:_spf.relay.example -all"
clinic.example. 300 IN TXT "google-site-verification=abc"
clinic.example. 300 IN MX 10 mail.clinic.example.
clinic.example. 300 IN MX 20 backup.clinic.example.
{key.record_name}. 300 IN TXT {zone_strings(key.record)}
{ed_key.record_name}. 300 IN TXT {zone_strings(ed_key.record)}
_dmarc.clinic.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@clinic.example"
"""


BROKEN_ZONE = """
broken.example. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"
broken.example. 300 IN TXT "v=spf1 include:relay.example ~all"
broken.example. 300 IN MX 0 .
other.example. 300 IN A 192.0.2.99
{record_name}. 300 IN TXT {record}
"""


def smtp_env(monkeypatch, workspace, *, dns: str, relay: str, sender: str = "Clinic News <news@clinic.example>"):
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", relay)
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", dns)
    monkeypatch.setenv("NEWSLETTER_FROM", sender)


def keys_in(cli, workspace, domain: str) -> tuple[dkimsign.DkimKey, dkimsign.DkimKey]:
    rsa = cli("dkim", "keygen", "--selector", "news", "--domain", domain, "--json").json()
    ed = cli("dkim", "keygen", "--type", "ed25519", "--selector", "newse", "--domain", domain, "--json").json()
    toml = workspace / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[smtp]\n", "[smtp]\n" + "\n".join(
        rsa["settings"] + [line for line in ed["settings"] if not line.startswith("dkim_domain")]) + "\n", 1))
    return (dkimsign.read_key("news", domain, rsa["path"]), dkimsign.read_key("newse", domain, ed["path"]))


def results(report) -> dict[str, str]:
    return {check["check"]: check["result"] for check in report["checks"]}


def test_a_good_set_up_passes_every_check(plain_workspace, cli, monkeypatch, certificate):
    certfile, keyfile = certificate
    key, ed_key = keys_in(cli, plain_workspace, "clinic.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(certfile))
    with ZoneServer(good_zone(key, ed_key)) as dns, \
            SmtpServer(tls="starttls", certfile=certfile, keyfile=keyfile) as relay:
        smtp_env(monkeypatch, plain_workspace, dns=dns.address, relay=f"smtp://127.0.0.1:{relay.port}?tls=starttls")
        result = cli("doctor", "--json")
        people = cli("doctor")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert results(report) == {
        "SPF clinic.example": "ok",
        "DKIM news._domainkey.clinic.example": "ok",
        "DKIM newse._domainkey.clinic.example": "ok",
        "DMARC policy clinic.example": "ok",
        "DMARC alignment clinic.example": "ok",
        "MX clinic.example (bounces)": "ok",
        f"TLS 127.0.0.1:{relay.port}": "ok",
    }
    details = {check["check"]: check["detail"] for check in report["checks"]}
    assert "STARTTLS" in details[f"TLS 127.0.0.1:{relay.port}"]
    assert details["MX clinic.example (bounces)"] == "mail.clinic.example (10), backup.clinic.example (20)"
    assert report["failed"] is False and report["counts"]["ok"] == 7
    assert people.exit_code == 0 and "DMARC policy clinic.example" in people.stdout
    assert relay.messages == []  # nothing was sent


def test_a_broken_set_up_fails_each_check_with_its_reason(plain_workspace, cli, monkeypatch, certificate):
    key, _ = keys_in(cli, plain_workspace, "broken.example")
    _, other = dkimsign.generate("rsa", "news", "broken.example")  # the published key is another one
    zone = BROKEN_ZONE.format(record_name=other.record_name, record=zone_strings(other.record))
    with ZoneServer(zone) as dns, SmtpServer() as relay:  # a relay without STARTTLS
        smtp_env(monkeypatch, plain_workspace, dns=dns.address, relay=f"smtp://127.0.0.1:{relay.port}?tls=starttls",
                 sender="News <news@broken.example>")
        result = cli("doctor", "--json")
    assert result.exit_code == 1
    report = result.json()
    checks = {check["check"]: check for check in report["checks"]}
    spf = checks["SPF broken.example"]
    assert spf["result"] == "fail" and "2 SPF records" in spf["detail"]
    dkim_news = checks["DKIM news._domainkey.broken.example"]
    assert dkim_news["result"] == "fail" and "not the configured key" in dkim_news["detail"]
    assert key.record in dkim_news["hint"]  # the record to publish instead
    dkim_ed = checks["DKIM newse._domainkey.broken.example"]
    assert dkim_ed["result"] == "fail" and "no DKIM record" in dkim_ed["detail"]
    assert checks["DMARC policy broken.example"]["result"] == "fail"
    assert "no DMARC record" in checks["DMARC policy broken.example"]["detail"]
    mx = checks["MX broken.example (bounces)"]
    assert mx["result"] == "fail" and "null MX" in mx["detail"]
    tls = checks[f"TLS 127.0.0.1:{relay.port}"]
    assert tls["result"] == "fail" and "does not offer STARTTLS" in tls["detail"]


def test_a_relay_certificate_no_ca_vouches_for_fails(certificate, monkeypatch, tmp_path):
    certfile, keyfile = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))  # the self-signed cert is not trusted
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with SmtpServer(tls="starttls", certfile=certfile, keyfile=keyfile) as relay:
        check = check_relay_tls("127.0.0.1", relay.port, "starttls", timeout=5)
    assert check.result is CheckResult.FAIL and "certificate is not valid" in check.detail


def test_a_certificate_about_to_expire_is_a_warning(certificate, monkeypatch):
    certfile, keyfile = certificate  # valid for 90 days from now
    monkeypatch.setenv("SSL_CERT_FILE", str(certfile))
    with SmtpServer(tls="ssl", certfile=certfile, keyfile=keyfile) as relay:
        soon = check_relay_tls("127.0.0.1", relay.port, "ssl", timeout=5,
                               now=lambda: datetime.now(UTC) + timedelta(days=80))
        fine = check_relay_tls("127.0.0.1", relay.port, "ssl", timeout=5)
    assert fine.result is CheckResult.OK and "TLS from the start" in fine.detail
    assert soon.result is CheckResult.WARN and "renew" in soon.hint


def test_tls_none_is_fine_on_this_machine_only():
    assert check_relay_tls("127.0.0.1", 25, "none").result is CheckResult.OK
    assert check_relay_tls("192.0.2.1", 25, "none").result is CheckResult.FAIL


def test_offline_it_says_what_it_could_not_check(plain_workspace, cli, monkeypatch):
    keys_in(cli, plain_workspace, "clinic.example")
    smtp_env(monkeypatch, plain_workspace, dns=closed_udp_port(), relay=f"smtp://{closed_udp_port()}?tls=starttls")
    started = datetime.now(UTC)
    result = cli("doctor", "--json")
    report = result.json()
    assert result.exit_code == 0  # nothing is known to be wrong
    assert set(results(report).values()) == {"unknown"}
    assert all(check["detail"].startswith("could not check") for check in report["checks"])
    assert any("did not answer" in check["detail"] for check in report["checks"])
    # One resolver timeout, not one per lookup: the remaining DNS checks are not tried.
    assert (datetime.now(UTC) - started).total_seconds() < 30


@pytest.mark.parametrize("record, result, words", [
    ("v=spf1 +all", CheckResult.FAIL, "every server"),
    ("v=spf1 all", CheckResult.FAIL, "every server"),
    ("v=spf1 ip4:192.0.2.1 ?all", CheckResult.WARN, "says nothing"),
    ("v=spf1 ip4:192.0.2.1", CheckResult.WARN, "no 'all' term"),
    ("v=spf1 ip4:192.0.2.1 ~all", CheckResult.OK, "~all"),
    ("v=spf1 redirect=_spf.relay.example", CheckResult.OK, "delegated"),
    ("v=spf1 " + " ".join(f"include:s{i}.example" for i in range(11)) + " -all", CheckResult.FAIL, "limit is 10"),
    ("v=spf10 -all", CheckResult.FAIL, "no SPF record"),
])
def test_spf_records(record, result, words):
    with ZoneServer(f'clinic.example. 300 IN TXT "{record}"') as dns:
        check = check_spf(Lookup(dns.address), "clinic.example")
    assert check.result is result and words in check.detail


@pytest.mark.parametrize("dmarc, dkim_domains, envelope, policy, alignment", [
    ("v=DMARC1; p=none", ["clinic.example"], "clinic.example", CheckResult.WARN, CheckResult.OK),
    ("v=DMARC1; p=quarantine; adkim=s", ["mail.clinic.example"], "clinic.example", CheckResult.OK,
     CheckResult.WARN),  # DKIM not aligned in strict mode; SPF (relaxed) still is
    ("v=DMARC1; p=reject; adkim=s; aspf=s", ["mail.clinic.example"], "bounce.clinic.example", CheckResult.OK,
     CheckResult.FAIL),
    ("v=DMARC1; p=reject", ["relay.example"], "relay.example", CheckResult.OK, CheckResult.FAIL),
    ("v=DMARC1; p=reject", ["mail.clinic.example"], "relay.example", CheckResult.OK, CheckResult.OK),
    ("v=DMARC1; p=bogus", ["clinic.example"], "clinic.example", CheckResult.FAIL, CheckResult.OK),
])
def test_dmarc_policy_and_alignment(dmarc, dkim_domains, envelope, policy, alignment):
    with ZoneServer(f'_dmarc.clinic.example. 300 IN TXT "{dmarc}"') as dns:
        found = check_dmarc(Lookup(dns.address), "clinic.example", dkim_domains, envelope)
    assert [c.result for c in found] == [policy, alignment], found


def test_a_subdomain_without_its_own_record_uses_the_organisational_domains():
    with ZoneServer('_dmarc.clinic.example. 300 IN TXT "v=DMARC1; p=reject"') as dns:
        policy, _ = check_dmarc(Lookup(dns.address), "news.clinic.example", ["news.clinic.example"],
                                "news.clinic.example")
    assert policy.result is CheckResult.OK and "_dmarc.clinic.example" in policy.detail


def test_a_provider_transport_skips_what_the_provider_does(plain_workspace, cli, monkeypatch):
    zone = ('clinic.example. 300 IN TXT "v=spf1 include:sendgrid.net -all"\n'
            '_dmarc.clinic.example. 300 IN TXT "v=DMARC1; p=quarantine"')
    with ZoneServer(zone) as dns:
        monkeypatch.setenv("NEWSLETTER_DNS_SERVER", dns.address)
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")
        report = cli("doctor", "--json").json()
    assert results(report) == {"SPF clinic.example": "ok", "DKIM": "skipped", "DMARC policy clinic.example": "ok",
                               "DMARC alignment clinic.example": "skipped", "MX (bounces)": "skipped",
                               "TLS (relay)": "skipped"}


@pytest.mark.parametrize("value", ["dns.example", "127.0.0.1:notaport", "127.0.0.1:70000", "[::1", "a:b:c"])
def test_a_dns_server_that_is_not_an_address_is_a_one_line_error(plain_workspace, cli, monkeypatch, value):
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", value)
    result = cli("doctor")
    assert result.exit_code == 1 and "is not an IP address" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value, expected", [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
                                             ("[::1]:5300", ("::1", 5300)), ("::1", ("::1", 53))])
def test_dns_server_forms(value, expected):
    from newsletter.delivery.receiving import split_host_port

    assert split_host_port(value, 53) == expected
