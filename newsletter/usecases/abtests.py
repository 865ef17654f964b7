"""A/B subject tests: the options of ``send`` and ``schedule`` read into an
:class:`~newsletter.engine.abtests.ABChoice`, and what ``campaigns show`` says about a test.

The mechanism (split, test phase, decision, winner phase) is
:mod:`newsletter.engine.abtests`.
"""

from __future__ import annotations

import re

from newsletter.engine.abtests import DEFAULT_MIN_SAMPLE, VARIANTS, ABChoice
from newsletter.errors import InputError

_SHARE = re.compile(r"\s*(\d{1,3})\s*%?\s*")
_WAIT = re.compile(r"\s*(\d{1,6})\s*([smhd])\s*", re.I)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
HINT = 'e.g. --subject-b "Another subject" --test-share 20% --decide-after 4h --by clicks'


def parse_share(text: str) -> int:
    """``20%`` (or ``20``) -> 20."""
    match = _SHARE.fullmatch(text or "")
    if match is None:
        raise InputError(f"--test-share {text!r} is not a percentage", hint="e.g. --test-share 20%")
    return int(match.group(1))


def parse_wait(text: str) -> int:
    """``4h``, ``90m``, ``1d``, ``300s`` -> seconds."""
    match = _WAIT.fullmatch(text or "")
    if match is None:
        raise InputError(f"--decide-after {text!r} is not a duration", hint="e.g. --decide-after 4h (or 90m, 1d)")
    return int(match.group(1)) * _UNIT[match.group(2).lower()]


def ab_choice(subject_b: str | None, subject_c: str | None, share: str | None, decide_after: str | None,
              by: str | None, min_sample: int | None, *, track_clicks: bool, track_opens: bool,
              on_workers: bool = False, local_time: bool = False, article_b: str | None = None,
              article_c: str | None = None, settings=None, compose: dict | None = None) -> ABChoice | None:
    """The A/B test the options ask for, or None when there is none (no ``--subject-b`` nor ``--article-b``).

    ``article_b``/``article_c``: content variants, composed and checked now
    (with ``settings`` and the ``compose`` options of the send); a variant's
    subject is its ``--subject-*`` if given, else its article's.

    Refuses, with a hint, options without ``--subject-b``, a measure the
    campaign does not track, and the set-ups the test does not run on yet
    (workers, local-time waves). The subjects are checked against the
    article's subject by :meth:`ABChoice.check` when the edition is composed.
    """
    if subject_c is not None and subject_b is None and article_b is None:
        raise InputError("--subject-c needs --subject-b (or --article-b)", hint=HINT)
    if article_c is not None and article_b is None:
        raise InputError("--article-c needs --article-b", hint="e.g. --article-b articles/other.md")
    editions: list = []
    for name, path in (("b", article_b), ("c", article_c)):
        if path is not None:
            from newsletter.usecases.editions import prepare_edition

            editions.append((prepare_edition(settings, path, **(compose or {})), path))
        elif name == "b" or subject_c is not None:
            editions.append(None)
    if editions and editions[0] is not None and subject_b is None:
        subject_b = editions[0][0].subject
    if len(editions) > 1 and editions[1] is not None and subject_c is None:
        subject_c = editions[1][0].subject
    if subject_b is None:
        given = [name for name, value in (("--subject-c", subject_c), ("--test-share", share),
                                          ("--decide-after", decide_after), ("--by", by),
                                          ("--min-sample", min_sample)) if value is not None]
        if given:
            raise InputError(f"{given[0]} belongs to an A/B test, which needs --subject-b", hint=HINT)
        return None
    measure = by or "clicks"
    if measure == "clicks" and not track_clicks:
        raise InputError("--by clicks needs click tracking", hint="drop --no-track-clicks, or use --by opens "
                                                                  "with --track-opens")
    if measure == "opens" and not track_opens:
        raise InputError("--by opens needs the open pixel", hint="add --track-opens (or pick the winner --by clicks)")
    if on_workers:
        raise InputError("A/B tests are sent by this machine, not the workers",
                         hint="unset NEWSLETTER_BROKER_URL for this send")
    if local_time:
        raise InputError("A/B tests cannot be sent in local-time waves", hint="schedule it with --at TIME alone")
    subjects = (subject_b,) if subject_c is None else (subject_b, subject_c)
    return ABChoice(subjects=subjects, editions=tuple(editions) if any(editions) else (),
                    share=parse_share(share) if share is not None else 20,
                    decide_after=parse_wait(decide_after) if decide_after is not None else 4 * 3600,
                    measure=measure, min_sample=DEFAULT_MIN_SAMPLE if min_sample is None else min_sample)


def show_test(store, campaign_id: int) -> dict | None:
    """A campaign's A/B test for ``campaigns show``: settings, each variant's numbers, the decision;
    None for a plain campaign. Numbers count people (first-party machine requests excluded)."""
    from newsletter.store import abtests as q
    from newsletter.store.models import Campaign, Edition

    with store.session() as session:
        test = q.load_test(session, campaign_id)
        if test is None:
            return None
        numbers = q.variant_numbers(session, campaign_id)
        own = session.get(Campaign, campaign_id).edition_id
        articles = [session.get(Edition, edition_id or own).article_path for edition_id in test.editions]
    variants = []
    for index, subject in enumerate(test.subjects):
        name = VARIANTS[index]
        row = numbers.get(name, {"rows": 0, "sent": 0, "clicked": 0, "opened": 0, "clicks": 0, "opens": 0,
                                 "machine": 0})
        sent = row["sent"]
        # engaged: people on personal links plus human requests on the variant's aggregate links (see engine.pick)
        clicked, opened = row["clicked"] + row["clicks"], row["opened"] + row["opens"]
        variants.append({"variant": name, "subject": subject, "article": articles[index],
                         "recipients": row["rows"], "sent": sent,
                         "clicked": clicked, "opened": opened, "machine_requests": row["machine"],
                         "click_rate": round(clicked / sent, 4) if sent else None,
                         "open_rate": round(opened / sent, 4) if sent else None,
                         "winner": name == test.winner})
    rest = numbers.get(None, {"rows": 0, "sent": 0, "held": 0})
    return {"share": test.share, "decide_after_seconds": test.decide_after, "by": test.measure,
            "min_sample": test.min_sample, "decide_at": test.decide_at, "winner": test.winner,
            "reason": test.reason, "decided_at": test.decided_at, "variants": variants,
            "rest": {"recipients": rest["rows"], "sent": rest["sent"], "held": rest["held"]}}
