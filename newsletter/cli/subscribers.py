"""``newsletter subscribers ...``: manage subscribers from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.audience.formats import FORMATS
from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table
from newsletter.vocabulary import MembershipStatus, SubscriberStatus


def escape(text: str) -> str:
    """``text`` safe inside Rich markup: names and list names may hold ``[`` and ``]``."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)

# plain strings: click.Choice would match enum members by their names
STATUSES = [str(status) for status in (*SubscriberStatus, MembershipStatus.PENDING, MembershipStatus.CONFIRMED)]
TABLE_LIMIT = 500  # beyond this many rows, people get plain streamed lines instead of a table
REPORT_LIMIT = 20  # rows shown per kind (invalid, skipped) after an import; --json has them all


@click.group("subscribers")
def subscribers():
    """Add, import, export, list, show, unsubscribe and remove subscribers.

    \b
    Example:
      newsletter subscribers import subscribers/export.csv --list readers
    """


def _parse_attributes(values: tuple[str, ...]) -> dict[str, str]:
    from newsletter.errors import InputError

    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--attr {item!r} is not key=value", hint="write it as --attr city=Paris")
        result[key.strip()] = value
    return result


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default=None, help="The subscriber's name.")
@click.option("--list", "list_name", default=None, help="Put them on this list (created if missing).")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="An attribute; repeat for more.")
@click.option("--timezone", default=None, help="Their IANA time zone, e.g. Europe/Paris.")
@click.option("--confirmed", is_flag=True, help="Mark them confirmed on a double opt-in list.")
@click.option("--resubscribe", is_flag=True, help="Subscribe again an address that unsubscribed or was erased.")
@json_option
@pass_app
def add(app, email, name, list_name, attrs, timezone, confirmed, resubscribe, as_json):
    """Add or update one subscriber.

    \b
    Example:
      newsletter subscribers add ada@example.org --name "Ada" --list readers --attr city=London
    """
    from newsletter.audience.manage import add_subscriber
    from newsletter.audience.tokens import confirm_url

    result = add_subscriber(app.store, email, name=name, list_name=list_name, attributes=_parse_attributes(attrs),
                            timezone=timezone, confirmed=confirmed, resubscribe=resubscribe)
    data = {"email": result.email, "created": result.created, "list": list_name, "list_status": result.list_status}
    if result.list_status == MembershipStatus.PENDING and app.settings.base_url:
        data["confirm_url"] = confirm_url(app.settings, result.subscriber_id, result.list_id, result.email)
    if as_json:
        print_json(data)
        return
    verb = "Added" if result.created else "Updated"
    where = f" on {list_name} ({result.list_status})" if list_name else ""
    say(escape(f"{verb} {result.email}{where}"))
    if "confirm_url" in data:
        say(escape(f"They must confirm: {data['confirm_url']}"))


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--list", "list_name", default=None, help="Put everyone on this list (created if missing).")
@click.option("--format", "format_name", default="auto", show_default=True,
              type=click.Choice(["auto", *FORMATS]),
              help="The file's format; auto detects it from the header.")
@click.option("--dry-run", is_flag=True, help="Report what would change, write nothing.")
@click.option("--resubscribe", is_flag=True, help="Subscribe again addresses on the suppression list.")
@click.option("--encoding", default="utf-8", show_default=True, help="The file's text encoding.")
@json_option
@pass_app
def import_command(app, file, list_name, format_name, dry_run, resubscribe, encoding, as_json):
    """Import subscribers from a CSV, our own export, or an export of Mailchimp, Substack, listmonk or Buttondown.

    Bad and skipped rows are reported by line (the header is line 1) with the
    reason, and never stop the rest; the import is all or nothing if
    interrupted. Our own export restores each list's status: nobody who had
    left is subscribed again.

    \b
    Example:
      newsletter subscribers import mailchimp-export.csv --list readers --dry-run
    """
    import time

    from newsletter.audience.importer import import_subscribers
    from newsletter.cli._common import import_progress_text, progress

    started = time.monotonic()
    with progress(count=False) as bar:  # the bar follows bytes; beside it, MB, rows and rows per second
        task = bar.add_task("Importing", total=max(file.stat().st_size, 1) if file.is_file() else None, rate="")

        def on_progress(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, rate=import_progress_text(done, total, rows, time.monotonic() - started))

        report = import_subscribers(
            app.store, file, list_name=list_name, format_name=format_name, dry_run=dry_run,
            resubscribe=resubscribe, encoding=encoding, on_progress=on_progress,
        )
    if as_json:
        print_json(report.as_dict())
        return
    prefix = "Dry run, nothing written: would have " if dry_run else ""
    say(f"{prefix}added {report.added}, updated {report.updated}, skipped {report.skipped}, "
        f"invalid {report.invalid} ({report.format} format)")
    _report_rows("Invalid rows (not imported)", report.errors, report.invalid)
    _report_rows("Skipped rows", report.skipped_rows, report.skipped)


