"""The preference centre and the data rights, as rules over the caller's session.

Called by the web pages (``newsletter.web.preferences``, which locks the
subscriber's row first) and the CLI (``subscribers export-data``,
``subscribers consent``). Nothing here commits. Every change is a
:class:`~newsletter.store.models.Consent` row with the caller's ``source``
and ``proof`` (IP, user agent, form, the text shown):

- a reader joins only a **public** list (a private one answers like one that
  does not exist); their signed link proves the address, so they are
  confirmed at once (:func:`newsletter.audience.rules.rejoin`);
- they may leave any list they are on, or every list (which suppresses the
  address, as the unsubscribe page does);
- a snooze pauses mail for :data:`SNOOZE_DAYS` days: the audience snapshot
  skips them until ``snoozed_until`` (``store.ledger.not_snoozed``);
- name and time zone pass the same door as ``subscribers add``;
- :func:`export_data` is everything we hold about them, logged as ``export``;
- :func:`erase_subscriber` keeps only the suppression hash (the erasure is
  noted in the suppression's detail: the consent rows go with the person).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from newsletter.audience import rules, tracking_consent
from newsletter.audience.fields import clean_name, clean_timezone_length, one_line
from newsletter.audience.manage import consent_history, describe_subscriber, existing_subscriber, validate_timezone
from newsletter.errors import InputError, NotFound
from newsletter.store import audience as q
from newsletter.store import webhooks
from newsletter.store.models import MailingList, Subscriber, utcnow
from newsletter.vocabulary import ConsentAction, MembershipStatus

SNOOZE_DAYS = (30, 60, 90)
FORM = "preference centre v1"
USER_AGENT_MAX = 500
DETAIL_MAX = 500
EXPORT_FORMAT = "newsletter subscriber data v1"


@dataclass
class ListChoice:
    """A public list as the preference centre shows it."""

    list_id: int
    name: str                   # the display name readers see
    status: str | None          # their membership status; None when not a member

    @property
    def subscribed(self) -> bool:
        return self.status in (MembershipStatus.CONFIRMED, MembershipStatus.PENDING)


@dataclass
class Preferences:
    """What the preference centre shows one subscriber."""

    email: str
    name: str
    timezone: str | None
    snoozed_until: datetime | None
    lists: list[ListChoice] = field(default_factory=list)
    other_lists: int = 0        # private lists they are still on (left by "unsubscribe from everything")
    tracking: bool = False      # consent to personal tracking given (audience.tracking_consent)

    @property
    def subscribed_anywhere(self) -> bool:
        return self.other_lists > 0 or any(choice.subscribed for choice in self.lists)


def proof_of(*, ip: str | None = None, user_agent: str | None = None, source_url: str | None = None,
             consent_text: str | None = None, form: str = FORM) -> dict[str, Any]:
    """The proof columns of a consent row, made to fit (the caller's own values are never refused)."""
    return {"ip": one_line(ip)[:64] or None if ip else None,
            "user_agent": one_line(user_agent)[:USER_AGENT_MAX] or None if user_agent else None,
            "source_url": one_line(source_url)[:2000] or None if source_url else None,
            "consent_text": consent_text, "form": form}


def view(session: Session, subscriber: Subscriber, newsletter_name: str) -> Preferences:
    """The page's data: the public lists (joined or not), the rest of the profile."""
    statuses = {m.list_id: m.status for m in subscriber.memberships}
    public = q.public_lists(session)
    public_ids = {ml.id for ml in public}
    choices = [ListChoice(ml.id, ml.reader_name(newsletter_name), statuses.get(ml.id)) for ml in public]
    others = sum(1 for list_id, status in statuses.items()
                 if list_id not in public_ids and status != MembershipStatus.UNSUBSCRIBED)
    return Preferences(subscriber.email, subscriber.name or "", subscriber.timezone, subscriber.snoozed_until,
                       choices, others, tracking=tracking_consent.has_consented(subscriber))


def _public_list(session: Session, list_id: int) -> MailingList:
    mailing_list = session.get(MailingList, list_id)
    if mailing_list is None or not mailing_list.public:
        raise NotFound("there is no such list to join", hint="reload the page and choose a list shown on it")
    return mailing_list


def join_list(session: Session, subscriber: Subscriber, list_id: int, newsletter_name: str, *, source: str,
              **proof: Any) -> str:
    """Join a public list (confirmed: the signed link proves the address); a sentence for the page."""
    mailing_list = _public_list(session, list_id)
    name = mailing_list.reader_name(newsletter_name)
    current = q.find_membership(session, subscriber.id, list_id)
    if current is not None and current.status == MembershipStatus.CONFIRMED:
        return f"You are already on {name}."
    now = utcnow()
    with q.consent_proof(session, requested_at=now, confirmed_at=now, **_fit(proof, f"Join {name}")):
        rules.rejoin(session, subscriber, list_id, source, proof.get("ip"))
        # rejoin recorded a RESUBSCRIBE for a former member; a first join is recorded here, with its proof.
        if current is None:
            q.record_consent(session, subscriber.id, list_id, ConsentAction.SUBSCRIBE, source, proof.get("ip"))
    return f"You are now on {name}."


def leave_list(session: Session, subscriber: Subscriber, list_id: int, newsletter_name: str, *, source: str,
               **proof: Any) -> str:
    """Leave one list they are on; a sentence for the page."""
    membership = q.find_membership(session, subscriber.id, list_id)
    if membership is None:
        raise NotFound("you are not on this list", hint="reload the page")
    name = membership.mailing_list.reader_name(newsletter_name)
    with q.consent_proof(session, **_fit(proof, f"Leave {name}")):
        rules.unsubscribe(session, subscriber, list_id, source, proof.get("ip"))
    return f"You are no longer on {name}."


def leave_everything(session: Session, subscriber: Subscriber, *, source: str, **proof: Any) -> str:
    """Every list left and the address suppressed (as the unsubscribe page's "every list")."""
    with q.consent_proof(session, **_fit(proof, "Unsubscribe from everything")):
        rules.unsubscribe(session, subscriber, None, source, proof.get("ip"))
    return "You are unsubscribed from every list. You will get no more email from us."


def snooze(session: Session, subscriber: Subscriber, days: int, now: datetime, *, source: str,
           **proof: Any) -> str:
    """Pause mail for ``days`` (one of :data:`SNOOZE_DAYS`), or resume it (0); a sentence for the page."""
    if days not in (0, *SNOOZE_DAYS):
        raise InputError(f"mail can be paused for {', '.join(map(str, SNOOZE_DAYS))} days",
                         hint="choose one of the buttons on the page")
    subscriber.snoozed_until = now + timedelta(days=days) if days else None
    subscriber.updated_at = now
    detail = f"paused until {subscriber.snoozed_until:%Y-%m-%d %H:%M} UTC" if days else "mail resumed"
    q.record_consent(session, subscriber.id, None, ConsentAction.SNOOZE, source, proof.get("ip"), detail=detail,
                     **_fit(proof, f"Pause for {days} days" if days else "Resume my email"))
    if not days:
        return "Your email is back on."
    return f"Your email is paused until {subscriber.snoozed_until:%d %B %Y}."


def set_tracking(session: Session, subscriber: Subscriber, give: bool, *, source: str, text: str,
                 **proof: Any) -> str:
    """Give or withdraw consent to personal tracking (``text``: the words shown); a sentence for the page."""
    proof = {key: value for key, value in proof.items() if key not in ("form", "consent_text")}
    tracking_consent.set_choice(session, subscriber, give, source=source, text=text, **proof)
    if give:
        return "Thank you: we will see which links you open and click in our emails."
    return "Done: we no longer record which links you open or click; our emails carry no personal links for you."


def update_profile(session: Session, subscriber: Subscriber, name: str, timezone: str, *, source: str,
                   **proof: Any) -> str:
    """A new name and time zone (empty: none), through the door of ``subscribers add``."""
    cleaned_name = clean_name(name) or ""
    zone = validate_timezone(clean_timezone_length(timezone.strip() or None))
    changed = [what for what, old, new in (("name", subscriber.name or "", cleaned_name),
                                           ("time zone", subscriber.timezone, zone)) if old != new]
    if not changed:
        return "Nothing changed."
    subscriber.name, subscriber.timezone, subscriber.updated_at = cleaned_name, zone, utcnow()
    q.record_consent(session, subscriber.id, None, ConsentAction.PROFILE, source, proof.get("ip"),
                     detail=f"changed: {', '.join(changed)}", **_fit(proof, "Save my details"))
    webhooks.subscriber_event(session, "subscriber.updated", subscriber, timezone=zone, source=source)
    return f"Saved your {' and '.join(changed)}."


def export_data(session: Session, subscriber: Subscriber, *, source: str, deliveries_of=None,
                now: datetime | None = None, **proof: Any) -> dict[str, Any]:
    """Everything we hold about them (GDPR art. 15 and 20), the export itself logged as a consent event."""
    q.record_consent(session, subscriber.id, None, ConsentAction.EXPORT, source, proof.get("ip"),
                     **_fit(proof, "Download my data"))
    session.flush()
    data = describe_subscriber(session, subscriber, deliveries_of)
    return {"format": EXPORT_FORMAT, "exported_at": now or utcnow(), **data}


def erase_subscriber(session: Session, subscriber: Subscriber, *, source: str) -> None:
    """Remove them for good: only the suppression hash stays, its detail saying who asked and how."""
    rules.erase(session, subscriber, detail=f"erased at the subscriber's request ({source})"[:DETAIL_MAX])


def consent_proof(session: Session, subscriber: Subscriber) -> list[dict[str, Any]]:
    """The consent history with every proof column we hold, oldest first (``subscribers consent``)."""
    return consent_history(session, subscriber)


def _fit(proof: dict[str, Any], text: str) -> dict[str, Any]:
    """``proof`` for one action: the text of the button pressed is the consent text shown."""
    return {**{key: value for key, value in proof.items() if key != "ip"},
            "consent_text": proof.get("consent_text") or text}


# -- by request (the CLI) -----------------------------------------------------------------------

def export_by_request(store, email: str, *, source: str = "cli", deliveries_of=None) -> dict[str, Any]:
    """:func:`export_data` for an address (a request by mail): NotFound when we hold none. Logged."""
    with store.session() as session:
        subscriber = existing_subscriber(session, email)
        return export_data(session, q.locked_subscriber(session, subscriber.id) or subscriber, source=source,
                           deliveries_of=deliveries_of, form="newsletter subscribers export-data")


def proof_by_address(store, email: str) -> dict[str, Any]:
    """The consent proof of one address: who, the lists now, and every consent event with its proof."""
    with store.session() as session:
        subscriber = existing_subscriber(session, email)
        return {
            "email": subscriber.email, "name": subscriber.name, "status": subscriber.status,
            "suppressed": q.suppression_reason(session, subscriber.email_hash),
            "lists": [{"name": m.mailing_list.name, "display_name": m.mailing_list.display_name, "status": m.status,
                       "subscribed_at": m.subscribed_at, "confirmed_at": m.confirmed_at,
                       "unsubscribed_at": m.unsubscribed_at}
                      for m in sorted(subscriber.memberships, key=lambda m: m.mailing_list.name)],
            "consent": consent_proof(session, subscriber),
        }
