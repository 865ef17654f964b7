"""Provider events and web endpoint state: models and queries (filled in by the public-endpoints work)."""
