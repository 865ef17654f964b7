"""The preference centre: ``/preferences/{token}``, linked from every message's footer.

Rules (the rules themselves are in :mod:`newsletter.audience.preferences`):

- the token is the message's signed unsubscribe token
  (:func:`newsletter.audience.tokens.preferences_url`); it verifies only for
  the subscriber whose address it was signed for. A tampered or foreign
  token gets a plain 400 page, an erased subscriber's a 404; neither shows
  or changes anything. Links from before tokens covered the address are
  refused here (they still unsubscribe on the unsubscribe page);
- ``GET`` only shows the page: mail scanners fetch every link; ``GET
  /preferences/{token}/tracking`` (the withdrawal link of every personally
  tracked message) shows one button that posts ``tracking``/``withdraw``;
- ``POST`` changes one thing, named by ``action``: ``join``/``leave`` (with
  ``list``, a list id; only public lists can be joined), ``snooze`` (with
  ``days``: 30, 60, 90; 0 resumes), ``profile`` (``name``, ``timezone``),
  ``unsubscribe`` (every list), ``export`` (the JSON download),
  ``erase`` (with ``confirm=yes``) and ``tracking`` (with ``choice``:
  ``give`` or ``withdraw`` consent to personal tracking, recorded with the
  checkbox's text: ``audience.tracking_consent``). The form must carry the page's token
  again (``token``), and a browser post from another website is refused
  (403, the same-origin check of the signup form): a page elsewhere cannot
  act for a reader even if it knew the address;
- each change is committed, with the subscriber's row locked, before the
  answer; it is a consent row with source ``web``, the IP, the browser's
  user agent and the button's text.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from newsletter.audience import preferences as prefs
from newsletter.audience import tracking_consent
from newsletter.audience.tokens import UNSUBSCRIBE, TokenData, check_address, read_token
from newsletter.errors import InputError, NewsletterError, NotFound
from newsletter.store import audience as q
from newsletter.store.models import Subscriber
from newsletter.web.common import client_ip, read_form
from newsletter.web.guards import cross_site_refusal, origin_of
from newsletter.web.pages import mask_email

SOURCE = "web"
ACTIONS = ("join", "leave", "snooze", "profile", "unsubscribe", "export", "erase", "tracking")
TRACKING_CHOICES = {"give": True, "withdraw": False}


class CrossSite(NewsletterError):
    """A browser posted to the preference centre from a page that is not ours."""

    http_status = 403


def _subscriber(session, data: TokenData, lock: bool = False) -> Subscriber:
    subscriber = (q.locked_subscriber(session, data.subscriber_id) if lock
                  else session.get(Subscriber, data.subscriber_id))
    if subscriber is None:
        raise NotFound("we hold no subscription for this link",
                       hint="the address was removed from our lists; nothing more will be sent to it")
    if not check_address(data, subscriber.email):
        raise InputError("this link is not valid", hint="use the link from your most recent email")
    return subscriber


def load(store, data: TokenData, newsletter_name: str) -> prefs.Preferences:
    """What the page shows for a verified token."""
    with store.session() as session:
        return prefs.view(session, _subscriber(session, data), newsletter_name)


def apply(store, data: TokenData, action: str, form: dict[str, str], *, newsletter_name: str,
          now: datetime, proof: dict, deliveries_of=None, tracking_text: str = ""):
    """Apply one ``action`` for a verified token in one transaction: a sentence for the page, the export's
    data (``export``), or None once erased."""
    with store.session() as session:
        subscriber = _subscriber(session, data, lock=True)
        common = {"source": SOURCE, **proof}
        if action in ("join", "leave"):
            list_id = _number(form.get("list", ""), "list")
            change = prefs.join_list if action == "join" else prefs.leave_list
            return change(session, subscriber, list_id, newsletter_name, **common)
        if action == "snooze":
            return prefs.snooze(session, subscriber, _number(form.get("days", ""), "days"), now, **common)
        if action == "profile":
            return prefs.update_profile(session, subscriber, form.get("name", "")[:1000],
                                        form.get("timezone", "")[:200], **common)
        if action == "unsubscribe":
            return prefs.leave_everything(session, subscriber, **common)
        if action == "export":
            return prefs.export_data(session, subscriber, deliveries_of=deliveries_of, now=now, **common)
        if action == "tracking":
            choice = form.get("choice", "").strip().lower()
            if choice not in TRACKING_CHOICES:
                raise InputError("this request did not say whether to give or withdraw the consent",
                                 hint="use the buttons on the page")
            return prefs.set_tracking(session, subscriber, TRACKING_CHOICES[choice], text=tracking_text, **common)
        if form.get("confirm") != "yes":
            raise InputError("tick the box to confirm that everything should be erased",
                             hint="nothing was erased")
        prefs.erase_subscriber(session, subscriber, source=SOURCE)
        return None


def _number(value: str, what: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise InputError(f"the form's {what} is not a number", hint="use the buttons on the page")
    return int(value)


# -- HTTP ---------------------------------------------------------------------------------------

def _token(ctx, request) -> TokenData:
    return read_token(ctx.settings.secret_keys, UNSUBSCRIBE, request.path_params["token"])


def _sentence(exc: NewsletterError) -> str:
    text = exc.message[:1].upper() + exc.message[1:] + "."
    return f"{text} {exc.hint[:1].upper()}{exc.hint[1:]}." if exc.hint else text


def _page(ctx, request, view: prefs.Preferences, *, done: str | None = None, error: str | None = None,
          status: int = 200):
    response = ctx.pages.page(
        "preferences.html", status, heading="Your subscription", done=done, error=error,
        masked_email=mask_email(view.email),
        view=view, snooze_days=prefs.SNOOZE_DAYS, token=request.path_params["token"],
        tracking_text=tracking_consent.text_of(ctx.settings),
        action_url=request.url.path, snoozed_until=_day(view.snoozed_until, ctx.now()))
    # The page's own forms must send our Origin (the same-origin check); its
    # Referer (which holds the token) goes to no one else: the page loads nothing from elsewhere.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _day(until: datetime | None, now: datetime) -> str | None:
    return until.strftime("%d %B %Y") if until and until > now else None


async def preferences_page(request):
    """``GET``: the page; changes nothing."""
    ctx = request.app.state.ctx
    try:
        view = await ctx.run(load, ctx.store, _token(ctx, request), ctx.settings.name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    return _page(ctx, request, view)


async def withdraw_page(request):
    """``GET /preferences/{token}/tracking``: the withdrawal link's page; one button posts the withdrawal.

    Changes nothing by itself (a mail scanner follows links); the button posts to the preference centre.
    """
    ctx = request.app.state.ctx
    try:
        view = await ctx.run(load, ctx.store, _token(ctx, request), ctx.settings.name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    token = request.path_params["token"]
    response = ctx.pages.page("tracking.html", heading="Stop personal statistics", masked_email=mask_email(view.email),
                              tracking=view.tracking, token=token,
                              action_url=request.url.path.rsplit("/", 1)[0], robots="noindex")
    response.headers["Referrer-Policy"] = "same-origin"
    return response


async def preferences_post(request):
    """``POST``: one change (see the module docstring), then the page again with what was done."""
    ctx = request.app.state.ctx
    try:
        data = _token(ctx, request)
        refusal = cross_site_refusal(request.headers, {origin for origin in [origin_of(ctx.settings.base_url)]
                                                       if origin})
        if refusal:
            raise CrossSite(refusal, hint="use the link in one of your emails")
        form = await read_form(request)
        if form.get("token") != request.path_params["token"]:
            raise InputError("this form does not belong to this page", hint="reload the page and try again")
        action = form.get("action", "").strip().lower()
        if action not in ACTIONS:
            raise InputError("this request did not say what to do", hint="use the buttons on the page")
        proof = prefs.proof_of(ip=client_ip(request), user_agent=request.headers.get("user-agent"),
                               source_url=f"{ctx.settings.base_url}/preferences")
        try:
            done = await ctx.run(apply, ctx.store, data, action, form, newsletter_name=ctx.settings.name,
                                 now=ctx.now(), proof=proof, deliveries_of=_deliveries_query(),
                                 tracking_text=tracking_consent.text_of(ctx.settings))
        except NewsletterError as exc:
            # A refused value (a time zone, an unticked box): the page again, saying why, when the link is good.
            view = await ctx.run(load, ctx.store, data, ctx.settings.name)
            return _page(ctx, request, view, error=_sentence(exc), status=ctx.error_status(exc))
        if action == "export":
            return _download(done)
        if action == "erase":
            return ctx.pages.message("Your data is erased",
                                     "We no longer hold your name, address, lists or history.",
                                     "Only a one-way fingerprint of your address stays on our do-not-mail list, "
                                     "so that it is never added again by mistake.")
        view = await ctx.run(load, ctx.store, data, ctx.settings.name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    return _page(ctx, request, view, done=done)


def _download(data: dict):
    from starlette.responses import Response

    from newsletter.web.pages import PAGE_HEADERS

    body = json.dumps(data, default=_plain, ensure_ascii=False, indent=2)
    headers = {**PAGE_HEADERS, "Content-Disposition": 'attachment; filename="my-newsletter-data.json"'}
    return Response(body, media_type="application/json; charset=utf-8", headers=headers)


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _deliveries_query():
    try:
        from newsletter.store.ledger import deliveries_of_subscriber
    except ImportError:
        return None
    return deliveries_of_subscriber
