"""The SMTP transport against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import ssl

import pytest
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Outcome
from newsletter.delivery.smtp import SmtpTransport, parse_smtp_url
from newsletter.errors import ConfigError

from smtp_server import SmtpServer, free_port
from support.delivery import make_message, make_recipient, make_recipients
from support.services import need_service


@pytest.fixture
def server():
    with SmtpServer() as smtp:
        yield smtp


def plain(server, **options) -> SmtpTransport:
    return SmtpTransport("127.0.0.1", server.port, tls="none", timeout=5, **options)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    try:
        from smtp_server import make_self_signed_cert

        return make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    except ImportError:
        need_service("the cryptography package is needed to make a test certificate")


def client_context(certfile) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certfile)


def test_every_message_is_well_formed_on_the_wire(server):
    recipients = make_recipients(3)
    with plain(server) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(r.email for r in recipients)
    received = {m.rcpt_tos[0]: m for m in server.messages}
    for recipient in recipients:
        raw = received[recipient.email].data
        assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert f"List-Unsubscribe: <https://news.clinic.example/unsubscribe/token{recipient.email[6]}>".encode() in raw
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
        parsed = received[recipient.email].parsed()
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["Message-ID"] == f"<{recipient.message_id}>" and parsed["Date"]
        assert parsed["Subject"] == f"News for {recipient.name}"
        html = parsed.get_body(("html",)).get_content()
        assert f"Dear {recipient.name}," in html and f"token{recipient.email[6]}" in html
    assert len({m.parsed()["Message-ID"] for m in server.messages}) == 3


def test_connections_are_reused_across_messages_and_batches(server):
    with plain(server, connections=2) as smtp:
        for start in (0, 50, 100):
            results = smtp.send_batch(make_message(), make_recipients(50, start))
            assert all(r.outcome is Outcome.SENT for r in results)
        assert smtp.connections_open == 2
    assert len(server.messages) == 150
    assert server.connections == 2


def test_4xx_is_retryable_and_5xx_rejected_per_recipient(server):
    server.handler.rcpt_faults["reader1@example.org"] = (451, "4.7.1 greylisted, try later")
    server.handler.rcpt_faults["reader2@example.org"] = (550, "5.1.1 no such user")
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), make_recipients(4))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.FAILED, Outcome.REJECTED, Outcome.SENT]
    assert results[1].retryable and not results[2].retryable
    assert results[1].error.startswith("451") and "no such user" in results[2].error
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["reader0@example.org", "reader3@example.org"]
    assert server.connections == 1  # a refusal does not cost the connection


def test_4xx_after_data_is_retryable(server):
    server.handler.data_faults.append((452, "4.3.1 insufficient storage"))
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), make_recipients(2))
    assert results[0].outcome is Outcome.FAILED and results[0].retryable
    assert results[1].outcome is Outcome.SENT


def test_connection_cut_after_data_is_unknown_and_the_next_reconnects(server):
    server.handler.drop_after_data = 1
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), make_recipients(2))
    assert results[0].outcome is Outcome.UNKNOWN and not results[0].retryable
    assert results[1].outcome is Outcome.SENT
    assert server.connections == 2


def test_a_connection_closed_between_batches_is_replaced():
    port = free_port()
    with SmtpServer(port=port):
        smtp = SmtpTransport("127.0.0.1", port, tls="none", connections=1, timeout=5)
        smtp.open()
        assert smtp.send_batch(make_message(), make_recipients(1))[0].outcome is Outcome.SENT
    with SmtpServer(port=port) as second:  # the old connection is dead now
        result = smtp.send_batch(make_message(), make_recipients(1, 5))[0]
        smtp.close()
    assert result.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in second.messages] == [["reader5@example.org"]]


def test_a_refused_sender_stops_the_send_and_keeps_what_was_sent(server):
    with plain(server, connections=1) as smtp:
        smtp.send_batch(make_message(), make_recipients(1))
        server.handler.mail_faults.append((553, "5.7.1 sender not allowed"))
        with pytest.raises(PermanentTransportError) as info:
            smtp.send_batch(make_message(), make_recipients(3, 1))
    assert "553" in str(info.value) and "NEWSLETTER_FROM" in info.value.hint
    assert [r.outcome for r in info.value.results] == [Outcome.FAILED] * 3
    assert all(r.retryable for r in info.value.results)


def test_a_temporary_sender_refusal_is_retryable(server):
    server.handler.mail_faults.append((451, "4.3.0 try again"))
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), make_recipients(2))
    assert results[0].outcome is Outcome.FAILED and results[0].retryable
    assert results[1].outcome is Outcome.SENT


def test_no_server_is_failed_and_retryable():
    with SmtpTransport("127.0.0.1", free_port(), tls="none", connections=2, timeout=2) as smtp:
        results = smtp.send_batch(make_message(), make_recipients(4))
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)


def test_auth_and_starttls(certificate):
    certfile, keyfile = certificate
    with SmtpServer(credentials=("ann", "s3cret"), tls="starttls", certfile=certfile, keyfile=keyfile) as server:
        url = f"smtp://ann:s3cret@127.0.0.1:{server.port}?tls=starttls"
        with SmtpTransport.from_url(url, ssl_context=client_context(certfile)) as smtp:
            results = smtp.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.SENT] * 2
    assert len(server.messages) == 2


def test_implicit_tls(certificate):
    certfile, keyfile = certificate
    with SmtpServer(tls="ssl", certfile=certfile, keyfile=keyfile) as server:
        with SmtpTransport.from_url(f"smtps://127.0.0.1:{server.port}", ssl_context=client_context(certfile)) as smtp:
            assert smtp.send_batch(make_message(), make_recipients(1))[0].outcome is Outcome.SENT


def test_untrusted_certificate_stops_the_send(certificate):
    certfile, keyfile = certificate
    with SmtpServer(tls="ssl", certfile=certfile, keyfile=keyfile) as server:
        with pytest.raises(PermanentTransportError) as info:
            SmtpTransport.from_url(f"smtps://127.0.0.1:{server.port}").open()
    assert "NEWSLETTER_SMTP_URL" in info.value.hint


def test_wrong_password_stops_with_a_hint_and_no_secret(certificate):
    certfile, keyfile = certificate
    with SmtpServer(credentials=("ann", "s3cret"), tls="starttls", certfile=certfile, keyfile=keyfile) as server:
        url = f"smtp://ann:wrong-pass-123@127.0.0.1:{server.port}"
        smtp = SmtpTransport.from_url(url, ssl_context=client_context(certfile))
        with pytest.raises(PermanentTransportError) as info:
            smtp.open()
    assert "NEWSLETTER_SMTP_URL" in info.value.hint
    assert "wrong-pass-123" not in f"{info.value} {info.value.hint} {smtp!r} {smtp.config!r}"


def test_dkim_signature_verifies(server, tmp_path):
    dkim = pytest.importorskip("dkim")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + __import__("base64").b64encode(public)

    def dnsfunc(name, timeout=5):
        assert name == b"news2026._domainkey.clinic.example."
        return record

    with plain(server, dkim_selector="news2026", dkim_domain="clinic.example", dkim_key=tmp_path / "dkim.pem") as smtp:
        assert smtp.send_batch(make_message(), make_recipients(1))[0].outcome is Outcome.SENT
    raw = server.messages[0].data
    assert raw.startswith(b"DKIM-Signature:")
    assert b"list-unsubscribe" in raw.split(b"\r\n\r\n")[0].lower().split(b"h=")[1].split(b";")[0].replace(b"\r\n", b"")
    assert dkim.verify(raw, dnsfunc=dnsfunc)
    assert not dkim.verify(raw.replace(b"Dear Reader 0", b"Dear Mallory"), dnsfunc=dnsfunc)


def test_parse_smtp_url():
    config = parse_smtp_url("smtp://ann%40x:p%3Ass@mail.example.org?connections=8")
    assert (config.host, config.port, config.tls, config.username, config.password, config.connections) == (
        "mail.example.org", 587, "starttls", "ann@x", "p:ss", 8)
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    assert parse_smtp_url("smtp://127.0.0.1:2525").tls == "none"
    assert parse_smtp_url("smtp://mail.example.org:25?tls=none").tls == "none"
    assert "p:ss" not in repr(config)
    for bad in ("http://x", "smtp://", "smtp://h?tls=maybe", "smtps://h?tls=none"):
        with pytest.raises(ConfigError):
            parse_smtp_url(bad)
    with pytest.raises(ConfigError) as info:
        parse_smtp_url("smtp://ann:topsecret@h?tls=bogus")
    assert "topsecret" not in str(info.value)


# Real-world addresses and names on the wire (issue 11).

def test_idn_domains_go_out_idna_encoded(server):
    recipients = [make_recipient(1, email="ann@Bücher.example"), make_recipient(2, email="bob@例え.jp")]
    with plain(server) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    by_id = {m.parsed()["Message-ID"][1:-1]: m for m in server.messages}
    assert by_id[recipients[0].message_id].rcpt_tos == ["ann@xn--bcher-kva.example"]
    assert by_id[recipients[1].message_id].rcpt_tos == ["bob@xn--r8jz45g.jp"]
    assert by_id[recipients[0].message_id].parsed()["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
    assert all("SMTPUTF8" not in m.mail_options for m in server.messages)  # an IDN domain alone needs no SMTPUTF8


def test_a_non_ascii_local_part_goes_out_with_smtputf8(server):
    recipients = [make_recipient(1, email="renée.dupont@hotmail.com", name="Renée Dupont"), make_recipient(2)]
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    first, second = server.messages
    assert first.rcpt_tos == ["renée.dupont@hotmail.com"] and "SMTPUTF8" in first.mail_options
    assert 'To: Renée Dupont <renée.dupont@hotmail.com>\r\n'.encode() in first.data
    assert second.rcpt_tos == ["reader2@example.org"] and "SMTPUTF8" not in second.mail_options


def test_without_smtputf8_only_the_non_ascii_local_part_fails_with_the_reason():
    recipients = [make_recipient(0), make_recipient(1, email="renée.dupont@hotmail.com"),
                  make_recipient(2, email="ann@bücher.example")]
    with SmtpServer(smtputf8=False) as server, plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.SENT]
    assert "SMTPUTF8" in results[1].error and "renée" not in results[1].error
    assert [m.rcpt_tos for m in server.messages] == [["reader0@example.org"], ["ann@xn--bcher-kva.example"]]


@pytest.mark.parametrize("name", ["Eve\r\nBcc: eve@evil.example", "Eve\nBcc: eve@evil.example\n",
                                  "Eve \x00\x1bBcc: eve@evil.example"])
def test_a_name_with_line_breaks_neither_crashes_nor_injects_a_header(server, name):
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), [make_recipient(1, name=name), make_recipient(2)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    parsed = server.messages[0].parsed()
    assert parsed["Bcc"] is None and server.messages[0].rcpt_tos == ["reader1@example.org"]
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Eve Bcc: eve@evil.example", "reader1@example.org")]


def test_one_unwritable_recipient_fails_alone(server):
    recipients = [make_recipient(0), make_recipient(1, email="no-at-sign"),
                  make_recipient(2, email="zoe@" + "ü" * 70 + ".example"),
                  make_recipient(3, email='"john doe"@example.org')]
    with plain(server, connections=1) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.REJECTED, Outcome.SENT]
    assert "cannot write" in results[1].error and "IDNA" in results[2].error
    assert [m.rcpt_tos for m in server.messages] == [["reader0@example.org"], ['"john doe"@example.org']]


def test_a_line_break_merged_into_the_subject_stays_on_one_line(server):
    recipient = make_recipient(1, merge_data={"name": "Eve\r\nBcc: eve@evil.example"})
    with plain(server, connections=1) as smtp:
        (result,) = smtp.send_batch(make_message(), [recipient])
    assert result.outcome is Outcome.SENT
    parsed = server.messages[0].parsed()
    assert parsed["Subject"] == "News for Eve Bcc: eve@evil.example" and parsed["Bcc"] is None


def test_a_non_ascii_sender_without_smtputf8_stops_with_a_hint():
    message = make_message(from_email="Clinic <équipe@clinic.example>")
    with SmtpServer(smtputf8=False) as server, plain(server, connections=1) as smtp:
        with pytest.raises(PermanentTransportError) as info:
            smtp.send_batch(message, make_recipients(3))
    assert "NEWSLETTER_FROM" in info.value.hint and server.messages == []
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in info.value.results)


def test_a_non_ascii_sender_goes_out_with_smtputf8(server):
    with plain(server, connections=1) as smtp:
        (result,) = smtp.send_batch(make_message(from_email="Clinic <équipe@clínica.example>"), make_recipients(1))
    assert result.outcome is Outcome.SENT
    assert (server.messages[0].mail_from == "équipe@xn--clnica-4va.example"
            and "SMTPUTF8" in server.messages[0].mail_options)
