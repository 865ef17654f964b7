"""The words of the domain, at the bottom of the layers: statuses and addresses.

Everything above (store, audience, engine, command line) takes its status
values and its address normalisation from here; this package imports
nothing of the project but :mod:`newsletter.errors`.
"""

from newsletter.vocabulary.addresses import address_hash, address_key, normalise_address
from newsletter.vocabulary.statuses import (
    ArrivalStatus,
    CampaignStatus,
    ConsentAction,
    FeedItemState,
    FeedPollOutcome,
    FeedStatus,
    LedgerStatus,
    MembershipStatus,
    SubscriberStatus,
    SuppressionReason,
)

__all__ = [
    "ArrivalStatus",
    "CampaignStatus",
    "ConsentAction",
    "FeedItemState",
    "FeedPollOutcome",
    "FeedStatus",
    "LedgerStatus",
    "MembershipStatus",
    "SubscriberStatus",
    "SuppressionReason",
    "address_hash",
    "address_key",
    "normalise_address",
]
