"""File, console and memory transports, the factory, the MIME fast path and the retry policy."""

from __future__ import annotations

import io
import random
from email import message_from_bytes, message_from_string, policy
from pathlib import Path

import pytest
from newsletter.config import Settings
from newsletter.delivery import get_transport
from newsletter.delivery.console import SEPARATOR as ConsoleSeparator
from newsletter.delivery.console import ConsoleTransport
from newsletter.delivery.file import FileTransport
from newsletter.delivery.memory import MemoryTransport
from newsletter.delivery.message import Outcome
from newsletter.delivery.mime import MimeRenderer, as_file_bytes, as_smtp_bytes, build_mime
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.smtp import SmtpTransport
from newsletter.errors import ConfigError
from newsletter.providers.sendgrid.transport import SendGridTransport

from support.delivery import make_message, make_recipient, make_recipients


def settings(tmp_path, **changes) -> Settings:
    values = dict(
        workspace=tmp_path, config_file=tmp_path / "newsletter.toml", name="Clinic News",
        sender_name="Clinic News", sender_address="news@clinic.example", postal_address="1 Main St",
        base_url="https://news.clinic.example", theme="default", language="en", transport="file",
        database_url="sqlite://", secret_keys=("k",),
    )
    values.update(changes)
    return Settings(**values)


def test_file_transport_writes_one_eml_per_recipient_atomically(tmp_path):
    outbox = tmp_path / "outbox"
    recipients = make_recipients(3)
    with FileTransport(outbox) as transport:
        results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == sorted(f"{r.message_id}.eml" for r in recipients)
    assert results[0].provider_id == str(outbox / f"{recipients[0].message_id}.eml")
    data = files[0].read_bytes()
    assert b"\r\n" not in data and b"List-Unsubscribe: <https://" in data
    assert message_from_bytes(data, policy=policy.default).get_content_type() == "multipart/alternative"
    assert not list(outbox.glob(".tmp-*"))


def test_file_transport_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    outbox = tmp_path / "outbox"
    transport = FileTransport(outbox)
    transport.open()

    def broken_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("newsletter.delivery.file.os.replace", broken_replace)
    (result,) = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.FAILED and result.retryable
    assert list(outbox.iterdir()) == []


def test_console_transport_prints_each_message(capsys):
    stream = io.StringIO()
    with ConsoleTransport(stream) as transport:
        results = transport.send_batch(make_message(), make_recipients(2))
    text = stream.getvalue()
    assert [r.outcome for r in results] == [Outcome.SENT] * 2
    assert text.count("Message-ID: <c7.s") == 2 and "To: Reader 1 <reader1@example.org>" in text
    assert capsys.readouterr().out == ""


def test_memory_transport_keeps_an_outbox_and_scripted_outcomes():
    MemoryTransport.clear_shared()
    transport = MemoryTransport(reject={"reader1@example.org"}, fail={"READER2@example.org"})
    results = transport.send_batch(make_message(), make_recipients(4))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.REJECTED, Outcome.FAILED, Outcome.SENT]
    assert results[2].retryable
    assert [m["To"].addresses[0].addr_spec for m in transport.outbox] == ["reader0@example.org", "reader3@example.org"]
    assert MemoryTransport.shared_outbox == transport.outbox
    assert transport.outbox[0]["Subject"] == "News for Reader 0"
    MemoryTransport.clear_shared()


def test_get_transport_builds_each_kind_from_settings(tmp_path):
    assert isinstance(get_transport(settings(tmp_path)), FileTransport)
    assert get_transport(settings(tmp_path)).folder == tmp_path / "outbox"
    assert isinstance(get_transport(settings(tmp_path), "console"), ConsoleTransport)
    assert isinstance(get_transport(settings(tmp_path), "memory"), MemoryTransport)
    sg = get_transport(settings(tmp_path, sendgrid_api_key="SG.x.y", sendgrid_host="http://127.0.0.1:9",
                                sendgrid_sandbox=True), "sendgrid")
    assert isinstance(sg, SendGridTransport) and sg.host == "http://127.0.0.1:9" and sg.sandbox
    smtp = get_transport(settings(tmp_path, transport="smtp", smtp_url="smtp://u:p@mail.example.org:2525?tls=ssl"))
    assert isinstance(smtp, SmtpTransport) and (smtp.config.port, smtp.config.tls) == (2525, "ssl")


@pytest.mark.parametrize(
    "name, changes, named",
    [("pigeon", {}, "NEWSLETTER_TRANSPORT"), ("sendgrid", {}, "SENDGRID_API_KEY"), ("smtp", {}, "NEWSLETTER_SMTP_URL")],
)
def test_get_transport_explains_what_is_missing(tmp_path, name, changes, named):
    with pytest.raises(ConfigError) as info:
        get_transport(settings(tmp_path, **changes), name)
    assert named in f"{info.value} {info.value.hint}"
    assert "\n" not in str(info.value)


