"""What the receiving server sees of the SMTP envelope: the EHLO name and the envelope sender (VERP).

A real aiosmtpd server on 127.0.0.1 records the name each client greeted
with and the MAIL FROM of every message.
"""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from newsletter.config import load_settings
from newsletter.delivery import message_id
from newsletter.delivery.message import Outcome
from newsletter.delivery.smtp import SmtpTransport
from newsletter.errors import ConfigError

from smtp_server import SmtpServer
from support.delivery import make_message, make_recipient

SECRET = "envelope-test-secret"
ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")


@pytest.fixture
def server():
    with SmtpServer() as smtp:
        yield smtp


def ours(index: int, campaign: int = 7) -> str:
    return message_id.id_template(SECRET, campaign, "news@clinic.example").format(index)


def recipients(count: int):
    return [make_recipient(i, message_id=ours(100 + i)) for i in range(count)]


def workspace(tmp_path, smtp: dict[str, object], port: int):
    folder = tmp_path / "letter"
    (folder / ".newsletter").mkdir(parents=True)
    (folder / ".newsletter" / "secret_key").write_text(SECRET + "\n")
    lines = [f'url = "smtp://127.0.0.1:{port}?tls=none&timeout=5"']
    lines += [f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {str(value).lower()}"
              for key, value in smtp.items()]
    (folder / "newsletter.toml").write_text(
        '[newsletter]\nfrom = "Clinic News <news@clinic.example>"\nbase_url = "https://news.clinic.example"\n'
        '[delivery]\ntransport = "smtp"\n[smtp]\n' + "\n".join(lines) + "\n")
    return folder


def test_ehlo_defaults_to_the_from_domain_not_this_machine(server, tmp_path):
    settings_ = load_settings(workspace(tmp_path, {}, server.port), environ={})
    with SmtpTransport.from_settings(settings_) as smtp:
        assert smtp.send_batch(make_message(), recipients(2))[0].outcome is Outcome.SENT
    assert set(server.handler.ehlo_names) == {"clinic.example"}
    assert {m.ehlo for m in server.messages} == {"clinic.example"}
    assert socket.gethostname() not in server.handler.ehlo_names


