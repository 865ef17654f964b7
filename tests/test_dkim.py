"""DKIM: relaxed/relaxed signatures, oversigned headers, RSA and Ed25519 keys, and ``newsletter dkim keygen``.

Real parts: the SMTP transport sending to a real aiosmtpd server, the
signatures checked by dkimpy and by OpenDKIM (Debian's opendkim, its test
mode reading the test's public keys from a file: tests/support/opendkim.py),
and the CLI in-process.
"""

from __future__ import annotations

import base64
import stat

import dkim
import pytest
from newsletter.config import load_settings
from newsletter.delivery import dkimsign
from newsletter.delivery.message import Outcome
from newsletter.delivery.smtp import SmtpTransport
from newsletter.errors import ConfigError

from smtp_server import SmtpServer
from support.delivery import make_message, make_recipients
from support.opendkim import opendkim_verify, verify_with_testmsg

DOMAIN = "clinic.example"


@pytest.fixture
def server():
    with SmtpServer() as smtp:
        yield smtp


def new_key(kind: str, selector: str | None = None) -> tuple[bytes, dkimsign.DkimKey]:
    return dkimsign.generate(kind, selector or f"news-{kind}", DOMAIN)


def send_signed(server, tmp_path, main: dkimsign.DkimKey, main_pem: bytes,
                extra: tuple[dkimsign.DkimKey, ...] = ()) -> bytes:
    (tmp_path / "main.pem").write_bytes(main_pem)
    smtp = SmtpTransport("127.0.0.1", server.port, tls="none", timeout=5, dkim_selector=main.selector,
                         dkim_domain=DOMAIN, dkim_key=tmp_path / "main.pem", dkim_extra=extra)
    with smtp:
        assert smtp.send_batch(make_message(), make_recipients(1))[0].outcome is Outcome.SENT
    return server.messages[-1].data


def dns_of(*keys: dkimsign.DkimKey):
    records = {f"{k.record_name}.".encode(): k.record.encode() for k in keys}

    def dnsfunc(name, timeout=5):
        return records.get(name)

    return dnsfunc


def signatures(raw: bytes) -> list[dict[bytes, bytes]]:
    head = raw.split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    found = []
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"dkim-signature:"):
            tags = dict(part.strip().split(b"=", 1) for part in line.split(b":", 1)[1].split(b";") if b"=" in part)
            found.append({name.strip(): value.strip() for name, value in tags.items()})
    return found


def verified_by_dkimpy(raw: bytes, keys, index: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=dns_of(*keys)))
    except dkim.ValidationError:  # a body hash mismatch is raised rather than answered False
        return False


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_signed_message_verifies_with_dkimpy_and_opendkim(server, tmp_path, kind):
    pem, key = new_key(kind)
    raw = send_signed(server, tmp_path, key, pem)
    signature, = signatures(raw)
    assert signature[b"a"] == {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}[kind]
    assert signature[b"c"] == b"relaxed/relaxed"
    assert (signature[b"d"], signature[b"s"]) == (DOMAIN.encode(), key.selector.encode())
    assert verified_by_dkimpy(raw, [key])
    verdict = opendkim_verify(raw, {key.record_name: key.record}, tmp_path / "opendkim")
    assert verdict.passed, verdict.output


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_opendkim_testmsg_verifies_a_signed_message_and_refuses_a_changed_one(server, tmp_path, kind):
    """OpenDKIM's opendkim-testmsg (libopendkim 2.11 verifies Ed25519 too), DNS answered by the test."""
    pem, key = new_key(kind)
    raw = send_signed(server, tmp_path, key, pem)
    records = {key.record_name: key.record}
    verdict = verify_with_testmsg(raw, records, tmp_path / "testmsg")
    assert verdict.passed, verdict.output
    changed = verify_with_testmsg(raw.replace(b"Dear Reader 0", b"Dear Mallory"), records, tmp_path / "changed")
    assert not changed.passed and "Bad signature" in changed.output
    head, body = raw.split(b"\r\n\r\n", 1)
    # A second List-Unsubscribe (not a singleton field, so no syntax error: the oversigned h= breaks it).
    added = verify_with_testmsg(head + b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n" + body,
                                records, tmp_path / "added")
    assert not added.passed and "Bad signature" in added.output, added.output


