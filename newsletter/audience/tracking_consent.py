"""Consent to personal tracking, asked apart from the subscription (CNIL Recommendation 2026-042).

The choice is the subscriber attribute ``tracking_consent``
(:data:`newsletter.compose.clicks.CONSENT_ATTRIBUTE`: ``yes`` or ``no``);
the sender gives personal links and the withdrawal line only to readers
whose attribute says yes, everyone else gets aggregate links.

- Asked by an unticked checkbox (:data:`FIELD`) on the signup page, the
  hosted forms and the preference centre, in the words of
  ``[tracking] consent_text`` (:func:`text_of`; :data:`DEFAULT_TEXT`);
- every change is a consent row (action ``tracking``, detail ``given`` or
  ``withdrawn``) with the source, IP, user agent, the text shown and its
  version (:func:`version_of`: a hash of the text, so a changed text is a
  new version and an old row keeps what that person saw);
- a public form sets it only for a new subscriber (a stranger must not
  decide for someone else's address); a known reader decides in the
  preference centre, or withdraws through the link in every personally
  tracked message.

Nothing here commits.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.orm import Session

from newsletter.compose.clicks import CONSENT_ATTRIBUTE, consents
from newsletter.store import audience as q
from newsletter.store.models import Subscriber, utcnow
from newsletter.vocabulary import ConsentAction

FIELD = CONSENT_ATTRIBUTE  # the checkbox's name on every form
DEFAULT_TEXT = "Let us see which links I open and click (personal statistics). You can withdraw this at any time."
GIVEN, WITHDRAWN = "given", "withdrawn"


def text_of(settings: Any) -> str:
    """The words the checkbox shows: ``[tracking] consent_text``, else :data:`DEFAULT_TEXT`."""
    return (getattr(settings, "tracking_consent_text", "") or "").strip() or DEFAULT_TEXT


def version_of(text: str) -> str:
    """The version of a consent text, as the consent rows record it: ``tracking consent <hash>``."""
    return f"tracking consent {hashlib.sha256(text.encode()).hexdigest()[:10]}"


def ticked(value: str | None) -> bool:
    """Whether a posted checkbox value means yes (absent or anything else: no)."""
    return (value or "").strip().lower() in ("yes", "on", "true", "1")


def has_consented(subscriber: Subscriber) -> bool:
    """Whether personal tracking is allowed for ``subscriber`` now."""
    return consents(subscriber.attributes)


def set_choice(session: Session, subscriber: Subscriber, give: bool, *, source: str, text: str,
               ip: str | None = None, **proof: Any) -> bool:
    """Give or withdraw the consent (the attribute and a consent row); False when it was already so.

    ``text``: the words the person was shown; ``proof``: the other proof columns (``user_agent``,
    ``source_url``, ``requested_at``...).
    """
    if has_consented(subscriber) == give and (give or CONSENT_ATTRIBUTE in (subscriber.attributes or {})):
        return False
    # a new dict: the JSON column notices a new value, not a change inside the old one
    subscriber.attributes = {**(subscriber.attributes or {}), CONSENT_ATTRIBUTE: "yes" if give else "no"}
    subscriber.updated_at = utcnow()
    proof = {key: value for key, value in proof.items() if key not in ("form", "consent_text")}
    q.record_consent(session, subscriber.id, None, ConsentAction.TRACKING, source[:200], ip,
                     detail=GIVEN if give else WITHDRAWN, consent_text=text, form=version_of(text), **proof)
    return True
