"""ARF complaint reports (RFC 5965) read by ``newsletter bounces read``: the complainer is suppressed.

Samples in tests/data/arf/ (RFC 5965's example layout, a CFBL report with the recipient redacted, a
Removal-Recipient report, not-spam and auth-failure reports) in a real Maildir, against both databases.

Published reports in tests/data/arf/published/, as published (sources in its README.md): RFC 5965's
appendix B.2 example, a Yahoo complaint feedback loop report and a Microsoft JMRP report in its
"RFC822 attachment" format, both from sisimai/set-of-emails (BSD 2-Clause), read as they are and with
the returned message's Message-ID swapped for one of ours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from newsletter.config import load_settings
from newsletter.delivery import message_id
from newsletter.delivery.bounces import parse_bounce
from newsletter.store.db import open_store
from newsletter.tracking import EventKind

from support.bounces import write_maildir
from support.events import seed_campaign, state

ARF = Path(__file__).resolve().parent / "data" / "arf"
KEY = "arf-test-secret"
OURS = message_id.id_template(KEY, 3, "news@clinic.example").format(9)

# sample -> (a complaint?, the recipient the report itself names)
EXPECTED = {
    "rfc5965-abuse.eml": (True, "angry@example.org"),
    "cfbl-redacted.eml": (True, ""),
    "removal-recipient.eml": (True, "angry@example.org"),
    "not-spam.eml": (False, None),
    "auth-failure.eml": (False, None),
}


def sample(name: str, *, rcpt: str = "angry@example.org", message_id: str = OURS) -> bytes:
    data = (ARF / name).read_bytes()
    return data.replace(b"@@RCPT@@", rcpt.encode()).replace(b"@@MESSAGE_ID@@", message_id.encode())


def test_every_sample_has_an_expectation():
    assert sorted(EXPECTED) == sorted(path.name for path in ARF.glob("*.eml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_reads_as_a_complaint_about_our_delivery_or_as_nothing(name):
    complaint, recipient = EXPECTED[name]
    bounce = parse_bounce(sample(name), [KEY])
    assert bounce.dsn  # a report: the mailbox reader marks it done
    if not complaint:
        assert bounce.events == []
        return
    [event] = bounce.events
    assert (event.kind, event.recipient, event.message_id) == (EventKind.COMPLAINED, recipient, OURS)
    assert event.event_id.startswith("smtp-arf:") and event.detail.startswith("ARF abuse")


def test_the_same_report_twice_is_one_event():
    first, second = (parse_bounce(sample("rfc5965-abuse.eml"), [KEY]) for _ in range(2))
    assert first.events[0].event_id == second.events[0].event_id


@pytest.fixture
def store(workspace):
    store = open_store(load_settings())
    yield store
    store.close()


def test_read_arf_reports_suppresses_the_complainers(store, cli, tmp_path):
    secret = load_settings().secret_key
    emails = ["angry@example.org", "redacted@example.org", "removal@example.org", "happy@example.org",
              "checked@example.org"]
    seeded = seed_campaign(store, emails, transport="smtp", secret=secret)
    ids = seeded.message_ids
    box = write_maildir(tmp_path / "Maildir", [
        sample("rfc5965-abuse.eml", rcpt="angry@example.org", message_id=ids["angry@example.org"]),
        # the provider redacted the address: our Message-ID in the returned headers names the delivery
        sample("cfbl-redacted.eml", message_id=ids["redacted@example.org"]),
        sample("removal-recipient.eml", rcpt="removal@example.org", message_id=ids["removal@example.org"]),
        sample("not-spam.eml", rcpt="happy@example.org", message_id=ids["happy@example.org"]),
        sample("auth-failure.eml", rcpt="checked@example.org", message_id=ids["checked@example.org"]),
    ])
    result = cli("bounces", "read", box, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert {k: report[k] for k in ("read", "dsn", "events", "complaints", "matched", "unmatched", "applied")} == {
        "read": 5, "dsn": 5, "events": 3, "complaints": 3, "matched": 3, "unmatched": 0, "applied": 3}
    after = state(store, emails)
    for email in ("angry@example.org", "redacted@example.org", "removal@example.org"):
        assert after[email]["suppressed"] == "complained", email
        assert after[email]["status"] == "complained"
        assert after[email]["ledger"][0]["complained_at"] is not None
    for email in ("happy@example.org", "checked@example.org"):
        assert after[email]["suppressed"] is None and after[email]["status"] == "active"
    shown = " ".join(cli("bounces", "read", box, "--all").stdout.split())
    assert "Complaints (ARF)" in shown


# -- published reports (tests/data/arf/published/README.md says where each comes from) ---------------

PUBLISHED = ARF / "published"
# sample -> (the complainer it names, the returned message's Message-ID as published)
PUBLISHED_EXPECTED = {
    "rfc5965-b2.eml": ("user@example.com", "8787KJKJ3K4J3K4J3K4J3.mail@example.net"),
    "yahoo-cfl.eml": ("this-local-part-does-not-exist-on-yahoo@yahoo.com",
                      "<000000000000000000000000.smtp@example.com>"),
    "microsoft-jmrp.eml": ("kijitora@example.com", "<0000000000fffffffff0000000000000@example.com>"),
}


def published(name: str, message_id: str | None = None) -> bytes:
    """A published report as it is, or returning our ``message_id`` instead of the one it had."""
    data = (PUBLISHED / name).read_bytes()
    if message_id is None:
        return data
    original = PUBLISHED_EXPECTED[name][1].encode()
    assert data.count(original) == 1
    return data.replace(original, f"<{message_id}>".encode())


def test_every_published_sample_has_an_expectation():
    assert sorted(PUBLISHED_EXPECTED) == sorted(path.name for path in PUBLISHED.glob("*.eml"))


@pytest.mark.parametrize("name", sorted(PUBLISHED_EXPECTED))
def test_published_reports_read_as_complaints_as_they_are(name):
    bounce = parse_bounce(published(name), [KEY])
    assert bounce.dsn
    [event] = bounce.events
    # the complainer they name, and the returned message's Message-ID (the pipeline finds it is not ours)
    recipient, returned_id = PUBLISHED_EXPECTED[name]
    assert (event.kind, event.recipient, event.message_id) == (EventKind.COMPLAINED, recipient,
                                                               returned_id.strip("<>"))
    assert event.detail.startswith("ARF abuse")


@pytest.mark.parametrize("name", sorted(PUBLISHED_EXPECTED))
def test_published_reports_returning_our_message_name_our_delivery(name):
    [event] = parse_bounce(published(name, OURS), [KEY]).events
    assert (event.kind, event.recipient, event.message_id) == (EventKind.COMPLAINED, PUBLISHED_EXPECTED[name][0],
                                                               OURS)


def test_a_hotmail_message_that_is_no_jmrp_complaint_is_nothing():
    data = published("microsoft-jmrp.eml").replace(b"complaint about message from", b"Welcome to Outlook, from")
    assert parse_bounce(data, [KEY]).events == []
    forged = published("microsoft-jmrp.eml").replace(b"From: staff@hotmail.com", b"From: staff@example.com")
    assert parse_bounce(forged, [KEY]).events == []


def test_read_published_reports_suppress_the_complainers(store, cli, tmp_path):
    secret = load_settings().secret_key
    emails = [expected[0] for expected in PUBLISHED_EXPECTED.values()] + ["bystander@example.org"]
    ids = seed_campaign(store, emails, transport="smtp", secret=secret).message_ids
    box = write_maildir(tmp_path / "Maildir", [published(name, ids[expected[0]])
                                               for name, expected in PUBLISHED_EXPECTED.items()])
    result = cli("bounces", "read", box, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert {k: report[k] for k in ("read", "events", "complaints", "matched", "unmatched", "applied")} == {
        "read": 3, "events": 3, "complaints": 3, "matched": 3, "unmatched": 0, "applied": 3}
    after = state(store, emails)
    for email in emails[:3]:
        assert after[email]["suppressed"] == "complained", email
    assert after["bystander@example.org"]["suppressed"] is None
