"""The FastAPI app mounted at ``/api``: tokens, scopes, rate limits, problems, idempotency; the routes are elsewhere.

- Every operation needs ``Authorization: Bearer TOKEN`` (``newsletter tokens
  create``) with the operation's scope: none or an unknown token is 401, a
  token without the scope 403.
- Each token may make ``rate_per_second`` requests a second (a bucket that
  holds one second's worth); past that, 429 with ``Retry-After``.
- Every error is RFC 9457 ``application/problem+json``: ``detail`` and
  ``hint`` are the CLI's message and hint for the same mistake.
- A POST with ``Idempotency-Key`` is done once per token and key
  (:mod:`newsletter.usecases.idempotency`).
- ``/api/openapi.json`` is OpenAPI 3.1, generated from the routes and models.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.errors import ConfigError, Conflict, DeliveryError, InputError, NewsletterError, NotFound
from newsletter.usecases.tokens import TokenInfo
from newsletter.web.api.models import Problem

PROBLEM_TYPE = "application/problem+json"
# An article is at most 1,000,000 characters (models.Article); JSON may escape each as \uXXXX (6 bytes).
API_BODY_BYTES = 8 * 1024 * 1024
IMPORT_BODY_BYTES = 100 * 1024 * 1024  # an uploaded subscriber file
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 413: "Content too large", 415: "Unsupported media type", 422: "Unprocessable content",
          429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}
_PROBLEM_SCHEMA = Problem.model_json_schema()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, each a problem document."""
    return {status: {"description": TITLES.get(status, "Error"),
                     "content": {PROBLEM_TYPE: {"schema": _PROBLEM_SCHEMA}}}
            for status in statuses}


# What every operation may answer besides its own: no or a bad token, no scope, too many, too large, bad input.
COMMON_PROBLEMS = problem_responses(400, 401, 403, 413, 422, 429)


