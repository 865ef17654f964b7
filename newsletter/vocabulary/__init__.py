"""The words of the domain, at the bottom of the layers: statuses and addresses.

Everything above (store, audience, engine, command line) takes its status
values and its address normalisation from here; this package imports
nothing of the project but :mod:`newsletter.errors`.
"""

from newsletter.vocabulary.addresses import address_hash, address_key, normalise_address
from newsletter.vocabulary.statuses import (
    ArrivalStatus,
    CampaignStatus,
    CheckResult,
    ConsentAction,
    EnrolmentStatus,
    FeedItemState,
    FeedPollOutcome,
    FeedStatus,
    LedgerStatus,
    MembershipStatus,
    SequenceStatus,
    SubscriberStatus,
    SuppressionReason,
    TrackingMode,
)

__all__ = [
    "ArrivalStatus",
    "CheckResult",
    "CampaignStatus",
    "ConsentAction",
    "EnrolmentStatus",
    "FeedItemState",
    "FeedPollOutcome",
    "FeedStatus",
    "LedgerStatus",
    "MembershipStatus",
    "SequenceStatus",
    "SubscriberStatus",
    "SuppressionReason",
    "TrackingMode",
    "address_hash",
    "address_key",
    "normalise_address",
]
