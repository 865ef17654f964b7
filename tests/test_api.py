"""The HTTP API under /api/: behaviour per resource, on SQLite and PostgreSQL, through the app of ``serve``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from newsletter.audience import manage
from newsletter.config import load_settings
from newsletter.store.db import Store

from support.api import ARTICLE, api_on, open_api

PROBLEM = "application/problem+json"
NEXT_YEAR = datetime.now(UTC).year + 1


@pytest.fixture
def api(workspace):
    api = api_on(workspace)
    yield api
    api.store.close()


def is_problem(response, status: int, detail: str) -> dict:
    """Assert an RFC 9457 problem of ``status`` whose detail starts with ``detail``; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:newsletter:problem:") and body["title"]
    assert body["detail"].startswith(detail), body
    return body


# -- served only while a token exists -------------------------------------------------------------

def test_no_token_no_api(workspace):
    from newsletter.web.app import create_app
    from starlette.testclient import TestClient

    settings = load_settings(workspace)
    store = Store(settings.database_url)
    try:
        app = create_app(settings, store)
        client = TestClient(app)
        assert app.state.api is False
        assert client.get("/api/openapi.json").status_code == 404
        assert client.post("/api/subscribers", json={"email": "ada@example.org"}).status_code == 404
        assert manage_count(store) == 0
    finally:
        store.close()


def manage_count(store) -> int:
    from newsletter.usecases.lists import all_lists

    return sum(row["confirmed"] + row["pending"] for row in all_lists(store))


def test_openapi_document_is_3_1_and_lists_every_resource(api):
    response = api.client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert {"/subscribers", "/subscribers/{email}", "/subscribers/{email}/unsubscribe", "/lists", "/lists/{name}",
            "/segments", "/segments/{name}/count", "/campaigns", "/campaigns/check", "/campaigns/preview",
            "/campaigns/{campaign_id}", "/campaigns/{campaign_id}/cancel"} <= set(document["paths"])
    create = document["paths"]["/subscribers"]["post"]
    assert PROBLEM in create["responses"]["422"]["content"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])


# -- authentication, scopes, rate limits -----------------------------------------------------------

def test_missing_wrong_and_revoked_tokens_are_401_problems(api):
    from newsletter.usecases.tokens import revoke_token

    is_problem(api.client.get("/api/lists"), 401, "this request carries no API token")
    assert api.client.get("/api/lists").headers["www-authenticate"] == "Bearer"
    is_problem(api.client.get("/api/lists", headers=api.headers("nl_" + "x" * 43)), 401, "the API token is not valid")
    is_problem(api.client.get("/api/lists", headers={"Authorization": "Basic YWRhOmFkYQ=="}), 401,
               "this request carries no API token")
    crm = api.new_token("crm", ["lists:read"])
    assert api.client.get("/api/lists", headers=api.headers(crm)).status_code == 200
    revoke_token(api.store, "crm")
    is_problem(api.client.get("/api/lists", headers=api.headers(crm)), 401, "the API token is not valid")


def test_a_token_without_the_scope_is_a_403_problem_and_changes_nothing(api):
    reader = api.new_token("reader", ["subscribers:read"])
    response = api.post("/api/subscribers", {"email": "ada@example.org", "list": "readers"}, token=reader)
    body = is_problem(response, 403, "the token 'reader' lacks the scope subscribers:write")
    assert "newsletter tokens create" in body["hint"]
    assert api.client.get("/api/subscribers", headers=api.headers(reader)).json()["items"] == []
    is_problem(api.client.get("/api/campaigns/1", headers=api.headers(reader)), 403, "the token 'reader' lacks")


