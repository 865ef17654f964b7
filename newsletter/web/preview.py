"""The local preview web app (Starlette): the page a writer keeps open beside their editor.

Paths (all local; the page loads nothing from the network):

- ``GET /``: the page (``templates/preview/index.html``, its CSS and JS under ``/assets/``).
- ``GET /email.html?as=ADDRESS|sample&scheme=auto|light|dark``: the email as
  that subscriber receives it; ``scheme`` forces its dark-mode rules on or off.
  503 with an error page when the article has never composed.
- ``GET /api/state?as=...``: subject, from/to, text part, raw source,
  findings (each with the ``view`` and ``target`` it is about), and the
  current compose ``error`` (``file:line: ...``) or null.
- ``GET /api/subscribers``: the first 200 subscribers in the store, for "Render as".
- ``GET /events``: server-sent events; ``data: {"version": N}`` whenever the
  article or a template changed and was composed again.
- ``POST /api/refresh``: compose again now.
- ``POST /send-test`` (JSON ``{"to", "as"}``): one message marked ``[TEST] ``
  through the configured transport; never a campaign send.
- ``POST /api/save-link`` (JSON ``{"url"}``): write the address of the
  article's recently-published link into the article file (a backup beside
  it), as ``compose --save-link`` does; the page offers it when the link has none.
- ``GET /favicon.ico``: the page's icon.

The page is served with the subject and the email frame's address already
filled in, so the sample reader's email loads with the page.

Errors are JSON ``{"error", "hint"}`` with 4xx/5xx. POSTs must be JSON from
the page's own origin, so another web page open in the browser cannot make
the preview send mail (a cross-site form cannot post JSON without a CORS
preflight this app never grants).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter.errors import Conflict, DeliveryError, InputError, NewsletterError, NotFound
from newsletter.web.preview_state import PreviewState

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
NO_STORE = {"Cache-Control": "no-store"}


def page_dir() -> Path:
    """The folder of the page's HTML, CSS and JS (package data of newsletter.templates)."""
    from newsletter.compose.render import builtin_templates_dir

    return builtin_templates_dir() / "preview"


