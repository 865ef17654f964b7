"""The SMTP bounce loop: DSN samples parsed, mailboxes read, the event pipeline's rules applied.

Real DSN samples (tests/data/dsn/: RFC 3464, Postfix, Exim, Gmail, Microsoft
365, hostile variants) in real Maildir folders and mbox files, read by
``newsletter bounces read`` against both databases; a real send through
aiosmtpd with VERP, whose envelope sender a bounce then names.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.config import load_settings
from newsletter.delivery import message_id
from newsletter.delivery.bounces import MAX_MESSAGE_BYTES, parse_bounce
from newsletter.delivery.mailboxes import open_mailbox
from newsletter.delivery.message import Outcome
from newsletter.delivery.smtp import SmtpTransport
from newsletter.store.db import open_store
from newsletter.tracking import EventKind

from smtp_server import SmtpServer
from support.bounces import SAMPLES, maildir_files, sample, write_maildir, write_mbox
from support.delivery import make_message, make_recipient
from support.events import seed_campaign, state

KEY = "bounce-test-secret"
OURS = message_id.id_template(KEY, 3, "news@clinic.example").format(9)
VERP = f"bounces+{message_id.verp_tag(KEY, OURS)}@clinic.example"

# sample -> (a DSN?, the kind of its one event, hard?)
EXPECTED = {
    "rfc3464-simple.eml": (True, EventKind.BOUNCED, True),
    "rfc3464-delayed.eml": (True, EventKind.DEFERRED, False),
    "postfix-user-unknown.eml": (True, EventKind.BOUNCED, True),
    "postfix-mailbox-full.eml": (True, EventKind.BOUNCED, False),
    "exim-failed.eml": (True, EventKind.BOUNCED, True),
    "gmail-no-such-user.eml": (True, EventKind.BOUNCED, True),
    "microsoft-recipient-not-found.eml": (True, EventKind.BOUNCED, True),
    "hostile-non-utf8.eml": (True, EventKind.BOUNCED, True),
    "hostile-crlf-injection.eml": (True, EventKind.BOUNCED, True),
    "qmail-no-mailbox.eml": (True, EventKind.BOUNCED, True),
    "qmail-remote-rejected.eml": (True, EventKind.BOUNCED, True),
    "qmail-queue-too-long.eml": (True, EventKind.BOUNCED, False),
    "hostile-no-status-part.eml": (False, None, None),
    "not-a-bounce.eml": (False, None, None),
}


def test_every_sample_has_an_expectation():
    assert sorted(EXPECTED) == SAMPLES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_reads_as_its_kind_and_names_our_delivery_by_verp(name):
    is_dsn, kind, hard = EXPECTED[name]
    bounce = parse_bounce(sample(name, rcpt="gone@example.org", message_id=OURS, verp=VERP), [KEY])
    assert bounce.dsn is is_dsn
    if not is_dsn:
        assert bounce.events == []
        return
    [event] = bounce.events
    assert (event.kind, event.hard, event.provider) == (kind, hard, "smtp")
    assert event.recipient == "gone@example.org"
    assert bounce.verp_matched
    assert message_id.parse(event.message_id, message_id.tags([KEY])) == message_id.OurMessageId(3, 9)
    assert not any(c in event.detail for c in "\r\n\x00") and "\udce9" not in event.detail
    json.dumps(event.raw)  # storable


@pytest.mark.parametrize("name", [n for n, (is_dsn, _, _) in EXPECTED.items() if is_dsn])
def test_without_verp_the_returned_message_id_names_the_delivery(name):
    [event] = parse_bounce(sample(name, message_id=OURS, verp="news@clinic.example"), [KEY]).events
    assert event.message_id == OURS


def test_a_forged_or_foreign_verp_tag_is_not_trusted():
    tag = message_id.verp_tag(KEY, OURS)
    forged = f"bounces+{tag.replace('3.9.', '3.10.', 1)}@clinic.example"
    [event] = parse_bounce(sample("postfix-user-unknown.eml", message_id="someone-else@x", verp=forged),
                           [KEY]).events
    assert event.message_id == "someone-else@x"  # the returned id, which the pipeline then checks
    foreign = parse_bounce(sample("postfix-user-unknown.eml", message_id="x@y", verp=VERP), ["other-key"])
    assert not foreign.verp_matched


def test_the_same_bounce_twice_is_one_event_and_two_recipients_are_two():
    first = parse_bounce(sample("exim-failed.eml", verp=VERP), [KEY]).events[0]
    again = parse_bounce(sample("exim-failed.eml", verp=VERP), [KEY]).events[0]
    other = parse_bounce(sample("exim-failed.eml", rcpt="else@example.org", verp=VERP), [KEY]).events[0]
    assert first.event_id == again.event_id != other.event_id


def test_a_huge_bounce_is_read_only_up_to_the_cap(tmp_path):
    huge = sample("gmail-no-such-user.eml", verp=VERP).replace(
        b"Dear reader, the article.", b"x" * 76 + b"\n" * 0 + (b"y" * 76 + b"\n") * 60_000)
    assert len(huge) > 4 * MAX_MESSAGE_BYTES
    no_breaks = sample("exim-failed.eml", verp=VERP) + b"z" * (3 * MAX_MESSAGE_BYTES)
    for box in (write_maildir(tmp_path / "md", [huge, no_breaks]), write_mbox(tmp_path / "mbox", [huge, no_breaks])):
        read = list(open_mailbox(box).messages())
        assert [m.truncated for m in read] == [True, True]
        assert all(len(m.data) <= MAX_MESSAGE_BYTES for m in read)
        assert [parse_bounce(m.data, [KEY]).events[0].hard for m in read] == [True, True]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_any_bytes_are_no_traceback(data):
    bounce = parse_bounce(data, [KEY])
    assert bounce.dsn or bounce.events == []


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(EXPECTED)), cut=st.integers(0, 5000), noise=st.binary(max_size=300),
       at=st.integers(0, 5000))
def test_damaged_samples_are_no_traceback(name, cut, noise, at):
    data = sample(name, verp=VERP, message_id=OURS)
    damaged = data[:at] + noise + data[at:cut] if cut > at else data[:cut] + noise
    for event in parse_bounce(damaged, [KEY]).events:
        assert not any(c in event.detail + event.recipient for c in "\r\n\x00")
        json.dumps(event.raw)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=6))
def test_any_bytes_in_an_mbox_are_no_traceback(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("mbox") / "box"
    path.write_bytes(b"From x\n".join(chunks))
    for message in open_mailbox(path).messages():
        parse_bounce(message.data, [KEY])


# --- the command, on both databases ---------------------------------------------------------------------


@pytest.fixture
def store(workspace):
    store = open_store(load_settings())
    yield store
    store.close()


def ids_of(seeded, email: str, secret: str) -> tuple[str, str]:
    """(our Message-ID, the VERP envelope sender) of ``email``'s delivery."""
    mid = seeded.message_ids[email]
    return mid, f"bounces+{message_id.verp_tag(secret, mid)}@clinic.example"


