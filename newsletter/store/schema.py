"""Every model module, imported so that ``Base.metadata`` holds the whole schema.

Models live beside the queries that use them; the migrations must match the
union (tests/test_store.py compares them).
"""

from newsletter.store import (  # noqa: F401
    abtests,
    api,
    distributed,
    events,
    feeds,
    forms,
    models,
    scheduling,
    sequences,
    signups,
    tracking,
    webhooks,
)
from newsletter.store.models import Base

metadata = Base.metadata
