"""Double opt-in signup: ``POST /subscribe`` from any website's form.

Contract of :func:`subscribe`:

- a filled honeypot field (``website``) answers like a success and stores nothing;
- the address is validated; the list must exist (a public form never creates
  lists); with no ``list`` field, the workspace's only list is meant;
- on a double opt-in list the member is ``pending`` and a confirmation email
  with ``{base_url}/confirm/{token}`` goes out through the configured
  transport; on other lists the member is confirmed at once;
- at most :data:`MAX_EMAILS_PER_HOUR` confirmation emails per address an
  hour (a table, so the limit holds across restarts and processes);
- the answer never tells whether an address was already subscribed,
  unsubscribed or suppressed: a suppressed address, or one that left a
  single opt-in list, is answered like the others and nothing is changed
  or sent (coming back after that goes through a confirmation, or the
  unsubscribe page's "subscribe again" button);
- an existing subscriber's name is not changed by a public form;
- consent is recorded (action, time, IP, source ``web`` plus the form's origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from newsletter.audience import manage
from newsletter.audience.addresses import address_hash, address_key, normalise_address
from newsletter.audience.tokens import confirm_url
from newsletter.errors import ConfigError, DeliveryError, InputError, NewsletterError
from newsletter.store import audience as q
from newsletter.store import events as ev
from newsletter.store.models import PENDING, UNSUBSCRIBED
from newsletter.web.common import client_ip, read_form

MAX_EMAILS_PER_HOUR = 3
HONEYPOT = "website"


class RateLimited(NewsletterError):
    """Too many confirmation emails asked for one address."""

    http_status = 429


@dataclass
class Signup:
    """What a signup did: ``double_opt_in`` decides the page; ``emailed`` whether a confirmation went out."""

    list_name: str
    double_opt_in: bool
    emailed: bool = False


def subscribe(ctx, *, email: str, list_name: str, name: str, ip: str | None, source: str) -> Signup:
    """Record a signup and send the confirmation email when one is due (see the module docstring)."""
    address = normalise_address(email[:320])
    name = " ".join(name.split())[:200]
    now = ctx.now()
    with ctx.store.session() as session:
        mailing_list = _public_list(session, list_name)
        result = Signup(mailing_list.name, mailing_list.double_opt_in)
        if q.suppression_reason(session, address_hash(address)):
            return result
        subscriber = q.find_subscriber(session, address_key(address))
        membership = subscriber and q.find_membership(session, subscriber.id, mailing_list.id)
        if membership and membership.status == UNSUBSCRIBED and not mailing_list.double_opt_in:
            return result
        if membership and membership.status != UNSUBSCRIBED and membership.status != PENDING:
            return result
        if mailing_list.double_opt_in:
            _check_rate(session, address, now)
            ev.record_signup_attempt(session, address_hash(address), now, keep=timedelta(days=1))
        known = subscriber is not None
    added = manage.add_subscriber(ctx.store, address, name=None if known else (name or None),
                                  list_name=result.list_name, resubscribe=True, source=source, ip=ip)
    if added.list_status == PENDING:
        send_confirmation(ctx, address, added.subscriber_id, added.list_id, result.list_name)
        result.emailed = True
    return result


def _public_list(session, list_name: str):
    list_name = list_name.strip()
    if not list_name:
        names = ev.list_names(session)
        if len(names) != 1:
            raise InputError("say which list to subscribe to", hint="add a field named list to the form")
        list_name = names[0]
    mailing_list = q.find_list(session, list_name)
    if mailing_list is None:
        raise InputError(f"there is no list named {list_name!r}", hint="check the form's list field")
    return mailing_list


def _check_rate(session, address: str, now: datetime) -> None:
    if ev.signup_attempts_since(session, address_hash(address), now - timedelta(hours=1)) >= MAX_EMAILS_PER_HOUR:
        raise RateLimited("we already sent several confirmation emails to this address",
                          hint="look for them in your inbox (and spam folder), or try again in an hour")


def send_confirmation(ctx, address: str, subscriber_id: int, list_id: int, list_name: str) -> None:
    """Send the confirmation email; DeliveryError when the transport refuses it."""
    from newsletter.delivery.message import Message, Outcome, Recipient
    from newsletter.delivery.mime import new_message_id

    settings = ctx.settings
    if not settings.sender_address:
        raise ConfigError("signups are not set up: the sender address is missing", hint="set NEWSLETTER_FROM")
    message = Message(subject=f"Confirm your subscription to {settings.name}", from_email=settings.sender,
                      html=ctx.pages.render("confirm_email.html"), text=ctx.pages.render("confirm_email.txt"),
                      tags=["confirmation"], metadata={"kind": "confirmation"})
    # Personal values travel as merge data, never in the template: a name or
    # address holding "%%...%%" cannot inject anything.
    recipient = Recipient(email=address, message_id=new_message_id(settings.sender_address),
                          merge_data={"email": address, "list": list_name, "newsletter": settings.name,
                                      "confirm_url": confirm_url(settings, subscriber_id, list_id)})
    with ctx.transport_factory(settings) as transport:
        [result] = transport.send_batch(message, [recipient])
    if result.outcome in (Outcome.REJECTED, Outcome.FAILED):
        raise DeliveryError("the confirmation email could not be sent", hint="check the address, or try again later")


def _source(request) -> str:
    """``web`` and the page the form was on (evidence of where consent was given)."""
    origin = request.headers.get("referer") or request.headers.get("origin") or ""
    return f"web {origin}"[:200].strip()


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def subscribe_post(request):
    """The form endpoint: a thank-you page (or JSON for ``Accept: application/json``)."""
    from starlette.responses import JSONResponse

    ctx = request.app.state.ctx
    try:
        form = await read_form(request)
        if form.get(HONEYPOT, "").strip():
            # A bot filled the hidden field: answer as if all went well.
            return _thanks(ctx, request, Signup(form.get("list", ""), True))
        result = await ctx.run(subscribe, ctx, email=form.get("email", ""), list_name=form.get("list", ""),
                               name=form.get("name", ""), ip=client_ip(request), source=_source(request))
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
    """A plain signup page (``GET /subscribe``) for publishers without a website form."""
    ctx = request.app.state.ctx

    def names():
        with ctx.store.session() as session:
            return ev.list_names(session)

    return ctx.pages.page("subscribe.html", error=None, email="", name="", lists=await ctx.run(names),
                          action_url=request.url.path, robots="index")
