"""Unsubscribe and confirm: the pages behind the links in every email.

Rules (RFC 8058 and the Gmail/Yahoo bulk-sender requirements):

- ``GET /unsubscribe/{token}`` and ``GET /confirm/{token}`` only show a page
  with a button: mail scanners fetch every link, so a GET changes nothing.
- ``POST /unsubscribe/{token}`` with the body ``List-Unsubscribe=One-Click``
  (urlencoded or multipart, as mail clients send it) unsubscribes at once:
  no cookie, no login, 200 without a redirect, idempotent. The page's own
  buttons post ``action=list|all|resubscribe``. The change is committed
  before the answer goes out.
- A token that does not verify (tampered, made for another purpose or for
  another address, signed with a key no longer listed) gets a 400 page, a
  token naming a subscriber we no longer hold a 404, an expired
  confirmation link a 410; none changes anything. Subscriber ids are never
  reused, and a token's signature covers the subscriber's address, so an
  erased reader's old link can never act on someone else.
- Confirmation links expire after ``confirm_token_days`` (default 7);
  unsubscribe links never expire. An unsubscribe link mailed before links
  were bound to addresses still works for the ids that existed then
  (``events.legacy_link_limit``): those ids are never handed out again.
- Each change runs in one transaction with the subscriber's row locked:
  the same link posted many times at once records one change.
- Pages show the list's display name, never its internal name.
- Every change records consent with source ``web`` and the client's IP.

The functions without ``request`` are the library side, callable from Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.audience import rules
from newsletter.audience.tokens import CONFIRM, UNSUBSCRIBE, TokenData, check_address, check_legacy, read_token
from newsletter.errors import InputError, NewsletterError, NotFound
from newsletter.store import audience as q
from newsletter.store import events as ev
from newsletter.store.models import Subscriber, utcnow
from newsletter.vocabulary import MembershipStatus
from newsletter.web.common import client_ip, read_form
from newsletter.web.pages import mask_email

SOURCE = "web"
ACTIONS = ("list", "all", "resubscribe")


@dataclass
class SubscriptionView:
    """What a token points at, as a page shows it."""

    subscriber_id: int
    email: str
    list_id: int | None
    list_name: str | None       # the name readers see; None: no list in the token, or the list was deleted
    list_status: str | None     # the membership's status on that list; None when not a member
    subscribed_anywhere: bool


def _subscriber(session, data: TokenData, lock: bool = False) -> Subscriber:
    """The subscriber a token names, once its signature verifies for their address."""
    subscriber = q.locked_subscriber(session, data.subscriber_id) if lock else session.get(Subscriber,
                                                                                             data.subscriber_id)
    if subscriber is None:
        raise NotFound("we hold no subscription for this link",
                       hint="the address was removed from our lists; nothing more will be sent to it")
    if not (check_address(data, subscriber.email) or _legacy_link(session, data)):
        raise InputError("this link is not valid", hint="use the link from your most recent email")
    return subscriber


def _legacy_link(session, data: TokenData) -> bool:
    """An unsubscribe link mailed before links were bound to addresses, naming an id never reused since."""
    return check_legacy(data) and data.subscriber_id <= ev.legacy_link_limit(session)


def _view(session, subscriber: Subscriber, data: TokenData, newsletter_name: str) -> SubscriptionView:
    mailing_list = ev.find_list_by_id(session, data.list_id) if data.list_id else None
    status = next((m.status for m in subscriber.memberships if mailing_list and m.list_id == mailing_list.id),
                  None)
    anywhere = any(m.status != MembershipStatus.UNSUBSCRIBED for m in subscriber.memberships)
    return SubscriptionView(subscriber.id, subscriber.email, data.list_id,
                            mailing_list.reader_name(newsletter_name) if mailing_list else None, status, anywhere)


def load_view(store, data: TokenData, newsletter_name: str = "our newsletter") -> SubscriptionView:
    """The subscriber and list a token names; NotFound when erased, InputError when it does not verify."""
    with store.session() as session:
        return _view(session, _subscriber(session, data), data, newsletter_name)


def unsubscribe_by_token(store, data: TokenData, action: str, ip: str | None,
                         newsletter_name: str = "our newsletter", *, proof: dict | None = None) -> str:
    """Apply ``action`` (``list``, ``all`` or ``resubscribe``) for a token; returns a sentence for the page.

    ``list`` with a token that names no list means every list. Idempotent:
    doing it twice (or twice at once) changes nothing the second time and
    answers the same. ``proof`` (``form``, ``user_agent``) goes on the consent rows.
    """
    with store.session() as session, q.consent_proof(session, **(proof or {})):
        subscriber = _subscriber(session, data, lock=True)
        view = _view(session, subscriber, data, newsletter_name)
        if action == "resubscribe":
            if view.list_name is None or data.list_id is None:
                raise InputError("this link names no list to subscribe to again", hint="ask the publisher")
            # The token proves the reader holds the email: no second confirmation needed.
            rules.rejoin(session, subscriber, data.list_id, SOURCE, ip)
            return f"You are subscribed to {view.list_name} again."
        if action == "all" or data.list_id is None:
            rules.unsubscribe(session, subscriber, None, SOURCE, ip)
            return "You are unsubscribed from every list. You will get no more email from us."
        if view.list_name is None or view.list_status is None:
            return "You are not on this list any more."
        rules.unsubscribe(session, subscriber, data.list_id, SOURCE, ip)
        return f"You are unsubscribed from {view.list_name}."


def confirm_by_token(store, data: TokenData, ip: str | None,
                     newsletter_name: str = "our newsletter", user_agent: str | None = None) -> SubscriptionView:
    """Confirm the pending membership a confirmation token names. Idempotent, also when posted in parallel.

    The ``confirm`` consent row carries the proof of the double opt-in: when
    it was asked for and the confirmation email's Message-ID (from the
    signup's row, when the signup form made it), when it was confirmed, and
    the confirming browser's IP and user agent.
    """
    if data.list_id is None:
        raise InputError("this confirmation link names no list", hint="subscribe again")
    with store.session() as session:
        subscriber = _subscriber(session, data, lock=True)
        view = _view(session, subscriber, data, newsletter_name)
        if view.list_name is None or view.list_status is None:
            raise NotFound("this subscription no longer exists", hint="subscribe again")
        if view.list_status == MembershipStatus.UNSUBSCRIBED:
            raise NotFound("you unsubscribed from this list since", hint="subscribe again")
        asked = q.last_signup(session, subscriber.id, data.list_id)
        with q.consent_proof(session, form="confirmation page v1", consent_text="Confirm my subscription",
                             user_agent=(user_agent or "")[:500] or None, confirmed_at=utcnow(),
                             requested_at=asked.requested_at if asked else None,
                             message_id=asked.message_id if asked else None):
            view.list_status = rules.confirm(session, subscriber, data.list_id, SOURCE, ip)
        return view


# -- HTTP ---------------------------------------------------------------------------------------

def _token(ctx, request, purpose: str) -> TokenData:
    max_age = ctx.settings.confirm_token_days * 86400 if purpose == CONFIRM else None
    return read_token(ctx.settings.secret_keys, purpose, request.path_params["token"], now=ctx.clock(),
                      max_age=max_age)


def _view_context(ctx, view: SubscriptionView, request) -> dict:
    return {"masked_email": mask_email(view.email), "list_name": view.list_name, "list_status": view.list_status,
            "subscribed_anywhere": view.subscribed_anywhere, "action_url": request.url.path}


async def unsubscribe_page(request):
    ctx = request.app.state.ctx
    try:
        view = await ctx.run(load_view, ctx.store, _token(ctx, request, UNSUBSCRIBE), ctx.settings.name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    heading = "Unsubscribe" if view.list_status != MembershipStatus.UNSUBSCRIBED else "You are unsubscribed"
    return ctx.pages.page("unsubscribe.html", heading=heading, done=None, **_view_context(ctx, view, request))


async def unsubscribe_post(request):
    """One-click (RFC 8058) or a button of the page: 200 and a page, never a redirect."""
    ctx = request.app.state.ctx
    try:
        data = _token(ctx, request, UNSUBSCRIBE)
        action, one_click = await _unsubscribe_action(request)
        proof = {"form": "one-click (RFC 8058)" if one_click else "unsubscribe page v1",
                 "user_agent": (request.headers.get("user-agent") or "")[:500] or None}
        done = await ctx.run(unsubscribe_by_token, ctx.store, data, action, client_ip(request), ctx.settings.name,
                             proof=proof)
        view = await ctx.run(load_view, ctx.store, data, ctx.settings.name)
    except NewsletterError as exc:
        return ctx.error_page(exc)
    heading = "You are subscribed" if action == "resubscribe" else "You are unsubscribed"
    return ctx.pages.page("unsubscribe.html", heading=heading, done=done, **_view_context(ctx, view, request))


async def _unsubscribe_action(request) -> tuple[str, bool]:
    """``list``, ``all`` or ``resubscribe`` from the form; ``List-Unsubscribe=One-Click`` means ``list``.

    Also whether it was a mail client's one-click post (rather than a button of the page).
    """
    form = await read_form(request)
    action = (form.get("action") or "").strip().lower()
    if action in ACTIONS:
        return action, False
    if "List-Unsubscribe" in form:
        # RFC 8058 requires the value One-Click; any client that names the key
        # means to unsubscribe, and refusing it would keep mailing the reader.
        return "list", True
    raise InputError("this request did not say what to do", hint="use the buttons on the unsubscribe page")


async def confirm_page(request):
    ctx = request.app.state.ctx
    try:
        data = _token(ctx, request, CONFIRM)
        if data.list_id is None:
            raise InputError("this confirmation link names no list", hint="subscribe again")
        view = await ctx.run(load_view, ctx.store, data, ctx.settings.name)
        if view.list_status is None or view.list_status == MembershipStatus.UNSUBSCRIBED:
            raise NotFound("this subscription no longer exists", hint="subscribe again")
    except NewsletterError as exc:
        return ctx.error_page(exc)
    confirmed = view.list_status == MembershipStatus.CONFIRMED
    return ctx.pages.page("confirm.html", heading="You are subscribed" if confirmed else "Confirm your subscription",
                          confirmed=confirmed, **_view_context(ctx, view, request))


async def confirm_post(request):
    ctx = request.app.state.ctx
    try:
        view = await ctx.run(confirm_by_token, ctx.store, _token(ctx, request, CONFIRM), client_ip(request),
                             ctx.settings.name, request.headers.get("user-agent"))
    except NewsletterError as exc:
        return ctx.error_page(exc)
    return ctx.pages.page("confirm.html", heading="You are subscribed", confirmed=True,
                          **_view_context(ctx, view, request))
