"""``/api/send``: one transactional message to one address, on the non-subscription identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool

from newsletter.web.api import models
from newsletter.web.api.app import SendWrite, idempotent, problem_responses

router = APIRouter(tags=["transactional"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                              description="Retry with the same key: sent once, same answer.")]


@router.post("/send", response_model=models.Sent, responses=problem_responses(409, 503))
async def send(request: Request, token: SendWrite, body: models.Transactional,
               idempotency_key: IdempotencyKey = None) -> Response:
    """Send one message (Markdown with ``%%field%%`` tokens filled from ``data``) to one address.

    From the non-subscription identity, without list headers; a suppressed
    address (unsubscribed, bounced, complained, erased) is refused with 409
    and nothing is sent. Send an Idempotency-Key: a retried request is then
    never sent twice.
    """
    from newsletter.usecases.transactional import send_one

    state = request.app.state

    def work():
        data = send_one(state.store, state.settings, state.ctx.transport_factory, to=body.to, name=body.name,
                        subject=body.subject, markdown=body.markdown, data=body.data)
        return 200, models.Sent.model_validate(data).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)
