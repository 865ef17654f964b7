"""Lists as the HTTP API shows them: every list with its member counts, or one."""

from __future__ import annotations

from typing import Any


def all_lists(store) -> list[dict[str, Any]]:
    """Every list with its counts by membership status, oldest first (``lists list --json``)."""
    from newsletter.store.audience import list_counts

    with store.session() as session:
        return list_counts(session)


def one_list(store, name: str) -> dict[str, Any]:
    """One list with its counts; NotFound with a hint when there is none."""
    from newsletter.audience.fields import clean_list_name
    from newsletter.store.audience import get_list

    with store.session() as session:
        wanted = get_list(session, clean_list_name(name)).name
    return next(row for row in all_lists(store) if row["name"] == wanted)
