"""Signup over HTTP: ``GET/POST /subscribe``, the challenge and its script.

The signup itself (limits, protection, quarantine, joining, consent proof, the confirmation email, and
approving or rejecting held signups) is :mod:`newsletter.usecases.signups`. Here only the HTTP rules:

- a filled honeypot field (``website``) answers like a success and stores nothing;
- a browser post from another website is refused (403): ``Sec-Fetch-Site``
  and ``Origin``/``Referer`` must say it came from ``base_url``'s origin or
  one of ``signup_origins`` (see ``newsletter.web.guards.cross_site_refusal``);
- errors are a page, or JSON for ``Accept: application/json``.
"""

from __future__ import annotations

from newsletter.audience import protection
from newsletter.audience import tracking_consent as tracking
from newsletter.errors import NewsletterError
from newsletter.store import audience as q
from newsletter.usecases.signups import CONSENT_TEXT, Signup, subscribe
from newsletter.web.common import client_ip, read_form
from newsletter.web.guards import cross_site_refusal, origin_of

HONEYPOT = "website"


class CrossSite(NewsletterError):
    """A browser posted the form from a website that is not ours."""

    http_status = 403



def _source(request) -> str:
    """``web`` and the page the form was on (evidence of where consent was given)."""
    origin = request.headers.get("referer") or request.headers.get("origin") or ""
    return f"web {origin}"[:200].strip()


def allowed_origins(settings) -> set[str]:
    """The origins whose pages may post the form: ``base_url``'s and ``signup_origins``."""
    return {origin for origin in (origin_of(settings.base_url), *settings.signup_origins) if origin}


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def subscribe_post(request):
    """The form endpoint: a thank-you page (or JSON for ``Accept: application/json``)."""
    from starlette.responses import JSONResponse

    ctx = request.app.state.ctx
    try:
        refusal = cross_site_refusal(request.headers, allowed_origins(ctx.settings))
        if refusal:
            raise CrossSite(refusal, hint=f"subscribe on {ctx.settings.base_url}/subscribe")
        form = await read_form(request)
        if form.get(HONEYPOT, "").strip():
            # A bot filled the hidden field: answer as if all went well.
            return _thanks(ctx, request, Signup(form.get("list", ""), True))
        result = await ctx.run(subscribe, ctx, email=form.get("email", ""), list_name=form.get("list", ""),
                               name=form.get("name", ""), ip=client_ip(request), source=_source(request),
                               user_agent=request.headers.get("user-agent"),
                               source_url=request.headers.get("referer") or request.headers.get("origin"),
                               challenge=form.get(protection.FIELD, ""),
                               tracking_consent=tracking.ticked(form.get(tracking.FIELD)))
    except NewsletterError as exc:
        if _wants_json(request):
            return JSONResponse({"ok": False, "error": exc.message, "hint": exc.hint},
                                status_code=ctx.error_status(exc))
        return ctx.error_page(exc)
    return _thanks(ctx, request, result)


def _thanks(ctx, request, result: Signup):
    from starlette.responses import JSONResponse

    status = "pending" if result.double_opt_in else "subscribed"
    if _wants_json(request):
        return JSONResponse({"ok": True, "status": status})
    if result.double_opt_in:
        return ctx.pages.message("Check your inbox", "We sent you an email with a link to confirm your subscription.",
                                 "If it is not there in a few minutes, look in your spam folder.")
    return ctx.pages.message("Thank you for subscribing", f"You are on {result.list_name}.")


async def subscribe_form(request):
    """A plain signup page (``GET /subscribe``) offering the public lists, by the names readers see."""
    ctx = request.app.state.ctx

    def offered():
        with ctx.store.session() as session:
            return [{"value": ml.name, "label": ml.reader_name(ctx.settings.name)} for ml in q.public_lists(session)]

    import json

    from newsletter.web.pages import PAGE_HEADERS

    challenge = protection.new_challenge(ctx.settings, ctx.clock()) if ctx.settings.signup_proof_of_work else None
    response = ctx.pages.page("subscribe.html", error=None, email="", name="", lists=await ctx.run(offered),
                              action_url=request.url.path, robots="index",
                              consent_text=CONSENT_TEXT.format(newsletter=ctx.settings.name),
                              tracking_field=tracking.FIELD, tracking_text=tracking.text_of(ctx.settings),
                              challenge=json.dumps(challenge) if challenge else "")
    # No token on this page: let the browser send our Origin with the form (the same-origin check).
    response.headers["Referrer-Policy"] = "same-origin"
    if challenge:
        # Our own small script solves the challenge (altcha.js, same origin); nothing else may run.
        response.headers["Content-Security-Policy"] = PAGE_HEADERS["Content-Security-Policy"] + "; script-src 'self'"
    return response


async def challenge_json(request):
    """``GET /subscribe/challenge``: a new proof-of-work challenge (JSON) for forms on allowed websites."""
    from starlette.responses import JSONResponse

    ctx = request.app.state.ctx
    headers = {"Cache-Control": "no-store", "Vary": "Origin"}
    origin = request.headers.get("origin", "")
    if origin and origin in allowed_origins(ctx.settings):
        headers["Access-Control-Allow-Origin"] = origin
    return JSONResponse(protection.new_challenge(ctx.settings, ctx.clock()), headers=headers)


async def challenge_script(request):
    """``GET /subscribe/altcha.js``: the small script that solves the challenge with the browser's WebCrypto."""
    from importlib.resources import files

    from starlette.responses import Response

    script = (files("newsletter.templates") / "web" / "altcha.js").read_bytes()
    return Response(script, media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