def test_read_a_maildir_suppresses_hard_counts_soft_and_marks_messages_only_once(store, cli, tmp_path):
    secret = load_settings().secret_key
    emails = ["gone@example.org", "full@example.org", "late@example.org", "fine@example.org"]
    seeded = seed_campaign(store, emails, transport="smtp", secret=secret)
    gone, full, late = (ids_of(seeded, e, secret) for e in emails[:3])
    box = write_maildir(tmp_path / "Maildir", [
        sample("postfix-user-unknown.eml", rcpt="gone@example.org", message_id=gone[0], verp=gone[1]),
        sample("postfix-mailbox-full.eml", rcpt="full@example.org", message_id=full[0], verp=full[1]),
        sample("rfc3464-delayed.eml", rcpt="late@example.org", message_id=late[0], verp=late[1]),
        sample("gmail-no-such-user.eml", rcpt="stranger@example.net"),  # not ours: unmatched
        sample("not-a-bounce.eml", rcpt="fine@example.org"),
    ])
    result = cli("bounces", "read", box, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert {k: report[k] for k in ("mailbox", "read", "dsn", "not_dsn", "events", "hard", "soft", "delayed",
                                   "matched", "unmatched", "repeated")} == {
        "mailbox": "maildir", "read": 5, "dsn": 4, "not_dsn": 1, "events": 4, "hard": 2, "soft": 1, "delayed": 1,
        "matched": 3, "unmatched": 1, "repeated": 0}
    after = state(store, emails)
    assert after["gone@example.org"]["suppressed"] == "bounced"
    assert after["gone@example.org"]["ledger"][0]["refused"] == "hard"
    assert after["full@example.org"]["suppressed"] is None and after["full@example.org"]["soft_bounces"] == 1
    assert after["late@example.org"]["ledger"][0]["deferred_at"] is not None
    assert after["fine@example.org"]["suppressed"] is None
    files = maildir_files(box)
    assert files["new"] == [] and len(files["cur"]) == 5 and all(f.endswith(":2,S") for f in files["cur"])

    again = cli("bounces", "read", box, "--json").json()
    assert (again["read"], again["events"]) == (0, 0)
    everything = cli("bounces", "read", box, "--all", "--json").json()
    assert (everything["read"], everything["repeated"], everything["applied"]) == (5, 4, 0)
    assert state(store, emails) == after


def test_read_an_mbox_twice_changes_nothing_the_second_time(store, cli, tmp_path):
    secret = load_settings().secret_key
    seeded = seed_campaign(store, ["full@example.org"], transport="smtp", secret=secret)
    mid, verp = ids_of(seeded, "full@example.org", secret)
    mbox = write_mbox(tmp_path / "bounces.mbox", [
        sample("postfix-mailbox-full.eml", rcpt="full@example.org", message_id=mid, verp=verp),
        sample("exim-failed.eml", rcpt="full@example.org", message_id=mid),  # From lines in its body, quoted
    ])
    before = mbox.read_bytes()
    first = cli("bounces", "read", mbox, "--json").json()
    assert (first["mailbox"], first["read"], first["dsn"], first["matched"], first["hard"]) == ("mbox", 2, 2, 2, 1)
    suppressed = state(store, ["full@example.org"])
    assert suppressed["full@example.org"]["suppressed"] == "bounced"
    second = cli("bounces", "read", mbox, "--json").json()
    assert (second["read"], second["repeated"], second["applied"]) == (2, 2, 0)
    assert state(store, ["full@example.org"]) == suppressed
    assert mbox.read_bytes() == before  # read only


def test_messages_stay_new_when_the_database_commit_fails(plain_workspace, cli, tmp_path, monkeypatch):
    """Another process holds the SQLite file: the events cannot commit, so no message is marked done."""
    from newsletter.store import db

    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 0.2)  # wait for the lock briefly, not 30 s
    settings_ = load_settings()
    store = open_store(settings_)
    seed_campaign(store, ["gone@example.org"], transport="smtp", secret=settings_.secret_key)
    store.close()
    box = write_maildir(tmp_path / "Maildir", [sample("postfix-user-unknown.eml")])
    holder = sqlite3.connect(settings_.database_url.removeprefix("sqlite:///"), timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli("bounces", "read", box)
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert len(maildir_files(box)["new"]) == 1  # not marked: read again next time
    assert cli("bounces", "read", box, "--json").json()["dsn"] == 1
    assert maildir_files(box)["new"] == []


def test_a_verp_send_then_its_bounce_suppresses_the_right_subscriber(store, cli, tmp_path):
    """The loop end to end: aiosmtpd records each MAIL FROM; the bounce to one of them quotes nothing else."""
    settings_ = load_settings()
    emails = ["first@example.org", "second@example.org", "third@example.org"]
    seeded = seed_campaign(store, emails, transport="smtp", secret=settings_.secret_key)
    recipients = [make_recipient(i, email=e, message_id=seeded.message_ids[e]) for i, e in enumerate(emails)]
    with SmtpServer() as server:
        with SmtpTransport("127.0.0.1", server.port, tls="none", timeout=5, envelope_from="bounces@clinic.example",
                           verp_secret=settings_.secret_key) as smtp:
            assert {r.outcome for r in smtp.send_batch(make_message(), recipients)} == {Outcome.SENT}
    envelope = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
    # The receiving server refuses "second" and mails the DSN back to that message's envelope sender; its
    # report names the forwarded address and returns no headers: only the VERP address says whose it was.
    bounce = sample("postfix-user-unknown.eml", rcpt="second.alias@forward.example", message_id="lost@nowhere",
                    verp=envelope["second@example.org"])
    report = cli("bounces", "read", write_maildir(tmp_path / "Maildir", [bounce]), "--json").json()
    assert (report["matched"], report["hard"]) == (1, 1)
    after = state(store, emails)
    assert [after[e]["suppressed"] for e in emails] == [None, "bounced", None]


def test_read_prints_a_table_and_refuses_a_missing_source_in_one_line(workspace, cli, tmp_path):
    box = write_maildir(tmp_path / "Maildir", [sample("not-a-bounce.eml")])
    shown = cli("bounces", "read", box)
    assert shown.exit_code == 0 and "Not a bounce report" in shown.stdout
    missing = cli("bounces", "read", tmp_path / "nowhere")
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr
    folder = tmp_path / "plain"
    folder.mkdir()
    assert "not a Maildir" in cli("bounces", "read", folder).stderr
    assert "Example:" in cli("bounces", "read", "--help").stdout


def test_read_an_imap_folder_on_dovecot_marks_seen_only_what_it_applied(store, cli, monkeypatch):
    """Bounces arrive in a real Dovecot IMAP folder; read once they are applied and marked \\Seen."""
    import imaplib

    from support.imap import dovecot_server

    secret = load_settings().secret_key
    seeded = seed_campaign(store, ["gone@example.org"], transport="smtp", secret=secret)
    mid, verp = ids_of(seeded, "gone@example.org", secret)
    with dovecot_server() as (port, user, password):
        client = imaplib.IMAP4("127.0.0.1", port)
        client.login(user, password)
        for data in (sample("microsoft-recipient-not-found.eml", rcpt="gone@example.org", message_id=mid, verp=verp),
                     sample("not-a-bounce.eml")):
            client.append("INBOX", None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", password)
        url = f"imap://{user}@127.0.0.1:{port}/INBOX"
        report = cli("bounces", "read", url, "--json").json()
        assert {k: report[k] for k in ("mailbox", "read", "dsn", "not_dsn", "matched", "hard")} == {
            "mailbox": "imap", "read": 2, "dsn": 1, "not_dsn": 1, "matched": 1, "hard": 1}
        client.select("INBOX")
        assert client.uid("SEARCH", None, "UNSEEN")[1] == [b""]
        assert cli("bounces", "read", url, "--json").json()["read"] == 0
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong-secret-77")
        refused = cli("bounces", "read", url)
        client.logout()
    assert state(store, ["gone@example.org"])["gone@example.org"]["suppressed"] == "bounced"
    assert refused.exit_code == 1 and "NEWSLETTER_IMAP_PASSWORD" in refused.stderr
    assert "wrong-secret-77" not in refused.stderr and "Traceback" not in refused.stderr


# -- qmail's plain-text bounces (QSBMF) -----------------------------------------------------------

def test_qmail_reasons_and_statuses_are_read_from_its_own_words():
    local, = parse_bounce(sample("qmail-no-mailbox.eml", verp=VERP), [KEY]).events
    assert local.detail.startswith("5.1.1 ") and "Sorry, no mailbox here by that name" in local.detail
    remote, = parse_bounce(sample("qmail-remote-rejected.eml", verp=VERP), [KEY]).events
    assert remote.detail.startswith("5.1.1 ") and "User unknown in virtual mailbox table" in remote.detail
    slow, = parse_bounce(sample("qmail-queue-too-long.eml", verp=VERP), [KEY]).events
    assert slow.detail.startswith("4.3.2 ") and "in the queue too long" in slow.detail and not slow.hard


def test_a_qmail_bounce_for_two_recipients_is_two_events_and_ip_numbers_are_not_codes():
    data = sample("qmail-remote-rejected.eml", verp=VERP).replace(
        b"\n--- Enclosed", b"\n<second@example.net>:\nConnected to 203.0.113.250 but sender was rejected.\n"
                          b"I'm not going to try again; this message has been in the queue too long.\n\n--- Enclosed")
    first, second = parse_bounce(data, [KEY]).events
    assert (first.recipient, first.hard) == ("gone@example.org", True)
    assert (second.recipient, second.hard) == ("second@example.net", False)
    assert first.event_id != second.event_id


def test_plain_text_that_only_looks_like_qmail_is_not_a_bounce():
    text = sample("qmail-no-mailbox.eml", verp=VERP).replace(b"Hi. This is the qmail-send program",
                                                              b"Hello. This is the mail program")
    assert parse_bounce(text, [KEY]).dsn is False


# -- POP3 (Dovecot) --------------------------------------------------------------------------------

def test_read_a_pop3_mailbox_on_dovecot_deletes_only_the_bounces_it_applied(store, cli, monkeypatch):
    """Bounces arrive in a real Dovecot mailbox read over POP3: applied, then deleted at QUIT; the
    auto-reply stays for people to read, and a second read applies nothing again."""
    import imaplib

    from support.imap import dovecot_with_pop3

    secret = load_settings().secret_key
    seeded = seed_campaign(store, ["gone@example.org", "full@example.org"], transport="smtp", secret=secret)
    mid, verp = ids_of(seeded, "gone@example.org", secret)
    with dovecot_with_pop3() as (imap_port, pop3_port, user, password):
        client = imaplib.IMAP4("127.0.0.1", imap_port)
        client.login(user, password)
        for data in (sample("qmail-no-mailbox.eml", rcpt="gone@example.org", message_id=mid, verp=verp),
                     sample("not-a-bounce.eml")):
            client.append("INBOX", None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        monkeypatch.setenv("NEWSLETTER_POP3_PASSWORD", password)
        url = f"pop3://{user}@127.0.0.1:{pop3_port}"
        report = cli("bounces", "read", url, "--json").json()
        assert {k: report[k] for k in ("mailbox", "read", "dsn", "not_dsn", "matched", "hard")} == {
            "mailbox": "pop3", "read": 2, "dsn": 1, "not_dsn": 1, "matched": 1, "hard": 1}
        client.select("INBOX")
        _, left = client.uid("SEARCH", None, "ALL")
        assert len(left[0].split()) == 1  # the auto-reply
        again = cli("bounces", "read", url, "--json").json()
        assert (again["read"], again["dsn"], again["applied"]) == (1, 0, 0)
        monkeypatch.setenv("NEWSLETTER_POP3_PASSWORD", "wrong-secret-78")
        refused = cli("bounces", "read", url)
        client.logout()
    assert state(store, ["gone@example.org"])["gone@example.org"]["suppressed"] == "bounced"
    assert refused.exit_code == 1 and "NEWSLETTER_POP3_PASSWORD" in refused.stderr
    assert "wrong-secret-78" not in refused.stderr and "Traceback" not in refused.stderr


def test_a_pop3_read_cut_off_before_quit_deletes_nothing_and_caps_a_huge_message():
    """A connection lost after reading (no QUIT) deletes nothing; a message over the cap is fetched with
    TOP and cut."""
    import imaplib

    from support.imap import dovecot_with_pop3

    huge = sample("exim-failed.eml", verp=VERP).replace(b"\n", b"\r\n") + (b"y" * 76 + b"\r\n") * 20_000
    with dovecot_with_pop3() as (imap_port, pop3_port, user, password):
        client = imaplib.IMAP4("127.0.0.1", imap_port)
        client.login(user, password)
        client.append("INBOX", None, None, huge)
        box = open_mailbox(f"pop3://{user}:{password}@127.0.0.1:{pop3_port}", max_bytes=100_000)
        [message] = list(box.messages())
        box.mark_done(message)
        box._conn.sock.close()  # the connection drops before QUIT
        box._conn = None
        assert message.truncated and len(message.data) <= 100_000
        assert parse_bounce(message.data, [KEY]).events[0].hard
        client.select("INBOX")
        _, left = client.uid("SEARCH", None, "ALL")
        client.logout()
    assert len(left[0].split()) == 1


@pytest.mark.parametrize("url, words", [
    ("pop3://127.0.0.1:110", "with a user and a host"),
    ("pop3://u@127.0.0.1:110/INBOX", "POP3 has no folders"),
    ("pop3://u:p@127.0.0.1:notaport", "port is not a number"),
])
def test_bad_pop3_urls_are_one_line_errors_without_the_password(url, words):
    from newsletter.delivery.mailboxes import MailboxError

    with pytest.raises(MailboxError, match=words) as info:
        open_mailbox(url)
    assert ":p@" not in str(info.value)
