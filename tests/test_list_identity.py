"""Gmail's list identity: List-Id, Feedback-ID and CFBL-Address (RFC 9477) on every bulk message, checked on
the wire (a real aiosmtpd server) and in the body the SendGrid stand-in receives; DKIM covers them; the
confirmation mail comes from its own sender. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from fake_sendgrid import FakeSendGrid
from smtp_server import SmtpServer
from support.cli import populate

API_KEY = "SG.identity-test.secret-value"


def configure(workspace, delivery: str = "", web: str = "") -> None:
    config = workspace / "newsletter.toml"
    text = config.read_text().replace("processes = 0\n", f"processes = 0\n{delivery}\n", 1)
    config.write_text(text + (f"\n[web]\n{web}\n" if web else ""))


def _identity(cli, tmp_path, delivery: str = "") -> None:
    populate(cli, tmp_path, 3)
    assert cli("lists", "update", "readers", "--display-name", 'Clinic "News" Weekly').exit_code == 0


def _campaign_id(cli) -> int:
    return cli("campaigns", "list", "--json").json()[0]["id"]


def test_list_id_feedback_id_and_cfbl_address_on_the_smtp_wire(workspace, cli, tmp_path, monkeypatch):
    _identity(cli, tmp_path)
    configure(workspace, 'complaints_address = "FBL@clinic.example"')
    with SmtpServer() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none")
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp")
        assert result.exit_code == 0, result.stderr
        messages = [m.parsed() for m in server.messages]
    campaign = _campaign_id(cli)
    assert len(messages) == 3
    for message in messages:
        assert message["List-Id"] == '"Clinic News Weekly" <readers.clinic.example>'
        assert message["Feedback-ID"] == f"c{campaign}:readers:letter:clinic-example"
        assert message["CFBL-Address"] == "FBL@clinic.example; report=arf"  # a local part keeps its case
        assert message["CFBL-Feedback-ID"] == message["Feedback-ID"]
        assert message["List-Unsubscribe"].startswith("<https://news.clinic.example/unsubscribe/")


def test_without_a_complaints_mailbox_there_is_no_cfbl_address_and_the_domain_is_configurable(
        workspace, cli, tmp_path, monkeypatch):
    _identity(cli, tmp_path)
    configure(workspace, 'list_id_domain = "lists.clinic.example"\nfeedback_sender_id = "clinic01"')
    with SmtpServer() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none")
        assert cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp").exit_code == 0
        message = server.messages[0].parsed()
    assert message["List-Id"] == '"Clinic News Weekly" <readers.lists.clinic.example>'
    assert message["Feedback-ID"].endswith(":readers:letter:clinic01")
    assert "CFBL-Address" not in message


def test_the_headers_in_the_sendgrid_body(workspace, cli, tmp_path, monkeypatch):
    _identity(cli, tmp_path)
    configure(workspace, 'complaints_address = "fbl@clinic.example"')
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.url)
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "sendgrid")
        assert result.exit_code == 0, result.stderr
        [body] = server.bodies
    campaign = _campaign_id(cli)
    assert body["headers"] == {"List-Id": '"Clinic News Weekly" <readers.clinic.example>',
                               "Feedback-ID": f"c{campaign}:readers:letter:clinic-example",
                               "CFBL-Address": "fbl@clinic.example; report=arf",
                               "CFBL-Feedback-ID": f"c{campaign}:readers:letter:clinic-example"}


def test_dkim_signs_the_identity_headers():
    from newsletter.delivery.dkimsign import OVERSIGNED, include_headers

    listed = include_headers()
    for name in (b"list-id", b"feedback-id", b"cfbl-address"):
        assert name in listed
    assert b"cfbl-address" in OVERSIGNED  # RFC 9477: a second, added CFBL-Address breaks the signature


@pytest.mark.parametrize(("name", "expected"), [
    ("readers", "readers"), ("Clinic: News!", "Clinic-News"), ("::", "x"), ("ä-b", "b"),
])
def test_identity_parts_hold_no_colon_or_space(name, expected):
    from newsletter.delivery.mime import identity_part

    assert identity_part(name) == expected


def test_a_bad_complaints_address_is_a_one_line_error(workspace, cli):
    configure(workspace, 'complaints_address = "not an address"')
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and "complaints_address" in result.stderr and "Traceback" not in result.stderr


def test_the_confirmation_mail_comes_from_its_own_sender(workspace):
    from newsletter.store import audience as q

    from support.web import NO_PROOF_OF_WORK, open_site

    configure(workspace, web='confirm_from = "Clinic Sign-ups <signup@clinic.example>"')
    with open_site(None, signup_origins=("https://clinic.example",), **NO_PROOF_OF_WORK) as site:
        with site.store.session() as session:
            q.create_list(session, "letters", double_opt_in=True, public=True)
        response = site.client.post("/subscribe", data={"email": "new@example.org", "list": "letters"},
                                    headers={"Referer": "https://clinic.example/blog"})
        assert response.status_code == 200
        [message] = site.transport.outbox
    assert message["From"] == "Clinic Sign-ups <signup@clinic.example>"
    assert "List-Id" not in message and "Feedback-ID" not in message  # not a subscription message