def test_past_its_rate_a_token_gets_429_with_retry_after(api):
    slow = api.new_token("slow", ["lists:read"], rate=2)
    answers = [api.client.get("/api/lists", headers=api.headers(slow)) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    body = is_problem(answers[2], 429, "the token 'slow' may make 2 requests a second")
    assert int(answers[2].headers["retry-after"]) >= 1 and body["hint"]
    assert api.get("/api/lists").status_code == 200  # another token has its own bucket


# -- subscribers ---------------------------------------------------------------------------------

def test_create_with_consent_from_the_token_and_the_callers_ip(api):
    response = api.post("/api/subscribers", {"email": "Ada@Example.org", "name": "Ada Lovelace", "list": "readers",
                                             "attributes": {"city": "London"}, "tags": ["vip"]})
    assert response.status_code == 201, response.text
    data = response.json()
    assert (data["email"], data["created"], data["attributes"], data["list"]) == (
        "Ada@example.org", True, {"city": "London"}, {"name": "readers", "status": "confirmed"})
    shown = manage.describe(api.store, "ada@example.org")
    assert shown["tags"] == ["vip"]
    assert [(m["name"], m["status"]) for m in shown["lists"]] == [("readers", "confirmed")]
    assert [(c["action"], c["source"], c["ip"]) for c in shown["consent"]] == [
        ("subscribe", "api:clinic-website", "testclient")]
    again = api.post("/api/subscribers", {"email": "ada@example.org", "name": "Ada King"})
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["name"] == "Ada King"


def test_double_opt_in_list_leaves_them_pending_with_a_confirm_link(api):
    with api.store.session() as session:
        from newsletter.store.audience import create_list

        create_list(session, "weekly", double_opt_in=True)
    data = api.post("/api/subscribers", {"email": "bob@example.org", "list": "weekly"}).json()
    assert data["list"] == {"name": "weekly", "status": "pending"}
    assert data["confirm_url"].startswith("https://news.clinic.example/confirm/")


def test_hostile_names_and_addresses(api):
    data = api.post("/api/subscribers", {"email": "zoë@bücher.example", "name": "Zoë\r\nBcc: evil@example.org\x00",
                                         "list": "readers"}).json()
    assert "\r" not in data["name"] and "\n" not in data["name"] and "\x00" not in data["name"]
    assert data["name"] == "Zoë Bcc: evil@example.org"
    fetched = api.get("/api/subscribers/zo%C3%AB@b%C3%BCcher.example")
    assert fetched.status_code == 200 and fetched.json()["email"] == data["email"]
    is_problem(api.post("/api/subscribers", {"email": "not an address"}), 422, "'not an address' is not a valid")
    is_problem(api.post("/api/subscribers", {"email": "a@example.org", "list": "read\r\ners"}), 422,
               "the list name contains a line break")
    is_problem(api.post("/api/subscribers", {"email": "a@example.org", "name": "x" * 201}), 422, "body.name")
    is_problem(api.post("/api/subscribers", {"email": "a@example.org", "nmae": "typo"}), 422, "body.nmae")
    is_problem(api.post("/api/subscribers", {"email": "a@example.org", "timezone": "Mars/Olympus"}), 422,
               "unknown time zone 'Mars/Olympus'")
    assert api.get("/api/subscribers").json()["items"][0]["email"] == data["email"]
    assert len(api.get("/api/subscribers").json()["items"]) == 1


def test_the_problem_says_what_the_cli_says(api, cli):
    cli_result = cli("subscribers", "add", "not an address")
    message, hint = cli_result.stderr.removeprefix("Error: ").split("\nHint: ")
    body = is_problem(api.post("/api/subscribers", {"email": "not an address"}), 422, message.strip())
    assert body["detail"] == message.strip() and body["hint"] == hint.strip()


def test_an_unsubscribed_address_is_refused_unless_resubscribe(api):
    api.post("/api/subscribers", {"email": "carol@example.org", "list": "readers"})
    left = api.post("/api/subscribers/carol@example.org/unsubscribe", {})
    assert left.status_code == 200 and left.json() == {"email": "carol@example.org", "left": ["readers"],
                                                       "suppressed": True}
    body = is_problem(api.post("/api/subscribers", {"email": "carol@example.org", "list": "readers"}), 409,
                      "carol@example.org is on the suppression list (unsubscribed)")
    assert "resubscribe" in body["hint"]
    back = api.post("/api/subscribers", {"email": "carol@example.org", "list": "readers", "resubscribe": True})
    assert back.status_code == 200 and back.json()["list"] == {"name": "readers", "status": "confirmed"}


def test_update_attributes_and_tags_then_unsubscribe_from_one_list_then_erase(api):
    api.post("/api/subscribers", {"email": "dan@example.org", "list": "readers", "attributes": {"city": "Paris"},
                                  "tags": ["trial"]})
    api.post("/api/subscribers", {"email": "dan@example.org", "list": "alerts"})
    changed = api.client.patch("/api/subscribers/dan@example.org", headers=api.headers(),
                               json={"attributes": {"plan": "gold"}, "add_tags": ["vip"], "remove_tags": ["trial"],
                                     "timezone": "Europe/Paris"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["attributes"], changed.json()["tags"], changed.json()["timezone"]) == (
        {"city": "Paris", "plan": "gold"}, ["vip"], "Europe/Paris")
    left = api.post("/api/subscribers/dan@example.org/unsubscribe", {"list": "alerts"}).json()
    assert left == {"email": "dan@example.org", "left": ["alerts"], "suppressed": False}
    lists = {m["name"]: m["status"] for m in api.get("/api/subscribers/dan@example.org").json()["lists"]}
    assert lists == {"alerts": "unsubscribed", "readers": "confirmed"}
    erased = api.client.delete("/api/subscribers/dan@example.org", headers=api.headers())
    assert erased.status_code == 204
    body = is_problem(api.get("/api/subscribers/dan@example.org"), 404, "no subscriber dan@example.org: their data")
    assert "hash" in body["hint"]
    is_problem(api.post("/api/subscribers", {"email": "dan@example.org"}), 409, "dan@example.org is on the suppr")


def test_cursor_pagination_visits_everyone_once(api):
    emails = [f"reader{i}@example.org" for i in range(7)]
    for email in emails:
        assert api.post("/api/subscribers", {"email": email, "list": "readers"}).status_code == 201
    api.post("/api/subscribers", {"email": "other@example.org", "list": "others"})
    seen, cursor, pages = [], None, 0
    while True:
        params = {"list": "readers", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/subscribers", params=params).json()
        seen += [item["email"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == emails and pages == 3
    assert len(api.get("/api/subscribers", params={"limit": 1000}).json()["items"]) == 8
    is_problem(api.get("/api/subscribers", params={"cursor": "bm90LW91cnM"}), 422, "the cursor is not one")
    is_problem(api.get("/api/subscribers", params={"limit": 0}), 422, "query.limit")
    is_problem(api.get("/api/subscribers", params={"list": "nope"}), 404, "no list named 'nope'")


# -- Idempotency-Key -------------------------------------------------------------------------------

def test_a_retried_post_creates_once_and_replays_the_first_answer(api):
    first = api.post("/api/subscribers", {"email": "eve@example.org", "list": "readers"}, key="signup-eve-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = api.post("/api/subscribers", {"email": "eve@example.org", "list": "readers"}, key="signup-eve-1")
    assert (again.status_code, again.json()) == (201, first.json())  # not 200 "updated": the stored answer
    assert again.headers["idempotent-replayed"] == "true"
    after_restart = api.restart().post("/api/subscribers", {"email": "eve@example.org", "list": "readers"},
                                       key="signup-eve-1")
    assert (after_restart.status_code, after_restart.json()) == (201, first.json())
    assert [c["action"] for c in manage.describe(api.store, "eve@example.org")["consent"]] == ["subscribe"]


def test_the_same_key_with_another_body_is_a_422_problem(api):
    api.post("/api/subscribers", {"email": "fay@example.org"}, key="k-1")
    body = is_problem(api.post("/api/subscribers", {"email": "gus@example.org"}, key="k-1"), 422,
                      "this Idempotency-Key was used for another request")
    assert "new key" in body["hint"]
    is_problem(api.get("/api/subscribers/gus@example.org"), 404, "no subscriber gus@example.org")


def test_an_error_answer_is_kept_too(api):
    refused = api.post("/api/subscribers", {"email": "not an address"}, key="bad-1")
    again = api.post("/api/subscribers", {"email": "not an address"}, key="bad-1")
    assert (again.status_code, again.json()) == (refused.status_code, refused.json()) == (422, refused.json())
    assert again.headers["idempotent-replayed"] == "true"


def test_keys_are_per_token(api):
    other = api.new_token("other", ["subscribers:write"])
    assert api.post("/api/subscribers", {"email": "hal@example.org"}, key="same").status_code == 201
    second = api.post("/api/subscribers", {"email": "ian@example.org"}, key="same", token=other)
    assert second.status_code == 201 and second.json()["email"] == "ian@example.org"


def test_a_bad_key_is_refused(api):
    is_problem(api.post("/api/subscribers", {"email": "jo@example.org"}, key="with space"), 422,
               "an Idempotency-Key is 1 to 255 visible ASCII")
    is_problem(api.get("/api/subscribers/jo@example.org"), 404, "no subscriber")


# -- body size -----------------------------------------------------------------------------------

def test_a_600_mb_body_is_refused_before_it_is_read(api):
    """Content-Length says 600 MB: 413 problem at once, and the body is never pulled from the client."""
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/subscribers", "raw_path": b"/api/subscribers", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(600 * 2**20).encode()),
                         (b"authorization", f"Bearer {api.token}".encode())]}
    asyncio.run(api.client.app(scope, receive, send))
    assert sent[0]["status"] == 413 and pulled == []
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == PROBLEM.encode()
    assert json.loads(sent[1]["body"])["detail"].startswith("the request body is larger than")


def test_a_streamed_body_past_the_cap_stops_being_read(api):
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 2**20, "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/subscribers", "raw_path": b"/api/subscribers", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"application/json"), (b"authorization", f"Bearer {api.token}".encode())]}
    asyncio.run(api.client.app(scope, receive, send))
    from newsletter.web.api.app import API_BODY_BYTES

    assert sent[0]["status"] == 413 and len(pulled) == API_BODY_BYTES // 2**20 + 1  # not one chunk past the cap


# -- lists and segments ----------------------------------------------------------------------------

def test_lists_with_counts_and_segments_with_counts(api, cli):
    for email in ("a@example.org", "b@example.org"):
        api.post("/api/subscribers", {"email": email, "list": "readers", "attributes": {"city": "London"}})
    api.post("/api/subscribers", {"email": "c@example.org", "list": "readers", "attributes": {"city": "Paris"}})
    rows = api.get("/api/lists").json()
    assert [(r["name"], r["confirmed"], r["pending"]) for r in rows] == [("readers", 3, 0)]
    assert api.get("/api/lists/readers").json()["confirmed"] == 3
    is_problem(api.get("/api/lists/nope"), 404, "no list named 'nope'")
    assert cli("segments", "create", "london", "--list", "readers", "--where", 'city = "London"').exit_code == 0
    assert [s["name"] for s in api.get("/api/segments").json()] == ["london"]
    counted = api.get("/api/segments/london/count").json()
    assert (counted["count"], counted["per_list"]) == (2, {"readers": 2})
    is_problem(api.get("/api/segments/nope/count"), 404, "")


# -- campaigns -----------------------------------------------------------------------------------

def test_check_and_preview_an_article(api):
    checked = api.post("/api/campaigns/check", {"markdown": ARTICLE})
    assert checked.status_code == 200, checked.text
    assert checked.json()["subject"] == "Flu shots are here" and checked.json()["ok"] is True
    shown = api.post("/api/campaigns/preview", {"markdown": ARTICLE})
    assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
    assert "Book yours at the" in shown.text and "<html" in shown.text.lower()
    is_problem(api.post("/api/campaigns/check", {"markdown": "   "}), 422, "the article is empty")


def test_schedule_status_and_cancel_a_campaign(api):
    api.post("/api/subscribers", {"email": "ada@example.org", "list": "readers"})
    body = {"markdown": ARTICLE, "list": "readers", "at": f"{NEXT_YEAR}-12-01 09:00", "tz": "Europe/Paris"}
    scheduled = api.post("/api/campaigns", body, key="flu-1")
    assert scheduled.status_code == 201, scheduled.text
    data = scheduled.json()
    assert (data["status"], data["list"], data["subject"], data["audience"]) == (
        "scheduled", "readers", "Flu shots are here", 1)
    assert data["scheduled_at"].startswith(f"{NEXT_YEAR}-12-01T08:00:00")
    replay = api.post("/api/campaigns", body, key="flu-1")
    assert replay.json()["campaign_id"] == data["campaign_id"]
    is_problem(api.post("/api/campaigns", body), 409, "")  # the same edition again, without a key: the guard
    status = api.get(f"/api/campaigns/{data['campaign_id']}").json()
    assert (status["status"], status["subject"]) == ("scheduled", "Flu shots are here")
    cancelled = api.post(f"/api/campaigns/{data['campaign_id']}/cancel")
    assert cancelled.json() == {"campaign_id": data["campaign_id"], "status": "cancelled"}
    assert api.post(f"/api/campaigns/{data['campaign_id']}/cancel").status_code == 200
    assert api.get(f"/api/campaigns/{data['campaign_id']}").json()["status"] == "cancelled"
    is_problem(api.get("/api/campaigns/999999"), 404, "")


def test_a_pre_flight_error_or_a_bad_time_is_a_422_problem(api):
    api.post("/api/subscribers", {"email": "ada@example.org", "list": "readers"})
    body = {"markdown": ARTICLE, "list": "readers", "at": "not a time"}
    is_problem(api.post("/api/campaigns", body), 422, "")
    is_problem(api.post("/api/campaigns", {**body, "at": "2001-01-01 09:00"}), 422, "")
    is_problem(api.post("/api/campaigns", {**body, "list": "nobody-here", "at": f"{NEXT_YEAR}-01-01 09:00"}), 404, "")


def test_open_api_restarts_see_the_same_tokens(workspace):
    api = api_on(workspace)
    try:
        again = open_api(api.settings, api.store, api.token)
        assert again.get("/api/lists").status_code == 200
    finally:
        api.store.close()


# -- bulk import ---------------------------------------------------------------------------------

def test_import_an_uploaded_file_gives_the_clis_report(api, cli, tmp_path):
    rows = "email,name\nada@example.org,Ada\nnot-an-address,Bad\nbob@example.org,Bob\r\nada@example.org,Again\n"
    response = api.client.post("/api/subscribers/import", params={"list": "readers"}, headers=api.headers(),
                               files={"file": ("clinic export.csv", rows.encode(), "text/csv")})
    assert response.status_code == 200, response.text
    report = response.json()
    (tmp_path / "clinic export.csv").write_text(rows)
    assert cli("lists", "create", "other").exit_code == 0
    expected = cli("subscribers", "import", str(tmp_path / "clinic export.csv"), "--list", "other", "--dry-run",
                   "--json").json()
    assert {k: report[k] for k in ("invalid", "skipped", "errors", "skipped_rows", "format")} == {
        k: expected[k] for k in ("invalid", "skipped", "errors", "skipped_rows", "format")}
    assert expected["added"] + expected["updated"] == report["added"]  # the CLI's run found them added already
    assert (report["added"], report["invalid"]) == (2, 1) and report["errors"][0]["line"] == 3
    consent = manage.describe(api.store, "bob@example.org")["consent"]
    assert [c["source"] for c in consent] == ["import:clinic_export.csv"]


def test_import_formats_listed_in_the_api_are_the_importers():
    import typing

    from newsletter.audience.formats import FORMATS
    from newsletter.web.api.subscribers import FORMAT

    assert typing.get_args(FORMAT) == ("auto", *FORMATS)


def test_an_import_over_100_mb_is_refused_before_it_is_read(api):
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/subscribers/import", "raw_path": b"/api/subscribers/import",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                         (b"content-length", str(600 * 2**20).encode()),
                         (b"authorization", f"Bearer {api.token}".encode())]}
    asyncio.run(api.client.app(scope, receive, send))
    assert sent[0]["status"] == 413 and pulled == []


