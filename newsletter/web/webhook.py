"""``POST /webhooks/{provider}``: provider event webhooks, HTTP only.

The provider's event source (``newsletter.transports``) verifies
and parses; the provider-neutral pipeline (``newsletter.events.pipeline``)
deduplicates, matches, stores and applies. This module maps their answers
to HTTP:

- 404: no registered provider of that name posts events;
- 503: the provider's verification key is not set (the provider retries,
  so no event is lost meanwhile); nothing stored;
- 403: a bad, missing or stale signature; nothing stored;
- 400: a signed body that is not an event batch;
- 413: a body over :data:`MAX_BODY_BYTES`, refused while it is read
  (``newsletter.web.guards.BodyLimit``);
- 200 with the pipeline's counts otherwise.
"""

from __future__ import annotations

import logging

from newsletter.providers.base import NotConfigured, Refused

log = logging.getLogger("newsletter.web.webhook")

MAX_BODY_BYTES = 20 * 1024 * 1024


async def provider_webhook(request):
    """Verify, parse and record one provider's event batch (see the module docstring for the answers)."""
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    from newsletter.events.pipeline import SoftBounceLimit, record_events

    ctx = request.app.state.ctx
    provider = request.path_params["provider"]
    try:
        source = ctx.event_source(provider)
    except NotConfigured as exc:
        log.warning("%s webhook refused: %s", provider, exc)
        return JSONResponse({"error": "webhook verification key not configured"}, status_code=503)
    if source is None:
        raise HTTPException(status_code=404)  # the app's page for unknown addresses
    body = await request.body()  # capped by guards.BodyLimit (413 past MAX_BODY_BYTES)
    try:
        source.verify(request.headers, body)
    except Refused as exc:
        log.warning("%s webhook refused: %s", provider, exc)
        return JSONResponse({"error": str(exc)}, status_code=403)
    try:
        events = source.parse(body)
    except ValueError:
        return JSONResponse({"error": "the body is not a JSON array of events"}, status_code=400)
    limit = SoftBounceLimit(ctx.settings.soft_bounce_limit, ctx.settings.soft_bounce_days)
    counts = await ctx.run(record_events, ctx.store, events, ctx.settings.secret_keys, ctx.now(), limit)
    return JSONResponse(counts)

