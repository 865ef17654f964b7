"""A/B subject tests: the split, the decision, and the subject each ledger row gets.

The life of an A/B campaign (``send``/``schedule --subject-b ... --test-share
20% --decide-after 4h --by clicks``):

1. **Split** (:func:`split`), in the transaction that snapshots the audience:
   the rows are ordered by an HMAC of the subscriber id under the test's
   random seed (reproducible: the same seed and audience give the same
   split), the first ``share`` percent are dealt round-robin to A, B (and C),
   so each variant gets an even part, and every other row becomes ``held``.
   ``decide_at`` is the start plus the wait.
2. **Test phase**: the send loop sends the pending rows, each variant's with
   its subject (:func:`subjects_for`). When nothing but held rows is left the
   campaign pauses until ``decide_at`` (``engine.sender.finish_campaign``),
   and the scheduler daemon (or a waiting ``send``) resumes it then.
3. **Decision** (:func:`decide_if_due`), in the transaction of the resume's
   takeover: once ``decide_at`` has passed and no test row is still pending
   or in flight, the numbers are read, the winner picked (:func:`pick`), and
   the held rows turn pending, all in one commit: a kill before it leaves
   everything held, a kill after it leaves a decided test whose rest is
   pending, and the next resume sends it. A row is one subscriber (the
   ledger's unique key), so nobody gets two variants.
4. **Winner phase**: the rows without a variant go out with the winner's
   subject.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from newsletter.errors import InputError
from newsletter.store import abtests as store
from newsletter.store.models import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.compose.edition import Edition as ComposedEdition

VARIANTS = "ABC"
MEASURES = ("clicks", "opens")
SUBJECT_LIMIT = 500  # the editions table's subject column
MIN_SHARE, MAX_SHARE = 2, 90  # percent: some test audience, some rest
MIN_WAIT, MAX_WAIT = 60, 30 * 86_400  # seconds
DEFAULT_MIN_SAMPLE = 100


@dataclass(frozen=True)
class ABChoice:
    """A campaign's A/B test as asked for: the other subjects, and how the test runs."""

    subjects: tuple[str, ...]  # B, and C when given
    # content variants: B's (and C's) own composed article and its path, or None where the variant is a subject
    editions: tuple[tuple[ComposedEdition, str] | None, ...] = ()
    share: int = 20  # percent
    decide_after: int = 4 * 3600  # seconds
    measure: str = "clicks"
    min_sample: int = DEFAULT_MIN_SAMPLE

    def check(self, subject_a: str) -> None:
        """Raise InputError (one line, with a hint) on anything a test cannot run with."""
        hint = '--subject-b "Another subject" --test-share 20% --decide-after 4h --by clicks'
        if not 1 <= len(self.subjects) <= len(VARIANTS) - 1:
            raise InputError("an A/B test takes --subject-b and at most --subject-c", hint=hint)
        for name, subject in zip("BC", self.subjects, strict=False):
            if not subject.strip():
                raise InputError(f"--subject-{name.lower()} is empty", hint=hint)
            if len(subject) > SUBJECT_LIMIT:
                raise InputError(f"--subject-{name.lower()} is longer than {SUBJECT_LIMIT} characters",
                                 hint="shorten it")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in subject):
                raise InputError(f"--subject-{name.lower()} holds a control character (a line break?)",
                                 hint="put the subject on one line")
        every = [subject_a, *self.subjects]
        if len({s.strip() for s in every}) != len(every) and not any(self.editions):
            raise InputError("the A/B subjects must differ from each other and from the article's", hint=hint)
        if not MIN_SHARE <= self.share <= MAX_SHARE:
            raise InputError(f"--test-share must be between {MIN_SHARE}% and {MAX_SHARE}%",
                             hint="e.g. --test-share 20%")
        if not MIN_WAIT <= self.decide_after <= MAX_WAIT:
            raise InputError("--decide-after must be between 1m and 30d", hint="e.g. --decide-after 4h")
        if self.measure not in MEASURES:
            raise InputError(f"--by must be one of {', '.join(MEASURES)}", hint="e.g. --by clicks")
        if self.min_sample < 1:
            raise InputError("--min-sample must be at least 1", hint="e.g. --min-sample 100")


def record(session: Session, campaign_id: int, subject_a: str, choice: ABChoice) -> None:
    """Store the campaign's test, in the caller's (the campaign's) transaction; a content variant's
    edition is stored as it was composed, like the campaign's own."""
    from newsletter.store import ledger

    choice.check(subject_a)
    editions: list[int | None] | None = None
    if any(choice.editions):
        editions = [None]
        for pair in choice.editions:
            if pair is None:
                editions.append(None)
                continue
            edition, path = pair
            editions.append(ledger.save_edition(
                session, slug=edition.slug, subject=edition.subject, preheader=edition.preheader or "",
                html=edition.html, text=edition.text, theme=edition.theme, article_path=path,
                tags=list(edition.article.tags or [])).id)
    store.save_test(session, campaign_id, subjects=[subject_a, *choice.subjects], editions=editions,
                    share=choice.share,
                    decide_after=choice.decide_after, measure=choice.measure, min_sample=choice.min_sample,
                    seed=secrets.token_hex(16))


def order_key(seed: str, subscriber_id: int) -> bytes:
    """Where a subscriber falls in the split's order: random-looking, fixed by the seed."""
    return hmac.new(seed.encode(), str(subscriber_id).encode(), hashlib.sha256).digest()


