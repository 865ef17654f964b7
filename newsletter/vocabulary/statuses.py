"""The statuses and reasons the store keeps, as enums.

Each is a :class:`enum.StrEnum`: a member *is* its string value, so the
database columns, JSON output and CSV exports hold the same words as before
(``SubscriberStatus.ACTIVE == "active"``), and a value read back from the
database compares equal to the member.
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    """``Subscriber.status``: whether the person may be mailed at all."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class MembershipStatus(StrEnum):
    """``Membership.status``: a subscriber on one list."""

    CONFIRMED = "confirmed"
    PENDING = "pending"          # double opt-in: waiting for the confirmation link
    UNSUBSCRIBED = "unsubscribed"


class SuppressionReason(StrEnum):
    """``Suppression.reason``: why an address must never be mailed again."""

    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


class ConsentAction(StrEnum):
    """``Consent.action``: a change of consent after joining."""

    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    # The preference centre and the data-rights commands (a web signup's own row is SUBSCRIBE).
    SUBSCRIBE = "subscribe"
    SNOOZE = "snooze"
    PROFILE = "profile"
    EXPORT = "export"
    # Consent to personal tracking, given or withdrawn (``detail``), apart from any list.
    TRACKING = "tracking"


class ArrivalStatus(StrEnum):
    """How a person read from an import file arrives (``ImportRow.status``)."""

    SUBSCRIBED = "subscribed"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class CampaignStatus(StrEnum):
    """``Campaign.status``."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    STOPPED = "stopped"
    SENT = "sent"
    FAILED = "failed"            # finished, and nobody received it
    CANCELLED = "cancelled"
    MISSED = "missed"
    AUTOMATED = "automated"      # one step of a sequence: the daemon adds its ledger rows as people reach it


class SequenceStatus(StrEnum):
    """``Sequence.status``: whether the daemon runs it."""

    ACTIVE = "active"
    PAUSED = "paused"


class EnrolmentStatus(StrEnum):
    """``SequenceEnrolment.status``: one subscriber's way through a sequence."""

    ACTIVE = "active"            # a next step is due at next_due_at
    FINISHED = "finished"        # every step reached (sent, or skipped and recorded)
    STOPPED = "stopped"          # left the list, unsubscribed, suppressed: no more steps


class LedgerStatus(StrEnum):
    """``Delivery.status``: pending -> sending -> sent | failed | unknown; or skipped."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"          # the provider may have it: never resent blindly
    SKIPPED = "skipped"
    # An A/B campaign's rest, waiting for the winner (newsletter.engine.abtests): never claimed until then.
    HELD = "held"


class CheckResult(StrEnum):
    """The result of one ``newsletter doctor`` check."""

    OK = "ok"
    WARN = "warn"  # works, but receivers may hold it against you
    FAIL = "fail"  # receivers will reject or junk mail because of it
    UNKNOWN = "unknown"  # could not be checked (offline, resolver or relay unreachable)
    SKIPPED = "skipped"  # does not apply to this set-up


class TrackingMode(StrEnum):
    """``[tracking] mode``: how much a campaign's links and pixel may say about a reader.

    ``off``: links go straight to their targets, no pixel. ``aggregate``
    (the default): link-level counts only; every recipient gets the same
    links, naming the campaign and the link, never the person. ``personal``:
    per-delivery clicks and opens, only for subscribers whose tracking
    consent is recorded; the others get aggregate links.
    """

    OFF = "off"
    AGGREGATE = "aggregate"
    PERSONAL = "personal"


class FeedStatus(StrEnum):
    """``Feed.status``: whether the scheduler polls a blog's feed."""

    ACTIVE = "active"
    PAUSED = "paused"            # by hand, or by a jump of new items above the feed's limit


class FeedItemState(StrEnum):
    """``FeedItem.state``: what became of one item (post) of a feed."""

    BASELINE = "baseline"        # in the feed when it was first polled (or re-polled after a jump): never sent
    EDITION = "edition"          # in an edition: its campaign is ``FeedItem.campaign_id``


class FeedPollOutcome(StrEnum):
    """``FeedPoll.outcome``: what one poll of a feed did."""

    BASELINE = "baseline"        # first poll: the items were recorded, nothing sent
    EDITIONS = "editions"        # new items became editions (campaigns, or drafts)
    NOTHING_NEW = "nothing-new"
    NOT_MODIFIED = "not-modified"  # HTTP 304 to the conditional GET
    PAUSED = "paused"            # too many new items at once: the feed was paused, nothing sent
    ERROR = "error"              # HTTP error, timeout, too large, not a feed, a pre-flight error
