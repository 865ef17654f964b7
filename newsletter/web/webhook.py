"""SendGrid Event Webhook: verify, normalise, deduplicate, store, and keep the list clean.

``POST /webhooks/sendgrid``:

- the ECDSA (P-256, SHA-256) signature in ``X-Twilio-Email-Event-Webhook-Signature``
  must verify over ``timestamp + raw body`` with the key of
  ``NEWSLETTER_SENDGRID_WEBHOOK_KEY`` (base64 DER, as SendGrid shows it), through
  the ``sendgrid`` library's own helper; a timestamp more than
  :data:`MAX_AGE_SECONDS` away from now is refused (the helper does not check
  it: a captured request could be replayed). Any failure: 403, nothing stored.
  No key configured: 503 (SendGrid retries, so no event is lost meanwhile).
- events are deduplicated by ``sg_event_id`` (SendGrid delivers at least
  once), matched to ledger rows through our ``custom_args`` (``message_id`` =
  ``nl.<tag>.<campaign>.<delivery>@domain``; ``tag`` proves the message was ours),
  normalised (``newsletter.store.events.EVENT_KINDS``) and stored with the raw event;
- hard bounces and spam reports (and drops for those reasons) put the address
  on the suppression list; unsubscribe events for our messages unsubscribe
  from everything. All of it in one transaction, so a replayed batch is
  applied exactly once: only the events this transaction itself inserted
  (``INSERT ... ON CONFLICT DO NOTHING RETURNING``) have effects, so copies
  of one batch delivered in parallel apply it once between them;
- the body is capped at :data:`MAX_BODY_BYTES` while it is read (413, see
  ``newsletter.web.guards.BodyLimit``); ids in a Message-ID that no row can
  have (beyond the database's integer range) are ignored, not an error.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import re
from datetime import datetime, timezone

from newsletter.audience.addresses import address_hash
from newsletter.errors import ConfigError
from newsletter.store import events as ev
from newsletter.store.models import BOUNCED, COMPLAINED, Subscriber

log = logging.getLogger("newsletter.web.webhook")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 600
MAX_BODY_BYTES = 20 * 1024 * 1024
PROVIDER = "sendgrid"

KINDS = {
    "processed": ev.PROCESSED, "delivered": ev.DELIVERED, "deferred": ev.DEFERRED, "bounce": ev.BOUNCED_EVENT,
    "dropped": ev.DROPPED, "open": ev.OPENED, "click": ev.CLICKED, "spamreport": ev.COMPLAINED_EVENT,
    "unsubscribe": ev.UNSUBSCRIBED_EVENT, "group_unsubscribe": ev.UNSUBSCRIBED_EVENT,
    "group_resubscribe": ev.RESUBSCRIBED,
}
# Reasons SendGrid gives for dropping a message to an address on its own suppression lists.
DROP_REASONS = {"bounced address": BOUNCED, "spam reporting address": COMPLAINED}
MESSAGE_ID = re.compile(r"^nl\.([0-9a-f]+)\.(\d{1,12})\.(\d{1,12})@")
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL; a larger one cannot be ours


class Verifier:
    """Checks signed webhook requests with one public key (through the sendgrid helper)."""

    def __init__(self, public_key: str, max_age: int = MAX_AGE_SECONDS):
        from sendgrid.helpers.eventwebhook import EventWebhook

        self.helper = EventWebhook()
        try:
            self.key = self.helper.convert_public_key_to_ecdsa("".join(public_key.split()))
        except (ValueError, TypeError):
            raise ConfigError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not a valid public key",
                              hint="copy the verification key from SendGrid's Mail Settings > Event Webhook") from None
        self.max_age = max_age

    def check(self, body: bytes, signature: str | None, timestamp: str | None, now: float) -> str | None:
        """None when the request is genuine and fresh, else why it is refused."""
        if not signature or not timestamp:
            return "missing signature headers"
        try:
            age = now - int(timestamp)
        except ValueError:
            return "bad timestamp"
        if abs(age) > self.max_age:
            return "stale timestamp"
        try:
            # The helper signs timestamp + payload as text; a body that is not
            # UTF-8 cannot be a SendGrid batch.
            ok = self.helper.verify_signature(body.decode("utf-8"), signature, timestamp, self.key)
        except (UnicodeDecodeError, ValueError, TypeError, binascii.Error):
            ok = False
        return None if ok else "bad signature"


def message_tags(secret_keys) -> frozenset[str]:
    """The tags our Message-IDs may carry: one per secret key, so rotation keeps old mail matched."""
    from newsletter.delivery.mime import message_id_tag

    return frozenset(message_id_tag(key) for key in secret_keys)


def parse_batch(body: bytes) -> list[dict]:
    """The events of a webhook body: a JSON array of objects; ValueError otherwise."""
    events = json.loads(body)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("not a JSON array of events")
    return events


def normalise(event: dict, tags: frozenset[str], now: datetime) -> dict:
    """A ``provider_events`` row (plus ``_delivery`` and ``_campaign`` claims to check against the ledger)."""
    raw_kind = str(event.get("event", ""))
    event_id = _text(event.get("sg_event_id") or "")[:200] or _fingerprint(event)
    match = MESSAGE_ID.match(str(event.get("message_id", "")))
    ours = bool(match) and match.group(1) in tags and all(0 < int(match.group(i)) <= MAX_ID for i in (2, 3))
    detail = " ".join(str(event[k]) for k in ("type", "reason", "response", "bounce_classification", "url")
                      if event.get(k))
    return {
        "provider": PROVIDER, "event_id": event_id, "kind": KINDS.get(raw_kind, ev.OTHER),
        "campaign_id": None, "delivery_id": None, "subscriber_id": None,
        "email": _text(event.get("email", "")).strip()[:320], "detail": _text(detail)[:2000],
        "occurred_at": _when(event.get("timestamp"), now), "received_at": now, "raw": event,
        "_delivery": int(match.group(3)) if ours else None, "_campaign": int(match.group(2)) if ours else None,
    }


def _text(value) -> str:
    """A string column's value: PostgreSQL text cannot hold NUL, and an event must never fail to store."""
    return str(value).replace("\x00", "")