def deal(seed: str, subscriber_ids: list[int], share: int, variants: int) -> dict[int, str]:
    """The split: subscriber id -> variant for the test phase (everyone else is not in it).

    ``share`` percent of the audience (at least one per variant while there
    are people), in the seed's order, dealt round-robin so the variants differ
    in size by at most one.
    """
    ordered = sorted(subscriber_ids, key=lambda sid: order_key(seed, sid))
    size = max(round(len(ordered) * share / 100), min(len(ordered), variants))
    return {sid: VARIANTS[index % variants] for index, sid in enumerate(ordered[:size])}


def split(session: Session, campaign_id: int, now: datetime) -> int | None:
    """Deal the just-snapshotted rows of an A/B campaign into variants and hold the rest.

    Returns how many rows are in the test phase; None for a plain campaign or
    one already split (run in the snapshot's transaction, so at most once).
    """
    test = store.load_test(session, campaign_id)
    if test is None or test.decide_at is not None:
        return None
    rows = store.unsplit_rows(session, campaign_id)
    dealt = deal(test.seed, [sid for _, sid in rows], test.share, len(test.subjects))
    store.set_variants(session, [(delivery_id, dealt[sid]) for delivery_id, sid in rows if sid in dealt])
    store.hold_rest(session, campaign_id)
    store.set_test(session, campaign_id, decide_at=now + timedelta(seconds=test.decide_after))
    return len(dealt)


def subjects_for(session: Session, campaign_id: int) -> dict[str | None, tuple[str, int | None]] | None:
    """Each variant's subject and edition id (None: the campaign's own); the key None is the rows the winner
    goes to, once decided. None for a plain campaign."""
    test = store.load_test(session, campaign_id)
    if test is None:
        return None
    subjects: dict[str | None, tuple[str, int | None]] = {
        VARIANTS[i]: (s, test.editions[i]) for i, s in enumerate(test.subjects)}
    if test.winner is not None:
        subjects[None] = subjects[test.winner]
    return subjects


@dataclass(frozen=True)
class Decision:
    """The winner and why (``fallback``: variant A by default: a tie or too little data)."""

    winner: str
    reason: str
    fallback: bool


def pick(numbers: Mapping[str, Mapping[str, int]], measure: str, min_sample: int) -> Decision:
    """Pick the winner from each variant's ``sent`` and engagement counts.

    Engaged, for ``clicks``: the people who clicked (``clicked``: the
    per-delivery record) plus the human clicks on the variant's aggregate
    links (``clicks``: readers without personal tracking, who are nobody in
    particular); likewise ``opened`` and ``opens``. Machine requests are in
    neither. Every variant must have reached ``min_sample`` people and
    someone must have engaged; the highest rate (engaged / sent, compared
    exactly) wins; a tie for the top, or too little data, falls back to A
    and says so.
    """
    people = "clicked" if measure == "clicks" else "opened"
    variants = sorted(numbers)
    engaged = {v: numbers[v][people] + numbers[v].get(measure, 0) for v in variants}
    short = [v for v in variants if numbers[v]["sent"] < min_sample]
    if short:
        sizes = ", ".join(f"{v} {numbers[v]['sent']}" for v in short)
        return Decision("A", f"too little data: reached {sizes}, under the minimum sample of {min_sample} per "
                             "variant; sent A", True)
    if sum(engaged.values()) == 0:
        return Decision("A", f"too little data: no {measure} recorded in any variant; sent A", True)
    rates = {v: Fraction(engaged[v], numbers[v]["sent"]) for v in variants}
    best = max(rates.values())
    top = [v for v in variants if rates[v] == best]
    shown = ", ".join(f"{v} {float(rates[v]):.1%}" for v in variants)
    if len(top) > 1:
        return Decision("A", f"tie between {' and '.join(top)} ({measure}: {shown}); sent A", True)
    return Decision(top[0], f"{top[0]} had the highest {measure[:-1]} rate ({shown})", False)


def decide_if_due(session: Session, campaign_id: int, now: datetime | None = None) -> Decision | None:
    """Pick the winner and release the held rows, if the campaign's test is due and its phase is over.

    Runs in the caller's transaction (a resume's takeover, which owns the
    campaign). None when there is nothing to decide now: a plain campaign,
    one already decided, before ``decide_at``, or while test rows are still
    pending or in flight.
    """
    test = store.load_test(session, campaign_id)
    now = now or utcnow()
    if test is None or test.winner is not None or test.decide_at is None or test.decide_at > now:
        return None
    if store.test_rows_in_flight(session, campaign_id):
        return None
    counted = {k: v for k, v in store.variant_numbers(session, campaign_id).items() if k is not None}
    empty = {"rows": 0, "sent": 0, "clicked": 0, "opened": 0, "held": 0, "clicks": 0, "opens": 0, "machine": 0}
    numbers = {v: counted.get(v, empty)
               for v in VARIANTS[:len(test.subjects)]}
    decision = pick(numbers, test.measure, test.min_sample)
    if not store.claim_decision(session, campaign_id, winner=decision.winner, reason=decision.reason,
                                numbers=_plain(numbers), decided_at=now):
        return None
    store.release_held(session, campaign_id)
    return decision


def _plain(numbers: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    return {v: {k: n for k, n in row.items() if k != "held"} for v, row in numbers.items()}


def waiting_note(decide_at: datetime) -> str:
    """The pause reason of a campaign whose test phase is done."""
    return f"A/B test: the winner is picked at {decide_at:%Y-%m-%d %H:%M} UTC"