def test_batch_size_is_enforced():
    with pytest.raises(ValueError):
        MemoryTransport().send_batch(make_message(), make_recipients(1001))


@pytest.mark.parametrize("linesep, to_bytes", [("\r\n", as_smtp_bytes), ("\n", as_file_bytes)])
def test_renderer_matches_build_mime(linesep, to_bytes):
    message = make_message(subject="Café news for %%name:raw%%", headers={"X-Campaign": "7"},
                           reply_to="Desk <desk@clinic.example>")
    recipient = make_recipient(
        1, name="Zoë Smith, Jr.",
        merge_data={"name": "Zoë <Smith> & ☃", "unsubscribe_url": "https://news.clinic.example/u/" + "t" * 200},
    )
    recipient.headers["List-Unsubscribe"] = "<https://news.clinic.example/unsubscribe/" + "t" * 300 + ">"
    fast = MimeRenderer(message, linesep=linesep).render(recipient)
    slow = to_bytes(build_mime(message, recipient))
    a, b = (message_from_bytes(x, policy=policy.default) for x in (slow, fast))
    for name in ("Subject", "From", "To", "Reply-To", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
                 "X-Campaign"):
        assert str(a[name]) == str(b[name]), name
    assert a["To"].addresses == b["To"].addresses and len(b["To"].addresses) == 1
    assert [p.get_content() for p in a.iter_parts()] == [p.get_content() for p in b.iter_parts()]
    assert [p["Content-Type"] for p in a.iter_parts()] == [p["Content-Type"] for p in b.iter_parts()]
    assert b"List-Unsubscribe: <https://news.clinic.example/unsubscribe/" + b"t" * 300 + b">" in fast
    lines = fast.split(linesep.encode())
    assert max(len(line) for line in lines) <= 998
    if linesep == "\n":
        assert b"\r" not in fast


def test_renderer_refuses_header_injection():
    recipient = make_recipient(1, headers={"List-Unsubscribe": "<https://x.example/u>\r\nBcc: evil@x.example"})
    with pytest.raises(ValueError):
        MimeRenderer(make_message()).render(recipient)


