"""ARF complaint reports (RFC 5965) read by ``newsletter bounces read``: the complainer is suppressed.

Samples in tests/data/arf/ (RFC 5965's example layout, a CFBL report with the recipient redacted, a
Removal-Recipient report, not-spam and auth-failure reports) in a real Maildir, against both databases.
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
