"""Messages and recipients for the delivery tests and benchmarks."""

from __future__ import annotations

from newsletter.delivery.message import Message, Recipient
from newsletter.delivery.mime import unsubscribe_headers

SENDER = "Clinic News <news@clinic.example>"
BASE = "https://news.clinic.example"


def make_message(html: str | None = None, **overrides) -> Message:
    """An edition with merge tokens in subject, text and HTML."""
    html = html or (
        "<html><body><p>Dear %%name%%,</p>"
        + "<p>" + "A long line of article text without breaks. " * 60 + "</p>"
        + '<p><a href="%%unsubscribe_url%%">Unsubscribe</a></p></body></html>'
    )
    options = dict(
        subject="News for %%name:raw%%",
        from_email=SENDER,
        html=html,
        text="Dear %%name:raw%%,\n\nThe article.\n\nUnsubscribe: %%unsubscribe_url:raw%%\n",
        tags=["newsletter", "campaign-7"],
        metadata={"campaign_id": "7"},
    )
    options.update(overrides)
    return Message(**options)


def make_recipient(index: int, **overrides) -> Recipient:
    url = f"{BASE}/unsubscribe/token{index}"
    options = dict(
        email=f"reader{index}@example.org",
        message_id=f"c7.s{index}.abc@clinic.example",
        name=f"Reader {index}",
        merge_data={"name": f"Reader {index}", "email": f"reader{index}@example.org", "unsubscribe_url": url},
        headers=unsubscribe_headers(url),
        metadata={"subscriber_id": str(index)},
    )
    options.update(overrides)
    return Recipient(**options)


def make_recipients(count: int, start: int = 0) -> list[Recipient]:
    return [make_recipient(i) for i in range(start, start + count)]
