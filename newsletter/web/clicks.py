"""``GET|HEAD /c/{token}`` (a tracked link) and ``GET|HEAD /o/{token}`` (the open pixel).

A valid click token is counted (``newsletter.events.firstparty``) and
answered 303 to the URL stored for that link, never one taken from the
request: a tampered or unknown token gets a plain 404 page and goes
nowhere. Redirects carry ``Referrer-Policy: no-referrer`` (the target site
does not see the token) and ``Cache-Control: no-store`` (every click reaches
us). The pixel answers a 1x1 transparent GIF for a valid token.
"""

from __future__ import annotations

from newsletter.events.firstparty import Bursts, Request, record

# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
_NO_STORE = {"cache-control": "no-store, private", "referrer-policy": "no-referrer"}


async def click(request):
    """Count the click and redirect (303) to the link's stored URL; a plain 404 page for a bad token."""
    from starlette.responses import RedirectResponse

    ctx = request.app.state.ctx
    recorded = await ctx.run(_record, ctx, request, "click", _bursts(request.app))
    if recorded is None or recorded.url is None:
        return _invalid(ctx)
    return RedirectResponse(recorded.url, status_code=303, headers=_NO_STORE)


async def pixel(request):
    """Count the open; answer the transparent GIF (a 404 page for a bad token)."""
    from starlette.responses import Response

    ctx = request.app.state.ctx
    recorded = await ctx.run(_record, ctx, request, "open", None)
    if recorded is None:
        return _invalid(ctx)
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


def _bursts(app) -> Bursts:
    """The app's memory of recent clicks per client (one per app: tests and workers do not share it)."""
    bursts = getattr(app.state, "click_bursts", None)
    if bursts is None:
        bursts = app.state.click_bursts = Bursts()
    return bursts


def _record(ctx, request, kind: str, bursts: Bursts | None):
    settings = ctx.settings
    seen = Request(request.method, request.headers.get("user-agent", "")[:500],
                   request.client.host if request.client else None)
    return record(ctx.store, settings.secret_keys, request.path_params["token"], kind, seen, ctx.now(),
                  machine_seconds=settings.tracking_machine_seconds, bursts=bursts)


def _invalid(ctx):
    return ctx.pages.message("This link does not work",
                             "The address is incomplete or was changed. Use the link in the email as it came.",
                             status=404)
