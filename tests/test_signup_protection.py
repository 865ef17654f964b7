"""Signups that bots cannot abuse, through the public app on both backends.

The proof of work is the real ALTCHA challenge of ``GET /subscribe``, solved
here with the ``altcha`` package's own solver (cost 1 keeps it fast); a
replayed one is refused. Scripted signups come from many addresses of one
/24 network; every email is counted at the memory transport the app sends
through (the CLI's approvals at the workspace's file transport). Times come
from the site's injected clock.
"""

from __future__ import annotations

import base64
import html
import json
import re

import altcha
from newsletter.audience import protection
from newsletter.store import audience as q
from newsletter.store import signups as held_store
from starlette.testclient import TestClient

from support.web import open_site

PROTECTED = {"signup_proof_of_work": True, "signup_proof_of_work_cost": 1}
# Tests of the other protections turn the proof of work (on by default) off, so that only theirs holds a signup.
NO_POW = {"signup_proof_of_work": False}


def _client(site, ip: str) -> TestClient:
    return TestClient(site.app, follow_redirects=False, client=(ip, 40000))


def _news(site, double_opt_in: bool = True) -> None:
    with site.store.session() as session:
        q.create_list(session, "news", double_opt_in=double_opt_in, public=True, display_name="Clinic News")


def _solved_payload(site, client: TestClient | None = None) -> str:
    """The challenge of the signup page, solved as the page's script would."""
    page = (client or site.client).get("/subscribe")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    challenge = json.loads(html.unescape(re.search(r'data-challenge="([^"]+)"', page.text).group(1)))
    solution = altcha.solve_challenge(altcha.Challenge.from_dict(challenge), timeout=30)
    assert solution is not None
    return altcha.Payload(altcha.Challenge.from_dict(challenge), solution).to_base64()


def _post(client: TestClient, email: str, **extra: str):
    return client.post("/subscribe", data={"email": email, "list": "news", **extra})


def _held(site) -> list[held_store.Held]:
    with site.store.session() as session:
        return held_store.held(session)


def test_a_solved_challenge_signs_up_once_and_its_replay_is_refused(workspace):
    with open_site(None, **PROTECTED) as site:
        _news(site)
        payload = _solved_payload(site)
        first = _post(site.client, "ada@example.org", altcha=payload)
        assert first.status_code == 200, first.text
        assert [m["To"] for m in site.transport.outbox] == ["ada@example.org"]
        replay = _post(site.client, "bob@example.org", altcha=payload)
        assert replay.status_code == 400 and "already sent" in replay.text
        assert len(site.transport.outbox) == 1 and _held(site) == []


def test_a_forged_or_expired_solution_is_held_without_email(workspace):
    with open_site(None, **PROTECTED) as site:
        _news(site)
        payload = json.loads(base64.b64decode(_solved_payload(site)))
        payload["solution"]["counter"] += 1  # a guess, not the work
        forged = base64.b64encode(json.dumps(payload).encode()).decode()
        assert _post(site.client, "eve@example.org", altcha=forged).status_code == 200
        late = _solved_payload(site)
        site.clock.now += protection.CHALLENGE_SECONDS + 1
        assert _post(site.client, "late@example.org", altcha=late).status_code == 200
        assert _post(site.client, "nojs@example.org").status_code == 200
        assert site.transport.outbox == []
        assert [(h.email, h.reasons) for h in _held(site)] == [
            ("eve@example.org", protection.NO_PROOF), ("late@example.org", protection.NO_PROOF),
            ("nojs@example.org", protection.NO_PROOF)]