# -- transactional send ----------------------------------------------------------------------------

def test_a_transactional_message_goes_from_the_non_subscription_identity(api):
    response = api.post("/api/send", {"to": "Pat@Example.org", "name": "Pat", "subject": "Your visit on %%day%%",
                                      "markdown": "Hello %%name%%, see you on **%%day%%**.\n\n<script>x</script>",
                                      "data": {"day": "Monday <b>9:00</b>\r\nBcc: evil@example.org"}},
                        key="visit-pat-1")
    assert response.status_code == 200, response.text
    assert response.json()["to"] == "Pat@example.org" and response.json()["outcome"] == "sent"
    [mail] = api.transport.outbox
    assert mail["To"] == "Pat <Pat@example.org>"
    assert mail["From"] == api.settings.transactional_sender
    assert mail["Subject"] == "Your visit on Monday <b>9:00</b> Bcc: evil@example.org"
    assert mail["Bcc"] is None and mail["List-Unsubscribe"] is None
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "<strong>Monday &lt;b&gt;9:00&lt;/b&gt;" in html and "<script>" not in html
    assert "Hello Pat, see you on **Monday <b>9:00</b>" in text
    again = api.post("/api/send", {"to": "Pat@Example.org", "name": "Pat", "subject": "Your visit on %%day%%",
                                   "markdown": "Hello %%name%%, see you on **%%day%%**.\n\n<script>x</script>",
                                   "data": {"day": "Monday <b>9:00</b>\r\nBcc: evil@example.org"}}, key="visit-pat-1")
    assert again.json() == response.json() and len(api.transport.outbox) == 1  # a retry is never sent twice


