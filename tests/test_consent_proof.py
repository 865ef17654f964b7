"""Proof of consent and data rights from the command line, on both backends.

A real double opt-in signup through the public app (form post, confirmation
email, the confirm button), then ``subscribers consent`` (text, --json,
--html) and ``subscribers export-data``.
"""

from __future__ import annotations

import json

import pytest
from newsletter.store import audience as q
from newsletter.usecases.signups import CONSENT_TEXT

from support.web import CHEAP_PROOF_OF_WORK, open_site, path_of, solved_challenge

AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15"
CONFIRM_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1) Mobile/15E148"


@pytest.fixture
def signed_up(workspace):
    """ada@example.org signed up on the double opt-in public list "news" and confirmed; returns the
    confirmation email's Message-ID (without angle brackets)."""
    with open_site(None, **CHEAP_PROOF_OF_WORK) as site:  # the default: signups solve a proof of work
        with site.store.session() as session:
            q.create_list(session, "news", double_opt_in=True, public=True, display_name="Clinic News")
        form = site.client.get("/subscribe")
        assert CONSENT_TEXT.format(newsletter=site.settings.name) in form.text  # the text the proof records
        response = site.client.post("/subscribe", data={"email": "Ada@Example.org", "name": "Ada", "list": "news",
                                                        "altcha": solved_challenge(site.client)},
                                    headers={"User-Agent": AGENT, "Referer": "https://news.clinic.example/subscribe"})
        assert response.status_code == 200
        [message] = site.transport.outbox
        [link] = site.confirm_links()
        assert site.client.get(path_of(link)).status_code == 200  # the page alone confirms nothing
        confirmed = site.client.post(path_of(link), headers={"User-Agent": CONFIRM_AGENT})
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
        return message["Message-ID"].strip("<>")


