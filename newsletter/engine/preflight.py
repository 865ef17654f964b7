"""What runs before a campaign is created: compose, check, size the audience, a sample."""

from __future__ import annotations

from pathlib import Path

from newsletter.errors import InputError
from newsletter.store import ledger
from newsletter.store.audience import get_list


def preflight(app, article: str, recent_title=None, recent_url=None, theme=None):
    """The composed edition, or InputError naming the first pre-flight error."""
    from newsletter.cli.compose import edition_from_options
    from newsletter.compose.checks import errors

    edition = edition_from_options(app, article, recent_title, recent_url, theme)
    problems = errors(edition.findings)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"pre-flight check failed: {problems[0].message}{more}",
                         hint=f"see every finding with: newsletter check {article}")
    return edition


def audience_of(store, list_name: str) -> int:
    """How many would receive a send to ``list_name``; InputError when nobody would."""
    with store.session() as session:
        size = ledger.audience_size(session, get_list(session, list_name).id)
    if size == 0:
        raise InputError(f"list {list_name!r} has no confirmed, unsuppressed subscribers",
                         hint=f"add some with: newsletter subscribers import FILE --list {list_name}")
    return size


def sample_for_list(app, edition, list_name: str) -> tuple[Path, str]:
    """Write the message the list's first recipient would get; returns its path and address."""
    from newsletter.audience.tokens import UNSUBSCRIBE, make_token
    from newsletter.compose.edition import edition_message, sample_recipient
    from newsletter.delivery.mime import as_file_bytes, build_mime
    from newsletter.fileio import write_atomically

    settings = app.settings
    with app.store.session() as session:
        mailing_list = get_list(session, list_name)
        first = ledger.first_audience_member(session, mailing_list.id)
        token = make_token(settings.secret_keys, UNSUBSCRIBE, first.id, mailing_list.id, first.email)
        recipient = sample_recipient(edition, settings, email=first.email, name=first.name, token=token)
    path = Path(settings.workspace) / "build" / f"{edition.slug}.sample.eml"
    write_atomically(path, as_file_bytes(build_mime(edition_message(edition, settings), recipient)))
    return path, first.email
