"""``/api/subscribers``: add with consent, read, update, unsubscribe, erase, list with a cursor."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from newsletter.usecases import subscribers as use
from newsletter.web.api import models
from newsletter.web.api.app import (
    SubscribersRead,
    SubscribersWrite,
    client_ip,
    consent_source,
    idempotent,
    problem_responses,
)

router = APIRouter(prefix="/subscribers", tags=["subscribers"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                              description="Retry with the same key: done once, same answer.")]
Email = Annotated[str, "the address, URL-encoded"]
FORMAT = Literal["auto", "csv", "newsletter", "mailchimp", "substack", "listmonk", "buttondown"]  # FORMATS
STATUSES = Literal["active", "unsubscribed", "bounced", "complained", "pending", "confirmed"]


@router.post("", status_code=201, response_model=models.SubscriberCreated,
             responses={200: {"model": models.SubscriberCreated, "description": "Updated (they existed)"},
                        **problem_responses(404, 409)})
async def create_subscriber(request: Request, token: SubscribersWrite,
                            body: models.SubscriberCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Add a subscriber (or update one), with consent recorded as ``api:TOKEN-NAME`` from the caller's IP.

    201 when added, 200 when they existed. On a double opt-in list they stay
    pending: ``confirm_url`` is the link to send them. An address that
    unsubscribed or bounced is refused (409) unless ``resubscribe``.
    """
    state = request.app.state

    def work():
        data = use.add(state.store, state.settings, body.email, name=body.name, list_name=body.list_name,
                       attributes=body.attributes, timezone=body.timezone, tags=body.tags, confirmed=body.confirmed,
                       resubscribe=body.resubscribe, source=consent_source(token), ip=client_ip(request))
        shaped = models.SubscriberCreated.model_validate(data).model_dump(mode="json")
        return (201 if data["created"] else 200), shaped

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)


@router.post("/import", response_model=models.ImportReport, responses=problem_responses(404, 409))
async def import_subscribers(request: Request, token: SubscribersWrite, file: Annotated[UploadFile, File()],
                             list: Annotated[str | None, Query(max_length=100)] = None,
                             format: FORMAT = "auto", dry_run: bool = False, resubscribe: bool = False,
                             encoding: Annotated[str, Query(max_length=40)] = "utf-8",
                             idempotency_key: IdempotencyKey = None) -> Response:
    """Import a file of subscribers (CSV, our export, Mailchimp, Substack, listmonk, Buttondown), as the CLI does.

    The report is ``newsletter subscribers import --json``'s: bad and skipped
    rows by line with the reason; nobody who had left is subscribed again.
    Files up to 100 MB.
    """
    import hashlib

    state = request.app.state
    digest = hashlib.sha256()
    while chunk := await file.read(1024 * 1024):
        digest.update(chunk)
    await file.seek(0)
    fingerprint = f"{digest.hexdigest()} {file.filename} {list} {format} {dry_run} {resubscribe} {encoding}"

    def work():
        data = use.import_file(state.store, file.file, file.filename or "upload.csv", list_name=list,
                               format_name=format, dry_run=dry_run, resubscribe=resubscribe, encoding=encoding)
        return 200, models.ImportReport.model_validate(data).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, fingerprint.encode(), idempotency_key, work)


@router.get("", response_model=models.SubscriberPage, responses=problem_responses(404))
def list_subscribers(request: Request,
                     list: Annotated[str | None, Query(max_length=100)] = None,
                     status: STATUSES | None = None,
                     limit: Annotated[int, Query(ge=1, le=use.PAGE_MAX)] = 100,
                     cursor: Annotated[str | None, Query(max_length=100)] = None) -> dict:
    """Subscribers in a stable order, ``limit`` at a time; follow ``next_cursor`` until it is null.

    ``status`` is the address's status, or with ``list`` the membership's
    (pending, confirmed, unsubscribed).
    """
    return use.page(request.app.state.store, list_name=list, status=status, limit=limit, cursor=cursor)


@router.get("/{email}", response_model=models.Subscriber, responses=problem_responses(404))
def get_subscriber(request: Request, token: SubscribersRead, email: Email) -> dict:
    """One subscriber: lists, tags, attributes and consent history."""
    return use.describe(request.app.state.store, email)


@router.patch("/{email}", response_model=models.Subscriber, responses=problem_responses(404))
def update_subscriber(request: Request, token: SubscribersWrite, email: Email, body: models.SubscriberUpdate) -> dict:
    """Change the name, the time zone, attributes (merged into theirs) or tags."""
    return use.update(request.app.state.store, email, name=body.name, attributes=body.attributes,
                      timezone=body.timezone, add_tags=body.add_tags, remove_tags=body.remove_tags)


@router.post("/{email}/unsubscribe", response_model=models.Unsubscribed, responses=problem_responses(404, 409))
async def unsubscribe(request: Request, token: SubscribersWrite, email: Email, body: models.Unsubscribe,
                      idempotency_key: IdempotencyKey = None) -> Response:
    """Unsubscribe from one list, or from every list (the address is then suppressed). Idempotent."""
    state = request.app.state

    def work():
        data = use.unsubscribe(state.store, email, body.list, source=consent_source(token), ip=client_ip(request))
        return 200, models.Unsubscribed.model_validate(data).model_dump(mode="json")

    return await run_in_threadpool(idempotent, request, token, body.model_dump_json().encode(), idempotency_key, work)


@router.delete("/{email}", status_code=204, response_class=Response, responses=problem_responses(404))
def erase_subscriber(request: Request, token: SubscribersWrite, email: Email) -> Response:
    """Erase everything about the subscriber; only a hash of the address stays, on the suppression list."""
    use.erase(request.app.state.store, email, source=consent_source(token))
    return Response(status_code=204)
