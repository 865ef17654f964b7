"""``newsletter preview``: the app's endpoints through Starlette's TestClient, and the command.

The browser side (widths, dark mode, live reload in a real page) is in
test_preview_browser.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARTICLES = Path(__file__).parent / "articles"
ARTICLE = "articles/front-matter-budget.md"
SLUG = "five-budgeting-habits-that-actually-stick"
BUILTIN_THEME = Path(__file__).parent.parent / "templates" / "default"


def make_letter(folder: Path) -> Path:
    """A workspace holding the test articles (composing needs no database)."""
    from newsletter.workspace import init_workspace

    init_workspace(folder, sender="Clinic News <news@clinic.example>", postal_address="1 Main Street, Springfield",
                   base_url="https://news.clinic.example", transport="file")
    for path in ARTICLES.iterdir():
        shutil.copy(path, folder / "articles" / path.name)
    return folder


@pytest.fixture
def letter(tmp_path, monkeypatch):
    folder = make_letter(tmp_path / "letter")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.chdir(folder)
    return folder


def settings_of(folder: Path):
    from newsletter.config import load_settings

    return load_settings(folder)


def client_for(folder: Path, article: str = ARTICLE, **options):
    from newsletter.web.preview import create_preview_app
    from starlette.testclient import TestClient

    options.setdefault("watch", False)
    app = create_preview_app(settings_of(folder), folder / article, **options)
    return TestClient(app)


def break_theme(folder: Path, line_text: str = "{{ article.title | no_such_filter }}") -> int:
    """Copy the default theme into the workspace with an error; returns the broken line's number."""
    theme = folder / "templates" / "default"
    theme.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUILTIN_THEME / "blocks.mjml.j2", theme / "blocks.mjml.j2")
    lines = (BUILTIN_THEME / "email.mjml.j2").read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if "nl-title" in line) + 1
    lines[number - 1] = line_text
    (theme / "email.mjml.j2").write_text("\n".join(lines) + "\n")
    return number


# -- the page and the email frame ------------------------------------------------


def test_page_and_its_assets_need_no_network(letter):
    with client_for(letter) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'src="/assets/preview.js"' in page.text
        for name in ("preview.js", "preview.css"):
            asset = client.get(f"/assets/{name}")
            assert asset.status_code == 200
            assert not re.search(r"https?://", asset.text), f"{name} refers to the network"
        assert not re.search(r"https?://", page.text)


def test_email_frame_and_state_for_the_sample_reader(letter):
    with client_for(letter) as client:
        html = client.get("/email.html").text
        assert "Hi Sample," in html and "%%" not in html
        assert "https://news.clinic.example/unsubscribe/preview-token" in html
        state = client.get("/api/state").json()
    assert state["subject"] == "Five budgeting habits that actually stick"
    assert state["to"] == "Sample Reader <reader@example.org>" and state["error"] is None
    assert state["text"].startswith("Five budgeting habits")  # the greeting comes after the title
    assert "\nHi Sample,\n" in state["text"]
    assert "List-Unsubscribe: <https://news.clinic.example/unsubscribe/preview-token>" in state["source"]
    assert "Content-Transfer-Encoding: quoted-printable" in state["source"]
    assert [f for f in state["findings"] if f["code"] != "client-support"] == []  # caniemail's: see below


def test_render_as_a_subscriber_from_the_store(workspace):
    from newsletter.audience.manage import add_subscriber
    from newsletter.store.db import open_store

    shutil.copy(ARTICLES / "front-matter-budget.md", workspace / ARTICLE)
    store = open_store(settings_of(workspace))
    add_subscriber(store, "Ada@Example.org", name="Ada Lovelace", attributes={"city": "London"})
    add_subscriber(store, "bob@example.org")
    try:
        with client_for(workspace, store=store) as client:
            listed = client.get("/api/subscribers").json()
            assert [s["email"] for s in listed["subscribers"]] == ["Ada@example.org", "bob@example.org"]
            html = client.get("/email.html", params={"as": "ada@example.org"}).text
            assert "Hi Ada," in html and "at Ada@example.org." in html
            assert "Hi there," in client.get("/email.html", params={"as": "bob@example.org"}).text
            state = client.get("/api/state", params={"as": "ada@example.org"}).json()
            assert state["to"] == "Ada Lovelace <Ada@example.org>" and "Hi Ada," in state["text"]
            missing = client.get("/email.html", params={"as": "nobody@example.org"})
            assert missing.status_code == 404 and "no subscriber" in missing.text
    finally:
        store.close()


