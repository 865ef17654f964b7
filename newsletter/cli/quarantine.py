"""``newsletter subscribers quarantine ...``: the signups held back by the signup protection.

A held signup got no email; approving it joins the list as the public form
would have (one confirmation email on a double opt-in list), rejecting it
deletes it. See ``newsletter.usecases.signups`` and ``newsletter.audience.protection``.
"""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table

LIST_LIMIT = 500  # rows shown; --json has the same limit (the quarantine is capped by the network limits)


def _context(app):
    """The public app's context (pages and transport) for the confirmation emails an approval sends."""
    from newsletter.delivery import get_transport
    from newsletter.web.common import Context
    from newsletter.web.pages import Pages

    return Context(app.settings, app.store, Pages(app.settings), get_transport, None)


@click.group("quarantine")
def quarantine():
    """List, approve or reject signups held back as suspicious (no email sent to them yet).

    \b
    Example:
      newsletter subscribers quarantine list
      newsletter subscribers quarantine approve 12
    """


@quarantine.command("list")
@click.option("--list", "list_name", default=None, help="Only signups for this list.")
@json_option
@pass_app
def list_held(app, list_name, as_json):
    """List held signups, oldest first, with why each was held.

    \b
    Example:
      newsletter subscribers quarantine list --json
    """
    from newsletter.usecases.signups import held_signups

    rows = held_signups(app.store, list_name, LIST_LIMIT)
    if as_json:
        print_json([{"id": r.id, "email": r.email, "name": r.name, "list": r.list_name, "reasons": r.reasons,
                     "source": r.source, "held_at": r.created_at} for r in rows])
        return
    stdout_console().print(table(None, ["Id", "Email", "List", "Why held", "Held at"],
                                 [[str(r.id), r.email, r.list_name, r.reasons,
                                   r.created_at.strftime("%Y-%m-%d %H:%M")] for r in rows]))
    say(f"{len(rows)} held signups")


@quarantine.command("approve")
@click.argument("ids", nargs=-1, type=int, required=True)
@json_option
@pass_app
def approve(app, ids, as_json):
    """Approve held signups: each joins its list and gets one confirmation email (double opt-in).

    \b
    Example:
      newsletter subscribers quarantine approve 12 13
    """
    from newsletter.usecases.signups import approve_held

    ctx = _context(app)
    results = []
    for held_id in ids:
        approval = approve_held(ctx, held_id)
        results.append({"id": held_id, "email": approval.email, "list": approval.list_name,
                        "joined": approval.joined, "emailed": approval.emailed})
        if not as_json:
            what = ("sent a confirmation email" if approval.emailed else
                    "joined" if approval.joined else "nothing to do: suppressed or already a member")
            say(f"Approved {held_id} ({approval.list_name}): {what}")
    if as_json:
        print_json(results)


@quarantine.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@json_option
@pass_app
def reject(app, ids, as_json):
    """Reject held signups: they are deleted, nothing is sent.

    \b
    Example:
      newsletter subscribers quarantine reject 12 13
    """
    from newsletter.usecases.signups import reject_held

    ctx = _context(app)
    results = []
    for held_id in ids:
        reject_held(ctx, held_id)
        results.append({"id": held_id, "rejected": True})
        if not as_json:
            say(f"Rejected {held_id}")
    if as_json:
        print_json(results)
