"""Building the MIME message one recipient receives.

- multipart/alternative, text first then HTML, both quoted-printable: mjml's
  HTML has lines far over SMTP's 998-byte limit, and QP keeps every line short;
- ``List-Unsubscribe`` as plain ASCII ``<https://...>``: the policy allows
  998-byte header lines so Python never RFC 2047-encodes the long URL (mailbox
  providers ignore an encoded one);
- ``as_file_bytes`` uses the platform's LF line endings, ``as_smtp_bytes`` CRLF.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from newsletter.compose.merge import MergeTemplate
from newsletter.delivery.message import Message, Recipient

# Bodies are encoded under the default policy (quoted-printable lines of 76);
# headers are written out under these, where a line may be 998 bytes long.
FILE_POLICY = policy.default.clone(max_line_length=998)
SMTP_POLICY = policy.SMTP.clone(max_line_length=998)


def new_message_id(sender_address: str) -> str:
    """A unique Message-ID (without angle brackets) in the sender's domain."""
    domain = sender_address.rpartition("@")[2] or "localhost"
    return make_msgid(domain=domain)[1:-1]


def unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    """The RFC 8058 one-click headers for a recipient's HTTPS unsubscribe URL."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def build_mime(
    message: Message,
    recipient: Recipient,
    html: MergeTemplate | None = None,
    text: MergeTemplate | None = None,
    subject: MergeTemplate | None = None,
) -> EmailMessage:
    """The complete message for ``recipient``, merge fields filled in.

    Pass pre-split templates when building many messages of one edition.
    """
    values = recipient.merge_data
    mime = EmailMessage(policy=policy.default)
    mime["Subject"] = (subject or MergeTemplate(message.subject)).render(values)
    mime["From"] = message.from_email
    mime["To"] = formataddr((recipient.name, recipient.email)) if recipient.name else recipient.email
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Date"] = format_datetime(_now())
    mime["Message-ID"] = f"<{recipient.message_id}>"
    for name, value in {**message.headers, **recipient.headers}.items():
        mime[name] = value
    mime.set_content((text or MergeTemplate(message.text)).render(values), subtype="plain", cte="quoted-printable")
    mime.add_alternative((html or MergeTemplate(message.html)).render(values), subtype="html", cte="quoted-printable")
    return mime


def as_file_bytes(mime: EmailMessage) -> bytes:
    return mime.as_bytes(policy=FILE_POLICY)


def as_smtp_bytes(mime: EmailMessage) -> bytes:
    return mime.as_bytes(policy=SMTP_POLICY)


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
