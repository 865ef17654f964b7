"""Reading subscriber exports: plain CSV and the formats people bring with them.

Each format is a function turning one CSV row (a dict of header -> cell) into
an :class:`ImportRow`; ``detect_format`` picks one from the header row.

Formats and how they are recognised (headers compared case-insensitively):

- ``newsletter``: our own export (``subscribers export``): ``email``,
  ``status``, ``lists``, ``attributes`` and ``created_at``, and since
  consent round-trips, ``list_statuses`` (JSON: list name -> confirmed,
  pending or unsubscribed) and ``suppressed`` (the suppression reason). The
  status of each list and of the address is restored as it was: nobody who
  had left is subscribed again. Cells the export neutralised against
  spreadsheet formulas get their leading quote back off.
- ``mailchimp``: an "Email Address" column. "First Name"/"Last Name" make the
  name, TIMEZONE the time zone, OPTIN_IP the consent IP, TAGS (a quoted comma
  list: ``"vip","early adopter"``) the tags, OPTIN_TIME and CONFIRM_TIME the
  membership's consent times (UTC); the *unsubscribed*
  export (UNSUB_TIME) imports as unsubscribed, the *cleaned* one (CLEAN_TIME)
  as bounced; other columns become attributes.
- ``listmonk``: ``email``, ``name`` and an ``attributes`` column holding JSON
  (its export adds ``uuid`` and ``status``; "blocklisted" imports as unsubscribed).
- ``substack``: ``email`` with ``active_subscription``/``email_disabled``;
  a disabled address imports as unsubscribed; ``created_at`` is when they
  subscribed (the consent time).
- ``buttondown``: ``email`` (or ``email_address``) with ``creation_date`` or a
  subscriber ``type``; "unsubscribed" imports as unsubscribed, "unactivated"
  as pending; ``metadata`` JSON becomes attributes, ``tags`` tags and
  ``creation_date`` the consent time.
- ``csv``: any CSV with an email column (email, e-mail, email address, mail);
  ``name``, ``first_name``/``last_name`` and ``timezone`` are understood,
  every other non-empty column becomes an attribute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.errors import InputError
from newsletter.vocabulary import ArrivalStatus as Arrival
from newsletter.vocabulary import MembershipStatus, SubscriberStatus

FORMATS = ("csv", "newsletter", "mailchimp", "substack", "listmonk", "buttondown")
EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail", "emailaddress")



@dataclass
class ImportRow:
    """One person read from a file, before validation of the address."""

    email: str
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None
    status: str = Arrival.SUBSCRIBED
    ip: str | None = None
    # our own export: list name -> membership status to restore (None: not given)
    lists: dict[str, str] | None = None
    tags: tuple[str, ...] = ()
    # when they opted in / confirmed, as the file says it (checked and converted by the parser)
    opted_in: str | None = None
    confirmed: str | None = None


Row = dict[str, str]


def detect_format(headers: list[str]) -> str:
    """The format a header row belongs to; raises InputError without an email column."""
    keys = {h.strip().lower() for h in headers}
    if "email" in keys and ("list_statuses" in keys or {"status", "lists", "attributes", "created_at"} <= keys):
        return "newsletter"
    if "email address" in keys:
        return "mailchimp"
    if "attributes" in keys and "email" in keys:
        return "listmonk"
    if keys & {"active_subscription", "email_disabled"}:
        return "substack"
    if keys & {"email", "email_address"} and keys & {"creation_date", "subscriber_type", "secondary_id"}:
        return "buttondown"
    if keys & set(EMAIL_HEADERS):
        return "csv"
    raise InputError(
        f"no email column in the header ({', '.join(headers[:8]) or 'empty'})",
        hint="the first line must name the columns, one of them 'email'",
    )


def cells_reader(format_name: str, keys: list[str]) -> Callable[[list[str]], ImportRow]:
    """A function mapping one row's stripped cells (in ``keys`` order) to an ImportRow.

    Plain CSV, the common case of big files, is read by column position; the
    other formats through a dict of the row.
    """
    if format_name == "csv":
        return _csv_cells_reader(keys)
    read = row_reader(format_name)
    return lambda cells: read(dict(zip(keys, cells, strict=False)))


def _csv_cells_reader(keys: list[str]) -> Callable[[list[str]], ImportRow]:
    def index(*names: str) -> int | None:
        return next((keys.index(n) for n in names if n in keys), None)

    email_at = [keys.index(n) for n in EMAIL_HEADERS if n in keys]
    name_at = index("name")
    first_at, last_at = index("first_name", "first name"), index("last_name", "last name")
    zone_at = index("timezone", "time_zone")
    extra = [(i, key) for i, key in enumerate(keys) if key and key not in _CSV_USED]

    def read(cells: list[str]) -> ImportRow:
        width = len(cells)
        email = next((cells[i] for i in email_at if i < width and cells[i]), "")
        name = cells[name_at] if name_at is not None and name_at < width else ""
        if not name and (first_at is not None or last_at is not None):
            parts = [cells[i] for i in (first_at, last_at) if i is not None and i < width and cells[i]]
            name = " ".join(parts)
        zone = cells[zone_at] if zone_at is not None and zone_at < width else None
        attributes = {key: cells[i] for i, key in extra if i < width and cells[i]}
        return ImportRow(email=email, name=name, attributes=attributes, timezone=zone or None)

    return read


def row_reader(format_name: str) -> Callable[[Row], ImportRow]:
    """The function that maps a row (keys lower-cased and stripped) of ``format_name``."""
    return {
        "csv": read_csv_row,
        "newsletter": read_newsletter_row,
        "mailchimp": read_mailchimp_row,
        "substack": read_substack_row,
        "listmonk": read_listmonk_row,
        "buttondown": read_buttondown_row,
    }[format_name]


def _email(row: Row) -> str:
    for key in EMAIL_HEADERS:
        if row.get(key):
            return row[key]
    return ""


def _extra(row: Row, used: set[str]) -> dict[str, str]:
    return {key: value for key, value in row.items() if value and key not in used and key}


def _joined_name(row: Row, first: str, last: str) -> str:
    return " ".join(part for part in (row.get(first, ""), row.get(last, "")) if part).strip()


def _json_object(text: str, column: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{column} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InputError(f"{column} must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


_CSV_USED = set(EMAIL_HEADERS) | {"name", "first_name", "last_name", "first name", "last name", "timezone", "time_zone"}
# The columns plain CSV reads itself; every other non-empty one becomes an attribute.
CSV_COLUMNS = frozenset(_CSV_USED)


def read_csv_row(row: Row) -> ImportRow:
    name = (row.get("name") or _joined_name(row, "first_name", "last_name")
            or _joined_name(row, "first name", "last name"))
    return ImportRow(
        email=_email(row),
        name=name,
        attributes=_extra(row, _CSV_USED),
        timezone=row.get("timezone") or row.get("time_zone") or None,
    )


_MAILCHIMP_USED = {"email address", "first name", "last name", "timezone", "optin_ip", "confirm_ip", "tags",
                   "optin_time", "confirm_time"}


def split_tags(cell: str) -> tuple[str, ...]:
    """The tags of one cell: a comma list whose items may be quoted (Mailchimp: ``"vip","early adopter"``),
    or a JSON array (``["vip"]``)."""
    import csv

    cell = cell.strip()
    if not cell:
        return ()
    if cell.startswith("["):
        try:
            items = json.loads(cell)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list):
            return tuple(str(item) for item in items if str(item).strip())
    return tuple(item for item in next(csv.reader([cell], skipinitialspace=True)) if item.strip())


def read_mailchimp_row(row: Row) -> ImportRow:
    status = Arrival.SUBSCRIBED
    if row.get("unsub_time"):
        status = Arrival.UNSUBSCRIBED
    elif row.get("clean_time"):
        status = Arrival.BOUNCED
    return ImportRow(
        email=row.get("email address", ""),
        name=_joined_name(row, "first name", "last name"),
        attributes=_extra(row, _MAILCHIMP_USED),
        timezone=row.get("timezone") or None,
        status=status,
        ip=row.get("confirm_ip") or row.get("optin_ip") or None,
        # Mailchimp's audience export: TAGS, OPTIN_TIME, CONFIRM_TIME (UTC, "2019-05-14 19:36:42"); see
        # https://mailchimp.com/developer/marketing/docs/account-exports/ and Mailchimp's "export your audience".
        tags=split_tags(row.get("tags", "")),
        opted_in=row.get("optin_time") or None,
        confirmed=row.get("confirm_time") or None,
    )


def read_substack_row(row: Row) -> ImportRow:
    disabled = row.get("email_disabled", "").lower() in ("true", "1", "yes")
    return ImportRow(
        email=_email(row),
        name=row.get("name", ""),
        attributes=_extra(row, set(EMAIL_HEADERS) | {"name", "email_disabled", "created_at"}),
        status=Arrival.UNSUBSCRIBED if disabled else Arrival.SUBSCRIBED,
        # Substack's "Export" of the email list: email, active_subscription, expiry, plan, email_disabled,
        # created_at (when they subscribed); its dashboard guide: https://on.substack.com/p/subscriber-dashboard-guide
        opted_in=row.get("created_at") or None,
    )


def read_listmonk_row(row: Row) -> ImportRow:
    status = row.get("status", "").lower()
    return ImportRow(
        email=row.get("email", ""),
        name=row.get("name", ""),
        attributes=_json_object(row.get("attributes", ""), "attributes"),
        status=Arrival.UNSUBSCRIBED if status == "blocklisted" else Arrival.SUBSCRIBED,
    )


_BUTTONDOWN_STATUS = {"unsubscribed": Arrival.UNSUBSCRIBED, "unactivated": Arrival.PENDING,
                      "removed": Arrival.UNSUBSCRIBED}


def read_buttondown_row(row: Row) -> ImportRow:
    kind = (row.get("subscriber_type") or row.get("type") or "").lower()
    attributes = _json_object(row.get("metadata", ""), "metadata")
    for key in ("notes", "source", "referrer_url"):
        if row.get(key):
            attributes[key] = row[key]
    # Buttondown's subscriber export: email (email_address), creation_date, tags, metadata, notes,
    # referrer_url, type (https://docs.buttondown.com/api-subscribers-list and its CSV export)
    return ImportRow(
        email=_email(row),
        name=row.get("name", ""),
        attributes=attributes,
        status=_BUTTONDOWN_STATUS.get(kind, Arrival.SUBSCRIBED),
        tags=split_tags(row.get("tags", "")),
        opted_in=row.get("creation_date") or None,
    )


# our export's subscriber status (or suppression reason) -> how the person arrives
_OWN_STATUS: dict[str, Arrival] = {
               SubscriberStatus.ACTIVE: Arrival.SUBSCRIBED, SubscriberStatus.UNSUBSCRIBED: Arrival.UNSUBSCRIBED,
               SubscriberStatus.BOUNCED: Arrival.BOUNCED, SubscriberStatus.COMPLAINED: Arrival.COMPLAINED}
_OWN_COLUMNS = {"email", "name", "status", "timezone", "lists", "list_statuses", "suppressed", "attributes",
                "created_at", "tags"}
_NEUTRALISED = ("'=", "'+", "'-", "'@", "'\t", "'\r", "''")


def unneutralise(cell: str) -> str:
    """Undo the export's protection against spreadsheet formulas (a leading quote)."""
    return cell[1:] if cell.startswith(_NEUTRALISED) else cell


