"""Moved to :mod:`newsletter.vocabulary.addresses` (issue 12); kept for modules not yet moved."""

from newsletter.vocabulary.addresses import address_hash, address_key, normalise_address  # noqa: F401  # moved to newsletter.vocabulary (issue 12)
