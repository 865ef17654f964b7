"""Articles that arrive as text (the HTTP API): kept in the workspace, checked, previewed, scheduled.

An article sent as Markdown is written to ``articles/api/`` in the
workspace, named by the SHA-256 of its text (the same text is the same
file; a campaign's ``article`` path stays valid for the scheduler daemon,
which may compose it again). From there it goes through the same use cases
as a file named on the command line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from newsletter.errors import InputError

FOLDER = ("articles", "api")
MAX_CHARS = 1_000_000


def save_article(settings, markdown: str) -> str:
    """Write ``markdown`` into the workspace (once per distinct text); returns its path."""
    from newsletter.fileio import write_atomically

    if not markdown.strip():
        raise InputError("the article is empty", hint="send Markdown with front matter: ---\\ntitle: ...\\n---\\n...")
    if len(markdown) > MAX_CHARS or "\x00" in markdown:
        raise InputError(f"an article is text of at most {MAX_CHARS} characters, without NUL",
                         hint="send the article's Markdown as it is in its file")
    data = markdown.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the article is not valid UTF-8 text", hint="send the article's Markdown as UTF-8") from None
    path = Path(settings.workspace).joinpath(*FOLDER) / f"{hashlib.sha256(data).hexdigest()[:32]}.md"
    if not path.is_file():
        write_atomically(path, data)
    return str(path)


def check_article(settings, markdown: str, theme: str | None = None) -> dict[str, Any]:
    """The pre-flight findings of an article's email (as ``newsletter check``), never raising for a finding."""
    from newsletter.compose.caniemail import client_issues
    from newsletter.compose.checks import errors
    from newsletter.compose.edition import Finding
    from newsletter.usecases.editions import edition_from_options

    edition = edition_from_options(settings, save_article(settings, markdown), theme=theme, strict=False)
    edition.findings += [Finding("warning", "client-support", issue.message()) for issue in client_issues(edition.html)]
    return {"subject": edition.subject, "ok": not errors(edition.findings),
            "findings": [{"severity": f.level, "code": f.code, "message": f.message} for f in edition.findings]}


def preview_article(settings, markdown: str, theme: str | None = None) -> str:
    """The article's email as HTML (the web version; per-recipient links are placeholders)."""
    from newsletter.usecases.editions import edition_from_options

    return edition_from_options(settings, save_article(settings, markdown), theme=theme, strict=False).html


TEST_RECIPIENTS_MAX = 5


def send_test(settings, transport_factory, markdown: str, to: list[str], theme: str | None = None) -> dict[str, Any]:
    """Send the article's email to a few addresses (the editor's own) with a "[Test]" subject.

    Checked first (a pre-flight error stops it); each test copy carries a
    fake unsubscribe link, so nobody can unsubscribe anyone by clicking it.
    Nothing is stored: it is no campaign and counts against no list.
    """
    from dataclasses import replace

    from newsletter.compose.edition import edition_message, sample_recipient
    from newsletter.delivery.message import Outcome
    from newsletter.engine.campaigns import require_sendable
    from newsletter.usecases.editions import prepare_edition
    from newsletter.vocabulary import normalise_address

    if not 1 <= len(to) <= TEST_RECIPIENTS_MAX:
        raise InputError(f"send a test to 1 to {TEST_RECIPIENTS_MAX} addresses", hint='e.g. "to": ["me@example.org"]')
    addresses = list(dict.fromkeys(normalise_address(address) for address in to))
    require_sendable(settings)
    edition = prepare_edition(settings, save_article(settings, markdown), theme=theme)
    message = edition_message(edition, settings)
    message = replace(message, subject=f"[Test] {message.subject}")
    recipients = [sample_recipient(edition, settings, email=address, name="") for address in addresses]
    with transport_factory(settings) as transport:
        results = transport.send_batch(message, recipients)
    sent = [r.email for r, result in zip(recipients, results, strict=True)
            if result.outcome not in (Outcome.REJECTED, Outcome.FAILED)]
    if not sent:
        from newsletter.errors import DeliveryError

        raise DeliveryError("the test could not be sent", hint="check the addresses and the transport settings")
    return {"subject": message.subject, "sent_to": sent,
            "not_sent": [r.email for r in recipients if r.email not in sent]}


def schedule_article(store, settings, markdown: str, *, list_name: str | None, segment: str | None,
                     where: str | None, at: str, zone: str | None, theme: str | None, again: bool) -> dict[str, Any]:
    """Schedule the article for a list (or a segment, or a filter over a list) at ``at``; the campaign's summary."""
    from newsletter.usecases.campaigns import ComposeOptions, schedule_at
    from newsletter.usecases.segments import resolve_audience

    target = resolve_audience(store, list_name, segment, where, False)
    result = schedule_at(store, settings, save_article(settings, markdown), target.list_name, at, zone=zone,
                         compose=ComposeOptions(theme=theme), again=again, target=target)
    return {"campaign_id": result["campaign_id"], "status": "scheduled", "list": result["list"],
            "subject": result["subject"], "audience": result["audience"], "scheduled_at": result["scheduled_at"]}


def campaign_status(store, campaign_id: int) -> dict[str, Any]:
    """A campaign's status, counts and report (the ``campaigns show --json`` numbers)."""
    from newsletter.engine.campaigns import describe_campaign

    data = describe_campaign(store, campaign_id)
    report = {key: data[key] for key in ("counts", "total", "events", "providers", "rates")}
    return {"campaign_id": data["id"], "status": data["status"], "subject": data["subject"], "list": data["list"],
            "scheduled_at": data["scheduled_at"], "report": report}


def cancel(store, campaign_id: int) -> dict[str, Any]:
    """Cancel a campaign that has not started; Conflict once it has."""
    from newsletter.usecases.campaigns import cancel as cancel_campaign

    result = cancel_campaign(store, campaign_id)
    return {"campaign_id": result["campaign_id"], "status": str(result["status"])}