class ChangeHub:
    """Fan-out of "composed again" events to every open event stream (one asyncio loop)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()

    def publish(self, version: int) -> None:
        for queue in list(self._queues):
            queue.put_nowait(version)

    @contextlib.contextmanager
    def subscribe(self):
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


def create_preview_app(settings, article_path, *, recent_title=None, recent_url=None, theme=None, store=None,
                       transport_factory: Callable[[], Any] | None = None, watch: bool = True,
                       allowed_hosts: list[str] | None = None, store_opener: Callable[[], Any] | None = None,
                       audience=None):
    """The preview app for ``article_path`` under ``settings``, composed once already.

    ``store``: the subscriber store for "Render as" (or ``store_opener`` to open
    it on first use); ``transport_factory``: builds the transport for "Send
    test" (default ``get_transport(settings)``); ``watch``: recompose when the
    article or a template changes (off in tests that call /api/refresh);
    ``allowed_hosts``: Host header values accepted (a DNS-rebinding guard);
    ``audience``: a segment (``usecases.segments.Audience``) whose members "Render as" offers.
    """
    from starlette.applications import Starlette

    state = PreviewState(settings, article_path, recent_title=recent_title, recent_url=recent_url, theme=theme,
                         store=store, store_opener=store_opener, audience=audience)
    state.refresh()
    hub = ChangeHub()
    handlers = _Handlers(state, hub, transport_factory or _configured_transport(settings))
    app = Starlette(routes=_routes(handlers), middleware=_middleware(allowed_hosts),
                    lifespan=_lifespan(state, hub, watch))
    app.state.preview = state
    app.state.hub = hub
    return app


def _configured_transport(settings) -> Callable[[], Any]:
    def build():
        from newsletter.delivery import get_transport

        return get_transport(settings)

    return build


def _routes(handlers: _Handlers) -> list:
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    return [
        Route("/", handlers.page),
        Route("/email.html", handlers.email),
        Route("/api/state", handlers.summary),
        Route("/api/subscribers", handlers.subscribers),
        Route("/api/spam", handlers.spam),
        Route("/api/refresh", handlers.refresh, methods=["POST"]),
        Route("/events", handlers.events),
        Route("/send-test", handlers.send_test, methods=["POST"]),
        Route("/api/save-link", handlers.save_link, methods=["POST"]),
        Route("/favicon.ico", handlers.favicon),
        Mount("/assets", StaticFiles(directory=str(page_dir())), name="assets"),
    ]


def _middleware(allowed_hosts: list[str] | None) -> list:
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []


def _lifespan(state: PreviewState, hub: ChangeHub, watch: bool):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(watch_sources(state, hub)) if watch else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return lifespan


class _Handlers:
    """The endpoints; each turns expected errors into JSON with a status."""

    def __init__(self, state: PreviewState, hub: ChangeHub, transport_factory):
        self.state, self.hub, self.transport_factory = state, hub, transport_factory

    async def page(self, request):
        from starlette.responses import HTMLResponse

        return HTMLResponse(render_page(self.state), headers=NO_STORE)

    async def favicon(self, request):
        from starlette.responses import FileResponse

        return FileResponse(page_dir() / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "max-age=86400"})

    async def save_link(self, request):
        from starlette.concurrency import run_in_threadpool

        if (refused := _refuse_cross_site(request)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return _json({"error": "expected a JSON object {\"url\": address}", "hint": None}, 400)
        response = await _json_call(run_in_threadpool, self.state.save_link, body["url"])
        self.hub.publish(self.state.snapshot.version)
        return response

    async def email(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse

        who, scheme = request.query_params.get("as"), request.query_params.get("scheme", "auto")
        try:
            html = await run_in_threadpool(self.state.html, who, scheme)
        except NewsletterError as exc:
            return HTMLResponse(error_page(exc), status_code=_status(exc), headers=NO_STORE)
        return HTMLResponse(html, headers=NO_STORE)

    async def summary(self, request):
        from starlette.concurrency import run_in_threadpool

        return await _json_call(run_in_threadpool, self.state.summary, request.query_params.get("as"))

    async def subscribers(self, request):
        from starlette.concurrency import run_in_threadpool

        return await _json_call(run_in_threadpool, self.state.subscribers)

    async def spam(self, request):
        from starlette.concurrency import run_in_threadpool

        return await _json_call(run_in_threadpool, self.state.spam)

    async def refresh(self, request):
        if (refused := _refuse_cross_site(request)) is not None:
            return refused
        snapshot = await asyncio.to_thread(self.state.refresh, True)
        self.hub.publish(snapshot.version)
        return _json({"version": snapshot.version, "error": snapshot.error})

    async def send_test(self, request):
        from starlette.concurrency import run_in_threadpool

        if (refused := _refuse_cross_site(request)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _json({"error": "expected a JSON object {\"to\": address}", "hint": None}, 400)
        return await _json_call(run_in_threadpool, self.state.send_test, str(body.get("to") or ""),
                                body.get("as"), self.transport_factory)

    async def events(self, request):
        from starlette.responses import StreamingResponse

        async def stream():
            with self.hub.subscribe() as queue:
                yield f"retry: 1000\ndata: {json.dumps({'version': self.state.snapshot.version})}\n\n"
                while True:
                    try:
                        version = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        yield ": ping\n\n"  # keeps proxies open and notices a gone client
                        continue
                    yield f"data: {json.dumps({'version': version})}\n\n"

        headers = {**NO_STORE, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def watch_sources(state: PreviewState, hub: ChangeHub) -> None:
    """Recompose and publish whenever the article or a template file changes; runs until cancelled.

    The article's folder is watched (not the file) because editors often
    save by writing a new file and renaming it over the old one.
    """
    from watchfiles import awatch

    from newsletter.compose.render import builtin_templates_dir

    article = state.article_path.resolve()
    folders = [Path(state.settings.workspace) / "templates", builtin_templates_dir()]
    folders = [f.resolve() for f in folders if f.is_dir()]
    skip = page_dir().resolve()

    def relevant(_change, path: str) -> bool:
        target = Path(path)
        if target == article:
            return True
        return any(target.is_relative_to(f) for f in folders) and not target.is_relative_to(skip)

    async def follow(paths: list[Path], templates: bool) -> None:
        async for _changes in awatch(*paths, watch_filter=relevant, recursive=templates, debounce=400, step=50):
            snapshot = await asyncio.to_thread(state.refresh, templates)
            hub.publish(snapshot.version)
            if snapshot.error:
                log.warning("preview: %s", snapshot.error["message"])

    watchers = [follow([article.parent], templates=False)]
    if folders:
        watchers.append(follow(folders, templates=True))
    await asyncio.gather(*watchers)


def render_page(state: PreviewState) -> str:
    """The page's HTML with the current subject and version, and the frame already on the sample's email."""
    from html import escape

    snapshot = state.snapshot
    subject = state.article_path.name
    if snapshot.edition is not None:
        subject = snapshot.templates["subject"].render(state.recipient(None)[2])
    frame_src = f"/email.html?as=sample&scheme=auto&v={snapshot.version}" if snapshot.edition else "about:blank"
    page = (page_dir() / "index.html").read_text(encoding="utf-8")
    for name, value in (("version", str(snapshot.version)), ("subject", subject), ("frame_src", frame_src)):
        page = page.replace("{{" + name + "}}", escape(value))
    return page


def error_page(exc: NewsletterError) -> str:
    """A small HTML page stating ``exc`` (shown in the email frame)."""
    from html import escape

    hint = f"<p>{escape(exc.hint)}</p>" if exc.hint else ""
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Preview error</title></head>'
        '<body style="font-family:system-ui,sans-serif;padding:24px;color:#7a1212">'
        '<h1 style="font-size:18px">Cannot show the email</h1>'
        f'<pre style="white-space:pre-wrap">{escape(exc.message)}</pre>'
        f"{hint}</body></html>"
    )


def _status(exc: NewsletterError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 503
    if isinstance(exc, DeliveryError):
        return 502
    if isinstance(exc, InputError):
        return 400
    return 500


async def _json_call(runner, function, *args):
    try:
        return _json(await runner(function, *args))
    except NewsletterError as exc:
        return _json({"error": exc.message, "hint": exc.hint}, _status(exc))


def _json(data: Any, status: int = 200):
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status, headers=NO_STORE)


def _refuse_cross_site(request):
    """A 403/415 response unless the POST is JSON from this app's own origin, else None."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _json({"error": "send JSON (Content-Type: application/json)", "hint": None}, 415)
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
        return _json({"error": f"cross-site request from {origin} refused", "hint": None}, 403)
    return None