def test_from_subject_and_list_unsubscribe_are_oversigned(server, tmp_path):
    pem, key = new_key("rsa")
    signature, = signatures(send_signed(server, tmp_path, key, pem))
    listed = [name.strip().lower() for name in signature[b"h"].split(b":")]
    for name in (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"):
        assert listed.count(name) == 2, listed
    assert listed.count(b"to") == 1


@pytest.mark.parametrize("added", [
    b"From: Mallory <boss@clinic.example>\r\n",
    b"Subject: Your account is locked\r\n",
    b"List-Unsubscribe: <https://evil.example/unsubscribe>\r\n",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
])
def test_a_copy_of_an_oversigned_header_added_later_breaks_the_signature(server, tmp_path, added):
    pem, key = new_key("rsa")
    raw = send_signed(server, tmp_path, key, pem)
    assert verified_by_dkimpy(raw, [key])
    head, body = raw.split(b"\r\n\r\n", 1)
    tampered = head + b"\r\n" + added.rstrip(b"\r\n") + b"\r\n\r\n" + body
    assert not verified_by_dkimpy(tampered, [key])
    verdict = opendkim_verify(tampered, {key.record_name: key.record}, tmp_path / "opendkim")
    assert not verdict.passed, verdict.output


def test_relaxed_body_survives_a_relay_that_adds_trailing_spaces(server, tmp_path):
    pem, key = new_key("rsa")
    raw = send_signed(server, tmp_path, key, pem)
    head, body = raw.split(b"\r\n\r\n", 1)
    rewrapped = head + b"\r\n\r\n" + body.replace(b"\r\n", b"  \r\n")
    assert verified_by_dkimpy(rewrapped, [key])
    assert opendkim_verify(rewrapped, {key.record_name: key.record}, tmp_path / "opendkim").passed
    assert not verified_by_dkimpy(head + b"\r\n\r\n" + body.replace(b"Dear Reader 0", b"Dear Mallory"), [key])


def test_an_ed25519_signature_beside_the_rsa_one_both_verify(server, tmp_path):
    rsa_pem, rsa_key = new_key("rsa")
    _, ed_key = new_key("ed25519")
    raw = send_signed(server, tmp_path, rsa_key, rsa_pem, extra=(ed_key,))
    found = signatures(raw)
    assert [s[b"a"] for s in found] == [b"rsa-sha256", b"ed25519-sha256"]
    assert verified_by_dkimpy(raw, [rsa_key, ed_key], 0) and verified_by_dkimpy(raw, [rsa_key, ed_key], 1)
    verdict = opendkim_verify(raw, {rsa_key.record_name: rsa_key.record, ed_key.record_name: ed_key.record},
                              tmp_path / "opendkim")
    assert verdict.passed and verdict.output.count("dkim=pass") == 2, verdict.output


def test_dkimpys_own_ed25519_key_format_signs_the_same(tmp_path):
    _, key = new_key("ed25519")
    again = dkimsign.load_key(key.selector, DOMAIN, key.private)  # base64 seed, as dknewkey writes it
    assert again.public == key.public and again.key_type == "ed25519"


@pytest.mark.parametrize("material, message", [
    (b"not a key at all", "neither a PEM private key"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "cannot be read as a private key"),
])
def test_a_file_that_is_not_a_key_is_a_one_line_config_error(material, message):
    with pytest.raises(ConfigError, match=message) as info:
        dkimsign.load_key("news", DOMAIN, material)
    assert "newsletter dkim keygen" in info.value.hint


def test_an_ec_key_is_refused_by_name():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ConfigError, match="RSA or Ed25519"):
        dkimsign.load_key("news", DOMAIN, pem)


@pytest.mark.parametrize("selector, domain", [("bad selector", DOMAIN), ("news", "no_dots"), ("", DOMAIN),
                                              ("news", "a..b"), ("news", "-x.example")])
def test_selectors_and_domains_that_are_not_dns_names_are_refused(selector, domain):
    with pytest.raises(ConfigError, match="is not a DNS name"):
        dkimsign.generate("ed25519", selector, domain)


# -- newsletter dkim keygen ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_keygen_writes_a_private_key_only_its_owner_reads_and_prints_its_record(plain_workspace, cli, kind):
    result = cli("dkim", "keygen", "--type", kind, "--selector", "s2026", "--json")
    assert result.exit_code == 0, result.stderr
    made = result.json()
    path = plain_workspace / ".newsletter" / "dkim-s2026.pem"
    assert made["path"] == str(path.resolve()) and made["domain"] == DOMAIN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".dkim-s2026")]  # no temporary left
    key = dkimsign.read_key("s2026", DOMAIN, path)
    assert made["record_name"] == f"s2026._domainkey.{DOMAIN}"
    assert made["record"] == f"v=DKIM1; k={kind}; p={base64.b64encode(key.public).decode()}"
    assert "".join(made["txt_strings"]) == made["record"] and all(len(s) <= 255 for s in made["txt_strings"])
    people = cli("dkim", "keygen", "--type", kind, "--selector", "t2026")
    assert people.exit_code == 0 and f"t2026._domainkey.{DOMAIN}" in people.stdout
    assert "BEGIN" not in people.stdout + made["zone_line"]  # never the private key


def test_keygen_never_replaces_an_existing_key(plain_workspace, cli):
    assert cli("dkim", "keygen", "--selector", "s1").exit_code == 0
    path = plain_workspace / ".newsletter" / "dkim-s1.pem"
    before = path.read_bytes()
    again = cli("dkim", "keygen", "--selector", "s1")
    assert again.exit_code == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert path.read_bytes() == before


def test_a_key_from_keygen_signs_through_the_settings_and_verifies(plain_workspace, cli, server, tmp_path):
    made = cli("dkim", "keygen", "--selector", "main", "--json").json()
    extra = cli("dkim", "keygen", "--type", "ed25519", "--selector", "edkey", "--json").json()
    toml = plain_workspace / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[smtp]\n", "[smtp]\n" + "\n".join(made["settings"] + [
        line for line in extra["settings"] if not line.startswith("dkim_domain")]) + "\n", 1))
    settings = load_settings(plain_workspace)
    smtp = SmtpTransport.from_settings(settings, url=f"smtp://127.0.0.1:{server.port}?tls=none")
    with smtp:
        assert smtp.send_batch(make_message(), make_recipients(1))[0].outcome is Outcome.SENT
    raw = server.messages[-1].data
    records = {made["record_name"]: made["record"], extra["record_name"]: extra["record"]}
    assert opendkim_verify(raw, records, tmp_path / "opendkim").passed
    assert [s[b"s"] for s in signatures(raw)] == [b"main", b"edkey"]


def test_keygen_outside_a_workspace_needs_domain_and_out(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("dkim", "keygen")
    assert result.exit_code == 1 and "--domain and --out" in result.stderr
    done = cli("dkim", "keygen", "--domain", "example.org", "--out", str(tmp_path / "k.pem"), "--json")
    assert done.exit_code == 0 and done.json()["domain"] == "example.org"
