"""A blog served over real HTTP for the feed tests: RSS 2.0, Atom and JSON Feed documents that change
between polls, ETag/Last-Modified with 304 answers, broken answers and a server that never answers.

``FeedServer`` binds 127.0.0.1 on a free port in a thread; ``serve(path, body, ...)`` sets what a path
answers; ``requests`` records each request's path and conditional headers. ``Post`` and the builders
(:func:`rss`, :func:`atom`, :func:`json_feed`) write the documents.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

BASE_DATE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Post:
    number: int
    title: str = ""
    body: str = ""

    @property
    def guid(self) -> str:
        return f"tag:blog.example,2026:post-{self.number}"

    @property
    def heading(self) -> str:
        return self.title or f"Clinic notes, part {self.number}"

    def link(self, base: str) -> str:
        return f"{base}/posts/{self.number}"

    @property
    def date(self) -> datetime:
        return BASE_DATE + timedelta(days=self.number)

    @property
    def html(self) -> str:
        return self.body or (f"<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
                             f"<p>Post {self.number} says hello to every reader of the clinic's notes.</p>"
                             f"<p>It links to <a href='/posts/{self.number}/more'>more reading</a>.</p>"
                             f"<footer>Share this post on social media</footer>")


def posts(*numbers: int) -> list[Post]:
    return [Post(n) for n in numbers]


def rss(base: str, items: list[Post], title: str = "Clinic Notes") -> bytes:
    entries = "".join(
        f"<item><title>{escape(p.heading)}</title><link>{p.link(base)}</link>"
        f"<guid isPermaLink='false'>{p.guid}</guid><pubDate>{format_datetime(p.date)}</pubDate>"
        f"<description>{escape(p.html)}</description></item>"
        for p in reversed(items))  # newest first, as blogs publish them
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
            f"<link>{base}/</link><description>Notes</description>{entries}</channel></rss>").encode()


def atom(base: str, items: list[Post], title: str = "Clinic Notes") -> bytes:
    entries = "".join(
        f"<entry><title>{escape(p.heading)}</title><link href='{p.link(base)}'/><id>{p.guid}</id>"
        f"<updated>{p.date.isoformat()}</updated><content type='html'>{escape(p.html)}</content></entry>"
        for p in reversed(items))
    return (f"<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>{title}</title><id>{base}/</id><updated>{BASE_DATE.isoformat()}</updated>"
            f"<link href='{base}/'/>{entries}</feed>").encode()


def json_feed(base: str, items: list[Post], title: str = "Clinic Notes") -> bytes:
    return json.dumps({
        "version": "https://jsonfeed.org/version/1.1", "title": title, "home_page_url": f"{base}/",
        "items": [{"id": p.guid, "url": p.link(base), "title": p.heading, "content_html": p.html,
                   "date_published": p.date.isoformat()} for p in reversed(items)]}).encode()


BUILDERS = {"rss": (rss, "application/rss+xml"), "atom": (atom, "application/atom+xml"),
            "json": (json_feed, "application/feed+json")}


class FeedServer:
    """A local web server whose answers the test sets per path (see the module docstring)."""

    def __init__(self):
        self.answers: dict[str, tuple[int, bytes, str, bool, bool, str]] = {}
        self.requests: list[dict[str, str | None]] = []
        self.release = threading.Event()  # set at exit: frees handlers told to hang
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                with server.lock:
                    server.requests.append({"path": self.path, "if_none_match": self.headers.get("If-None-Match"),
                                            "if_modified_since": self.headers.get("If-Modified-Since")})
                    status, body, kind, conditional, zipped, location = server.answers.get(
                        self.path, (404, b"not found", "text/plain", False, False, ""))
                if status == 0:  # hang: never answer until the test ends
                    server.release.wait(60)
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if conditional and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                if zipped:
                    body = gzip.compress(body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if zipped:
                    self.send_header("Content-Encoding", "gzip")
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                if conditional:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", "Mon, 02 Nov 2026 09:00:00 GMT")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="feed-server", daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, path: str, body: bytes, kind: str = "application/rss+xml", *, status: int = 200,
              conditional: bool = True, zipped: bool = False, location: str = "") -> str:
        """Answer GET ``path`` with ``body`` (status 0: never answer; ``zipped``: gzip-encoded; ``location``:
        the Location header of a redirect); returns the URL."""
        with self.lock:
            self.answers[path] = (status, body, kind, conditional, zipped, location)
        return self.base + path

    def publish(self, path: str, kind: str, items: list[Post], **options) -> str:
        """Serve the feed of ``items`` in format ``kind`` (rss, atom, json) at ``path``."""
        build, content_type = BUILDERS[kind]
        return self.serve(path, build(self.base, items), content_type, **options)

    def hits(self, path: str) -> list[dict[str, str | None]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]
