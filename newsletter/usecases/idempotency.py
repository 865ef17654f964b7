"""``Idempotency-Key``: a POST retried with the same key gets the first answer again, and does nothing twice.

:func:`once` claims the key in the database before the work starts (the
primary key lets only one of two racing requests through), runs the work,
and keeps its answer (success or expected error) for ``KEEP``. A retry with
the same key and the same request gets that answer replayed; with another
request it is refused (InputError, 422), and while the first is still being
handled it is a Conflict (409). Kept in the database, answers survive a
restart of ``serve``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from newsletter.errors import Conflict, InputError, NewsletterError

KEY_MAX = 255
KEEP = timedelta(hours=24)
ABANDONED = timedelta(minutes=5)  # a claim older than this with no answer: its process died, the key is free again


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as kept: status, content type and body text."""

    status: int
    content_type: str
    body: str
    replayed: bool = False


def clean_key(key: str) -> str:
    if not 1 <= len(key) <= KEY_MAX or not all(33 <= ord(c) < 127 for c in key):
        raise InputError(f"an Idempotency-Key is 1 to {KEY_MAX} visible ASCII characters",
                         hint="use a random UUID for each new request, and the same one for its retries")
    return key


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogatepass"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def once(store, token_id: int, key: str | None, fingerprint: str, work: Callable[[], Answer],
         on_error: Callable[[NewsletterError], Answer]) -> Answer:
    """Run ``work`` once per ``(token, key)``; without a key, simply run it.

    ``on_error`` turns an expected error of ``work`` into the answer kept
    (so a retry gets the same refusal). An unexpected exception frees the
    key and goes up.
    """
    if key is None:
        try:
            return work()
        except NewsletterError as exc:
            return on_error(exc)
    from newsletter.store import api
    from newsletter.store.models import utcnow

    key = clean_key(key)
    now = utcnow()
    with store.session() as session:
        if random.random() < 0.01:  # housekeeping now and then
            api.forget_answers_before(session, now - KEEP)
        kept = api.find_answer(session, token_id, key)
        if kept is not None and kept.status == 0 and now - kept.created_at > ABANDONED:
            api.release_key(session, token_id, key)
            kept = None
        if kept is None and api.claim_key(session, token_id, key, fingerprint, now):
            claimed = True
        else:
            claimed = False
            kept = kept or api.find_answer(session, token_id, key)
    if not claimed:
        return _replay(kept, fingerprint)
    try:
        try:
            answer = work()
        except NewsletterError as exc:
            answer = on_error(exc)
    except BaseException:
        with store.session() as session:
            api.release_key(session, token_id, key)
        raise
    with store.session() as session:
        api.keep_answer(session, token_id, key, answer.status, answer.content_type, answer.body)
    return answer


def _replay(kept, fingerprint: str) -> Answer:
    if kept is None or kept.status == 0:
        raise Conflict("a request with this Idempotency-Key is still being handled",
                       hint="wait for its answer, then retry with the same key to get it")
    if kept.request_hash != fingerprint:
        raise InputError("this Idempotency-Key was used for another request",
                         hint="use a new key for a new request; reuse a key only to retry the same request")
    return Answer(kept.status, kept.content_type, kept.body, replayed=True)


def json_answer(status: int, data: object) -> Answer:
    return Answer(status, "application/json", json.dumps(data, ensure_ascii=False, separators=(",", ":")))