def test_the_challenge_endpoint_answers_allowed_origins_only(workspace):
    with open_site(None, signup_origins=("https://clinic.example",), **PROTECTED) as site:
        allowed = site.client.get("/subscribe/challenge", headers={"Origin": "https://clinic.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://clinic.example"
        assert set(allowed.json()) == {"parameters", "signature"}
        other = site.client.get("/subscribe/challenge", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        script = site.client.get("/subscribe/altcha.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")


def test_1000_scripted_signups_from_one_network_send_no_email(workspace):
    with open_site(None, **PROTECTED) as site:
        _news(site)
        clients = {f"203.0.113.{n}": _client(site, f"203.0.113.{n}") for n in range(1, 251)}
        statuses = [_post(clients[f"203.0.113.{i % 250 + 1}"], f"victim{i}@example.org").status_code
                    for i in range(1000)]
        assert site.transport.outbox == []
        limit = site.settings.signup_network_limit
        assert statuses.count(200) == limit and statuses.count(429) == 1000 - limit
        held = _held(site)
        assert len(held) == limit and {h.list_name for h in held} == {"news"}
        with site.store.session() as session:
            assert q.find_subscriber(session, "victim0@example.org") is None


def test_a_busy_network_is_held_then_throttled_even_with_the_work_done(workspace):
    with open_site(None, signup_proof_of_work=False, signup_network_quarantine=3, signup_network_limit=5) as site:
        _news(site)
        statuses = [_post(_client(site, f"198.51.100.{i + 1}"), f"reader{i}@example.org").status_code
                    for i in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        assert sorted(m["To"] for m in site.transport.outbox) == [f"reader{i}@example.org" for i in range(3)]
        assert [(h.email, h.reasons) for h in _held(site)] == [
            ("reader3@example.org", protection.BUSY_NETWORK), ("reader4@example.org", protection.BUSY_NETWORK)]
        # Another network is not held back by this one; the hour passes and the network may sign up again.
        assert _post(_client(site, "192.0.2.7"), "other@example.org").status_code == 200
        site.clock.now += 3601
        assert _post(_client(site, "198.51.100.99"), "later@example.org").status_code == 200
        assert len(site.transport.outbox) == 5


def test_ipv6_clients_count_by_their_48(workspace):
    with open_site(None, signup_network_quarantine=1, **NO_POW) as site:
        _news(site)
        assert _post(_client(site, "2001:db8:1:2::5"), "first@example.org").status_code == 200
        assert _post(_client(site, "2001:db8:1:ffff::9"), "second@example.org").status_code == 200
        assert _post(_client(site, "2001:db8:2::1"), "third@example.org").status_code == 200
        assert sorted(m["To"] for m in site.transport.outbox) == ["first@example.org", "third@example.org"]
        assert [h.email for h in _held(site)] == ["second@example.org"]


def test_disposable_and_denied_domains_are_held_and_allowed_ones_are_not(workspace):
    with open_site(None, signup_deny_domains=("spam.example",), **NO_POW) as site:
        _news(site)
        assert _post(site.client, "temp@mailinator.com").status_code == 200
        assert _post(site.client, "x@mail.spam.example").status_code == 200
        assert site.transport.outbox == []
        assert [(h.email, h.reasons) for h in _held(site)] == [
            ("temp@mailinator.com", protection.DISPOSABLE), ("x@mail.spam.example", protection.DENIED)]
    with open_site(None, signup_allow_domains=("mailinator.com",), **NO_POW) as site:
        assert _post(site.client, "qa@mailinator.com").status_code == 200
        assert [m["To"] for m in site.transport.outbox] == ["qa@mailinator.com"]


def test_a_held_address_bombed_again_is_held_once(workspace):
    with open_site(None, **NO_POW) as site:
        _news(site)
        for _ in range(3):
            assert _post(site.client, "temp@mailinator.com").status_code == 200
        assert _post(site.client, "temp@mailinator.com").status_code == 429  # the per-address limit
        assert [h.email for h in _held(site)] == ["temp@mailinator.com"]


def test_approve_sends_exactly_one_confirmation_and_reject_sends_none(workspace, cli):
    from newsletter.config import load_settings

    with open_site(None, **NO_POW) as site:
        _news(site)
        _post(site.client, "held@mailinator.com", name="Held Reader")
        _post(site.client, "gone@mailinator.com")
        assert site.transport.outbox == []
    listed = cli("subscribers", "quarantine", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = listed.json()
    assert [(r["email"], r["list"], r["reasons"]) for r in rows] == [
        ("held@mailinator.com", "news", protection.DISPOSABLE), ("gone@mailinator.com", "news", protection.DISPOSABLE)]
    held_id, gone_id = rows[0]["id"], rows[1]["id"]
    approved = cli("subscribers", "quarantine", "approve", str(held_id), "--json")
    assert approved.exit_code == 0, approved.stderr
    assert approved.json() == [{"id": held_id, "email": "held@mailinator.com", "list": "news", "joined": True,
                                "emailed": True}]
    again = cli("subscribers", "quarantine", "approve", str(held_id))
    assert again.exit_code == 1 and f"no held signup {held_id}" in again.stderr and "Traceback" not in again.stderr
    assert cli("subscribers", "quarantine", "reject", str(gone_id)).exit_code == 0
    outbox = sorted(load_settings().outbox_dir.glob("*.eml"))
    assert len(outbox) == 1
    assert "To: Held Reader <held@mailinator.com>" in outbox[0].read_text()
    assert cli("subscribers", "quarantine", "list", "--json").json() == []
    consent = cli("subscribers", "consent", "held@mailinator.com", "--json").json()
    [subscribe] = consent["consent"]
    assert (subscribe["action"], subscribe["ip"], subscribe["list"]) == ("subscribe", "testclient", "news")
    assert [m["status"] for m in consent["lists"]] == ["pending"]


def test_approving_a_signup_suppressed_meanwhile_sends_nothing(workspace):
    from newsletter.audience import rules
    from newsletter.usecases.signups import approve_held
    from newsletter.vocabulary import SuppressionReason

    with open_site(None, **NO_POW) as site:
        _news(site)
        _post(site.client, "temp@mailinator.com")
        [held] = _held(site)
        with site.store.session() as session:
            rules.suppress(session, "temp@mailinator.com", SuppressionReason.COMPLAINED, "test")
        approval = approve_held(site.app.state.ctx, held.id)
        assert (approval.joined, approval.emailed) == (False, False)
        assert site.transport.outbox == [] and _held(site) == []


def test_the_proof_of_work_is_on_by_default(workspace):
    with open_site(None) as site:  # the workspace's own settings: nothing said about [signups]
        assert site.settings.signup_proof_of_work is True
        _news(site)
        assert 'data-challenge="' in site.client.get("/subscribe").text
        assert _post(site.client, "nojs@example.org").status_code == 200  # no solution: held, answered alike
        assert site.transport.outbox == []
        assert [(h.email, h.reasons) for h in _held(site)] == [("nojs@example.org", protection.NO_PROOF)]
