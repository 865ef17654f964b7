"""``POST /webhooks/{provider}``: provider event webhooks, HTTP only.

The provider's event source (``newsletter.transports``) verifies
and parses; the provider-neutral pipeline (``newsletter.events.pipeline``)
deduplicates, matches, stores and applies. This module maps their answers
to HTTP:

- 404: no registered provider of that name posts events;
- 503: the provider's verification key is not set (the provider retries,
  so no event is lost meanwhile); nothing stored;
- 403: a bad, missing or stale signature; nothing stored;
- 503 also when what verifying needs cannot be fetched now (an SNS
  signing certificate); the provider retries;
- 400: a signed body that is not an event batch;
- 200 with the source's own answer for a control message its optional
  ``handshake`` handled (an SNS subscription confirmation), 502 when
  that handshake's own request failed;
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
        # Run in the thread pool: a source may fetch (SNS's signing certificate, cached).
        await ctx.run(source.verify, request.headers, body)
    except Refused as exc:
        log.warning("%s webhook refused: %s", provider, exc)
        return JSONResponse({"error": str(exc)}, status_code=403)
    except OSError as exc:  # what verification needed could not be fetched: the provider retries
        log.warning("%s webhook could not be verified now: %s", provider, type(exc).__name__)
        return JSONResponse({"error": "cannot verify the request now"}, status_code=503)
    handshake = getattr(source, "handshake", None)  # optional: see newsletter.providers.base
    if handshake is not None:
        try:
            answer = await ctx.run(handshake, body)
        except Refused as exc:
            log.warning("%s webhook refused: %s", provider, exc)
            return JSONResponse({"error": str(exc)}, status_code=403)
        except OSError as exc:
            log.warning("%s webhook handshake failed: %s", provider, type(exc).__name__)
            return JSONResponse({"error": "the confirmation request failed"}, status_code=502)
        if answer is not None:
            return JSONResponse(answer)
    try:
        events = source.parse(body)
    except ValueError:
        return JSONResponse({"error": "the body is not a JSON array of events"}, status_code=400)
    limit = SoftBounceLimit(ctx.settings.soft_bounce_limit, ctx.settings.soft_bounce_days)
    counts = await ctx.run(record_events, ctx.store, events, ctx.settings.secret_keys, ctx.now(), limit)
    return JSONResponse(counts)

