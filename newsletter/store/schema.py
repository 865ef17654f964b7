"""Every model module, imported so that ``Base.metadata`` holds the whole schema.

Models live beside the queries that use them; the migrations must match the
union (tests/test_store.py compares them).
"""

from newsletter.store import abtests, distributed, events, feeds, models, scheduling, sequences, tracking  # noqa: F401
from newsletter.store.models import Base

metadata = Base.metadata