def _fingerprint(event: dict) -> str:
    """A stable id for an event without ``sg_event_id`` (so its repeats still deduplicate)."""
    return "sha256:" + hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()


def _when(value, now: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return now


def handle_batch(store, events: list[dict], secret_keys, now: datetime) -> dict[str, int]:
    """Store the batch's new events and apply their effects, in one transaction; returns counts."""
    tags = message_tags(secret_keys)
    rows: dict[str, dict] = {}
    for event in events:
        row = normalise(event, tags, now)
        rows.setdefault(row["event_id"], row)
    with store.session() as session:
        for known in ev.known_event_ids(session, list(rows)):
            del rows[known]
        _match(session, list(rows.values()))
        inserted = ev.insert_events(session, [{k: v for k, v in row.items() if not k.startswith("_")}
                                              for row in rows.values()])
        # Another copy of this batch may have stored some of these events meanwhile: apply only ours.
        fresh = [row for event_id, row in rows.items() if event_id in inserted]
        applied = sum(_apply(session, row) for row in fresh)
    matched = sum(1 for row in fresh if row["delivery_id"] is not None)
    return {"received": len(events), "new": len(fresh), "matched": matched, "applied": applied}


def _match(session, rows: list[dict]) -> None:
    """Fill campaign, delivery and subscriber ids from the ledger rows the events claim."""
    ledger = ev.ledger_rows(session, sorted({r["_delivery"] for r in rows if r["_delivery"] is not None}))
    for row in rows:
        found = ledger.get(row["_delivery"])
        if found and found[0] == row["_campaign"]:
            row["campaign_id"], row["subscriber_id"] = found
            row["delivery_id"] = row["_delivery"]


def _apply(session, row: dict) -> int:
    """The event's effect on the audience; 1 when it changed something."""
    kind, raw = row["kind"], row["raw"]
    reason = None
    if kind == ev.BOUNCED_EVENT and str(raw.get("type", "bounce")).lower() != "blocked":
        reason = BOUNCED  # "blocked" is a temporary refusal by the receiving server, not a dead address
    elif kind == ev.COMPLAINED_EVENT:
        reason = COMPLAINED
    elif kind == ev.DROPPED:
        reason = DROP_REASONS.get(str(raw.get("reason", "")).strip().lower())
    if reason is None and not (kind == ev.UNSUBSCRIBED_EVENT and row["delivery_id"] is not None):
        return 0
    subscriber = _subscriber(session, row)
    if reason is not None:
        email_hash = subscriber.email_hash if subscriber else (address_hash(row["email"]) if row["email"] else None)
        if email_hash is None:
            return 0
        ev.mark_bounced_or_complained(session, email_hash, subscriber, reason, f"sendgrid {row['detail']}")
        return 1
    # Only for our own messages: another sender on the same account must not unsubscribe our readers.
    if subscriber is not None:
        ev.unsubscribe_everywhere(session, subscriber, source="sendgrid")
        return 1
    return 0


def _subscriber(session, row: dict) -> Subscriber | None:
    if row["subscriber_id"] is not None:
        return session.get(Subscriber, row["subscriber_id"])
    return ev.find_subscriber_by_address(session, row["email"].lower()) if row["email"] else None


async def sendgrid_webhook(request):
    """403 for a bad or stale signature, 400 for a body that is not an event batch, else 200 with counts."""
    from starlette.responses import JSONResponse

    ctx = request.app.state.ctx
    verifier = ctx.webhook_verifier()
    if verifier is None:
        log.warning("SendGrid webhook refused: NEWSLETTER_SENDGRID_WEBHOOK_KEY is not set")
        return JSONResponse({"error": "webhook verification key not configured"}, status_code=503)
    body = await request.body()  # capped by guards.BodyLimit (413 past MAX_BODY_BYTES)
    problem = verifier.check(body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                             ctx.clock())
    if problem:
        log.warning("SendGrid webhook refused: %s", problem)
        return JSONResponse({"error": problem}, status_code=403)
    try:
        events = parse_batch(body)
    except ValueError:
        return JSONResponse({"error": "the body is not a JSON array of events"}, status_code=400)
    counts = await ctx.run(handle_batch, ctx.store, events, ctx.settings.secret_keys, ctx.now())
    return JSONResponse(counts)

