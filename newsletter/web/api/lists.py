"""``/api/lists`` and ``/api/segments``: lists with their counts, segments and how many they select."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from newsletter.web.api import models
from newsletter.web.api.app import ListsRead, SegmentsRead, problem_responses

router = APIRouter()
Name = Annotated[str, Path(max_length=100)]


@router.get("/lists", response_model=list[models.MailingList], tags=["lists"])
def all_lists(request: Request, token: ListsRead) -> list[dict]:
    """Every list with its member counts (confirmed, pending, unsubscribed), oldest first."""
    from newsletter.usecases.lists import all_lists as rows

    return rows(request.app.state.store)


@router.get("/lists/{name}", response_model=models.MailingList, tags=["lists"], responses=problem_responses(404))
def one_list(request: Request, token: ListsRead, name: Name) -> dict:
    """One list with its member counts."""
    from newsletter.usecases.lists import one_list as row

    return row(request.app.state.store, name)


@router.get("/segments", response_model=list[models.Segment], tags=["segments"])
def all_segments(request: Request, token: SegmentsRead) -> list[dict]:
    """Every saved segment (newsletter segments create)."""
    from newsletter.usecases.segments import all_segments as rows

    return rows(request.app.state.store)


@router.get("/segments/{name}/count", response_model=models.SegmentCount, tags=["segments"],
            responses=problem_responses(404))
def count_segment(request: Request, token: SegmentsRead, name: Name) -> dict:
    """How many the segment selects now (each person once), per list, and the dormant left out."""
    from newsletter.usecases.segments import describe_segment

    return describe_segment(request.app.state.store, name)