def test_consent_proof_of_a_double_opt_in_signup(signed_up, cli):
    result = cli("subscribers", "consent", "ada@example.org", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert [m["status"] for m in data["lists"]] == ["confirmed"]
    subscribe, confirm = data["consent"]
    assert (subscribe["action"], subscribe["list"], subscribe["ip"]) == ("subscribe", "news", "testclient")
    assert subscribe["form"] == "signup form v1"
    assert subscribe["consent_text"] == CONSENT_TEXT.format(newsletter="letter")  # the workspace's name
    assert subscribe["source_url"] == "https://news.clinic.example/subscribe"
    assert subscribe["user_agent"] == AGENT
    assert subscribe["message_id"] == signed_up and subscribe["requested_at"] and subscribe["confirmed_at"] is None
    assert (confirm["action"], confirm["list"], confirm["ip"], confirm["user_agent"]) == (
        "confirm", "news", "testclient", CONFIRM_AGENT)
    assert confirm["message_id"] == signed_up
    assert confirm["requested_at"] == subscribe["requested_at"]
    assert confirm["confirmed_at"] >= confirm["requested_at"]


def test_consent_proof_as_text_and_as_a_printable_page(signed_up, cli):
    text = cli("subscribers", "consent", "ada@example.org")
    assert text.exit_code == 0, text.stderr
    assert "Ada@example.org" in text.stdout and "subscribe" in text.stdout and "confirm" in text.stdout
    page = cli("subscribers", "consent", "ada@example.org", "--html")
    assert page.exit_code == 0, page.stderr
    html = page.stdout
    assert html.startswith("<!doctype html>") and "<h1>Proof of consent</h1>" in html
    assert f"&lt;{signed_up}&gt;" in html and "testclient" in html and "signup form v1" in html
    assert "Clinic News" in html and AGENT in html


def test_export_data_by_request_is_complete_and_logged(signed_up, cli, tmp_path):
    target = tmp_path / "ada.json"
    result = cli("subscribers", "export-data", "ADA@example.org", "--out", str(target))
    assert result.exit_code == 0, result.stderr
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["format"] == "newsletter subscriber data v1"
    assert (data["email"], data["name"]) == ("Ada@example.org", "Ada")  # as it was typed; found case-insensitively
    assert [c["action"] for c in data["consent"]] == ["subscribe", "confirm", "export"]
    assert data["consent"][0]["message_id"] == signed_up
    logged = cli("subscribers", "consent", "ada@example.org", "--json").json()["consent"][-1]
    assert (logged["action"], logged["source"], logged["form"]) == (
        "export", "cli", "newsletter subscribers export-data")
    printed = cli("subscribers", "export-data", "ada@example.org")
    assert json.loads(printed.stdout)["email"] == "Ada@example.org"


def test_unknown_addresses_are_one_line_errors(workspace, cli):
    for command in ("consent", "export-data"):
        result = cli("subscribers", command, "nobody@example.org")
        assert result.exit_code == 1
        assert "no subscriber nobody@example.org" in result.stderr and "Traceback" not in result.stderr


def test_unsubscribes_record_how_they_came(signed_up, cli):
    from newsletter.audience.tokens import unsubscribe_url

    with open_site(None) as site:
        with site.store.session() as session:
            ada = q.find_subscriber(session, "ada@example.org")
            news = q.get_list(session, "news")
            ids = (ada.id, news.id, ada.email)
        path = path_of(unsubscribe_url(site.settings, *ids[:2], ids[2]))
        one_click = site.client.post(path, data={"List-Unsubscribe": "One-Click"},
                                     headers={"User-Agent": "GoogleOneClick/1.0"})
        assert one_click.status_code == 200
        again = site.client.post(path, data={"action": "resubscribe"}, headers={"User-Agent": AGENT})
        assert again.status_code == 200
    consent = cli("subscribers", "consent", "ada@example.org", "--json").json()["consent"]
    assert [(c["action"], c["form"], c["user_agent"]) for c in consent[-2:]] == [
        ("unsubscribe", "one-click (RFC 8058)", "GoogleOneClick/1.0"),
        ("resubscribe", "unsubscribe page v1", AGENT)]


def test_show_says_until_when_mail_is_paused(signed_up, cli):
    from datetime import UTC, datetime

    with open_site(None) as site:
        with site.store.session() as session:
            q.find_subscriber(session, "ada@example.org").snoozed_until = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    shown = cli("subscribers", "show", "ada@example.org")
    assert shown.exit_code == 0, shown.stderr
    assert "mail paused until 2027-01-31 09:30 UTC" in shown.stdout
    shown_json = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert shown_json["snoozed_until"] == "2027-01-31T09:30:00+00:00"


def test_an_erased_address_says_how_it_was_erased_and_nothing_more(signed_up, cli):
    assert cli("subscribers", "remove", "ada@example.org", "--yes").exit_code == 0
    for command in ("consent", "export-data", "show"):
        result = cli("subscribers", command, "ada@example.org")
        assert result.exit_code == 1
        assert ("no subscriber ada@example.org: their data was erased (erased with newsletter subscribers remove)"
                in result.stderr)
        assert "only a hash of the address is kept" in result.stderr and "Traceback" not in result.stderr


def test_a_signup_from_the_publishers_own_website_records_no_text_it_did_not_see(workspace, cli):
    with open_site(None, signup_origins=("https://www.clinic.example",), **CHEAP_PROOF_OF_WORK) as site:
        with site.store.session() as session:
            q.create_list(session, "news", public=True, display_name="Clinic News")
        response = site.client.post("/subscribe", data={"email": "bo@example.org", "list": "news",
                                                        "altcha": solved_challenge(site.client)},
                                    headers={"User-Agent": AGENT, "Origin": "https://www.clinic.example",
                                             "Referer": "https://www.clinic.example/newsletter"})
        assert response.status_code == 200
    [subscribe] = cli("subscribers", "consent", "bo@example.org", "--json").json()["consent"]
    assert (subscribe["form"], subscribe["consent_text"], subscribe["source_url"]) == (
        "signup form on another page", None, "https://www.clinic.example/newsletter")
    assert subscribe["confirmed_at"] == subscribe["requested_at"] and subscribe["message_id"] is None
