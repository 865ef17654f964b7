"""Building the MIME message one recipient receives.

- multipart/alternative, text first then HTML, both quoted-printable: mjml's
  HTML has lines far over SMTP's 998-byte limit, and QP keeps every line short;
- ``List-Unsubscribe`` as plain ASCII ``<https://...>``: the policy allows
  998-byte header lines so Python never RFC 2047-encodes the long URL (mailbox
  providers ignore an encoded one);
- ``as_file_bytes`` uses the platform's LF line endings, ``as_smtp_bytes`` CRLF;
- addresses go through ``newsletter.delivery.wire`` (IDNA-encoded domains,
  names without control characters); a message to or from an address with a
  non-ASCII local part is written as an internationalised message (RFC 6532:
  raw UTF-8 headers), which needs SMTPUTF8 on the wire. ``needs_smtputf8``
  tells which messages are.

:class:`MimeRenderer` is the fast path for sending one edition to many
recipients: it writes the same message straight to bytes, a sixth of the
cost of ``build_mime`` + ``as_smtp_bytes`` (the email package's pure-Python
quoted-printable encoder dominates those; ``binascii.b2a_qp`` is C).
"""

from __future__ import annotations

import binascii
import random
import re
import time
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid

from newsletter.delivery.merge import MergeTemplate
from newsletter.delivery.message import Message, Recipient
from newsletter.delivery.wire import clean_name, header_address, needs_smtputf8, one_line, parse_mailbox, wire_address

# Bodies are encoded under the default policy (quoted-printable lines of 76);
# headers are written out under these, where a line may be 998 bytes long.
FILE_POLICY = policy.default.clone(max_line_length=998)
SMTP_POLICY = policy.SMTP.clone(max_line_length=998)
# Internationalised messages (RFC 6532): headers in raw UTF-8, never RFC 2047.
MESSAGE_POLICY_UTF8 = policy.default.clone(utf8=True)
FILE_POLICY_UTF8 = FILE_POLICY.clone(utf8=True)
SMTP_POLICY_UTF8 = SMTP_POLICY.clone(utf8=True)


def new_message_id(sender_address: str) -> str:
    """A unique Message-ID (without angle brackets) in the sender's domain."""
    domain = sender_address.rpartition("@")[2] or "localhost"
    return make_msgid(domain=domain)[1:-1]


_ID_PART = re.compile(r"[^A-Za-z0-9-]+")


def identity_part(value: str, *, limit: int = 60) -> str:
    """``value`` as one dot-atom label / Feedback-ID field: ASCII letters, digits and ``-`` only."""
    return _ID_PART.sub("-", value).strip("-")[:limit].strip("-") or "x"


