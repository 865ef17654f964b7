"""The campaign use cases: what a person (or the scheduler) asks the newsletter to do.

Named ``usecases`` rather than ``campaigns`` because ``newsletter.engine.campaigns``
already holds the campaign *records*; this package is the layer above the
engine and the distributed runner (see issue 12's layers): prepare an
edition, send now, schedule, resume, retry, cancel, reschedule. Each use case
takes Settings and plain values (never a CLI object) and returns a result the
caller prints. :mod:`newsletter.usecases.dispatch` is the composition root
that picks, once, who sends: this machine or the Dramatiq workers.
"""
