"""The ``newsletter webhooks`` use cases: endpoints, the catalogue, delivery passes, attempts, a test POST.

Endpoints are checked at the door: an absolute http(s) URL (nothing else is
ever requested: no ``file:``, no ``gopher:``), known event types, a
``whsec_`` secret (a fresh one when none is given; shown once, by ``add``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from newsletter.delivery import webhooks as wire
from newsletter.engine.webhooks import PassReport, deliver_pass
from newsletter.engine.webhooks import prune as prune_events
from newsletter.errors import InputError, NotFound
from newsletter.store import webhook_outbox as outbox
from newsletter.store import webhooks as hooks
from newsletter.store.models import utcnow
from newsletter.vocabulary.webhooks import ALL, CATALOGUE


def check_events(events: list[str] | tuple[str, ...]) -> list[str]:
    """The event types, each in the catalogue (or ``*``); InputError naming the first unknown one."""
    if not events:
        raise InputError("say which events the endpoint receives",
                         hint="add --event subscriber.unsubscribed (see them all with: newsletter webhooks events)")
    for event in events:
        if event != ALL and event not in CATALOGUE:
            raise InputError(f"unknown event type {event[:80]!r}",
                             hint="see the catalogue with: newsletter webhooks events")
    return list(dict.fromkeys(events))


def add_endpoint(store, url: str, events: list[str] | tuple[str, ...], secret: str | None = None) -> dict[str, Any]:
    """Add an endpoint; the answer holds its secret (the only time it is shown)."""
    url = wire.check_url(url.strip())
    types = check_events(events)
    secret = secret or wire.new_secret()
    wire.secret_key(secret)
    with store.session() as session:
        endpoint = hooks.add_endpoint(session, url, secret, types)
        return {"id": endpoint.id, "url": url, "events": types, "secret": secret}


def list_endpoints(store) -> list[dict[str, Any]]:
    """Every endpoint: URL, events, enabled or why not, the failure streak and the deliveries waiting."""
    with store.session() as session:
        backlog = outbox.backlog(session)
        return [{"id": e.id, "url": e.url, "events": types, "enabled": e.enabled,
                 "disabled_reason": e.disabled_reason or None, "disabled_at": e.disabled_at,
                 "failures": e.failures, "failing_since": e.failing_since, "last_success_at": e.last_success_at,
                 "pending": backlog.get(e.id, {}).get("pending", 0) + backlog.get(e.id, {}).get("sending", 0),
                 "delivered": backlog.get(e.id, {}).get("delivered", 0),
                 "failed": backlog.get(e.id, {}).get("failed", 0), "created_at": e.created_at}
                for e, types in hooks.all_endpoints(session)]


def remove_endpoint(store, endpoint_id: int) -> None:
    with store.session() as session:
        if not hooks.remove_endpoint(session, endpoint_id):
            raise _no_endpoint(endpoint_id)


def enable_endpoint(store, endpoint_id: int) -> None:
    """Enable a disabled endpoint; what waited for it is due at once."""
    with store.session() as session:
        if not hooks.enable_endpoint(session, endpoint_id, utcnow()):
            raise _no_endpoint(endpoint_id)


def catalogue() -> list[dict[str, Any]]:
    return [{"type": name, "description": text, "example": example} for name, (text, example) in CATALOGUE.items()]


def deliver(store, **options: Any) -> PassReport:
    """One delivery pass (``webhooks deliver``, cron, the daemon's job)."""
    return deliver_pass(store, **options)


def prune(store) -> int:
    """Forget old events every endpoint received or gave up on."""
    return prune_events(store)


def attempts(store, *, failed_only: bool = False, endpoint_id: int | None = None, limit: int = 50) -> list[dict]:
    with store.session() as session:
        return outbox.deliveries(session, failed_only=failed_only, endpoint_id=endpoint_id, limit=limit)


def send_test(store, url: str) -> dict[str, Any]:
    """POST a signed ``webhook.test`` event to ``url`` now (nothing stored): with the secret of the endpoint
    of that URL, when there is one, else a fresh secret (returned, to check the signature by hand)."""
    url = wire.check_url(url.strip())
    with store.session() as session:
        secret = next((e.secret for e, _ in hooks.all_endpoints(session) if e.url == url), None)
    fresh = secret is None
    secret = secret or wire.new_secret()
    event_id = hooks.new_event_id()
    body = json.dumps({"type": "webhook.test", "timestamp": utcnow().isoformat(), "data": {"url": url}},
                      separators=(",", ":")).encode()
    result = wire.post(url, body, wire.headers(secret, event_id, int(time.time()), body))
    answer: dict[str, Any] = {"url": url, "id": event_id, "ok": result.ok, "status": result.status,
                              "error": result.error}
    if fresh:
        answer["secret"] = secret
    return answer


def _no_endpoint(endpoint_id: int) -> NotFound:
    return NotFound(f"no webhook endpoint {endpoint_id}", hint="see them with: newsletter webhooks list")
