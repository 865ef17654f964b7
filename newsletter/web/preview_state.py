"""What the local preview shows, computed from the article: the library side of ``newsletter preview``.

:class:`PreviewState` composes the article once and keeps the result (a
:class:`Snapshot`) until :meth:`PreviewState.refresh` is called again (the web
app calls it when the article or a template changes). A compose error never
escapes: it is kept on the snapshot with its message (``file:line: ...`` for
template errors) and hint, next to the last edition that did compose, so the
page can show both and the server keeps running.

Everything per subscriber is a cheap second pass over the cached edition:
merge values come from :func:`~newsletter.compose.edition.merge_values` with
the fake token ``preview-token``, so an unsubscribe link clicked in a preview
or a test email matches no one.

The Checks tab lists the pre-flight findings with caniemail's client
support, and SpamAssassin's report (:meth:`PreviewState.spam`, on request).

"Send test" sends through the configured transport with the subject prefixed
``[TEST] `` and never touches the store: no campaign, no ledger row.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from newsletter.errors import Conflict, DeliveryError, NewsletterError, NotFound

log = logging.getLogger(__name__)

PREVIEW_TOKEN = "preview-token"
TEST_PREFIX = "[TEST] "
SAMPLE = "sample"
SUBSCRIBER_LIMIT = 200

# A media feature that is always true / never true inside any media query, so a
# `(prefers-color-scheme: dark)` condition can be forced either way in place.
_ALWAYS, _NEVER = "(min-width: 0px)", "(max-width: 0px)"
_SCHEME = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.I)
_HEAD_END = re.compile(r"</head\s*>", re.I)
_TARGET = re.compile(r":\s+(\S+)$")

# Which panel of the page a finding is about (default: the rendered email).
_FINDING_VIEW = {
    "html-size": "source",
    "subject-length": "source",
    "preheader-missing": "source",
    "placeholder": "text",
    "client-support": "source",
}
_TARGETED = {"image-alt", "link-insecure", "link-relative"}


@dataclass
class Snapshot:
    """One compose of the article: ``edition`` is the last that composed, ``error`` the current failure."""

    version: int = 0
    edition: Any = None
    error: dict[str, str | None] | None = None
    seconds: float = 0.0
    templates: dict[str, Any] = field(default_factory=dict)  # html/text/subject MergeTemplates


class PreviewState:
    """The article under preview, its cached edition, and the per-subscriber views of it.

    Thread-safe: :meth:`refresh` may run in a worker thread while requests
    read :attr:`snapshot` (replaced whole, never mutated).
    """

    def __init__(self, settings, article_path, *, recent_title=None, recent_url=None, theme=None,
                 store=None, store_opener: Callable[[], Any] | None = None, audience=None):
        self.settings = settings
        # preview --segment/--where: "Render as" offers that audience's members (usecases.segments.Audience)
        self.audience = audience
        self.article_path = Path(article_path)
        self.options = {"recent_title": recent_title, "recent_url": recent_url, "theme": theme}
        self._store = store
        self._store_opener = store_opener
        self._store_error: str | None = None
        self._lock = threading.Lock()
        self.snapshot = Snapshot()
        self._spam: dict[str, Any] | None = None

    # -- composing ---------------------------------------------------------

    def refresh(self, reload_templates: bool = False) -> Snapshot:
        """Compose the article again; on failure keep the last good edition and record the error.

        ``reload_templates`` drops the cached Jinja environment first: Jinja
        notices an edited template by itself, but not a new file in the
        workspace that now overrides a built-in one.
        """
        from newsletter.compose.caniemail import client_findings
        from newsletter.compose.edition import compose_edition
        from newsletter.compose.render import environment
        from newsletter.delivery.merge import MergeTemplate

        if reload_templates:
            environment.cache_clear()
        started = time.perf_counter()
        edition, error = None, None
        try:
            edition = compose_edition(
                self.article_path, self.settings, **self.options,
                workspace_templates=Path(self.settings.workspace) / "templates",
            )
            edition.findings += client_findings(edition)  # the Checks tab shows what `check` does
        except NewsletterError as exc:
            error = {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        except Exception as exc:  # noqa: BLE001 - a live preview must survive any bad edit
            log.exception("preview: compose failed")
            error = {"kind": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}",
                     "hint": "this looks like a bug in newsletter; the terminal shows the traceback"}
        with self._lock:
            previous = self.snapshot
            templates = previous.templates
            if edition is not None:
                templates = {"html": MergeTemplate(edition.html), "text": MergeTemplate(edition.text),
                             "subject": MergeTemplate(edition.subject)}
            self.snapshot = Snapshot(
                version=previous.version + 1,
                edition=edition if edition is not None else previous.edition,
                error=error, seconds=time.perf_counter() - started, templates=templates,
            )
            return self.snapshot

    def spam(self) -> dict[str, Any]:
        """SpamAssassin's report on the sample message of the current edition (see ``check --spam``).

        SpamAssassin takes about a second, so it runs when the page asks
        (the Checks tab) and its answer is kept for that version.
        """
        from newsletter.compose.edition import sample_mime
        from newsletter.compose.spam import spam_check
        from newsletter.delivery.mime import as_file_bytes

        snapshot = self.ready()
        cached = self._spam
        if cached is not None and cached["version"] == snapshot.version:
            return cached
        report = spam_check(as_file_bytes(sample_mime(snapshot.edition, self.settings)))
        self._spam = {"version": snapshot.version, "spam": report.as_dict()}
        return self._spam

    def ready(self) -> Snapshot:
        """The snapshot, which must hold an edition (Conflict otherwise, with the error as hint)."""
        snapshot = self.snapshot
        if snapshot.edition is None:
            error = snapshot.error or {"message": "not composed yet"}
            raise Conflict(f"{self.article_path} does not compose: {error['message']}",
                           hint=error.get("hint") or "fix the error shown on the page")
        return snapshot

    # -- one recipient's view ----------------------------------------------

    def recipient(self, who: str | None) -> tuple[str, str, dict[str, str]]:
        """``(email, name, merge values)`` for ``who``: a subscriber's address, or "sample"."""
        from newsletter.compose.edition import SAMPLE_EMAIL, SAMPLE_NAME, merge_values

        slug = self.ready().edition.slug
        attributes: dict[str, Any]
        if not who or who == SAMPLE:
            email, name, attributes = SAMPLE_EMAIL, SAMPLE_NAME, {}
        else:
            email, name, attributes = self._subscriber(who)
        return email, name, merge_values(self.settings, slug, email=email, name=name, token=PREVIEW_TOKEN,
                                         attributes=attributes, list_name=self._list_name())

    def html(self, who: str | None = None, scheme: str = "auto") -> str:
        """The email's HTML as ``who`` receives it; ``scheme`` "dark"/"light" forces that colour scheme."""
        snapshot = self.ready()
        return force_scheme(snapshot.templates["html"].render(self.recipient(who)[2]), scheme)

    def text(self, who: str | None = None) -> str:
        return self.ready().templates["text"].render(self.recipient(who)[2])

    def source(self, who: str | None = None) -> str:
        """The complete message (headers and quoted-printable parts) as a file would hold it."""
        from newsletter.compose.edition import edition_message
        from newsletter.delivery.mime import as_file_bytes, build_mime

        snapshot = self.ready()
        recipient = self._recipient_object(snapshot, who)
        mime = build_mime(edition_message(snapshot.edition, self.settings), recipient,
                          snapshot.templates["html"], snapshot.templates["text"], snapshot.templates["subject"])
        return as_file_bytes(mime).decode("utf-8", "replace")

    def summary(self, who: str | None = None) -> dict[str, Any]:
        """Everything the page's panels show, as JSON-ready data."""
        snapshot = self.snapshot
        data: dict[str, Any] = {
            "version": snapshot.version, "article": str(self.article_path), "error": snapshot.error,
            "compose_ms": round(snapshot.seconds * 1000),
        }
        if snapshot.edition is None:
            return data
        edition = snapshot.edition
        email, name, values = self.recipient(who)
        data.update({
            "slug": edition.slug, "theme": edition.theme, "preheader": edition.preheader,
            "subject": snapshot.templates["subject"].render(values),
            "from": self.settings.sender, "to": f"{name} <{email}>" if name else email,
            "text": snapshot.templates["text"].render(values), "source": self.source(who),
            "findings": [finding_dict(f) for f in edition.findings],
            "missing_link": {"title": edition.recent.title} if edition.recent and not edition.recent.url else None,
        })
        return data

    def save_link(self, url: str) -> dict[str, str]:
        """Write ``url`` into the article as its recently-published link's address, then compose again.

        The same door as ``compose --save-link``: the URL must be an http(s)
        address (InputError otherwise), and the file is backed up beside itself.
        """
        from newsletter.usecases.editions import save_link

        backup = save_link(str(self.article_path), url.strip())
        self.refresh()
        return {"article": str(self.article_path), "backup": str(backup), "url": url.strip()}

    # -- the store ---------------------------------------------------------

    def subscribers(self) -> dict[str, Any]:
        """``{"subscribers": [{"email", "name", "status"}], "error"}``: the first 200 in the store."""
        from newsletter.store.audience import iter_subscribers

        store = self._open_store()
        if store is None:
            return {"subscribers": [], "error": self._store_error}
        if self.audience is not None:
            from newsletter.usecases.segments import members

            return {"subscribers": members(store, self.audience, SUBSCRIBER_LIMIT), "error": None,
                    "audience": self.audience.describe()}
        with store.session() as session:
            rows = [{"email": s.email, "name": s.name, "status": s.status}
                    for s, _lists in islice(iter_subscribers(session, chunk=SUBSCRIBER_LIMIT), SUBSCRIBER_LIMIT)]
        return {"subscribers": rows, "error": None}

    def _subscriber(self, address: str) -> tuple[str, str, dict]:
        from newsletter.store.audience import find_subscriber
        from newsletter.vocabulary.addresses import address_key

        store = self._open_store()
        if store is None:
            raise NotFound(f"no subscriber store: {self._store_error}", hint="render as 'sample'")
        with store.session() as session:
            subscriber = find_subscriber(session, address_key(address.strip()))
            if subscriber is None:
                raise NotFound(f"no subscriber {address!r}", hint="pick one from the 'Render as' list, or 'sample'")
            return subscriber.email, subscriber.name or "", dict(subscriber.attributes or {})

    def _list_name(self) -> str:
        """The footer's list: the previewed audience's base list by the name readers see ("" without one:
        the newsletter's name)."""
        store = self._open_store() if self.audience is not None else None
        if store is None:
            return ""
        from newsletter.store.audience import find_list

        with store.session() as session:
            found = find_list(session, self.audience.list_name)
            return found.reader_name(self.settings.name) if found is not None else ""

    def _open_store(self):
        # Opened on first use: the preview works without a reachable database.
        if self._store is None and self._store_opener is not None and self._store_error is None:
            try:
                self._store = self._store_opener()
            except Exception as exc:  # noqa: BLE001 - shown on the page; sample data still works
                self._store_error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return self._store

    # -- send test ---------------------------------------------------------

    def send_test(self, to: str, who: str | None, transport_factory: Callable[[], Any]) -> dict[str, str]:
        """Send the current rendering (as ``who`` sees it) to ``to``, subject prefixed ``[TEST] ``.

        Raises InvalidAddress for a bad address, Conflict when the article
        does not compose, DeliveryError when the transport refuses it. Writes
        nothing to the store: a test is never a campaign send.
        """
        from newsletter.compose.edition import edition_message
        from newsletter.delivery.message import Outcome, Recipient
        from newsletter.delivery.mime import new_message_id, unsubscribe_headers
        from newsletter.vocabulary.addresses import normalise_address

        address = normalise_address(to or "")
        snapshot = self.ready()
        _email, _name, values = self.recipient(who)
        message = edition_message(snapshot.edition, self.settings)
        message.subject = TEST_PREFIX + message.subject
        message.headers["X-Newsletter-Test"] = "preview"
        message.metadata["test"] = "1"
        recipient = Recipient(
            email=address, message_id=new_message_id(self.settings.sender_address or "localhost"),
            merge_data=values, headers=unsubscribe_headers(values["unsubscribe_url"]),
            metadata={"edition": snapshot.edition.slug, "test": "1"},
        )
        with transport_factory() as transport:
            [result] = transport.send_batch(message, [recipient])
            name = transport.name
        if result.outcome not in (Outcome.SENT, Outcome.QUEUED):
            raise DeliveryError(f"the {name} transport answered {result.outcome.value}: {result.error}",
                                hint="check the transport settings (NEWSLETTER_TRANSPORT) and the address")
        subject = TEST_PREFIX + snapshot.templates["subject"].render(values)
        return {"to": address, "subject": subject, "transport": name, "outcome": result.outcome.value}

    def _recipient_object(self, snapshot: Snapshot, who: str | None):
        from newsletter.delivery.message import Recipient
        from newsletter.delivery.mime import unsubscribe_headers

        email, name, values = self.recipient(who)
        return Recipient(email=email, name=name, message_id=f"preview.{snapshot.version}@localhost",
                         merge_data=values, headers=unsubscribe_headers(values["unsubscribe_url"]),
                         metadata={"edition": snapshot.edition.slug})


