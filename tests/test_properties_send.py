"""Property: import, send through every transport, export and import again, over hostile data (issue 11).

Generated subscribers (IDN domains, non-ASCII and quoted local parts, 64+
character parts; names with accents, quotes, commas, semicolons, control
characters, over-long) go through the real CLI into a real store, then
``newsletter send`` through each transport: the file outbox, the memory
outbox, a real SMTP server with and without SMTPUTF8, and the official
SendGrid client against the stand-in. Whatever the data:

- no traceback (the in-process ``cli`` lets any exception through), and the
  exit code is 0 or 2 (some recipients failed), never anything else;
- every recipient ends ``sent`` or ``failed`` with a reason: nothing is left
  pending, in flight or unknown;
- the receiving side got exactly one message per ``sent`` row, and none for
  a ``failed`` one: nothing doubled, nothing lost;
- an export imported into an empty store gives back the same people with
  the same list status.
"""

from __future__ import annotations

import csv
import io
import itertools
import shutil
from email import message_from_bytes, policy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.delivery.memory import MemoryTransport

from support.standins import STANDIN_KEY
from support.stores import another_database

LOCALS = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,15}", fullmatch=True),
    st.sampled_from(["renée.dupont", "josé", "δοκιμή", "用户", "o'neil", '"quoted name"', "x" * 64, "y" * 65,
                     "ü" * 64]),
)
DOMAINS = st.sampled_from(["example.org", "Example.COM", "bücher.example", "mail.παράδειγμα.example", "例え.jp"])
HOSTILE = "\r\n\x00\t\x1b\x7f\x85\u2028,;\"'<>=@ "
NAMES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(HOSTILE),
            max_size=30),
    st.sampled_from(["Renée O'Brien-Dupont", '"Doc" Holliday, Jr.', "Silva; João", "Zoë\r\nBcc: x@evil.example",
                     "Nul\x00Byte", "É" * 200, ""]),
)
PEOPLE = st.lists(st.tuples(LOCALS, DOMAINS, NAMES), min_size=1, max_size=5)


class Receiver:
    """What one transport's far side received: the envelope or To address of each message."""

    def __init__(self, env: dict, received, reset):
        self.env, self.received, self.reset = env, received, reset


@pytest.fixture(params=["file", "memory", "smtp-smtputf8", "smtp-ascii", "sendgrid"])
def receiver(request, workspace, smtp_utf8, smtp_ascii, fake_sendgrid):
    kind = request.param
    if kind == "file":
        outbox = workspace / "outbox"
        return Receiver({"NEWSLETTER_TRANSPORT": "file"},
                        lambda: [message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
                                 for p in outbox.glob("*.eml")],
                        lambda: shutil.rmtree(outbox, ignore_errors=True))
    if kind == "memory":
        return Receiver({"NEWSLETTER_TRANSPORT": "memory"},
                        lambda: [m["To"].addresses[0].addr_spec for m in MemoryTransport.shared_outbox],
                        MemoryTransport.clear_shared)
    if kind.startswith("smtp"):
        server = smtp_utf8 if kind == "smtp-smtputf8" else smtp_ascii
        return Receiver({"NEWSLETTER_TRANSPORT": "smtp", "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{server.port}?tls=none"},
                        lambda: [rcpt for m in server.messages for rcpt in m.rcpt_tos],
                        server.messages.clear)
    return Receiver({"NEWSLETTER_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": STANDIN_KEY,
                     "NEWSLETTER_SENDGRID_HOST": fake_sendgrid.url},
                    lambda: list(fake_sendgrid.delivered), fake_sendgrid.reset)


@pytest.fixture
def other_url(database_url, tmp_path):
    with another_database(database_url, tmp_path) as url:
        yield url


def _csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    return buffer.getvalue()


def test_send_through_every_transport_over_hostile_data(cli, tmp_path, monkeypatch, receiver, database_url, other_url):
    for name, value in receiver.env.items():
        monkeypatch.setenv(name, value)
    counter = itertools.count()

    @settings(max_examples=8, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(people=PEOPLE)
    def run(people):
        n = next(counter)
        list_name = f"list-{n}"
        receiver.reset()
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
        rows = [(f"{local}@e{n}-{i}.{domain}", name) for i, (local, domain, name) in enumerate(people)]
        data = tmp_path / f"people-{n}.csv"
        data.write_text(_csv(rows), encoding="utf-8")
        imported = cli("subscribers", "import", str(data), "--list", list_name, "--json")
        assert imported.exit_code == 0, imported.stderr
        report = imported.json()
        # every line accounted for once: imported, or refused with its line and a reason
        assert report["added"] + report["invalid"] == len(rows), report
        assert len(report["errors"]) == report["invalid"] and all(e["reason"] for e in report["errors"])
        if report["added"] == 0:
            refused = cli("send", "articles/welcome.md", "--list", list_name, "--yes", "--json")
            assert refused.exit_code == 1 and refused.stderr.startswith("Error:"), refused.stderr
            return

        sent = cli("send", "articles/welcome.md", "--list", list_name, "--yes", "--json")
        assert sent.exit_code in (0, 2), sent.stderr
        shown = cli("campaigns", "show", str(sent.json()["campaign_id"]), "--json").json()
        counts = shown["counts"]
        assert counts["pending"] == counts["sending"] == counts["unknown"] == 0, counts
        assert counts["sent"] + counts["failed"] + counts["skipped"] == report["added"], counts
        assert (sent.exit_code == 2) == (counts["failed"] > 0)
        assert all(row["error"] for row in shown["failed"]), shown["failed"]
        received = receiver.received()
        assert len(received) == counts["sent"], (received, counts)
        assert len({address.lower() for address in received}) == len(received), received

        exported = tmp_path / f"export-{n}.csv"
        assert cli("subscribers", "export", "--list", list_name, "--output", str(exported)).exit_code == 0
        before = sorted((p["email"], p["list_status"]) for p in
                        cli("subscribers", "list", "--list", list_name, "--json").json())
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", other_url)
        again = cli("subscribers", "import", str(exported), "--json")
        assert again.exit_code == 0, again.stderr
        after = sorted((p["email"], p["list_status"]) for p in
                       cli("subscribers", "list", "--list", list_name, "--json").json())
        assert after == before

    run()
