"""First-party click and open tracking in a composed edition: signed tokens and link rewriting.

A campaign's article links are numbered from 1 (:func:`article_links`). At
send time each becomes ``base_url/c/<token>`` (:func:`tracked_html`,
:func:`tracked_text`), and ``newsletter serve`` redirects it to the stored
URL; with opens tracked a 1x1 image ``base_url/o/<token>`` is added.

Tokens (base64url HMAC-SHA256 under the workspace secret, cut to 16
characters; every key of the rotation verifies):

- aggregate: ``CAMPAIGN.LINK.MAC``: the same for every recipient, naming
  no one;
- personal: ``CAMPAIGN.LINK.MAC.DELIVERY.MAC2``: the per-recipient suffix
  (``.DELIVERY.MAC2``, one HMAC per recipient, a merge field) names the
  ledger row; ``MAC2`` covers the campaign and the delivery.
- an A/B test's aggregate links: ``CAMPAIGN.LINK.MAC.VARIANT.MAC3``: the
  suffix names the variant the message was (``A``, ``B``, ``C``: the same for
  everyone who got it, naming no one); ``MAC3`` covers the campaign and the
  variant. It lets the test count each variant's clicks without personal data.

Neither carries an address, a name or anything readable about a person.
A token whose MACs do not hold is refused (:func:`read_token` answers
None) and the server shows a plain error page: the redirect target always
comes from the database, never from the request.

Every personally tracked message carries a withdrawal line (:func:`with_withdrawal_line`): two
merge fields at the end of the HTML and text parts, filled per recipient by :func:`withdrawal_fields`
(the line with the signed link ``/preferences/<token>/tracking`` for a reader tracked personally,
empty for everyone else).

Links that are not the article's are never rewritten: merge-token links
(unsubscribe, web version), links to ``base_url`` itself (archive,
preferences, signup), ``mailto:`` and anything not http(s). The archive
copy is the edition as composed, so it is never tracked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape, unescape

CLICK_FIELD = "click_ref"  # merge field: "" (aggregate) or ".DELIVERY.MAC2" (personal)
OPEN_FIELD = "open_ref"
MAC_CHARS = 16
MAX_ID = 2**31 - 1
TOKEN_LIMIT = 120  # longer path segments are refused before any parsing
CONSENT_ATTRIBUTE = "tracking_consent"  # a subscriber attribute: truthy when tracking consent is recorded
_CONSENT_WORDS = {"1", "true", "yes", "y", "on", "granted"}

_ANCHOR_HREF = re.compile(r'(<a\b[^>]*?\shref=")([^"]*)(")', re.I | re.S)
_WEB = re.compile(r"https?://[^\s/?#]+", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)


def _mac(key: str, message: str) -> str:
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:MAC_CHARS]


def _link_message(kind: str, campaign_id: int, position: int) -> str:
    return f"nl.{kind}.{campaign_id}.{position}"


def _person_message(campaign_id: int, delivery_id: int) -> str:
    return f"nl.person.{campaign_id}.{delivery_id}"


def _variant_message(campaign_id: int, variant: str) -> str:
    return f"nl.variant.{campaign_id}.{variant}"


VARIANT_LETTERS = "ABC"


def link_token(secret_key: str, campaign_id: int, position: int, kind: str = "click") -> str:
    """The aggregate token of link ``position`` (``kind`` "open" with position 0 for the pixel)."""
    return f"{campaign_id}.{position}.{_mac(secret_key, _link_message(kind, campaign_id, position))}"


def person_suffix(secret_key: str, campaign_id: int, delivery_id: int) -> str:
    """The per-recipient suffix of a personal token (the value of the merge fields)."""
    return f".{delivery_id}.{_mac(secret_key, _person_message(campaign_id, delivery_id))}"


def variant_suffix(secret_key: str, campaign_id: int, variant: str) -> str:
    """The suffix of an A/B test's aggregate token: the variant, and its MAC."""
    return f".{variant}.{_mac(secret_key, _variant_message(campaign_id, variant))}"


@dataclass(frozen=True)
class TokenIds:
    """What a verified token names: the campaign, the link position, and the delivery when personal
    (or, on an A/B test's aggregate links, the variant)."""

    campaign_id: int
    position: int
    delivery_id: int | None
    variant: str | None = None


def read_token(secret_keys: Sequence[str], token: str, kind: str = "click") -> TokenIds | None:
    """The ids of a token whose MACs hold under one of ``secret_keys``; None for anything else."""
    if not token or len(token) > TOKEN_LIMIT or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) not in (3, 5):
        return None
    variant = parts[3] if len(parts) == 5 and parts[3] in VARIANT_LETTERS and len(parts[3]) == 1 else None
    try:
        campaign_id, position = int(parts[0]), int(parts[1])
        delivery_id = int(parts[3]) if len(parts) == 5 and variant is None else None
    except ValueError:
        return None
    if not (0 < campaign_id <= MAX_ID and 0 <= position <= MAX_ID):
        return None
    if delivery_id is not None and not 0 < delivery_id <= MAX_ID:
        return None
    if not _holds(secret_keys, _link_message(kind, campaign_id, position), parts[2]):
        return None
    if delivery_id is not None and not _holds(secret_keys, _person_message(campaign_id, delivery_id), parts[4]):
        return None
    if variant is not None and not _holds(secret_keys, _variant_message(campaign_id, variant), parts[4]):
        return None
    return TokenIds(campaign_id, position, delivery_id, variant)