def force_scheme(html: str, scheme: str) -> str:
    """``html`` with its ``prefers-color-scheme`` media conditions forced to ``scheme``.

    "dark" makes dark-mode rules apply whatever the browser prefers, "light"
    disables them; anything else leaves the HTML as it is. Conditions are
    replaced in place by an always/never-true feature, so ``@media screen and
    (prefers-color-scheme: dark)`` keeps working, and the root colour scheme is
    pinned so the browser's own defaults (scrollbars, form controls) agree.
    """
    if scheme not in ("dark", "light"):
        return html

    def replace(match: re.Match) -> str:
        return _ALWAYS if match.group(1).lower() == scheme else _NEVER

    html = _SCHEME.sub(replace, html)
    pin = f'<meta name="color-scheme" content="{scheme}"><style>:root{{color-scheme:{scheme} !important}}</style>'
    html, count = _HEAD_END.subn(lambda m: pin + m.group(0), html, count=1)
    return html if count else pin + html


def finding_dict(finding) -> dict[str, str | None]:
    """A finding as JSON, with the page ``view`` it is about and its ``target`` (a URL) if any."""
    data: dict[str, str | None] = dict(finding.as_dict())
    data["view"] = _FINDING_VIEW.get(finding.code, "email")
    match = _TARGET.search(finding.message) if finding.code in _TARGETED else None
    data["target"] = match.group(1) if match else None
    return data