def test_a_suppressed_address_gets_no_transactional_mail(api):
    api.post("/api/subscribers", {"email": "quin@example.org", "list": "readers"})
    api.post("/api/subscribers/quin@example.org/unsubscribe", {})
    body = is_problem(api.post("/api/send", {"to": "quin@example.org", "subject": "Hi", "markdown": "Hello"}), 409,
                      "quin@example.org is on the suppression list (unsubscribed); nothing was sent")
    assert body["hint"] and api.transport.outbox == []
    is_problem(api.post("/api/send", {"to": "x@example.org", "subject": "Hi", "markdown": "Hi",
                                      "data": {"bad key": "v"}}), 422, "data field 'bad key'")
    is_problem(api.post("/api/send", {"to": "x@example.org", "subject": "\r\n", "markdown": "Hi"}), 422,
               "the subject is one line")
    subscriber_only = api.new_token("site", ["subscribers:write"])
    is_problem(api.post("/api/send", {"to": "x@example.org", "subject": "Hi", "markdown": "Hi"},
                        token=subscriber_only), 403, "the token 'site' lacks the scope send:write")
    assert api.transport.outbox == []


def test_send_a_test_of_an_article(api):
    response = api.post("/api/campaigns/test", {"markdown": ARTICLE, "to": ["Editor@Clinic.example", "bad address"]})
    is_problem(response, 422, "'bad address' is not a valid")
    assert api.transport.outbox == []
    response = api.post("/api/campaigns/test", {"markdown": ARTICLE, "to": ["Editor@Clinic.example"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"subject": "[Test] Flu shots are here", "sent_to": ["Editor@clinic.example"],
                               "not_sent": []}
    [mail] = api.transport.outbox
    assert mail["Subject"] == "[Test] Flu shots are here" and mail["To"] == "Editor@clinic.example"
    assert "Book yours at the" in mail.get_body(("html",)).get_content()
    assert api.get("/api/lists").json() == []  # no campaign, no list: nothing stored


# -- serve says whether the API is on; racing retries ----------------------------------------------

def test_serve_says_at_start_whether_the_api_is_served(workspace, cli, monkeypatch):
    import newsletter.cli.serve as serve_command

    monkeypatch.setattr(serve_command, "_run", lambda *_args: None)  # start, say, and stop at once
    off = cli("serve", "--port", "0")
    assert off.exit_code == 0 and "HTTP API: off, /api/ answers 404 (no API token" in off.stderr
    assert cli("tokens", "create", "site", "--scope", "lists:read").exit_code == 0
    on = cli("serve", "--port", "0")
    assert on.exit_code == 0 and "HTTP API: https://news.clinic.example/api/" in on.stderr


def test_racing_retries_with_one_key_create_one_subscriber(api):
    """Eight copies of one request at once (a client retrying on a timeout): one subscriber, one consent event."""
    from support.web_server import in_parallel, running

    body = {"email": "race@example.org", "list": "readers", "name": "Race"}
    with running(api.client.app) as base:
        answers = in_parallel(8, lambda client, _i: client.post(
            f"{base}/api/subscribers", json=body, headers=api.headers(**{"Idempotency-Key": "race-1"})))
    statuses = sorted(answer.status_code for answer in answers)
    assert 201 in statuses and set(statuses) <= {201, 409}
    created = [answer.json() for answer in answers if answer.status_code == 201]
    assert all(answer == created[0] and answer["created"] is True for answer in created)
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["detail"] == "a request with this Idempotency-Key is still being handled"
    assert [c["action"] for c in manage.describe(api.store, "race@example.org")["consent"]] == ["subscribe"]
    assert len(api.get("/api/subscribers").json()["items"]) == 1


def test_api_changes_are_written_to_the_webhook_outbox_in_order(api):
    """A CRM mirroring through webhooks sees what the API did: created, updated, unsubscribed, erased."""
    from newsletter.store.webhooks import WebhookEvent
    from newsletter.usecases.webhooks import add_endpoint
    from sqlalchemy import select

    add_endpoint(api.store, "https://crm.example.org/hooks", ["subscriber.created", "subscriber.updated",
                                                               "subscriber.unsubscribed", "subscriber.erased"])
    assert api.post("/api/subscribers", {"email": "eve@example.org", "list": "readers"}).status_code == 201
    changed = api.client.patch("/api/subscribers/eve@example.org", headers=api.headers(),
                               json={"attributes": {"plan": "gold"}})
    assert changed.status_code == 200, changed.text
    assert api.post("/api/subscribers/eve@example.org/unsubscribe", {"list": "readers"}).status_code == 200
    assert api.client.delete("/api/subscribers/eve@example.org", headers=api.headers()).status_code == 204
    with api.store.session() as session:
        events = list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
    assert [event.type for event in events] == ["subscriber.created", "subscriber.updated",
                                                "subscriber.unsubscribed", "subscriber.erased"]
    assert len({event.subject for event in events}) == 1