def test_ehlo_without_settings_learns_the_from_domain_before_any_message(server):
    with SmtpTransport("127.0.0.1", server.port, tls="none", timeout=5) as smtp:
        results = smtp.send_batch(make_message(), recipients(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert {m.ehlo for m in server.messages} == {"clinic.example"}
    assert not any(name.startswith("[") or name == socket.gethostname() for name in server.handler.ehlo_names)


def test_ehlo_name_from_the_config_file_and_the_environment(server, tmp_path):
    folder = workspace(tmp_path, {"ehlo_name": "mta.clinic.example"}, server.port)
    assert load_settings(folder, environ={}).smtp_ehlo_name == "mta.clinic.example"
    from_env = load_settings(folder, environ={"NEWSLETTER_SMTP_EHLO_NAME": "out.Bücher.example"})
    assert from_env.smtp_ehlo_name == "out.xn--bcher-kva.example"
    with SmtpTransport.from_settings(from_env) as smtp:
        assert smtp.send_batch(make_message(), recipients(1))[0].outcome is Outcome.SENT
    assert server.messages[0].ehlo == "out.xn--bcher-kva.example"


@pytest.mark.parametrize("bad", ["mta example", "[127.0.0.1]", "-mta.example", "a" * 64 + ".example", "mta\x00x"])
def test_a_bad_ehlo_name_is_refused_at_the_door(tmp_path, bad):
    folder = workspace(tmp_path, {}, 2525)
    with pytest.raises(ConfigError) as info:
        load_settings(folder, environ={"NEWSLETTER_SMTP_EHLO_NAME": bad})
    assert "NEWSLETTER_SMTP_EHLO_NAME" in str(info.value) and info.value.hint


def test_return_path_sets_the_envelope_sender_not_the_from(server, tmp_path):
    folder = workspace(tmp_path, {"return_path": "bounces@mail.clinic.example"}, server.port)
    with SmtpTransport.from_settings(load_settings(folder, environ={})) as smtp:
        smtp.send_batch(make_message(), recipients(2))
    assert [m.mail_from for m in server.messages] == ["bounces@mail.clinic.example"] * 2
    assert {m.parsed()["From"].addresses[0].addr_spec for m in server.messages} == {"news@clinic.example"}
    assert {m.ehlo for m in server.messages} == {"clinic.example"}  # the From domain still


def test_verp_gives_each_recipient_an_envelope_sender_naming_its_delivery(server, tmp_path):
    folder = workspace(tmp_path, {"return_path": "bounces@clinic.example", "verp": True}, server.port)
    sent = recipients(4)
    with SmtpTransport.from_settings(load_settings(folder, environ={})) as smtp:
        assert [r.outcome for r in smtp.send_batch(make_message(), sent)] == [Outcome.SENT] * 4
    by_rcpt = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
    for recipient in sent:
        local, _, domain = by_rcpt[recipient.email].rpartition("@")
        assert domain == "clinic.example"
        assert local.startswith("bounces+") and len(local) <= 64 and ATEXT.match(local)
        named = message_id.parse_verp_tag(local.partition("+")[2], [SECRET])
        assert named == message_id.parse(recipient.message_id, message_id.tags([SECRET]))
    assert len(set(by_rcpt.values())) == 4


def test_verp_from_the_environment_defaults_to_the_from_address(server, tmp_path):
    folder = workspace(tmp_path, {}, server.port)
    with SmtpTransport.from_settings(load_settings(folder, environ={"NEWSLETTER_SMTP_VERP": "true"})) as smtp:
        smtp.send_batch(make_message(), recipients(1))
    assert re.fullmatch(r"news\+7\.100\.[0-9a-f]{16}@clinic\.example", server.messages[0].mail_from)


def test_a_verp_tag_does_not_verify_under_another_secret_or_when_altered():
    tag = message_id.verp_tag(SECRET, ours(42))
    assert message_id.parse_verp_tag(tag, [SECRET]) == message_id.OurMessageId(7, 42)
    assert message_id.parse_verp_tag(tag, ["another-workspace"]) is None
    assert message_id.parse_verp_tag(tag.replace("7.42.", "7.43.", 1), [SECRET]) is None
    middle = len(tag) - 8
    altered = tag[:middle] + ("0" if tag[middle] != "0" else "1") + tag[middle + 1:]
    assert message_id.parse_verp_tag(altered, [SECRET]) is None
    assert message_id.parse_verp_tag(tag, ["old-key", SECRET]) == message_id.OurMessageId(7, 42)  # rotation


@settings(max_examples=200, deadline=None)
@given(campaign=st.integers(1, 2**31 - 1), delivery=st.integers(1, 2**31 - 1))
def test_every_verp_local_part_fits_rfc_5321(campaign, delivery):
    tag = message_id.verp_tag(SECRET, message_id.id_template(SECRET, campaign, "a@b.example").format(delivery))
    local = f"bounces+{tag}"
    assert len(local) <= 64 and ATEXT.match(local)
    assert message_id.parse_verp_tag(tag, [SECRET]) == message_id.OurMessageId(campaign, delivery)


@given(st.text(max_size=200))
def test_any_text_is_no_verp_tag_of_ours(text):
    assert message_id.parse_verp_tag(text, [SECRET]) is None


def test_a_return_path_too_long_for_verp_stops_the_send_with_a_hint(server, tmp_path):
    long_local = "b" * 30  # 30 + "+" + a 38-character tag > 64
    folder = workspace(tmp_path, {"return_path": f"{long_local}@clinic.example", "verp": True}, server.port)
    from newsletter.delivery.base import PermanentTransportError

    with SmtpTransport.from_settings(load_settings(folder, environ={})) as smtp:
        with pytest.raises(PermanentTransportError) as info:
            smtp.send_batch(make_message(), recipients(1))
    assert "return_path" in info.value.hint and server.messages == []


def test_a_bad_return_path_is_refused_at_the_door(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(workspace(tmp_path, {}, 2525), environ={"NEWSLETTER_SMTP_RETURN_PATH": "bounces@x\r\nBcc: y"})
    assert "NEWSLETTER_SMTP_RETURN_PATH" in str(info.value)
