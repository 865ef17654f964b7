"""Embeddable signup forms (``newsletter forms``) on both backends: the snippet, the hosted page's
pre-fill, typed fields validated into attributes, the redirect, and held signups keeping their fields."""

from __future__ import annotations

from newsletter.store import audience as q
from newsletter.store import signups as held_store

from support.web import CHEAP_PROOF_OF_WORK, open_site, solved_challenge


def _public_news(cli) -> None:
    assert cli("lists", "create", "news", "--public", "--display-name", "Clinic News").exit_code == 0


def _create(cli, *extra: str):
    return cli("forms", "create", "clinic", "--list", "news", "--field", "city:text", "--field", "visits:number",
               "--field", "tracking_consent:checkbox", *extra)


def test_create_prints_a_plain_html_snippet_and_lists_the_form(workspace, cli, monkeypatch):
    from newsletter.audience.forms import NO_SCRIPT_NOTE

    _public_news(cli)
    result = _create(cli, "--redirect", "https://www.clinic.example/thanks")
    assert result.exit_code == 0, result.stderr
    snippet = result.stdout
    # the proof of work is on by default: the form asks our script to solve a challenge, and says what
    # happens without it
    assert snippet.startswith('<form method="post" action="https://news.clinic.example/forms/clinic" data-altcha '
                              'data-challenge-url="https://news.clinic.example/subscribe/challenge">')
    assert '<input type="hidden" name="altcha" value="">' in snippet and NO_SCRIPT_NOTE in snippet
    assert snippet.rstrip().endswith('<script src="https://news.clinic.example/subscribe/altcha.js" defer></script>')
    assert '<input type="text" name="city">' in snippet and '<input type="number" name="visits">' in snippet
    assert '<input type="checkbox" name="tracking_consent" value="yes">' in snippet
    monkeypatch.setenv("NEWSLETTER_SIGNUP_PROOF_OF_WORK", "0")
    plain = cli("forms", "list", "--json").json()[0]["snippet"]
    assert plain.startswith('<form method="post" action="https://news.clinic.example/forms/clinic">')
    assert "<script" not in plain and "altcha" not in plain  # no script needed with the proof of work off
    listed = cli("forms", "list", "--json").json()
    assert [(f["name"], f["list"], f["redirect"], [x["type"] for x in f["fields"]]) for f in listed] == [
        ("clinic", "news", "https://www.clinic.example/thanks", ["text", "number", "checkbox"])]


def test_bad_forms_are_one_line_errors(workspace, cli):
    _public_news(cli)
    assert cli("lists", "create", "staff").exit_code == 0
    for args, words in [(("--field", "city:colour"), "unknown type"), (("--field", "email:text"), "the name must"),
                        (("--redirect", "javascript:alert(1)"), "not an http(s) URL")]:
        result = cli("forms", "create", "clinic", "--list", "news", *args)
        assert result.exit_code == 1 and words in result.stderr and "Traceback" not in result.stderr
    private = cli("forms", "create", "clinic", "--list", "staff")
    assert private.exit_code == 1 and "not public" in private.stderr
    assert _create(cli).exit_code == 0
    again = _create(cli)
    assert again.exit_code == 1 and "exists" in again.stderr


def test_the_hosted_page_prefills_and_a_post_stores_typed_attributes_then_redirects(workspace, cli):
    _public_news(cli)
    assert _create(cli, "--redirect", "https://www.clinic.example/thanks").exit_code == 0
    with open_site(None, **CHEAP_PROOF_OF_WORK) as site:
        page = site.client.get("/forms/clinic?email=ada@example.org&city=Paris&tracking_consent=yes")
        assert page.status_code == 200
        assert 'value="ada@example.org"' in page.text and 'value="Paris"' in page.text
        # the tracking-consent box is the page's own, once, and never pre-ticked (not even by the link)
        assert page.text.count('name="tracking_consent"') == 1 and " checked" not in page.text
        bad = site.client.post("/forms/clinic", data={"email": "ada@example.org", "visits": "many"})
        assert bad.status_code == 400 and "Visits must be a number" in bad.text
        assert site.transport.outbox == []
        assert "data-challenge=" in page.text  # the hosted page carries the challenge (on by default)
        done = site.client.post("/forms/clinic", data={"email": "ada@example.org", "name": "Ada", "city": " Paris ",
                                                       "visits": "3", "tracking_consent": "yes",
                                                       "altcha": solved_challenge(site.client)})
        assert done.status_code == 303 and done.headers["location"] == "https://www.clinic.example/thanks"
        assert [m["To"] for m in site.transport.outbox] == ["Ada <ada@example.org>"]
        with site.store.session() as session:
            subscriber = q.find_subscriber(session, "ada@example.org")
            assert subscriber.attributes == {"city": "Paris", "visits": "3", "tracking_consent": "yes"}
        assert site.client.get("/forms/nothing").status_code == 404


def test_a_held_form_signup_keeps_its_fields_until_approved(workspace, cli):
    from newsletter.usecases.signups import approve_held

    _public_news(cli)
    assert _create(cli).exit_code == 0
    with open_site(None) as site:
        posted = site.client.post("/forms/clinic", data={"email": "tmp@mailinator.com", "city": "Lyon"})
        assert posted.status_code == 200
        assert site.transport.outbox == []
        with site.store.session() as session:
            [held] = held_store.held(session)
        assert held.attributes == {"city": "Lyon", "tracking_consent": "no"}
        assert approve_held(site.app.state.ctx, held.id).emailed
        with site.store.session() as session:
            assert q.find_subscriber(session, "tmp@mailinator.com").attributes == {"city": "Lyon",
                                                                                   "tracking_consent": "no"}
        assert len(site.transport.outbox) == 1