def test_findings_say_what_they_are_about(letter):
    article = letter / "articles" / "draft.md"
    article.write_text(
        "---\ntitle: A draft with problems to fix\n---\n\n"
        "TK intro. Read [the old page](http://example.org/old) first.\n"
    )
    with client_for(letter, "articles/draft.md") as client:
        findings = {f["code"]: f for f in client.get("/api/state").json()["findings"]}
    assert findings["link-insecure"]["view"] == "email"
    assert findings["link-insecure"]["target"] == "http://example.org/old"
    assert findings["placeholder"]["view"] == "text" and findings["placeholder"]["target"] is None
    assert findings["preheader-missing"]["view"] == "source"


def test_checks_show_client_support_and_spamassassin(letter):
    """The Checks tab has what ``check --spam`` reports: caniemail's findings and SpamAssassin's rules."""
    if not shutil.which("spamassassin"):
        from support.services import need_service

        need_service("SpamAssassin is not installed (apt-get install spamassassin)")
    with client_for(letter) as client:
        findings = [f for f in client.get("/api/state").json()["findings"] if f["code"] == "client-support"]
        spam = client.get("/api/spam")
        again = client.get("/api/spam").json()
    assert any("(css-border-radius) is not supported in Outlook for Windows" in f["message"] for f in findings)
    assert {f["view"] for f in findings} == {"source"}
    assert spam.status_code == 200
    data = spam.json()
    assert data["spam"]["available"] is True and data["spam"]["content_score"] == 0
    assert "HTML_MESSAGE" in {rule["name"] for rule in data["spam"]["rules"]}
    assert again == data  # kept for the version: SpamAssassin runs once per compose


def test_checks_say_how_to_install_spamassassin_when_absent(letter, tmp_path, monkeypatch):
    empty = tmp_path / "no-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with client_for(letter) as client:
        data = client.get("/api/spam").json()
    assert data["spam"]["available"] is False and "apt-get install spamassassin" in data["spam"]["hint"]


def test_scheme_forces_dark_rules_on_or_off(letter):
    with client_for(letter) as client:
        auto = client.get("/email.html").text
        dark = client.get("/email.html", params={"scheme": "dark"}).text
        light = client.get("/email.html", params={"scheme": "light"}).text
    assert "prefers-color-scheme:dark" in auto
    assert "prefers-color-scheme" not in dark and "(min-width: 0px)" in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    assert "prefers-color-scheme" not in light and "(max-width: 0px)" in light


def test_force_scheme_keeps_other_media_conditions():
    from newsletter.web.preview_state import force_scheme

    html = "<html><head><style>@media screen and (prefers-color-scheme: dark) { a {} }</style></head></html>"
    assert "@media screen and (min-width: 0px)" in force_scheme(html, "dark")
    assert force_scheme(html, "auto") == html


# -- send test ---------------------------------------------------------------------