def _holds(secret_keys: Iterable[str], message: str, mac: str) -> bool:
    return any(hmac.compare_digest(_mac(key, message), mac) for key in secret_keys)


def consents(attributes: object) -> bool:
    """True when a subscriber's attributes record consent to personal tracking."""
    if not isinstance(attributes, dict):
        return False
    value = attributes.get(CONSENT_ATTRIBUTE)
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in _CONSENT_WORDS


def trackable(url: str, base_url: str) -> bool:
    """Whether an article link is rewritten: http(s), no merge token, not one of our own pages."""
    if "%%" in url or not _WEB.match(url):
        return False
    own = base_url.rstrip("/")
    return not (url == own or url.startswith(own + "/") or url.startswith(own + "?"))


def article_links(html: str, base_url: str) -> list[str]:
    """The distinct trackable link targets of ``html``, in order of first appearance (positions from 1)."""
    seen: dict[str, None] = {}
    for match in _ANCHOR_HREF.finditer(html):
        url = unescape(match.group(2)).strip()
        if trackable(url, base_url):
            seen.setdefault(url, None)
    return list(seen)


def click_url(base_url: str, secret_key: str, campaign_id: int, position: int, raw: bool = False) -> str:
    """The tracked address of link ``position``, ending in the per-recipient merge token."""
    field = f"%%{CLICK_FIELD}:raw%%" if raw else f"%%{CLICK_FIELD}%%"
    return f"{base_url.rstrip('/')}/c/{link_token(secret_key, campaign_id, position)}{field}"


def open_url(base_url: str, secret_key: str, campaign_id: int) -> str:
    return f"{base_url.rstrip('/')}/o/{link_token(secret_key, campaign_id, 0, 'open')}%%{OPEN_FIELD}%%"


def tracked_html(html: str, links: dict[int, str], *, base_url: str, secret_key: str, campaign_id: int,
                 clicks: bool, opens: bool) -> str:
    """``html`` with each link of ``links`` (position -> URL) rewritten, and the open pixel when ``opens``."""
    if clicks and links:
        positions = {url: position for position, url in links.items()}

        def rewrite(match: re.Match[str]) -> str:
            position = positions.get(unescape(match.group(2)).strip())
            if position is None:
                return match.group(0)
            target = escape(click_url(base_url, secret_key, campaign_id, position), quote=True)
            return f"{match.group(1)}{target}{match.group(3)}"

        html = _ANCHOR_HREF.sub(rewrite, html)
    if opens:
        pixel = (f'<img src="{escape(open_url(base_url, secret_key, campaign_id), quote=True)}" width="1" '
                 'height="1" alt="" style="display:block;width:1px;height:1px;border:0">')
        found = list(_BODY_END.finditer(html))
        html = html[:found[-1].start()] + pixel + html[found[-1].start():] if found else html + pixel
    return html


def tracked_text(text: str, links: dict[int, str], *, base_url: str, secret_key: str, campaign_id: int) -> str:
    """The text part with each link of ``links`` rewritten where it stands as a whole word."""
    for position, url in sorted(links.items(), key=lambda item: -len(item[1])):
        target = click_url(base_url, secret_key, campaign_id, position, raw=True)
        # the target holds no backslash (a URL of ours), so it stands for itself as a replacement
        text = re.sub(r"(?<!\S)" + re.escape(url) + r"(?!\S)", target, text)
    return text


NOTICE_HTML, NOTICE_TEXT = "tracking_notice_html", "tracking_notice_text"  # merge fields (raw)
WITHDRAW_PATH = "/tracking"  # after the preference centre's URL: the withdrawal page
NOTICE_WORDS = "You agreed that we see which links you open and click in our emails."


def with_withdrawal_line(html: str, text: str) -> tuple[str, str]:
    """``html`` and ``text`` with the withdrawal line's merge fields at their end (before ``</body>``)."""
    slot = f"%%{NOTICE_HTML}:raw%%"
    found = list(_BODY_END.finditer(html))
    html = html[:found[-1].start()] + slot + html[found[-1].start():] if found else html + slot
    return html, text.rstrip("\n") + f"\n%%{NOTICE_TEXT}:raw%%"


def withdrawal_fields(preferences_url: str | None) -> dict[str, str]:
    """The withdrawal line of one recipient: with the link to ``preferences_url``'s withdrawal page when
    tracked personally, else empty (None)."""
    if not preferences_url:
        return {NOTICE_HTML: "", NOTICE_TEXT: ""}
    url = preferences_url + WITHDRAW_PATH
    html = (f'<p style="margin:16px auto;max-width:600px;padding:0 16px;font-size:13px;line-height:1.5;'
            f'color:#555555;text-align:center">{escape(NOTICE_WORDS)} '
            f'<a href="{escape(url, quote=True)}" style="color:#555555">Withdraw this consent</a></p>')
    return {NOTICE_HTML: html, NOTICE_TEXT: f"\n{NOTICE_WORDS} Withdraw this consent: {url}\n"}


def recipient_fields(secret_key: str, campaign_id: int, delivery_id: int, personal: bool,
                     variant: str | None = None) -> dict[str, str]:
    """The merge fields of one recipient: the personal suffix, or the A/B ``variant``'s suffix, or ""
    (aggregate links)."""
    if personal:
        suffix = person_suffix(secret_key, campaign_id, delivery_id)
    else:
        suffix = variant_suffix(secret_key, campaign_id, variant) if variant else ""
    return {CLICK_FIELD: suffix, OPEN_FIELD: suffix}
