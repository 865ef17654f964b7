"""Property: every transport gives every address and name the same treatment (issue 11).

Generated batches of hostile recipients (IDN domains, non-ASCII and quoted
local parts, 64-character local parts, names with accents, quotes, commas,
semicolons, control characters, very long ones, and addresses that cannot be
sent at all) go through every transport against its real counterpart: the
file outbox, the console stream, the memory outbox, aiosmtpd with and without
SMTPUTF8, the SendGrid, Postmark and Mailgun stand-ins, and moto's SES v2 server. For every batch:

- no exception escapes ``send_batch``, and every recipient gets exactly one
  result, in order: accepted, or refused with a non-empty reason;
- a sendable address is accepted, except where the path cannot carry a
  non-ASCII local part (SMTP without SMTPUTF8, SendGrid, Postmark, Mailgun, SES): then that one is
  refused with the reason, and nobody else is affected;
- the receiving side sees each accepted recipient exactly once, at the wire
  form of their address (domain IDNA-encoded), with a name free of control
  characters and no extra header; nothing for refused ones.

One server per kind serves the whole module.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import unicodedata
from collections import Counter
from email import message_from_string, policy
from pathlib import Path

import idna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.delivery.console import SEPARATOR, ConsoleTransport
from newsletter.delivery.file import FileTransport
from newsletter.delivery.memory import MemoryTransport
from newsletter.delivery.message import Outcome
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.smtp import SmtpTransport
from newsletter.providers.mailgun.transport import MailgunTransport
from newsletter.providers.postmark.transport import PostmarkTransport
from newsletter.providers.sendgrid.transport import SendGridTransport

from fake_postmark import parse_mailbox as postmark_mailbox
from support.delivery import make_message, make_recipient
from support.standins import MAILGUN_DOMAIN, STANDIN_KEY

ACCEPTED = (Outcome.SENT, Outcome.QUEUED)

# --- generated recipients ---------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
atom = st.text(alphabet=ATEXT, min_size=1, max_size=8)
ascii_local = st.lists(atom, min_size=1, max_size=3).map(".".join)
unicode_local = st.lists(st.text(alphabet="éèüßçñøåÆœžłąęğışЖж日本語ü" + ATEXT[:30], min_size=1, max_size=8),
                         min_size=1, max_size=2).map(".".join).filter(lambda s: not s.isascii())
quoted_local = st.text(alphabet="abc XYZ,;:<>()[]@.", min_size=1, max_size=12).map(lambda s: f'"{s}"')
long_local = st.sampled_from(["a" * 64, "b" * 60 + ".xyz", "é" * 20 + "x" * 44])
local_part = st.one_of(ascii_local, ascii_local, unicode_local, quoted_local, long_local)
domain = st.sampled_from([
    "example.org", "Example.COM", "mail.sub.example.net", "bücher.example", "MÜNCHEN.de", "straße.example",
    "例え.jp", "clínica.com.br", "xn--bcher-kva.example", "пример.рф",
])
# Addresses no transport can write: every one must come back refused with a reason.
unsendable = st.sampled_from([
    "no-at-sign", "@example.org", "reader@", "reader\r\n@example.org", "rea der@example.org",
    "reader@exa mple.org", "zoe@" + "ü" * 70 + ".example", "a\x00b@example.org",
])
hostile_name = st.one_of(
    st.just(""),
    st.text(max_size=40),  # any code point but surrogates: controls, separators, emoji
    st.sampled_from([
        "Renée Dupont", "Dupont, Renée", "O'Brien; Jr.", '"Zoë" <z@x>', "Eve\r\nBcc: eve@evil.example",
        "tab\there", "nul\x00byte", "\u2028line\u2029sep", "=?utf-8?q?x?=", "Ω" * 300, "a" * 2000, " ",
    ]),
)


@st.composite
def batches(draw):
    """1-6 recipients, each address unique in the batch (a list holds an address once)."""
    size = draw(st.integers(1, 6))
    people = []
    for _ in range(size):
        if draw(st.integers(0, 9)) == 0:
            address = draw(unsendable)
        else:
            address = f"{draw(local_part)}@{draw(domain)}"
        people.append((address, draw(hostile_name)))
    unique = {address.lower(): (address, name) for address, name in people}
    return list(unique.values())


def expected_wire(address: str) -> str | None:
    """The address on the wire, by an independent route (idna itself); None when unsendable."""
    local, at, dom = address.rpartition("@")
    if not at or not local or not dom or any(c in address for c in "\r\n\x00") or (" " in address and '"' not in local):
        return None
    if dom.isascii():
        return address if " " not in dom else None
    try:
        return f"{local}@{idna.encode(dom, uts46=True).decode()}"
    except idna.IDNAError:
        return None


def unquoted(local: str) -> str:
    return local[1:-1] if local.startswith('"') and local.endswith('"') else local


def canonical(address: str) -> tuple[str, str]:
    local, _, dom = address.rpartition("@")
    return unquoted(local), dom


def recipients_for(batch, run: int):
    people = []
    for index, (address, name) in enumerate(batch):
        recipient = make_recipient(index, email=address, name=name, message_id=f"p{run}.{index}@clinic.example")
        recipient.merge_data["name"] = name
        people.append(recipient)
    return people


_runs = itertools.count()

# One server per kind for the module: smtp_utf8, smtp_ascii, fake_sendgrid, fake_postmark and
# fake_mailgun, and moto_ses (tests/support/standins.py).


PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_results(recipients, results, carries_unicode_local: bool):
    """One result per recipient, in order; accepted exactly when the path can carry the address."""
    assert [r.message_id for r in results] == [r.message_id for r in recipients]
    for recipient, result in zip(recipients, results, strict=True):
        wire = expected_wire(recipient.email)
        sendable = wire is not None and (carries_unicode_local or wire.isascii())
        if sendable:
            assert result.outcome in ACCEPTED, (recipient.email, result)
        else:
            assert result.outcome is Outcome.REJECTED and result.error, (recipient.email, result)
    return {r.message_id: expected_wire(r.email)
            for r, res in zip(recipients, results, strict=True) if res.outcome in ACCEPTED}


def check_mime(mime, wire: str) -> None:
    """A received message: one To, at the wire address, a clean name, no injected header."""
    assert mime["Bcc"] is None and mime["Cc"] is None
    (to,) = mime["To"].addresses
    local, _, dom = wire.rpartition("@")
    assert (to.username, to.domain) == (unquoted(local), dom)
    assert not any(unicodedata.category(c) == "Cc" for c in to.display_name)


def check_local(texts: list[str], accepted: dict[str, str]) -> None:
    parsed = [message_from_string(text, policy=policy.default) for text in texts]
    ids = Counter(m["Message-ID"][1:-1] for m in parsed)
    assert ids == Counter(list(accepted)), "each accepted recipient written exactly once, nobody else"
    for mime in parsed:
        check_mime(mime, accepted[mime["Message-ID"][1:-1]])


@PROPERTY
@given(batch=batches())
def test_file_transport_treats_every_recipient_alike(batch):
    recipients = recipients_for(batch, next(_runs))
    with tempfile.TemporaryDirectory() as folder:
        with FileTransport(folder) as transport:
            results = transport.send_batch(make_message(), recipients)
        accepted = check_results(recipients, results, carries_unicode_local=True)
        check_local([p.read_bytes().decode("utf-8") for p in Path(folder).glob("*.eml")], accepted)


@PROPERTY
@given(batch=batches())
def test_console_transport_treats_every_recipient_alike(batch):
    recipients = recipients_for(batch, next(_runs))
    stream = io.StringIO()
    with ConsoleTransport(stream) as transport:
        results = transport.send_batch(make_message(), recipients)
    accepted = check_results(recipients, results, carries_unicode_local=True)
    check_local([t for t in stream.getvalue().split(SEPARATOR + "\n") if t.strip()], accepted)


@PROPERTY
@given(batch=batches())
def test_memory_transport_treats_every_recipient_alike(batch):
    recipients = recipients_for(batch, next(_runs))
    transport = MemoryTransport()
    results = transport.send_batch(make_message(), recipients)
    accepted = check_results(recipients, results, carries_unicode_local=True)
    check_local([m.as_string(policy=m.policy) for m in transport.outbox], accepted)


def _check_smtp(server, recipients, results, carries_unicode_local):
    accepted = check_results(recipients, results, carries_unicode_local)
    received = list(server.messages)
    server.messages.clear()
    by_id = Counter(m.parsed()["Message-ID"][1:-1] for m in received)
    assert by_id == Counter(list(accepted)), "each accepted recipient delivered exactly once, nobody else"
    for message in received:
        wire = accepted[message.parsed()["Message-ID"][1:-1]]
        # Equal as addresses (the server drops quotes a local part does not need).
        assert [canonical(a) for a in message.rcpt_tos] == [canonical(wire)]
        assert ("SMTPUTF8" in message.mail_options) == (not wire.isascii())
        check_mime(message_from_string(message.data.decode("utf-8"), policy=policy.default), wire)


@PROPERTY
@given(batch=batches())
def test_smtp_with_smtputf8_treats_every_recipient_alike(smtp_utf8, batch):
    recipients = recipients_for(batch, next(_runs))
    smtp_utf8.messages.clear()
    with SmtpTransport("127.0.0.1", smtp_utf8.port, tls="none", timeout=10, connections=2) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    _check_smtp(smtp_utf8, recipients, results, carries_unicode_local=True)


@PROPERTY
@given(batch=batches())
def test_smtp_without_smtputf8_treats_every_recipient_alike(smtp_ascii, batch):
    recipients = recipients_for(batch, next(_runs))
    smtp_ascii.messages.clear()
    with SmtpTransport("127.0.0.1", smtp_ascii.port, tls="none", timeout=10, connections=2) as smtp:
        results = smtp.send_batch(make_message(), recipients)
    _check_smtp(smtp_ascii, recipients, results, carries_unicode_local=False)
    for recipient, result in zip(recipients, results, strict=True):
        wire = expected_wire(recipient.email)
        if wire is not None and not wire.isascii():
            assert "SMTPUTF8" in result.error


@PROPERTY
@given(batch=batches())
def test_sendgrid_treats_every_recipient_alike(fake_sendgrid, batch):
    recipients = recipients_for(batch, next(_runs))
    fake_sendgrid.reset()
    policy_ = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)
    with SendGridTransport(STANDIN_KEY, host=fake_sendgrid.url, timeout=10, retry=policy_) as sg:
        results = sg.send_batch(make_message(), recipients)
    accepted = check_results(recipients, results, carries_unicode_local=False)
    assert fake_sendgrid.dropped == []
    entries = [(p["custom_args"]["message_id"], p["to"][0])
               for body in fake_sendgrid.bodies for p in body["personalizations"]]
    assert Counter(m for m, _ in entries) == Counter(list(accepted)), "each accepted recipient sent exactly once"
    assert Counter(fake_sendgrid.delivered) == Counter(accepted.values())
    for message_id, to in entries:
        assert to["email"] == accepted[message_id]
        name = to.get("name", "")
        assert not any(unicodedata.category(c) == "Cc" for c in name) and "," not in name and ";" not in name
    assert fake_sendgrid.requests <= 1 + sum(1 for r in results if r.outcome is Outcome.REJECTED) * 2 * 3 + 2


@PROPERTY
@given(batch=batches())
def test_postmark_treats_every_recipient_alike(fake_postmark, batch):
    recipients = recipients_for(batch, next(_runs))
    fake_postmark.reset()
    policy_ = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)
    with PostmarkTransport(STANDIN_KEY, host=fake_postmark.url, timeout=10, retry=policy_) as pm:
        results = pm.send_batch(make_message(), recipients)
    accepted = check_results(recipients, results, carries_unicode_local=False)
    sent = [(m["Metadata"]["message_id"], postmark_mailbox(m["To"])) for m in fake_postmark.messages]
    assert Counter(m for m, _ in sent) == Counter(list(accepted)), "each accepted recipient sent exactly once"
    for message_id, (name, address) in sent:
        assert canonical(address) == canonical(accepted[message_id])
        assert not any(unicodedata.category(c) == "Cc" for c in name) and "," not in name and ";" not in name
    assert fake_postmark.requests <= 1


@PROPERTY
@given(batch=batches())
def test_mailgun_treats_every_recipient_alike(fake_mailgun, batch):
    from email.policy import default

    recipients = recipients_for(batch, next(_runs))
    fake_mailgun.reset()
    policy_ = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)
    with MailgunTransport(STANDIN_KEY, MAILGUN_DOMAIN, host=fake_mailgun.url, timeout=10, retry=policy_) as mg:
        results = mg.send_batch(make_message(), recipients)
    accepted = check_results(recipients, results, carries_unicode_local=False)
    received = {m["variables"]["message_id"]: m for m in fake_mailgun.messages}
    assert len(received) == len(fake_mailgun.messages), "each accepted recipient sent exactly once"
    assert set(received) == set(accepted) and Counter(fake_mailgun.delivered) == Counter(accepted.values())
    for message_id, message in received.items():
        assert message["to"] == accepted[message_id] and message["headers"]["Message-Id"] == f"<{message_id}>"
        assert "%recipient" not in message["subject"] + message["html"] + message["text"]
        (to,) = default.header_factory("To", f"{message['name']} <x@example.org>").addresses
        assert not any(unicodedata.category(c) == "Cc" for c in to.display_name)
    assert fake_mailgun.requests <= 1 + sum(1 for r in results if r.outcome is Outcome.REJECTED) * 2 * 3 + 2


@PROPERTY
@given(batch=batches())
def test_ses_treats_every_recipient_alike(moto_ses, batch):
    from newsletter.providers.ses.transport import SesTransport

    from support.ses import ACCESS_KEY, REGION, SECRET_KEY, raw_of, reset_moto, sent_messages, verify_identity

    moto_url, proxy = moto_ses
    reset_moto(moto_url)
    verify_identity(moto_url, "clinic.example")
    recipients = recipients_for(batch, next(_runs))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        with SesTransport(region=REGION, endpoint_url=proxy.url, concurrency=3,
                          retry=RetryPolicy(max_attempts=2, sleep=lambda seconds: None)) as ses:
            results = ses.send_batch(make_message(), recipients)
    # SES takes no SMTPUTF8; moto's address check splits on "@", so it refuses a quoted
    # local part holding one ('"@"@example.org', InvalidParameterValue): refused with a reason, alone.
    moto_refuses = [i for i, r in enumerate(recipients)
                    if (expected_wire(r.email) or "").rpartition("@")[0].count("@")]
    for index in moto_refuses:
        assert results[index].outcome is Outcome.REJECTED and results[index].error
    kept = [i for i in range(len(recipients)) if i not in moto_refuses]
    accepted = check_results([recipients[i] for i in kept], [results[i] for i in kept], carries_unicode_local=False)
    sent = [message_from_string(raw_of(m).decode("utf-8"), policy=policy.default) for m in sent_messages(moto_url)]
    ids = Counter(str(m["X-Newsletter-Message-ID"]) for m in sent)
    assert ids == Counter(list(accepted)), "each accepted recipient sent exactly once, nobody else"
    for mime in sent:
        check_mime(mime, accepted[str(mime["X-Newsletter-Message-ID"])])
