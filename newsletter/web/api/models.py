"""The API's request and response bodies (pydantic): they validate requests, shape answers and make the OpenAPI.

Lengths are the database's (the use cases check them again, with a hint);
unknown fields in a request are refused, so a typo is an error, not a silent
no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """An error, RFC 9457: ``detail`` is the CLI's message, ``hint`` what to do next."""

    type: str = Field(examples=["urn:newsletter:problem:not-found"])
    title: str
    status: int
    detail: str
    hint: str | None = None


# -- subscribers ------------------------------------------------------------------------------

class SubscriberCreate(Request):
    email: str = Field(max_length=320, examples=["ada@example.org"])
    name: str | None = Field(None, max_length=200)
    # "list" in JSON; named otherwise here, where ``list[str]`` below must still mean the built-in
    list_name: str | None = Field(None, alias="list", max_length=100,
                                  description="Put them on this list (created if missing).")
    attributes: dict[str, str] = Field(default_factory=dict, max_length=100)
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Paris"])
    tags: list[str] = Field(default_factory=list, max_length=100)
    confirmed: bool = Field(False, description="Mark them confirmed on a double opt-in list (you hold the proof).")
    resubscribe: bool = Field(False, description="Subscribe again an address that unsubscribed (they asked).")


class SubscriberUpdate(Request):
    name: str | None = Field(None, max_length=200)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=100, description="Merged into theirs.")
    timezone: str | None = Field(None, max_length=64)
    add_tags: list[str] = Field(default_factory=list, max_length=100)
    remove_tags: list[str] = Field(default_factory=list, max_length=100)


class Unsubscribe(Request):
    list: str | None = Field(None, max_length=100, description="Only this list; none: every list (suppressed).")


class ListMembership(BaseModel):
    name: str
    status: str


class MembershipOut(BaseModel):
    name: str
    status: str
    subscribed_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None


class ConsentOut(BaseModel):
    action: str
    list: str | None
    source: str
    ip: str | None
    at: datetime


class Subscriber(BaseModel):
    email: str
    name: str
    status: str
    timezone: str | None
    attributes: dict[str, Any]
    tags: list[str]
    lists: list[MembershipOut]
    consent: list[ConsentOut]
    suppressed: str | None
    created_at: datetime


class SubscriberCreated(BaseModel):
    email: str
    name: str
    status: str
    timezone: str | None
    attributes: dict[str, Any]
    created: bool = Field(description="True when added, false when they existed (and were updated).")
    list: ListMembership | None = Field(description="Their membership of the list named in the request.")
    confirm_url: str | None = Field(None, description="A pending double opt-in member confirms here.")


class SubscriberItem(BaseModel):
    email: str
    name: str
    status: str
    timezone: str | None
    created_at: datetime
    lists: list[ListMembership]


class SubscriberPage(BaseModel):
    items: list[SubscriberItem]
    next_cursor: str | None = Field(description="Pass it as ?cursor= for the next page; null on the last page.")


class RowNote(BaseModel):
    line: int
    reason: str


class ImportReport(BaseModel):
    added: int
    updated: int
    skipped: int
    invalid: int
    errors: list[RowNote] = Field(description="Rows not imported, with the reason (the header is line 1).")
    skipped_rows: list[RowNote]
    skipped_rows_left_off: int
    format: str
    dry_run: bool


class Unsubscribed(BaseModel):
    email: str
    left: list[str]
    suppressed: bool


# -- lists and segments -----------------------------------------------------------------------

class MailingList(BaseModel):
    name: str
    display_name: str
    public: bool
    double_opt_in: bool
    created_at: datetime
    confirmed: int
    pending: int
    unsubscribed: int


class Segment(BaseModel):
    name: str
    lists: list[str]
    where: str
    created_at: datetime


class SegmentCount(BaseModel):
    name: str
    lists: list[str]
    where: str
    count: int
    per_list: dict[str, int]
    dormant_left_out: int


# -- campaigns --------------------------------------------------------------------------------

class Article(Request):
    markdown: str = Field(max_length=1_000_000, description="The article: Markdown with YAML front matter.",
                          examples=["---\ntitle: Flu shots are here\n---\nBook yours at the front desk.\n"])
    theme: str | None = Field(None, max_length=100)


class CampaignSchedule(Article):
    list: str | None = Field(None, max_length=100)
    segment: str | None = Field(None, max_length=100)
    where: str | None = Field(None, max_length=2000, description="A filter over the list, e.g. tag:vip.")
    at: str = Field(max_length=64, examples=["2026-12-01 09:00"], description="ISO 8601, local time in tz.")
    tz: str | None = Field(None, max_length=64, examples=["Europe/Paris"])
    again: bool = False


class CampaignTest(Article):
    to: list[str] = Field(min_length=1, max_length=5, examples=[["editor@example.org"]])


class TestSent(BaseModel):
    subject: str
    sent_to: list[str]
    not_sent: list[str]


class Finding(BaseModel):
    severity: str
    code: str
    message: str


class CheckReport(BaseModel):
    subject: str
    ok: bool
    findings: list[Finding]


class CampaignScheduled(BaseModel):
    campaign_id: int
    status: str
    list: str
    subject: str
    audience: int
    scheduled_at: datetime


class Campaign(BaseModel):
    campaign_id: int
    status: str
    subject: str
    list: str | None
    scheduled_at: datetime | None
    report: dict[str, Any]


class Cancelled(BaseModel):
    campaign_id: int
    status: str


# -- transactional --------------------------------------------------------------------------------

class Transactional(Request):
    to: str = Field(max_length=320, examples=["ada@example.org"])
    name: str | None = Field(None, max_length=200)
    subject: str = Field(max_length=200, examples=["Your appointment on %%day%%"])
    markdown: str = Field(max_length=200_000, examples=["Hello %%name%%, see you on %%day%%."])
    data: dict[str, str] = Field(default_factory=dict, max_length=100,
                                 description="Values for the %%field%% tokens (escaped for the HTML part).")


class Sent(BaseModel):
    to: str
    message_id: str
    outcome: str
