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


def realistic_html(size: int = 30_000) -> str:
    """An MJML-like newsletter (nested tables, inline styles, long lines) of about ``size`` bytes.

    Merge tokens: ``%%name%%`` near the top, ``%%unsubscribe_url%%`` in the footer.
    No ``{{``, ``{%`` or ``{#`` so mailmerge's Jinja2 can take it as it is.
    """
    head = (
        '<!doctype html><html xmlns="http://www.w3.org/1999/xhtml"><head><title>Clinic News</title>'
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<style type="text/css">body { margin:0;padding:0; } table, td { border-collapse:collapse; } '
        '@media only screen and (min-width:480px) { .mj-column-per-100 { width:100% !important; max-width: 100%; } }'
        "</style></head><body style=\"word-spacing:normal;background-color:#f4f4f4;\">"
        "<div style=\"background-color:#f4f4f4;\">"
        '<table align="center" border="0" cellpadding="0" cellspacing="0" role="presentation" style="width:100%;">'
        '<tbody><tr>'
        '<td style="direction:ltr;font-size:0px;padding:20px 0;text-align:center;">'
        '<p style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;color:#333333;">'
        'Dear %%name%%,</p>'
    )
    block = (
        '<tr><td align="left" style="font-size:0px;padding:10px 25px;word-break:break-word;">'
        '<div style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;text-align:left;'
        'color:#333333;">'
        "Ketamine clinics have grown quickly, and our readers ask what the evidence says "
        "about dosing, safety and cost. "
        "This paragraph stands in for one of the article's, long and without line breaks, as mjml-python writes them "
        '&ndash; with '
        '<a href="https://news.clinic.example/articles/ketamine?utm_source=newsletter&amp;utm_medium=email" '
        'style="color:#1a73e8;text-decoration:underline;">a tracked link</a> in it.</div></td></tr>'
    )
    foot = (
        '<p style="font-family:Helvetica,Arial,sans-serif;font-size:12px;color:#888888;">Clinic News, 1 Main Street, '
        'Springfield. <a href="%%unsubscribe_url%%" style="color:#888888;">Unsubscribe</a></p>'
        "</td></tr></tbody></table></div></body></html>"
    )
    blocks = max(1, (size - len(head) - len(foot)) // len(block))
    return head + '<table role="presentation" style="width:100%;"><tbody>' + block * blocks + "</tbody></table>" + foot