def list_headers(*, list_name: str, display_name: str, domain: str, campaign_id: int, workspace: str,
                 sender_id: str, complaints_address: str | None = None) -> dict[str, str]:
    """The bulk-mail identity headers of one campaign to one list (Gmail's sender guidelines).

    - ``List-Id`` (RFC 2919): ``"Display name" <list-name.domain>``, the
      same for every campaign to the list, so receivers tell lists apart;
    - ``Feedback-ID`` (Gmail's feedback loop): ``campaign:list:workspace:sender``,
      fields without ``:`` (the first field varies most, as Gmail asks);
    - ``CFBL-Address`` (RFC 9477) with ``report=arf``, and ``CFBL-Feedback-ID``,
      when a complaints mailbox is configured: receivers send complaint
      reports (ARF) there, which ``newsletter bounces read`` applies.
    """
    quoted = display_name.replace("\\", "").replace('"', "").replace("\r", " ").replace("\n", " ").strip()
    list_id = f"{identity_part(list_name).lower()}.{domain.lower()}"
    headers = {"List-Id": f'"{quoted}" <{list_id}>' if quoted else f"<{list_id}>",
               "Feedback-ID": ":".join(identity_part(part) for part in
                                       (f"c{campaign_id}", list_name, workspace, sender_id))}
    if complaints_address:
        headers["CFBL-Address"] = f"{complaints_address}; report=arf"
        headers["CFBL-Feedback-ID"] = headers["Feedback-ID"]
    return headers


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
    Raises ``ValueError`` (:class:`~newsletter.delivery.wire.UnsendableAddress`
    among others) when this recipient's message cannot be written: the
    transports make that recipient's result, not the batch's.
    """
    values = recipient.merge_data
    mime = EmailMessage(policy=policy.default)
    mime["Subject"] = one_line((subject or MergeTemplate(message.subject)).render(values))
    sender = header_address(*parse_mailbox(message.from_email))
    to = to_header_value(recipient)
    mime["From"] = sender
    mime["To"] = to
    if message.reply_to:
        reply_to = header_address(*parse_mailbox(message.reply_to))
        mime["Reply-To"] = reply_to
    else:
        reply_to = None
    if any(a is not None and not a.username.isascii() for a in (sender, to, reply_to)):
        mime.policy = MESSAGE_POLICY_UTF8  # as_file_bytes / as_smtp_bytes follow it
    mime["Date"] = format_datetime(_now())
    mime["Message-ID"] = f"<{recipient.message_id}>"
    for name, value in {**message.headers, **recipient.headers}.items():
        mime[name] = value
    mime.set_content((text or MergeTemplate(message.text)).render(values), subtype="plain", cte="quoted-printable")
    mime.add_alternative((html or MergeTemplate(message.html)).render(values), subtype="html", cte="quoted-printable")
    return mime


def to_header_value(recipient: Recipient) -> Address:
    """The To value: an Address built from its parts, so that commas and
    non-ASCII in the name are quoted or encoded (a bare formataddr string is
    re-parsed by the header registry and a comma would split it in two), the
    domain is IDNA-encoded and the name has no control characters."""
    return header_address(recipient.name, wire_address(recipient.email))


def is_internationalised(mime: EmailMessage) -> bool:
    """Whether ``mime`` (from :func:`build_mime`) must go out with SMTPUTF8."""
    return isinstance(mime.policy, EmailPolicy) and mime.policy.utf8


def as_file_bytes(mime: EmailMessage) -> bytes:
    return mime.as_bytes(policy=FILE_POLICY_UTF8 if is_internationalised(mime) else FILE_POLICY)


def as_smtp_bytes(mime: EmailMessage) -> bytes:
    return mime.as_bytes(policy=SMTP_POLICY_UTF8 if is_internationalised(mime) else SMTP_POLICY)


def _now() -> datetime:
    return datetime.now(UTC)


class MimeRenderer:
    """One edition rendered to bytes for many recipients, fast.

    ``render(recipient)`` is equivalent to ``as_smtp_bytes(build_mime(...))``
    (``linesep="\n"``: to ``as_file_bytes``): the same headers, structure and
    decoded parts. Quoted-printable bodies keep every line within 76 bytes;
    plain ASCII header values within 998 bytes are written as they are, any
    other value is folded (and RFC 2047-encoded where needed) by the same
    email policy ``build_mime`` uses. Header values with CR or LF raise
    ``ValueError``, as the email package does. Addresses and names go
    through ``newsletter.delivery.wire`` as in ``build_mime``; an address
    with a non-ASCII local part is written in raw UTF-8 (RFC 6532: the
    message then needs SMTPUTF8, see :meth:`needs_smtputf8`). Thread-safe.
    """

    def __init__(self, message: Message, linesep: str = "\r\n"):
        self.message = message
        self.linesep = linesep
        self._policy = SMTP_POLICY if linesep == "\r\n" else FILE_POLICY
        self._utf8_policy = self._policy.clone(utf8=True)
        self._subject = MergeTemplate(message.subject)
        self._html = MergeTemplate(message.html)
        self._text = MergeTemplate(message.text)
        self._boundary = "=" * 15 + f"{random.randrange(10**18, 10**19)}" + "=="
        sender = header_address(*parse_mailbox(message.from_email))
        #: Every message needs SMTPUTF8 when the sender's own local part is not ASCII.
        self.sender_utf8 = not sender.username.isascii()
        self._from = self._address_header("From", sender)
        reply_to = header_address(*parse_mailbox(message.reply_to)) if message.reply_to else None
        self._reply_to = self._address_header("Reply-To", reply_to) if reply_to else b""
        self.sender_utf8 = self.sender_utf8 or bool(reply_to and not reply_to.username.isascii())
        nl, b = linesep, self._boundary
        self._multipart = (
            f"MIME-Version: 1.0{nl}Content-Type: multipart/alternative; boundary=\"{b}\"{nl}{nl}"
            f"--{b}{nl}Content-Type: text/plain; charset=\"utf-8\"{nl}"
            f"Content-Transfer-Encoding: quoted-printable{nl}{nl}"
        ).encode()
        self._between = (
            f"{nl}--{b}{nl}Content-Type: text/html; charset=\"utf-8\"{nl}"
            f"Content-Transfer-Encoding: quoted-printable{nl}{nl}"
        ).encode()
        self._end = f"{nl}--{b}--{nl}".encode()
        self._date = (0, b"")

    def header(self, name: str, value: str | Address) -> bytes:
        """One header line (folded if it must be), as bytes with the line separator."""
        if isinstance(value, str):
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} may not contain a line break")
            if value.isascii() and len(name) + len(value) + 2 <= 998:
                return f"{name}: {value}{self.linesep}".encode("ascii")
        folded: str = self._policy.header_factory(name, value).fold(policy=self._policy)
        return folded.encode("ascii", "surrogateescape")

    def _address_header(self, name: str, address: Address) -> bytes:
        if address.username.isascii():
            return self.header(name, address)
        folded: str = self._utf8_policy.header_factory(name, address).fold(policy=self._utf8_policy)
        return folded.encode("utf-8", "surrogateescape")

    def needs_smtputf8(self, address: str) -> bool:
        """Whether the message to ``address`` (a wire address) needs SMTPUTF8."""
        return self.sender_utf8 or needs_smtputf8(address)

    def render(self, recipient: Recipient, address: str | None = None) -> bytes:
        """The complete message for ``recipient``, merge fields filled in.

        ``address`` is the recipient's :func:`~newsletter.delivery.wire.wire_address`
        when the caller has it already. Raises ``ValueError`` when this
        recipient's message cannot be written.
        """
        values = recipient.merge_data
        head = [
            self.header("Subject", one_line(self._subject.render(values))),
            self._from,
            self._to(recipient, address or wire_address(recipient.email)),
            self._reply_to,
            self._date_header(),
            self.header("Message-ID", f"<{recipient.message_id}>"),
        ]
        headers = self.message.headers
        for name, value in ({**headers, **recipient.headers} if headers else recipient.headers).items():
            head.append(self.header(name, value))
        return b"".join((
            *head,
            self._multipart,
            self._qp(self._text.render(values)),
            self._between,
            self._qp(self._html.render(values)),
            self._end,
        ))

    def _to(self, recipient: Recipient, address: str) -> bytes:
        name = recipient.name
        if address.isascii() and (not name or (name.isascii() and name.isprintable())):
            # formataddr quotes an ASCII name exactly as the policy would, at a tenth of the cost.
            return self.header("To", formataddr((clean_name(name), address)) if name else address)
        return self._address_header("To", header_address(name, address))

    def _qp(self, text: str) -> bytes:
        """``text`` quoted-printable encoded, ending with a line break, in our line endings."""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.endswith("\n"):
            text += "\n"
        encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
        return encoded.replace(b"\n", b"\r\n") if self.linesep == "\r\n" else encoded

    def _date_header(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:  # formatting a date per message shows in profiles
            self._date = (now, f"Date: {format_datetime(_now())}{self.linesep}".encode())
        return self._date[1]
