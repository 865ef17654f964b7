"""Signups, as one use case for every door: our ``/subscribe`` page, hosted and embedded forms
(``newsletter.web.signup``, ``newsletter.web.forms``) and the quarantine's approvals (the web and
``newsletter subscribers quarantine``).

Contract of :func:`subscribe` (the web adds the HTTP rules: honeypot, same-origin check):

- only **public** lists can be joined (the form offers only them); a private
  list answers exactly like a list that does not exist; with no ``list``
  field, the workspace's only public list is meant; a public form never
  creates lists;
- the address and name go through ``audience.manage.add_subscriber_in``, the
  same validation as the CLI, and joining follows ``audience.rules.join``;
- every signup that gets this far counts against two limits, whatever the
  list: :data:`MAX_PER_ADDRESS` an hour per address and :data:`MAX_PER_IP`
  an hour per client IP (429 past either). The count, the checks and the
  join are one transaction under a lock, so parallel requests cannot slip
  past; the table keeps only hashes, and survives restarts and several processes;
- on a double opt-in list the member is ``pending`` and a confirmation email
  with ``{base_url}/confirm/{token}`` goes out; on other lists the member is
  confirmed at once;
- the answer never tells whether an address was already subscribed,
  unsubscribed or suppressed: a suppressed address, or one that left a
  single opt-in list, is answered like the others and nothing is changed
  or sent (coming back after that goes through a confirmation, or the
  unsubscribe page's "subscribe again" button);
- an existing subscriber's name is not changed by a public form;
- readers see the list's display name, never its internal name;
- the answer is a :class:`Signup` (the caller makes the page of it);
- consent is recorded (action, time, IP, source ``web`` plus the form's origin);
- signup protection (``newsletter.audience.protection``): with ``[signups]
  proof_of_work`` on, the form carries a solved ALTCHA challenge (field
  ``altcha``), verified here and spent in the signup's transaction: a replayed
  one is refused (400); a signup without a valid one, from a disposable or
  denied domain, or from a network (/24, /48) past ``network_quarantine``
  signups this hour goes to the quarantine (``store.signups``) and gets no
  email until approved (:func:`approve_held`); past ``network_limit`` a
  network is refused (429). A held signup is answered like any other, so a
  bot learns nothing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from newsletter.audience import manage, protection
from newsletter.audience import tracking_consent as tracking
from newsletter.audience.tokens import confirm_url
from newsletter.compose.clicks import consents
from newsletter.errors import ConfigError, DeliveryError, InputError, NewsletterError
from newsletter.store import audience as q
from newsletter.store import events as ev
from newsletter.store import signups as held_store
from newsletter.vocabulary import MembershipStatus, address_hash, address_key, normalise_address

MAX_PER_ADDRESS = 3   # signups (and so confirmation emails) per address an hour
MAX_PER_IP = 20       # signups per client IP an hour, any address, any list


class RateLimited(NewsletterError):
    """Too many signups for one address, or from one client."""

    http_status = 429


@dataclass
class Signup:
    """What a signup did: ``double_opt_in`` decides the page; ``emailed`` whether a confirmation went out."""

    list_name: str            # the list's display name (what readers see)
    double_opt_in: bool
    emailed: bool = False


FORM = "signup form v1"
EXTERNAL_FORM = "signup form on another page"
# What our own signup page says above its button (templates/web/subscribe.html): the consent text shown.
CONSENT_TEXT = ("By subscribing you agree to get {newsletter} by email. "
                "Every email has a link to unsubscribe or change your preferences.")


def subscribe(ctx, *, email: str, list_name: str, name: str, ip: str | None, source: str,
              user_agent: str | None = None, source_url: str | None = None, challenge: str = "",
              attributes: dict[str, str] | None = None, tracking_consent: bool = False) -> Signup:
    """Record a signup and send the confirmation email when one is due (see the module docstring).

    The signup is also a ``subscribe`` consent row with its proof: the form
    and its text, ``source_url`` (the page it was on), IP, ``user_agent``,
    when it was asked for, and the Message-ID of the confirmation email
    (made before the transaction, so the row names the message that is sent).

    ``challenge``: the form's solved proof-of-work payload (empty: none); ``attributes``: a signup
    form's validated fields (given to a new subscriber only, like the name). ``tracking_consent``: the
    form's own tracking checkbox was ticked: a new subscriber's consent to personal tracking is recorded
    apart (``audience.tracking_consent``, with the checkbox's text); a known address's choice is left alone.
    """
    from newsletter.delivery.mime import new_message_id

    address = normalise_address(email[:320])
    # Control characters (CR/LF, NUL, ...) never reach the store from a public form.
    name = " ".join("".join(c if unicodedata.category(c) != "Cc" else " " for c in name).split())[:200]
    message_id = new_message_id(ctx.settings.sender_address or "localhost")
    if tracking_consent:
        attributes = {**(attributes or {}), tracking.FIELD: "yes"}
    proof = {"user_agent": user_agent, "source_url": source_url, "message_id": message_id,
             "attributes": attributes or {}}
    work = protection.check_solution(ctx.settings, challenge, ctx.clock()) if challenge else None
    try:
        result, added, to_name = _signup(ctx, address, list_name, name, ip, source, proof, work)
    except IntegrityError:
        # A parallel insert of the same new subscriber or membership that did
        # not take the signup lock (an import, the CLI) won; the retry, a new
        # transaction (its attempt was rolled back too), finds its row.
        result, added, to_name = _signup(ctx, address, list_name, name, ip, source, proof, work)
    if added is not None and added.list_status == MembershipStatus.PENDING and added.list_id is not None:
        send_confirmation(ctx, added.email, added.subscriber_id, added.list_id, result.list_name, name=to_name,
                          message_id=message_id)
        result.emailed = True
    return result


def _record_signup(session, ctx, added: manage.AddResult, ip: str | None, source: str,
                   proof: dict) -> None:
    """The signup's consent row (see :func:`subscribe`); the Message-ID only when a confirmation goes out."""
    from newsletter.audience.preferences import USER_AGENT_MAX
    from newsletter.vocabulary import ConsentAction

    pending = added.list_status == MembershipStatus.PENDING
    now = ctx.now()
    # Our own page's text is known; a form on the publisher's website says what it says (not known here).
    ours = _from_our_page(ctx.settings, proof.get("source_url") or "")
    q.record_consent(session, added.subscriber_id, added.list_id, ConsentAction.SUBSCRIBE, source[:200], ip,
                     form=FORM if ours else EXTERNAL_FORM,
                     consent_text=CONSENT_TEXT.format(newsletter=ctx.settings.name) if ours else None,
                     source_url=(proof.get("source_url") or "")[:2000] or None,
                     user_agent=(proof.get("user_agent") or "")[:USER_AGENT_MAX] or None,
                     requested_at=now, confirmed_at=None if pending else now,
                     message_id=proof["message_id"] if pending else None)


def _from_our_page(settings, page: str) -> bool:
    """Whether ``page`` (the Referer) is our own ``/subscribe`` page."""
    return bool(settings.base_url) and page.split("?", 1)[0] == f"{settings.base_url}/subscribe"


def _signup(ctx, address: str, list_name: str, name: str, ip: str | None, source: str,
            proof: dict | None = None,
            work: protection.Proof | None = None) -> tuple[Signup, manage.AddResult | None, str]:
    """One transaction: count the attempt, then join when nothing forbids it (None: nothing changed).

    A suspicious signup is quarantined instead of joining (None too); ``work``,
    a verified proof of work, is spent here (ReplayedChallenge when it was).

    Also returns the name the confirmation greets: the name on file for a
    known subscriber (a public form never changes it), else the posted one.

    On PostgreSQL the signup lock taken by the count is held to the end, so
    parallel signups of one address run one after the other.
    """
    with ctx.store.session() as session:
        mailing_list = _public_list(session, list_name)
        result = Signup(mailing_list.reader_name(ctx.settings.name), mailing_list.double_opt_in)
        now = ctx.now()
        if work is not None and not held_store.spend_challenge(session, work.key, work.expires_at, now):
            raise protection.ReplayedChallenge("this form was already sent once",
                                               hint="reload the signup page and send it again")
        busy = _count_attempt(ctx.settings, session, address, ip, now)
        reasons = protection.reasons_to_hold(address, ctx.settings, proven=work is not None)
        if busy:
            reasons.append(protection.BUSY_NETWORK)
        if not reasons:
            return _join(session, ctx, address, mailing_list, name, ip, source, proof, result)
        if _may_join(session, address, mailing_list):
            # Held: no email until someone approves (store.signups); answered like the others.
            held_store.quarantine(session, email=address, email_key=address_key(address), name=name,
                                  list_id=mailing_list.id, reasons=", ".join(reasons), ip=ip, source=source,
                                  source_url=((proof or {}).get("source_url") or "")[:2000] or None,
                                  user_agent=((proof or {}).get("user_agent") or "")[:500] or None, now=now,
                                  attributes=(proof or {}).get("attributes") or {})
        return result, None, ""


def _may_join(session, address: str, mailing_list) -> bool:
    """Whether a public signup of ``address`` may act on ``mailing_list`` (not suppressed, not a member
    a public form must leave alone)."""
    if q.suppression_reason(session, address_hash(address)):
        return False
    subscriber = q.find_subscriber(session, address_key(address))
    membership = subscriber and q.find_membership(session, subscriber.id, mailing_list.id)
    return not (membership and not _may_come_back(membership.status, mailing_list))


def _join(session, ctx, address: str, mailing_list, name: str, ip: str | None, source: str, proof: dict | None,
          result: Signup) -> tuple[Signup, manage.AddResult | None, str]:
    """Join ``mailing_list`` when :func:`_may_join` (see :func:`_signup`), recording the consent."""
    if not _may_join(session, address, mailing_list):
        return result, None, ""
    subscriber = q.find_subscriber(session, address_key(address))
    attributes = None if subscriber else ((proof or {}).get("attributes") or None)
    # Tracking consent is recorded as its own event (below), not slipped in with the other fields.
    track = attributes is not None and consents(attributes)
    if track and attributes is not None:
        attributes = {key: value for key, value in attributes.items() if key != tracking.FIELD} or None
    added = manage.add_subscriber_in(session, address, name=None if subscriber else (name or None),
                                     list_name=mailing_list.name, resubscribe=True, source=source, ip=ip,
                                     attributes=attributes)
    if proof is not None and added.list_id is not None:
        _record_signup(session, ctx, added, ip, source, proof)
    if track and added.subscriber_id is not None:
        from newsletter.audience.preferences import USER_AGENT_MAX
        from newsletter.store.models import Subscriber

        joined = session.get(Subscriber, added.subscriber_id)
        tracking.set_choice(session, joined, True, source=source, ip=ip, text=tracking.text_of(ctx.settings),
                            user_agent=((proof or {}).get("user_agent") or "")[:USER_AGENT_MAX] or None,
                            source_url=((proof or {}).get("source_url") or "")[:2000] or None,
                            requested_at=ctx.now())
    return result, added, (subscriber.name or "") if subscriber else name


def _may_come_back(status: str, mailing_list) -> bool:
    """Whether a public form may act for an existing member: a pending one (the mail again), or one who
    left a double opt-in list (through a new confirmation)."""
    if status == MembershipStatus.PENDING:
        return True
    return status == MembershipStatus.UNSUBSCRIBED and mailing_list.double_opt_in


def _public_list(session, list_name: str):
    """The public list named (a private or unknown one is the same InputError)."""
    list_name = list_name.strip()
    if not list_name:
        public = q.public_lists(session)
        if len(public) != 1:
            raise InputError("say which list to subscribe to", hint="add a field named list to the form")
        return public[0]
    mailing_list = q.find_list(session, list_name[:100])
    if mailing_list is None or not mailing_list.public:
        raise InputError(f"there is no list named {list_name[:100]!r} to subscribe to",
                         hint="check the form's list field")
    return mailing_list


def _count_attempt(settings, session, address: str, ip: str | None, now: datetime) -> bool:
    """Refuse past an hourly limit, else record the attempt (atomic: see ``events.lock_signups``).

    True when the client's network is past ``signup_network_quarantine`` this hour (hold the signup).
    """
    ev.lock_signups(session)
    since = now - timedelta(hours=1)
    email_hash, ip_hash = address_hash(address), (ev.ip_hash(ip) if ip else None)
    network_hash = ev.ip_hash(protection.network_of(ip)) if ip else None
    if ev.signup_attempts_since(session, email_hash, since) >= MAX_PER_ADDRESS:
        raise RateLimited("we already sent several confirmation emails to this address",
                          hint="look for them in your inbox (and spam folder), or try again in an hour")
    if ip_hash and ev.signup_attempts_from_since(session, ip_hash, since) >= MAX_PER_IP:
        raise RateLimited("too many signups from your network", hint="try again in an hour")
    from_network = ev.signup_attempts_from_network_since(session, network_hash, since) if network_hash else 0
    if from_network >= settings.signup_network_limit:
        raise RateLimited("too many signups from your network", hint="try again in an hour")
    ev.record_signup_attempt(session, email_hash, now, keep=timedelta(days=1), ip_hash=ip_hash,
                             network_hash=network_hash)
    return from_network >= settings.signup_network_quarantine


def send_confirmation(ctx, address: str, subscriber_id: int, list_id: int, list_name: str, *,
                      name: str = "", message_id: str | None = None) -> None:
    """Send the confirmation email to ``name <address>`` (``list_name``: the name readers see).

    ``message_id``: the Message-ID the signup's consent row recorded (default: a new one).
    DeliveryError when refused.
    """
    from newsletter.delivery.message import Message, Outcome, Recipient
    from newsletter.delivery.mime import new_message_id

    settings = ctx.settings
    if not settings.sender_address:
        raise ConfigError("signups are not set up: the sender address is missing", hint="set NEWSLETTER_FROM")
    message = Message(subject=f"Confirm your subscription to {settings.name}",
                      from_email=settings.transactional_sender,
                      html=ctx.pages.render("confirm_email.html"), text=ctx.pages.render("confirm_email.txt"),
                      tags=["confirmation"], metadata={"kind": "confirmation"})
    # Personal values travel as merge data, never in the template: a name or
    # address holding "%%...%%" cannot inject anything.
    recipient = Recipient(email=address, message_id=message_id or new_message_id(settings.sender_address),
                          name=name or "",
                          merge_data={"email": address, "list": list_name, "newsletter": settings.name,
                                      "confirm_url": confirm_url(settings, subscriber_id, list_id, address,
                                                                 issued=ctx.clock())})
    with ctx.transport_factory(settings) as transport:
        [result] = transport.send_batch(message, [recipient])
    if result.outcome in (Outcome.REJECTED, Outcome.FAILED):
        raise DeliveryError("the confirmation email could not be sent", hint="check the address, or try again later")



@dataclass
class Approval:
    """What approving a held signup did: ``emailed`` whether a confirmation went out."""

    email: str
    list_name: str
    joined: bool
    emailed: bool = False


def approve_held(ctx, held_id: int) -> Approval:
    """Approve quarantined signup ``held_id``: it joins as a public signup would, and gets its one confirmation.

    The row is deleted in the transaction that joins (only the approval whose delete removed it goes on,
    so parallel approvals send one email). A suppressed address, or a member a public form must leave
    alone, is released without joining. NotFound for an unknown id.
    """
    from newsletter.delivery.mime import new_message_id
    from newsletter.errors import NotFound

    message_id = new_message_id(ctx.settings.sender_address or "localhost")

    def attempt():
        with ctx.store.session() as session:
            held = held_store.find_held(session, held_id)
            if held is None or not held_store.release(session, held_id):
                raise NotFound(f"no held signup {held_id}", hint="see newsletter subscribers quarantine list")
            mailing_list = q.find_list(session, held.list_name)
            result = Signup(mailing_list.reader_name(ctx.settings.name), mailing_list.double_opt_in)
            proof = {"user_agent": held.user_agent, "source_url": held.source_url, "message_id": message_id}
            proof["attributes"] = held.attributes
            _, added, to_name = _join(session, ctx, held.email, mailing_list, held.name, held.ip, held.source,
                                      proof, result)
            return held, result, added, to_name

    try:
        held, result, added, to_name = attempt()
    except IntegrityError:  # a parallel insert of the same subscriber won; the retry finds its row
        held, result, added, to_name = attempt()
    approval = Approval(email=held.email, list_name=held.list_name, joined=added is not None)
    if added is not None and added.list_status == MembershipStatus.PENDING and added.list_id is not None:
        send_confirmation(ctx, added.email, added.subscriber_id, added.list_id, result.list_name, name=to_name,
                          message_id=message_id)
        approval.emailed = True
    return approval


def reject_held(ctx, held_id: int) -> str:
    """Delete quarantined signup ``held_id`` (nothing is sent or kept); answers its address. NotFound if unknown."""
    from newsletter.errors import NotFound

    with ctx.store.session() as session:
        held = held_store.find_held(session, held_id)
        if held is None or not held_store.release(session, held_id):
            raise NotFound(f"no held signup {held_id}", hint="see newsletter subscribers quarantine list")
        return held.email


def held_signups(store, list_name: str | None = None, limit: int | None = None) -> list[held_store.Held]:
    """Quarantined signups, oldest first (of ``list_name`` when given; NotFound for an unknown list)."""
    from newsletter.errors import NotFound

    with store.session() as session:
        list_id = None
        if list_name is not None:
            mailing_list = q.find_list(session, list_name)
            if mailing_list is None:
                raise NotFound(f"there is no list named {list_name!r}", hint="see newsletter lists")
            list_id = mailing_list.id
        return held_store.held(session, list_id, limit)
