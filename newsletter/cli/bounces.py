"""``newsletter bounces ...``: the bounce loop of an SMTP sender (bounce messages read from a mailbox)."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, stdout_console, table

ROWS = (("read", "Messages read"), ("dsn", "Bounce reports (DSN)"), ("not_dsn", "Not a bounce report"),
        ("truncated", "Cut at the size limit"), ("events", "Recipients reported"), ("hard", "Hard bounces"),
        ("soft", "Soft bounces"), ("delayed", "Delayed (still being tried)"),
        ("complaints", "Complaints (ARF)"),
        ("matched", "Matched to a delivery"), ("unmatched", "Not matched"), ("repeated", "Already read before"),
        ("applied", "Audience changes"))


@click.group("bounces")
def bounces():
    """Read bounce messages that came back by mail (SMTP senders).

    Send with [smtp] verp = true (and a [smtp] return_path whose mailbox you
    can read) so every bounce names its delivery.

    \b
    Example:
      newsletter bounces read ~/Maildir/.bounces
    """


@bounces.command("read")
@click.argument("source", type=click.Path(exists=False, dir_okay=True, file_okay=True))
@click.option("--all", "include_seen", is_flag=True,
              help="Maildir, IMAP: read the messages already marked seen too (repeats change nothing).")
@json_option
@pass_app
def read(app, source, include_seen, as_json):
    """Apply the bounce reports (RFC 3464 DSNs, qmail's) in an mbox file, a Maildir, IMAP or POP3 mailbox.

    Complaint reports (ARF, RFC 5965, as sent to [delivery] complaints_address)
    suppress the complainer. A hard bounce suppresses the address; soft bounces count towards
    [events] soft_bounce_limit, as for a provider's events. A Maildir's
    messages are moved to cur/ and marked seen once applied, an IMAP
    folder's marked \\Seen (its password in NEWSLETTER_IMAP_PASSWORD), a POP3
    mailbox's bounce reports deleted (NEWSLETTER_POP3_PASSWORD); an mbox
    file is only read (reading it again changes nothing).

    \b
    Example:
      newsletter bounces read ~/Maildir/.bounces
      newsletter bounces read bounces.mbox --json
      newsletter bounces read imap://bounces@mail.example.org/INBOX
      newsletter bounces read pop3s://bounces@mail.example.org
    """
    from newsletter.usecases.bounces import read_bounces

    report = read_bounces(app.settings, app.store, source, include_seen=include_seen)
    if as_json:
        print_json(report.as_dict())
        return
    counts = report.as_dict()
    stdout_console().print(table(f"Bounces in {report.source} ({report.mailbox})", ["", "Count"],
                                 [[label, counts[key]] for key, label in ROWS]))
