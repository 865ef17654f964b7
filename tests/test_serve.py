"""``newsletter serve`` for real: a running server, and Debian's Chromium clicking through its pages.

The server is the real command in a child process (uvicorn, the workspace's
database, the file transport writing confirmation emails to ``outbox/``);
the browser is Playwright driving /usr/bin/chromium (tests/browser.py), and
every request it makes must go to the local server (no external assets).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import unsubscribe_url
from newsletter.config import load_settings
from newsletter.store import audience as q
from newsletter.store.db import open_store

from browser import launch_chromium, local_only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(workspace):
    """``newsletter serve`` on 127.0.0.1 in a child process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=workspace,
                               env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"newsletter serve did not start: {process.communicate()[1].decode()[-2000:]}")
        time.sleep(0.1)
    try:
        yield base
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err.decode()[-2000:]
        assert "/unsubscribe/" not in err.decode()  # tokens never in the log


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def store(workspace):
    opened = open_store(load_settings())
    yield opened
    opened.close()


def lists_of(store, email):
    return {entry["name"]: entry["status"] for entry in manage.describe(store, email)["lists"]}


def local(url: str, base: str) -> str:
    """The same path on the local server (links in emails name NEWSLETTER_BASE_URL)."""
    return base + "/" + url.split("/", 3)[3]


def test_port_in_use_is_one_line_with_a_hint(workspace, cli):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli("serve", "--port", port)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: port {port} is in use")
    assert "Hint:" in result.stderr and "Traceback" not in result.stderr


def test_serve_help_names_the_paths(cli):
    result = cli("serve", "--help")
    assert result.exit_code == 0 and "/webhooks/sendgrid" in result.stdout and "Example" in result.stdout


def test_chromium_clicks_unsubscribe(workspace, server, browser, store):
    with store.session() as session:
        q.create_list(session, "readers", public=True)
    added = manage.add_subscriber(store, "reader@example.org", list_name="readers", confirmed=True)
    settings = load_settings()
    page = browser.new_page()
    refused = local_only(page, server)
    page.goto(local(unsubscribe_url(settings, added.subscriber_id, added.list_id, added.email), server))
    assert lists_of(store, "reader@example.org") == {"readers": "confirmed"}  # looking changes nothing
    page.get_by_role("button", name="Unsubscribe from readers").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert lists_of(store, "reader@example.org") == {"readers": "unsubscribed"}
    consent = manage.describe(store, "reader@example.org")["consent"][-1]
    assert (consent["action"], consent["source"], consent["ip"]) == ("unsubscribe", "web", "127.0.0.1")
    page.get_by_role("button", name="Subscribe to readers again").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    assert lists_of(store, "reader@example.org") == {"readers": "confirmed"}
    assert refused == []
    page.close()


def test_chromium_signs_up_and_confirms_by_email(workspace, server, browser, store):
    with store.session() as session:
        q.create_list(session, "letters", double_opt_in=True, public=True)
    page = browser.new_page()
    refused = local_only(page, server)
    page.goto(f"{server}/subscribe")
    page.get_by_label("Email address").fill("new@example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert lists_of(store, "new@example.org") == {"letters": "pending"}
    [email_file] = list(Path(workspace, "outbox").glob("**/*.eml"))  # the file transport's outbox
    message = BytesParser(policy=policy.default).parsebytes(email_file.read_bytes())
    [link] = re.findall(r"https://\S+/confirm/\S+", message.get_body(("plain",)).get_content())
    page.goto(local(link, server))
    assert lists_of(store, "new@example.org") == {"letters": "pending"}
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    assert lists_of(store, "new@example.org") == {"letters": "confirmed"}
    actions = [(c["action"], c["ip"]) for c in manage.describe(store, "new@example.org")["consent"]]
    assert actions == [("subscribe", "127.0.0.1"), ("confirm", "127.0.0.1")]
    assert refused == []
    page.close()


def _raw_request(base: str, head: str) -> bytes:
    """Send only a request head over a plain socket; the server's whole answer (it closes after)."""
    host, port = base.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode("ascii"))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_huge_declared_body_is_refused_before_it_is_sent(server):
    """600 MB announced, nothing sent: the answer comes at once (the server does not wait to read it)."""
    for path in ("/webhooks/sendgrid", "/subscribe", "/unsubscribe/x"):
        answer = _raw_request(server, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      f"Content-Type: application/json\r\nContent-Length: 600000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_a_forged_host_never_steers_a_redirect(server):
    for path in ("/archive/", "/subscribe/", "/healthz/"):
        response = httpx.get(f"{server}{path}", headers={"Host": "evil.example"}, follow_redirects=False)
        assert "evil.example" not in response.headers.get("location", "") and not response.is_redirect