class ApiProblem(Exception):
    """An HTTP error of the API's own (auth, scope, rate): becomes a problem document."""

    def __init__(self, status: int, detail: str, hint: str | None = None, headers: dict[str, str] | None = None,
                 kind: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.hint, self.headers = status, detail, hint, headers or {}
        self.kind = kind or TITLES.get(status, "error").lower().replace(" ", "-")


def problem(status: int, detail: str, hint: str | None = None, *, kind: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem document response."""
    kind = kind or TITLES.get(status, "error").lower().replace(" ", "-")
    body = {"type": f"urn:newsletter:problem:{kind}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, "hint": hint}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def error_status(exc: NewsletterError) -> tuple[int, str]:
    """The HTTP status and problem kind of an expected error."""
    if isinstance(exc, NotFound):
        return 404, "not-found"
    if isinstance(exc, Conflict):
        return 409, "conflict"
    if isinstance(exc, InputError):
        return 422, "invalid-input"
    if isinstance(exc, ConfigError | DeliveryError):
        return 503, "not-configured"
    return 422, "refused"


def error_problem(exc: NewsletterError) -> JSONResponse:
    status, kind = error_status(exc)
    return problem(status, exc.message, exc.hint, kind=kind)


# -- tokens and rate limits ---------------------------------------------------------------------

class RateLimits:
    """Per-token buckets of ``rate`` requests, refilled continuously (one second's worth at most)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_needed(self, token_id: int, rate: int) -> float:
        """0 when the request may go on (and is counted), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            level, since = self._buckets.get(token_id, (float(rate), now))
            level = min(float(rate), level + (now - since) * rate)
            if level >= 1:
                self._buckets[token_id] = (level - 1, now)
                return 0.0
            self._buckets[token_id] = (level, now)
            return (1 - level) / rate


_bearer = HTTPBearer(auto_error=False, description="An API token: newsletter tokens create NAME --scope ...")


def requires(scope: str):
    """A dependency: the request's token, which must hold ``scope``; 401, 403 or 429 otherwise."""

    def check(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> TokenInfo:
        from newsletter.usecases.tokens import authenticate

        state = request.app.state
        if credentials is None:
            raise ApiProblem(401, "this request carries no API token",
                             "send Authorization: Bearer TOKEN (make one with: newsletter tokens create NAME "
                             f"--scope {scope})", {"WWW-Authenticate": "Bearer"}, kind="unauthorized")
        token = authenticate(state.store, credentials.credentials)
        if token is None:
            raise ApiProblem(401, "the API token is not valid (unknown or revoked)",
                             "see the tokens with: newsletter tokens list", {"WWW-Authenticate": "Bearer"},
                             kind="unauthorized")
        if not token.allows(scope):
            raise ApiProblem(403, f"the token {token.name!r} lacks the scope {scope}",
                             f"make a token with it: newsletter tokens create NAME --scope {scope}",
                             kind="forbidden")
        wait = state.rate_limits.wait_needed(token.id, token.rate_per_second)
        if wait > 0:
            raise ApiProblem(429, f"the token {token.name!r} may make {token.rate_per_second} requests a second",
                             "wait for the seconds in Retry-After, then retry",
                             {"Retry-After": str(max(1, math.ceil(wait)))}, kind="rate-limited")
        return token

    return check


# The token of a request, checked for one scope (a parameter ``token: SubscribersWrite`` of an operation).
SubscribersRead = Annotated[TokenInfo, Depends(requires("subscribers:read"))]
SubscribersWrite = Annotated[TokenInfo, Depends(requires("subscribers:write"))]
ListsRead = Annotated[TokenInfo, Depends(requires("lists:read"))]
SegmentsRead = Annotated[TokenInfo, Depends(requires("segments:read"))]
CampaignsRead = Annotated[TokenInfo, Depends(requires("campaigns:read"))]
CampaignsWrite = Annotated[TokenInfo, Depends(requires("campaigns:write"))]
SendWrite = Annotated[TokenInfo, Depends(requires("send:write"))]


# -- the app ----------------------------------------------------------------------------------

def create_api(ctx) -> FastAPI:
    """The API over ``ctx`` (the public app's context: settings, store, transports, clock)."""
    from newsletter import __version__
    from newsletter.web.api import campaigns, lists, send, subscribers

    api = FastAPI(title="newsletter", version=__version__, openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None, swagger_ui_oauth2_redirect_url=None,
                  description="The HTTP API of newsletter serve. Every operation needs an API token "
                              "(newsletter tokens create) with the operation's scope. Errors are RFC 9457 "
                              "problem documents. A POST with Idempotency-Key is done once.")
    api.state.ctx = ctx
    api.state.store = ctx.store
    api.state.settings = ctx.settings
    api.state.rate_limits = RateLimits()
    for module in (subscribers, lists, campaigns, send):
        api.include_router(module.router, responses=COMMON_PROBLEMS)
    api.add_exception_handler(ApiProblem, _api_problem)
    api.add_exception_handler(NewsletterError, _newsletter_error)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    return api


async def _api_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return problem(exc.status, exc.detail, exc.hint, kind=exc.kind, headers=exc.headers)


async def _newsletter_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NewsletterError)
    return error_problem(exc)


async def _invalid_request(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem(422, f"{where}: {first.get('msg', 'invalid')}{more}",
                   "see the operation's request schema in /api/openapi.json", kind="invalid-request")


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
    hint = "see the operations in /api/openapi.json" if exc.status_code in (404, 405) else None
    return problem(exc.status_code, detail, hint, headers=dict(exc.headers or {}))


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def consent_source(token: TokenInfo) -> str:
    return f"api:{token.name}"


def idempotent(request: Request, token: TokenInfo, body: bytes, key: str | None,
               work: Callable[[], tuple[int, Any]]) -> Response:
    """Run ``work`` (returning status and JSON-able data) once per ``Idempotency-Key``; its answer as a response."""
    from newsletter.usecases.idempotency import Answer, json_answer, once, request_hash

    def run() -> Answer:
        status, data = work()
        return json_answer(status, data)

    def refused(exc: NewsletterError) -> Answer:
        response = error_problem(exc)
        return Answer(response.status_code, PROBLEM_TYPE, bytes(response.body).decode())

    fingerprint = request_hash(request.method, request.url.path, body)
    answer = once(request.app.state.store, token.id, key, fingerprint, run, refused)
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers)
