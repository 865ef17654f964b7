"""The public app of ``newsletter serve``: the pages every email links to.

Routes (the token is always the last path segment, nothing after it):

    GET  /unsubscribe/{token}   page with buttons; changes nothing
    POST /unsubscribe/{token}   RFC 8058 one-click, or the page's buttons
    GET  /unsubscribe           where to find your own unsubscribe link
    GET  /confirm/{token}       page with a button; changes nothing
    POST /confirm/{token}       confirm a double opt-in subscription
    GET  /preferences/{token}   the preference centre; changes nothing
    POST /preferences/{token}   its buttons: lists, pause, name and time zone, download, erase
    GET  /preferences/{token}/tracking   the withdrawal link of personally tracked mail: a button
    GET  /preferences           where to find your own preference centre link
    GET  /subscribe             a plain signup form
    POST /subscribe             the form endpoint websites post to
    GET  /subscribe/challenge   a proof-of-work challenge (JSON) for the form's script
    GET  /subscribe/altcha.js   the script that solves it in the browser
    GET  /forms/{name}          a signup form's hosted page (newsletter forms create), pre-filled from the query
    POST /forms/{name}          its signups: typed fields into attributes, then its redirect
    POST /webhooks/{provider}   a provider's signed event webhook (/webhooks/sendgrid)
    GET  /archive               past issues
    GET  /archive/{slug}        one issue's web version
    GET  /feed.xml              Atom feed
    GET  /c/{token}             a tracked link: count the click, 303 to the stored URL (clicks.py)
    GET  /o/{token}             the open pixel (only in mail sent with --track-opens)
    GET  /healthz               200 "ok" (load balancers)
    *    /api/...               the HTTP API (newsletter.web.api), only while an API token exists

See the modules ``subscriptions``, ``preferences``, ``signup``, ``webhook`` and ``archive`` for
each rule, and ``guards`` for what protects them all: request bodies are
capped before they are read (413), an unexpected error is logged without
personal data, and no redirect is built from the request's Host header
(Starlette's ``redirect_slashes`` is off: ``/archive/`` is a 404, not a
redirect to wherever the Host header points). The handlers only wire HTTP
to library functions; database and transport work runs in the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.web.common import Context


class _AppContext(Context):
    """Adds the providers' event sources, each built once (``create_app`` builds them all to check their keys)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._event_sources: dict = {}

    def event_source(self, provider: str):
        """The event source of ``provider``; None when no registered provider of that name posts events.

        Raises NotConfigured when its verification key is not set.
        """
        from newsletter.transports import event_source_class

        if provider not in self._event_sources:
            source_class = event_source_class(provider)
            self._event_sources[provider] = source_class and source_class.from_settings(self.settings, self.clock)
        return self._event_sources[provider]


def create_app(settings, store=None, transport_factory: Callable | None = None,
               clock: Callable[[], float] | None = None):
    """The Starlette app for ``settings``.

    ``store`` defaults to the workspace's database (opened, and closed on
    shutdown); ``transport_factory(settings)`` builds the transport for
    confirmation emails (default ``get_transport``); ``clock()`` gives the
    time in epoch seconds (default ``time.time``).
    """
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from newsletter.web.guards import BodyLimit, PrivateErrors
    from newsletter.web.pages import Pages
    from newsletter.web.webhook import MAX_BODY_BYTES

    owned = store is None
    if owned:
        from newsletter.store.db import open_store

        store = open_store(settings)
    if transport_factory is None:
        from newsletter.delivery import get_transport

        transport_factory = get_transport
    ctx = _AppContext(settings, store, Pages(settings), transport_factory, clock)
    _check_webhook_keys(ctx)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        if owned:
            store.close()

    routes = _routes()
    limits = {"/webhooks/": MAX_BODY_BYTES}
    if _api_on(store):
        from starlette.routing import Mount

        from newsletter.web.api.app import API_BODY_BYTES, IMPORT_BODY_BYTES, create_api

        routes.append(Mount("/api", app=create_api(ctx)))
        limits["/api/subscribers/import"] = IMPORT_BODY_BYTES  # before /api/: the first matching prefix wins
        limits["/api/"] = API_BODY_BYTES
    middleware = [Middleware(PrivateErrors), Middleware(BodyLimit, limits=limits, problem_paths=("/api/",))]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={404: _not_found, 405: _not_allowed})
    app.router.redirect_slashes = False  # it would build the Location from the Host header
    app.state.ctx = ctx
    app.state.api = "/api/" in limits
    return app


def _api_on(store) -> bool:
    """The HTTP API is served only while an API token exists (never on by default)."""
    from newsletter.usecases.tokens import any_token

    return any_token(store)


def _check_webhook_keys(ctx) -> None:
    """A malformed verification key is a ConfigError now, not at the first event; a missing one is fine."""
    from newsletter.providers.base import NotConfigured
    from newsletter.transports import event_provider_names

    for provider in event_provider_names():
        try:
            ctx.event_source(provider)
        except NotConfigured:
            pass


def _routes():
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from newsletter.web import archive, clicks, forms, preferences, signup, subscriptions, webhook

    async def health(_request):
        return PlainTextResponse("ok")

    return [
        Route("/unsubscribe/{token}", subscriptions.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", subscriptions.unsubscribe_post, methods=["POST"]),
        Route("/unsubscribe", archive.unsubscribe_help, methods=["GET"]),
        Route("/confirm/{token}", subscriptions.confirm_page, methods=["GET"]),
        Route("/confirm/{token}", subscriptions.confirm_post, methods=["POST"]),
        Route("/preferences/{token}", preferences.preferences_page, methods=["GET"]),
        Route("/preferences/{token}", preferences.preferences_post, methods=["POST"]),
        Route("/preferences/{token}/tracking", preferences.withdraw_page, methods=["GET"]),
        Route("/preferences", archive.preferences_help, methods=["GET"]),
        Route("/subscribe", signup.subscribe_form, methods=["GET"]),
        Route("/subscribe/challenge", signup.challenge_json, methods=["GET"]),
        Route("/subscribe/altcha.js", signup.challenge_script, methods=["GET"]),
        Route("/subscribe", signup.subscribe_post, methods=["POST"]),
        Route("/forms/{name}", forms.form_page, methods=["GET"]),
        Route("/forms/{name}", forms.form_post, methods=["POST"]),
        Route("/webhooks/{provider}", webhook.provider_webhook, methods=["POST"]),
        Route("/archive", archive.archive_index, methods=["GET"]),
        Route("/archive/{slug}", archive.archive_edition, methods=["GET"]),
        Route("/feed.xml", archive.feed, methods=["GET"]),
        Route("/c/{token}", clicks.click, methods=["GET", "HEAD"]),
        Route("/o/{token}", clicks.pixel, methods=["GET", "HEAD"]),
        Route("/healthz", health, methods=["GET"]),
    ]


async def _not_found(request, _exc):
    if request.app.state.api and request.url.path.startswith("/api/"):
        # a path the mount cannot match (a line break in it): still the API's kind of answer
        from newsletter.web.api.app import problem

        return problem(404, "Not Found", "see the operations in /api/openapi.json")
    return request.app.state.ctx.pages.message("Page not found", "There is nothing at this address.", status=404)


async def _not_allowed(request, _exc):
    if request.app.state.api and request.url.path.startswith("/api/"):
        from newsletter.web.api.app import problem

        return problem(405, "Method Not Allowed", "see the operations in /api/openapi.json")
    return request.app.state.ctx.pages.message("Not allowed", "This address does not take that kind of request.",
                                               status=405)