def test_send_test_goes_through_the_transport_marked_test_and_is_no_campaign(workspace):
    from newsletter.delivery.memory import MemoryTransport
    from newsletter.store.db import open_store
    from sqlalchemy import text

    shutil.copy(ARTICLES / "front-matter-budget.md", workspace / ARTICLE)
    transport = MemoryTransport()
    store = open_store(settings_of(workspace))
    try:
        with client_for(workspace, store=store, transport_factory=lambda: transport) as client:
            answer = client.post("/send-test", json={"to": "Writer@Example.org"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["subject"] == "[TEST] Five budgeting habits that actually stick"
        with store.session() as session:
            counts = [session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
                      for table in ("campaigns", "deliveries", "editions")]
    finally:
        store.close()
    [message] = transport.outbox
    assert message["Subject"] == "[TEST] Five budgeting habits that actually stick"
    assert message["To"] == "Writer@example.org" and message["X-Newsletter-Test"] == "preview"
    assert message["List-Unsubscribe"] == "<https://news.clinic.example/unsubscribe/preview-token>"
    assert "Hi Sample," in message.get_body(("plain",)).get_content()
    assert counts == [0, 0, 0]


def test_send_test_refuses_bad_addresses_and_cross_site_posts(letter):
    from newsletter.delivery.memory import MemoryTransport

    transport = MemoryTransport()
    with client_for(letter, transport_factory=lambda: transport) as client:
        bad = client.post("/send-test", json={"to": "not an address"})
        assert bad.status_code == 400 and bad.json()["error"]
        form = client.post("/send-test", data={"to": "writer@example.org"})
        assert form.status_code == 415
        foreign = client.post("/send-test", json={"to": "writer@example.org"}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
    assert transport.outbox == []


def test_send_test_reports_a_refusing_transport(letter):
    from newsletter.delivery.memory import MemoryTransport

    with client_for(letter, transport_factory=lambda: MemoryTransport(reject={"writer@example.org"})) as client:
        answer = client.post("/send-test", json={"to": "writer@example.org"})
    assert answer.status_code == 502 and "rejected" in answer.json()["error"]


def test_only_local_host_names_are_served_when_asked(letter):
    with client_for(letter, allowed_hosts=["127.0.0.1", "localhost"]) as client:
        assert client.get("/", headers={"Host": "rebound.example"}).status_code == 400
        assert client.get("/", headers={"Host": "127.0.0.1:8025"}).status_code == 200


# -- errors and reloads ----------------------------------------------------------


def test_template_error_is_shown_with_file_and_line_then_recovers(letter):
    with client_for(letter) as client:
        line = break_theme(letter)
        refreshed = client.post("/api/refresh", json={}).json()
        assert refreshed["version"] == 2
        state = client.get("/api/state").json()
        assert f"email.mjml.j2:{line}" in state["error"]["message"] and state["error"]["kind"] == "TemplateError"
        assert state["slug"] == SLUG, "the last good rendering stays on show"
        assert client.get("/email.html").status_code == 200
        shutil.copy(BUILTIN_THEME / "email.mjml.j2", letter / "templates" / "default" / "email.mjml.j2")
        client.post("/api/refresh", json={})
        assert client.get("/api/state").json()["error"] is None


def test_an_article_that_never_composed_shows_the_error_in_the_frame(letter):
    line = break_theme(letter)
    with client_for(letter) as client:
        frame = client.get("/email.html")
        assert frame.status_code == 503 and f"email.mjml.j2:{line}" in frame.text
        state = client.get("/api/state").json()
        assert "slug" not in state and f"email.mjml.j2:{line}" in state["error"]["message"]
        assert client.post("/send-test", json={"to": "writer@example.org"}).status_code == 503


def test_saving_the_article_recomposes_it(letter):
    article = letter / ARTICLE
    with client_for(letter, watch=True) as client:
        time.sleep(0.3)  # the watcher starts with the app
        article.write_text(article.read_text().replace("Five budgeting habits", "Six budgeting habits"))
        state = wait_for(lambda: client.get("/api/state").json(), lambda s: s["version"] > 1)
    assert state["subject"] == "Six budgeting habits that actually stick"


def wait_for(fetch, done, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            assert done(value), f"not updated within {timeout} s: {value!r}"[:300]
            return value
        time.sleep(0.1)


# -- the command -------------------------------------------------------------------


def test_missing_article_is_one_line(cli, letter):
    result = cli("preview", "articles/nope.md", "--no-open")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: article not found: articles/nope.md"
    assert result.stderr.splitlines()[1].startswith("Hint: ") and len(result.stderr.splitlines()) == 2


def test_port_in_use_suggests_another(cli, letter):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("preview", ARTICLE, "--port", port, "--no-open")
    assert result.exit_code == 1
    assert f"Error: port {port} is in use on 127.0.0.1" in result.stderr
    assert f"--port {port + 1}" in result.stderr and "Traceback" not in result.stderr


class FakeServer:
    started = True
    should_exit = False

    def __init__(self, app, sock):
        self.app, self.sock = app, sock

    def run(self, sockets):
        FakeServer.ran = (self.app, sockets)


def test_command_warns_for_a_public_host_and_opens_the_browser(cli, letter, monkeypatch):
    import webbrowser

    from newsletter.web import preview_server

    opened = []
    monkeypatch.setattr(preview_server, "make_server", lambda app, sock: FakeServer(app, sock))
    monkeypatch.setattr(webbrowser, "open", opened.append)
    result = cli("preview", ARTICLE, "--host", "0.0.0.0", "--port", "0", "--recent-url", "https://blog.example.org/x")
    assert result.exit_code == 0, result.stderr
    assert "Warning: listening on 0.0.0.0" in result.stderr
    url = re.search(r"http://127\.0\.0\.1:\d+/", result.stderr).group(0)
    wait_for(lambda: opened, bool, timeout=2)
    assert opened == [url]
    app, _sockets = FakeServer.ran
    assert app.state.preview.options["recent_url"] == "https://blog.example.org/x"


def test_no_open_and_local_host_stay_quiet(cli, letter, monkeypatch):
    import webbrowser

    from newsletter.web import preview_server

    opened = []
    monkeypatch.setattr(preview_server, "make_server", lambda app, sock: FakeServer(app, sock))
    monkeypatch.setattr(webbrowser, "open", opened.append)
    result = cli("preview", ARTICLE, "--port", "0", "--no-open")
    assert result.exit_code == 0 and "Warning" not in result.stderr
    time.sleep(0.2)
    assert opened == []


def test_the_command_serves_the_page_and_stops_on_ctrl_c(letter):
    """The real command in a child process: serves the page, and Ctrl-C ends it cleanly."""
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", ARTICLE, "--port", "0", "--no-open"],
        cwd=letter, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = child.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        page = wait_for(lambda: _get(httpx, url), lambda r: r is not None and r.status_code == 200)
        assert "preview.js" in page.text
        assert "Hi Sample," in httpx.get(url + "email.html").text
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=5) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()


def _get(httpx, url):
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None
