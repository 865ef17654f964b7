"""``/api/campaigns``: check and preview an article, schedule it, cancel, status and report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from newsletter.usecases import articles as use
from newsletter.web.api import models
from newsletter.web.api.app import CampaignsRead, CampaignsWrite, idempotent, problem_responses

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                              description="Retry with the same key: done once, same answer.")]
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # the id column is a 32-bit integer on PostgreSQL


@router.post("/check", response_model=models.CheckReport)
async def check(request: Request, token: CampaignsRead,
                body: models.Article, idempotency_key: IdempotencyKey = None) -> Response:
    """The pre-flight checks of an article's email (``newsletter check``): errors stop a send, warnings do not."""
    settings = request.app.state.settings

    def work():
        return 200, models.CheckReport.model_validate(use.check_article(settings, body.markdown, body.theme)
                                                      ).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)


@router.post("/preview", response_class=HTMLResponse,
             responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                              "description": "The email's HTML"}})
async def preview(request: Request, token: CampaignsRead,
                  body: models.Article, idempotency_key: IdempotencyKey = None) -> Response:
    """The article's email as HTML (as the web version shows it)."""
    settings = request.app.state.settings
    html = await run_in_threadpool(use.preview_article, settings, body.markdown, body.theme)
    return HTMLResponse(html)


@router.post("/test", response_model=models.TestSent, responses=problem_responses(503))
async def send_test(request: Request, token: CampaignsWrite, body: models.CampaignTest,
                    idempotency_key: IdempotencyKey = None) -> Response:
    """Send the article's email to up to five addresses, subject "[Test] ...", with fake unsubscribe links."""
    state = request.app.state

    def work():
        data = use.send_test(state.settings, state.ctx.transport_factory, body.markdown, body.to, body.theme)
        return 200, models.TestSent.model_validate(data).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)


@router.post("", status_code=201, response_model=models.CampaignScheduled, responses=problem_responses(404, 409, 503))
async def schedule(request: Request, token: CampaignsWrite,
                   body: models.CampaignSchedule, idempotency_key: IdempotencyKey = None) -> Response:
    """Schedule an article (Markdown with front matter) for a list, a segment or a filter at a time.

    The email is composed and checked now (a pre-flight error is 422). The
    scheduler daemon (``newsletter run``) sends it when due. An edition the
    list already received or has scheduled is a 409 unless ``again``.
    """
    state = request.app.state

    def work():
        data = use.schedule_article(state.store, state.settings, body.markdown, list_name=body.list,
                                    segment=body.segment, where=body.where, at=body.at, zone=body.tz,
                                    theme=body.theme, again=body.again)
        return 201, models.CampaignScheduled.model_validate(data).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)


@router.get("/{campaign_id}", response_model=models.Campaign, responses=problem_responses(404))
def status(request: Request, token: CampaignsRead, campaign_id: CampaignId) -> dict:
    """A campaign's status, its counts and its report (delivered, bounced, opened, clicked ...)."""
    return use.campaign_status(request.app.state.store, campaign_id)


@router.post("/{campaign_id}/cancel", response_model=models.Cancelled, responses=problem_responses(404, 409))
async def cancel(request: Request, token: CampaignsWrite,
                 campaign_id: CampaignId, idempotency_key: IdempotencyKey = None) -> Response:
    """Cancel a campaign that has not started (409 once it has). Cancelling twice is fine."""
    store = request.app.state.store

    def work():
        return 200, models.Cancelled.model_validate(use.cancel(store, campaign_id)).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, b"", idempotency_key, work)
