"""Provider events after they are parsed: the provider-neutral pipeline (``pipeline``)."""
