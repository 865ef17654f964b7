"""``GET/POST /forms/{name}``: the hosted page of a signup form made with ``newsletter forms create``.

The page pre-fills its fields from the query string (``?email=...&city=...``);
a post goes through :func:`newsletter.usecases.signups.subscribe` (the same limits,
protection, quarantine and consent proof as ``/subscribe``) with the form's
typed fields validated into attributes (``newsletter.audience.forms``), then
redirects (303) to the form's redirect URL when it has one, else shows the
usual thank-you page. An unknown form is a 404.
"""

from __future__ import annotations

from newsletter.audience import forms as form_rules
from newsletter.audience import protection
from newsletter.audience import tracking_consent as tracking
from newsletter.errors import NewsletterError, NotFound
from newsletter.store import forms as form_store
from newsletter.usecases.signups import CONSENT_TEXT, Signup, subscribe
from newsletter.web.common import client_ip, read_form
from newsletter.web.guards import cross_site_refusal
from newsletter.web.signup import HONEYPOT, CrossSite, _source, _thanks, _wants_json, allowed_origins


def _load(ctx, name: str) -> tuple[dict, str]:
    """The form's fields and redirect, and its list's name; NotFound for an unknown form."""
    from newsletter.store.models import MailingList

    with ctx.store.session() as session:
        form = form_store.find_form(session, name[:100])
        mailing_list = session.get(MailingList, form.list_id) if form is not None else None
        if form is None or mailing_list is None or not mailing_list.public:
            raise NotFound("there is no such signup form", hint="check the address of the page")
        return ({"fields": list(form.fields), "redirect_url": form.redirect_url,
                 "label": mailing_list.reader_name(ctx.settings.name)}, mailing_list.name)


async def form_page(request):
    """The hosted page: the form's fields, pre-filled from the query string."""
    import json

    from newsletter.web.pages import PAGE_HEADERS

    ctx = request.app.state.ctx
    name = request.path_params["name"]
    try:
        form, _list_name = await ctx.run(_load, ctx, name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    values = form_rules.prefill(form["fields"], dict(request.query_params))
    # The tracking checkbox is the page's own (below), never pre-ticked: consent is a person's act, not a link's.
    fields = [{**field, "label": form_rules.field_label(field["name"]), "value": values.get(field["name"], "")}
              for field in form["fields"] if field["name"] != tracking.FIELD]
    challenge = protection.new_challenge(ctx.settings, ctx.clock()) if ctx.settings.signup_proof_of_work else None
    response = ctx.pages.page("form.html", action_url=request.url.path, email=values["email"], name=values["name"],
                              fields=fields, list_label=form["label"],
                              consent_text=CONSENT_TEXT.format(newsletter=ctx.settings.name),
                              tracking_field=tracking.FIELD, tracking_text=tracking.text_of(ctx.settings),
                              challenge=json.dumps(challenge) if challenge else "", robots="noindex")
    response.headers["Referrer-Policy"] = "same-origin"
    if challenge:
        response.headers["Content-Security-Policy"] = PAGE_HEADERS["Content-Security-Policy"] + "; script-src 'self'"
    return response


async def form_post(request):
    """A signup through the form: validated fields into attributes; a redirect (303) or the thank-you page."""
    from starlette.responses import JSONResponse, RedirectResponse

    ctx = request.app.state.ctx
    name = request.path_params["name"]
    try:
        refusal = cross_site_refusal(request.headers, allowed_origins(ctx.settings))
        if refusal:
            raise CrossSite(refusal, hint=f"use the form on {ctx.settings.base_url}/forms/{name[:100]}")
        form, list_name = await ctx.run(_load, ctx, name)
        data = await read_form(request)
        if data.get(HONEYPOT, "").strip():
            result = Signup(form["label"], True)  # a bot filled the hidden field: answer as if all went well
        else:
            attributes = form_rules.attributes_from(form["fields"], data)
            result = await ctx.run(subscribe, ctx, email=data.get("email", ""), list_name=list_name,
                                   name=data.get("name", ""), ip=client_ip(request), source=_source(request),
                                   user_agent=request.headers.get("user-agent"),
                                   source_url=request.headers.get("referer") or request.headers.get("origin"),
                                   challenge=data.get(protection.FIELD, ""), attributes=attributes,
                                   tracking_consent=tracking.ticked(data.get(tracking.FIELD)))
    except NewsletterError as exc:
        if _wants_json(request):
            return JSONResponse({"ok": False, "error": exc.message, "hint": exc.hint},
                                status_code=ctx.error_status(exc))
        return ctx.error_page(exc)
    if form["redirect_url"] and not _wants_json(request):
        return RedirectResponse(form["redirect_url"], status_code=303)
    return _thanks(ctx, request, result)
