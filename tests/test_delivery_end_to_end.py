"""`newsletter send` with real-world addresses, end to end through the CLI (issue 11).

A clinic's import holds a non-ASCII local part, an IDN domain and names with
commas and quotes. Today's failure: the default file transport crashed on
the first of them, the campaign ended ``sent`` with everyone ``unknown``.
Now every recipient ends ``sent`` (or, where the path cannot carry the
address, ``failed`` with the reason), on both database backends.
"""

from __future__ import annotations

from email import message_from_string, policy

from smtp_server import SmtpServer

PEOPLE = [
    ("renée.dupont@hotmail.com", "Renée Dupont"),
    ("ann@bücher.example", "Ann Bücher"),
    ("joao@example.org", "Silva, João"),
    ("zoe@example.org", 'Zoë "Z" O\'Brien; Jr.'),
    ("reader@example.org", "Reader"),
]


def import_people(cli, tmp_path) -> None:
    rows = "".join(f'"{email}","{name.replace(chr(34), chr(34) * 2)}"\n' for email, name in PEOPLE)
    data = tmp_path / "clinic.csv"
    data.write_text("email,name\n" + rows, encoding="utf-8")
    result = cli("subscribers", "import", str(data), "--list", "readers", "--json")
    assert result.json()["added"] == len(PEOPLE), result.stderr


def test_send_on_the_file_transport_writes_every_real_world_address(workspace, cli, tmp_path):
    import_people(cli, tmp_path)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["sent"] == len(PEOPLE) and report["status"] == "sent"
    shown = cli("campaigns", "show", str(report["campaign_id"]), "--json").json()
    assert shown["counts"]["sent"] == len(PEOPLE) and shown["counts"]["unknown"] == 0
    written = [message_from_string(p.read_bytes().decode("utf-8"), policy=policy.default)
               for p in (workspace / "outbox").glob("*.eml")]
    addresses = sorted(m["To"].addresses[0].addr_spec for m in written)
    assert addresses == sorted(["renée.dupont@hotmail.com", "ann@xn--bcher-kva.example", "joao@example.org",
                                "zoe@example.org", "reader@example.org"])


def test_send_over_smtp_without_smtputf8_fails_only_the_address_it_cannot_carry(workspace, cli, tmp_path, monkeypatch):
    import_people(cli, tmp_path)
    with SmtpServer(smtputf8=False) as server:
        monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}?tls=none")
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 2, result.stderr  # some recipients failed
    report = result.json()
    assert (report["sent"], report["failed"]) == (len(PEOPLE) - 1, 1)
    shown = cli("campaigns", "show", str(report["campaign_id"]), "--json").json()
    assert [r["email"] for r in shown["failed"]] == ["renée.dupont@hotmail.com"]
    assert "SMTPUTF8" in shown["failed"][0]["error"]
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        ["ann@xn--bcher-kva.example", "joao@example.org", "zoe@example.org", "reader@example.org"])