def read_newsletter_row(row: Row) -> ImportRow:
    """A row of ``subscribers export`` (CSV); older exports without list_statuses too."""
    row = {key: unneutralise(value) for key, value in row.items()}
    status_text = row.get("status", "").lower() or SubscriberStatus.ACTIVE
    if status_text not in _OWN_STATUS:
        raise InputError(f"unknown status {status_text!r}", hint=f"use one of {', '.join(_OWN_STATUS)}")
    status = _OWN_STATUS[status_text]
    suppressed = row.get("suppressed", "").lower()
    if status == Arrival.SUBSCRIBED and suppressed:  # suppressed everywhere: the address stays off every list
        status = _OWN_STATUS.get(suppressed, Arrival.UNSUBSCRIBED)
    if row.get("list_statuses"):
        lists = _json_object(row["list_statuses"], "list_statuses")
    else:  # an export from before list_statuses: every list shares the address's status
        each = MembershipStatus.CONFIRMED if status == Arrival.SUBSCRIBED else MembershipStatus.UNSUBSCRIBED
        lists = {name.strip(): each for name in row.get("lists", "").split(";") if name.strip()}
    for name, list_status in lists.items():
        if list_status not in tuple(MembershipStatus):
            raise InputError(f"list {name[:40]!r} has unknown status {list_status!r}",
                             hint=f"use one of {', '.join(MembershipStatus)}")
    if status != Arrival.SUBSCRIBED:  # whoever left everything has left each list too
        lists = {name: MembershipStatus.UNSUBSCRIBED for name in lists}
    attributes = _json_object(row.get("attributes", ""), "attributes")
    attributes.update(_extra(row, _OWN_COLUMNS))
    return ImportRow(email=row.get("email", ""), name=row.get("name", ""), attributes=attributes,
                     timezone=row.get("timezone") or None, status=status, lists=lists,
                     tags=split_tags(row.get("tags", "")))