def test_retry_policy_backoff_and_rate_limit():
    policy_ = RetryPolicy(base_delay=1, max_delay=8, jitter=1, rng=random.Random(1), clock=lambda: 1000.0)
    delays = [policy_.backoff(n) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(8, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert 30 <= policy_.rate_limit_wait("1030", 1) <= 31
    assert 0 <= policy_.rate_limit_wait("900", 1) <= 1  # a reset in the past: no wait beyond jitter
    assert policy_.rate_limit_wait("100000", 1) <= policy_.max_rate_limit_wait + 1
    assert 0.5 <= policy_.rate_limit_wait(None, 1) <= 1
    assert policy_.can_retry(3) and not RetryPolicy(max_attempts=3).can_retry(3)


def test_package_data_is_in_tests():
    here = Path(__file__).parent / "data" / "sendgrid"
    assert (here / "tsg_mail_v3.json").is_file() and "MIT" in (here / "LICENSE").read_text()


# Real-world addresses and names: every local transport writes them, one bad
# recipient fails alone (issue 11).

def _send_locally(kind, tmp_path, recipients, message=None):
    """Send through the file, console or memory transport; ``(results, parsed messages by Message-ID)``.

    Messages are parsed from their text (``message_from_string``): the email
    package reads raw UTF-8 headers (RFC 6532) back as written that way.
    """
    message = message or make_message()
    if kind == "file":
        with FileTransport(tmp_path / "outbox") as transport:
            results = transport.send_batch(message, recipients)
        texts = [p.read_bytes().decode("utf-8") for p in (tmp_path / "outbox").glob("*.eml")]
    elif kind == "console":
        stream = io.StringIO()
        with ConsoleTransport(stream) as transport:
            results = transport.send_batch(message, recipients)
        texts = [t for t in stream.getvalue().split(ConsoleSeparator + "\n") if t.strip()]
    else:
        transport = MemoryTransport()
        results = transport.send_batch(message, recipients)
        texts = [m.as_string(policy=m.policy) for m in transport.outbox]
    parsed = [message_from_string(text, policy=policy.default) for text in texts]
    by_id = {}
    for mime in parsed:
        assert mime["Message-ID"][1:-1] not in by_id, "a message written twice"
        by_id[mime["Message-ID"][1:-1]] = mime
    return results, by_id


LOCAL = ["file", "console", "memory"]


@pytest.mark.parametrize("kind", LOCAL)
def test_idn_domains_go_out_idna_encoded(kind, tmp_path):
    from email.utils import formataddr

    # As Settings.sender writes it: the name an RFC 2047 word (formataddr itself refuses a Unicode domain).
    message = make_message(from_email=formataddr(("Clínica Saúde", "news@x")).replace("news@x", "news@clínica.example"))
    recipient = make_recipient(1, email="ann@Bücher.example", name="Ann Bücher")
    results, sent = _send_locally(kind, tmp_path, [recipient], message)
    assert results[0].outcome is Outcome.SENT
    (mime,) = sent.values()
    (to,) = mime["To"].addresses
    assert (to.addr_spec, to.display_name) == ("ann@xn--bcher-kva.example", "Ann Bücher")
    assert mime["From"].addresses[0].addr_spec == "news@xn--clnica-4va.example"
    assert mime["From"].addresses[0].display_name == "Clínica Saúde"


@pytest.mark.parametrize("kind", LOCAL)
def test_a_non_ascii_local_part_is_written_readably(kind, tmp_path):
    recipients = [make_recipient(1, email="renée.dupont@hotmail.com", name="Renée Dupont"), make_recipient(2)]
    results, sent = _send_locally(kind, tmp_path, recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    to = sent[recipients[0].message_id]["To"].addresses[0]
    assert (to.addr_spec, to.display_name) == ("renée.dupont@hotmail.com", "Renée Dupont")
    assert sent[recipients[0].message_id]["Subject"] == "News for Reader 1"
    # The plain ASCII neighbour stays a classic message (RFC 2047, no raw UTF-8 headers).
    assert sent[recipients[1].message_id]["To"].addresses[0].addr_spec == "reader2@example.org"


def test_a_non_ascii_local_part_reads_back_from_the_eml_bytes(tmp_path):
    recipient = make_recipient(1, email="renée.dupont@hotmail.com", name="Zoë, Renée")
    with FileTransport(tmp_path) as transport:
        (result,) = transport.send_batch(make_message(), [recipient])
    data = Path(result.provider_id).read_bytes()
    assert 'To: "Zoë, Renée" <renée.dupont@hotmail.com>\n'.encode() in data
    assert str(message_from_bytes(data, policy=policy.default)["To"]) == '"Zoë, Renée" <renée.dupont@hotmail.com>'


@pytest.mark.parametrize("kind", LOCAL)
@pytest.mark.parametrize("name", ["Eve\r\nBcc: eve@evil.example", "Eve\nBcc: eve@evil.example",
                                  "Eve\x00\u2028Bcc: eve@evil.example"])
def test_a_name_with_line_breaks_neither_crashes_nor_injects_a_header(kind, tmp_path, name):
    recipients = [make_recipient(1, name=name), make_recipient(2)]
    results, sent = _send_locally(kind, tmp_path, recipients)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    mime = sent[recipients[0].message_id]
    assert mime["Bcc"] is None
    (to,) = mime["To"].addresses
    assert (to.addr_spec, to.display_name) == ("reader1@example.org", "Eve Bcc: eve@evil.example")


@pytest.mark.parametrize("kind", LOCAL)
def test_one_unwritable_recipient_fails_alone(kind, tmp_path):
    bad = [make_recipient(1, email="reader1\r\n@example.org"), make_recipient(2, email="no-at-sign"),
           make_recipient(3, email="zoe@" + "ü" * 70 + ".example")]
    recipients = [make_recipient(0), *bad, make_recipient(4)]
    results, sent = _send_locally(kind, tmp_path, recipients)
    assert [r.outcome for r in results] == [
        Outcome.SENT, Outcome.REJECTED, Outcome.REJECTED, Outcome.REJECTED, Outcome.SENT]
    assert all(r.error and "cannot write" in r.error for r in results[1:4])
    assert sorted(sent) == sorted([recipients[0].message_id, recipients[4].message_id])
    for recipient, result in zip(bad, results[1:4], strict=True):  # the reason never quotes the address
        assert recipient.email.split("@")[0] not in result.error and "ü" not in result.error


@pytest.mark.parametrize("kind", LOCAL)
def test_a_line_break_merged_into_the_subject_stays_on_one_line(kind, tmp_path):
    recipient = make_recipient(1, merge_data={"name": "Eve\r\nBcc: eve@evil.example"})
    results, sent = _send_locally(kind, tmp_path, [recipient])
    assert results[0].outcome is Outcome.SENT
    mime = sent[recipient.message_id]
    assert mime["Subject"] == "News for Eve Bcc: eve@evil.example" and mime["Bcc"] is None