def _report_rows(title: str, rows: list[dict], total: int) -> None:
    """A table of ``{line, reason}`` rows on stderr, the first REPORT_LIMIT of ``total``."""
    from newsletter.cli._common import stderr_console

    if not total:
        return
    stderr_console().print(table(title, ["Line", "Reason"],
                                 [[row["line"], row["reason"]] for row in rows[:REPORT_LIMIT]]))
    shown = min(len(rows), REPORT_LIMIT)
    if total > shown:
        say(f"  ... and {total - shown} more (--json lists them)")


@subscribers.command("export")
@click.option("--list", "list_name", default=None, help="Only this list's members.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file (default: standard output).")
@click.option("--format", "format_name", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@pass_app
def export(app, list_name, status, output, format_name):
    """Export subscribers as CSV (safe to open in a spreadsheet) or JSON.

    \b
    Example:
      newsletter subscribers export --list readers --output readers.csv
    """
    from newsletter.audience.export import subscriber_records, write_csv, write_json

    _check_list(app, list_name)
    records = subscriber_records(app.store, list_name, status)
    write = write_csv if format_name == "csv" else write_json
    if output is None:
        write(records, sys.stdout)
        return
    from newsletter.fileio import atomic_text_file

    with atomic_text_file(output) as handle:
        count = write(records, handle)
    say(escape(f"Wrote {count} subscribers to {output}"))


def _check_list(app, list_name):
    if list_name:
        from newsletter.audience.fields import clean_list_name
        from newsletter.store.audience import get_list

        with app.store.session() as session:
            get_list(session, clean_list_name(list_name))


@subscribers.command("list")
@click.option("--list", "list_name", default=None, help="Only this list's members.")
@click.option("--status", type=click.Choice(STATUSES), default=None,
              help="Only this status: an address status (active, unsubscribed, bounced, complained), or with --list "
                   "a status on that list (pending, confirmed, unsubscribed).")
@json_option
@pass_app
def list_command(app, list_name, status, as_json):
    """List subscribers (streamed, so any size works).

    Two statuses, two columns. "Address status" is the address's own, for
    every list: active, unsubscribed (from everything), bounced, complained
    (the last three are on the suppression list: nobody mails them). With
    --list, "Status on LIST" is the membership of that one list: pending
    (waiting for the confirmation click), confirmed (gets the sends) or
    unsubscribed (left that list). --status takes either kind. With --json
    they are "status" and "list_status".

    \b
    Example:
      newsletter subscribers list --list readers --status confirmed --json
    """
    from itertools import islice

    from newsletter.audience.export import subscriber_records, write_json

    _check_list(app, list_name)
    records = subscriber_records(app.store, list_name, status)
    keys = ("email", "name", "status") + (("list_status",) if list_name else ()) + ("lists", "timezone")
    if as_json:
        write_json(({k: r[k] for k in keys} for r in records), sys.stdout)
        return
    columns = [k for k in keys if k != "timezone"]
    first = list(islice(records, TABLE_LIMIT + 1))
    if len(first) <= TABLE_LIMIT:
        rows = [[_cell(r[k]) for k in columns] for r in first]
        headers = {"email": "Email", "name": "Name", "status": "Address status",
                   "list_status": f"Status on {list_name}", "lists": "Lists"}
        stdout_console().print(table(None, [headers[k] for k in columns], rows, drop=("Lists", "Name")))
        say(f"{len(first)} subscribers")
        return
    count = 0
    for record in (*first, *records):
        sys.stdout.write("\t".join(_cell(record[k]) for k in columns) + "\n")
        count += 1
    say(f"{count} subscribers")


def _cell(value) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


@subscribers.command("show")
@click.argument("email")
@json_option
@pass_app
def show(app, email, as_json):
    """Show one subscriber: lists, consent history and deliveries.

    \b
    Example:
      newsletter subscribers show ada@example.org --json
    """
    from newsletter.audience.manage import describe

    data = describe(app.store, email, deliveries_of=_deliveries_query())
    if as_json:
        print_json(data)
        return
    console = stdout_console()
    console.print(f"[bold]{escape(data['email'])}[/] {escape(data['name'])}  status: {data['status']}"
                  + (f"  (suppressed: {data['suppressed']})" if data["suppressed"] else ""))
    if data["timezone"]:
        console.print(f"time zone: {data['timezone']}")
    if data.get("snoozed_until"):
        console.print(f"mail paused until {_when(data['snoozed_until'])} UTC (preference centre)")
    if data.get("tags"):
        console.print(escape("tags: " + ", ".join(data["tags"])))
    if data.get("dormant_since"):
        console.print(f"dormant since {_when(data['dormant_since'])} (sunset policy; sends skip them unless "
                      "--to-dormant)")
    if data["attributes"]:
        console.print(escape("attributes: " + ", ".join(f"{k}={v}" for k, v in data["attributes"].items())))
    console.print(table("Lists", ["List", "Status", "Subscribed", "Confirmed", "Unsubscribed"],
                        [[m["name"], m["status"], _when(m["subscribed_at"]), _when(m["confirmed_at"]),
                          _when(m["unsubscribed_at"])] for m in data["lists"]]))
    console.print(table("Consent", ["When", "Action", "Source", "IP"],
                        [[_when(c["at"]), c["action"], c["source"], c["ip"]] for c in data["consent"]]))
    if data["deliveries"]:
        console.print(table("Deliveries", ["Campaign", "Status", "Updated"],
                            [[d["campaign_id"], d["status"], _when(d["updated_at"])] for d in data["deliveries"]]))


@subscribers.command("consent")
@click.argument("email")
@json_option
@click.option("--html", "as_html", is_flag=True, help="Print a printable HTML page (save it, print it to PDF).")
@pass_app
def consent_command(app, email, as_json, as_html):
    """Print the proof of consent of one address: every consent event and what proves it.

    Each event: when, what (subscribe, confirm, unsubscribe, resubscribe,
    snooze, profile, export), the list, the source, and where we hold them
    the form and its version, the text shown, the page or file, IP, user
    agent, when it was asked for and confirmed, and the confirmation
    email's Message-ID (double opt-in).

    \b
    Example:
      newsletter subscribers consent ada@example.org --html > ada-consent.html
    """
    from newsletter.audience.preferences import proof_by_address

    data = proof_by_address(app.store, email)
    if as_json:
        print_json(data)
        return
    if as_html:
        from datetime import UTC, datetime

        from newsletter.web.pages import Pages

        sys.stdout.write(Pages(app.settings).render("consent.html", proof=data, printed_at=datetime.now(UTC)))
        return
    console = stdout_console()
    console.print(f"[bold]{escape(data['email'])}[/] {escape(data['name'])}  status: {data['status']}"
                  + (f"  (suppressed: {data['suppressed']})" if data["suppressed"] else ""))
    console.print(table("Lists", ["List", "Status", "Subscribed", "Confirmed", "Unsubscribed"],
                        [[m["name"], m["status"], _when(m["subscribed_at"]), _when(m["confirmed_at"]),
                          _when(m["unsubscribed_at"])] for m in data["lists"]]))
    console.print(table("Consent", ["When", "Action", "List", "Source", "IP", "Proof"],
                        [[_when(c["at"]), c["action"], c["list"] or "", c["source"], c["ip"], _proof_cell(c)]
                         for c in data["consent"]], drop=("Proof",)))


def _proof_cell(entry: dict) -> str:
    """The proof columns of one consent event as short ``name: value`` lines."""
    labels = (("form", "form"), ("consent_text", "text"), ("source_url", "page"), ("user_agent", "browser"),
              ("requested_at", "asked"), ("confirmed_at", "confirmed"), ("message_id", "message"),
              ("detail", "detail"))
    lines = []
    for key, label in labels:
        value = entry.get(key)
        if value:
            lines.append(f"{label}: {_when(value) if hasattr(value, 'strftime') else value}")
    return "\n".join(lines)


@subscribers.command("export-data")
@click.argument("email")
@click.option("--out", "output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the JSON to this file (default: standard output).")
@pass_app
def export_data_command(app, email, output):
    """Everything held about one address, as JSON (a data-access request by mail, GDPR art. 15).

    The same file the preference centre's "Download my data" gives; the
    export is logged as a consent event (source cli).

    \b
    Example:
      newsletter subscribers export-data ada@example.org --out ada.json
    """
    import json

    from newsletter.audience.preferences import export_by_request

    data = export_by_request(app.store, email, deliveries_of=_deliveries_query())
    text = json.dumps(data, indent=2, default=lambda value: value.isoformat(), ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    from newsletter.fileio import atomic_text_file

    with atomic_text_file(output) as handle:
        handle.write(text)
    say(escape(f"Wrote everything held about {data['email']} to {output}"))


def _deliveries_query():
    """The ledger query, when the delivery engine is installed."""
    try:
        from newsletter.store.ledger import deliveries_of_subscriber
    except ImportError:
        return None
    return deliveries_of_subscriber


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_name", default=None, help="Only from this list (default: from everything).")
@pass_app
def unsubscribe_command(app, email, list_name):
    """Unsubscribe someone from one list, or from everything (then they are suppressed).

    \b
    Example:
      newsletter subscribers unsubscribe ada@example.org --list readers
    """
    from newsletter.audience.manage import unsubscribe

    left = unsubscribe(app.store, email, list_name)
    if list_name is None:
        say(escape(f"Unsubscribed {email} from everything" + (f" ({', '.join(left)})" if left else "")
                   + "; the address is suppressed"))
    else:
        say(escape(f"Unsubscribed {email} from {list_name}" if left else f"{email} had already left {list_name}"))


@subscribers.command("tag")
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.option("--add", "add", multiple=True, help="A tag to add (or a comma list); repeat for more.")
@click.option("--remove", "remove", multiple=True, help="A tag to remove (or a comma list); repeat for more.")
@json_option
@pass_app
def tag_command(app, emails, add, remove, as_json):
    """Add or remove tags on subscribers (all of them or, if one is unknown, none).

    \b
    Example:
      newsletter subscribers tag ada@example.org bob@example.org --add vip --remove trial
    """
    from newsletter.usecases.segments import tag, tag_names

    data = tag(app.store, list(emails), tag_names(add, "--add"), tag_names(remove, "--remove"))
    if as_json:
        print_json(data)
        return
    say(escape(f"Tagged {data['subscribers']} subscribers: {data['added']} tags added, "
               f"{data['removed']} removed"))


@subscribers.command("sunset")
@click.option("--dry-run", is_flag=True, help="Count whom the policy would mark dormant; change nothing.")
@json_option
@pass_app
def sunset_command(app, dry_run, as_json):
    """Apply the sunset policy now: mark dormant who stopped opening and clicking, wake who engaged.

    The policy is [audience] sunset_after_sends / sunset_after_days in
    newsletter.toml (off by default); every `send` applies it first.
    Dormant subscribers are skipped unless a send says --to-dormant.

    \b
    Example:
      newsletter subscribers sunset --dry-run
    """
    from newsletter.usecases.segments import apply_sunset

    data = apply_sunset(app.store, app.settings, dry_run=dry_run)
    if as_json:
        print_json(data)
        return
    if data["policy"] == "off":
        say(f"The sunset policy is off ([audience] sunset_after_sends / sunset_after_days); "
            f"{data['dormant']} subscribers are dormant")
    elif data["note"]:
        say(f"[yellow]{escape(data['note'])}[/]")
    else:
        verb = "Would mark" if dry_run else "Marked"
        say(f"{verb} {data['marked']} subscribers dormant, {data['woken']} active again; "
            f"{data['dormant']} dormant now (send to them with --to-dormant)")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove(app, email, yes):
    """Erase a subscriber's data; only a hash stays, so they are not imported again by mistake.

    \b
    Example:
      newsletter subscribers remove ada@example.org --yes
    """
    from newsletter.audience.manage import erase

    if not yes:
        click.confirm(f"Erase everything about {email}?", abort=True, err=True)
    erase(app.store, email)
    say(escape(f"Erased {email}; its hash stays on the suppression list"))


def _add_quarantine() -> None:
    from newsletter.cli.quarantine import quarantine

    subscribers.add_command(quarantine)


_add_quarantine()
