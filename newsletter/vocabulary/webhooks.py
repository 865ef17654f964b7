"""The outgoing webhook event catalogue: each type, what it means, and an example of its ``data``.

One source for the store (which types exist), the command line
(``newsletter webhooks events``) and the README's table. Every event is
delivered as ``{"type": ..., "timestamp": ..., "data": {...}}`` (the
Standard Webhooks payload shape); its id travels in the ``webhook-id`` header.
"""

from __future__ import annotations

from typing import Any

_SUBSCRIBER: dict[str, Any] = {"id": 42, "email": "ada@example.org", "name": "Ada Lovelace", "status": "active"}

# type -> (when it is sent, an example of its data)
CATALOGUE: dict[str, tuple[str, dict[str, Any]]] = {
    "subscriber.created": ("a new address was added (subscribers add, the signup form, each new row of an import)",
                           {**_SUBSCRIBER, "list": "news", "list_status": "pending", "source": "web"}),
    "subscriber.confirmed": ("a pending member confirmed (double opt-in), or was vouched for",
                             {**_SUBSCRIBER, "list": "news", "source": "web"}),
    "subscriber.updated": ("an existing subscriber's name, attributes or time zone changed, or they joined a list",
                           {**_SUBSCRIBER, "list": "news", "list_status": "confirmed", "source": "cli"}),
    "subscriber.unsubscribed": ("a subscriber left one list or every list (one-click link, preference centre, CLI, "
                                "provider event, complaint)",
                                {**_SUBSCRIBER, "status": "unsubscribed", "lists": ["news"], "everywhere": True,
                                 "source": "web"}),
    "subscriber.erased": ("a subscriber's data was erased; only the SHA-256 of the normalised address remains",
                          {"id": 42, "email_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
    "subscriber.bounced": ("an address was suppressed for bouncing (a hard bounce, or repeated soft bounces)",
                           {"id": 42, "email": "ada@example.org", "reason": "bounced", "source": "sendgrid",
                            "detail": "550 5.1.1 user unknown"}),
    "subscriber.complained": ("a recipient reported a message as spam (suppressed, off every list)",
                              {"id": 42, "email": "ada@example.org", "reason": "complained", "source": "ses",
                               "detail": "abuse"}),
    "campaign.scheduled": ("a campaign was scheduled (or rescheduled)",
                           {"id": 7, "subject": "Our spring news", "list": "news", "status": "scheduled",
                            "scheduled_at": "2026-04-01T08:00:00+00:00"}),
    "campaign.started": ("a campaign started sending", {"id": 7, "subject": "Our spring news", "list": "news",
                                                        "status": "sending"}),
    "campaign.sent": ("a campaign finished: nothing left to send", {"id": 7, "subject": "Our spring news",
                                                                    "list": "news", "status": "sent",
                                                                    "finished_at": "2026-04-01T08:03:12+00:00"}),
    "campaign.paused": ("a campaign paused (stopped, a quota, the circuit breaker, an A/B test waiting)",
                        {"id": 7, "subject": "Our spring news", "list": "news", "status": "paused",
                         "reason": "the daily quota of 500 is used up"}),
    "campaign.failed": ("a campaign finished without reaching anybody",
                        {"id": 7, "subject": "Our spring news", "list": "news", "status": "failed",
                         "error": "nobody received it: 3 failed, 0 unknown"}),
    "click": ("a link was clicked by a person; personal tracking with consent carries the subscriber, "
              "aggregate tracking only the campaign and link",
              {"campaign_id": 7, "url": "https://example.org/article", "subscriber_id": 42,
               "email": "ada@example.org"}),
}

EVENT_TYPES: tuple[str, ...] = tuple(CATALOGUE)
# Subscribes an endpoint to every type, present and future.
ALL = "*"
