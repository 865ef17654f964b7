"""Preparing an edition before a campaign exists: compose, check, size the audience, write a sample.

The store and the composer are imported inside the functions: the command
line imports this module to build its options, and ``newsletter --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.errors import InputError

RECENT_URL_HINT = 'pass --recent-url https://... (the address of "{title}")'


def edition_from_options(settings, article: str, recent_title: str | None = None, recent_url: str | None = None,
                         theme: str | None = None, *, strict: bool = True):
    """Compose ``article`` with the shared compose options.

    With ``strict`` a recently-published link without a URL is an InputError
    (one line and a hint naming ``--recent-url``); ``check`` passes False to
    report it as a finding instead.
    """
    from newsletter.compose.edition import compose_edition

    edition = compose_edition(
        Path(article), settings, recent_title=recent_title, recent_url=recent_url, theme=theme,
        workspace_templates=Path(settings.workspace) / "templates",
    )
    if strict and edition.recent and not edition.recent.url:
        raise InputError(
            f"the recently-published link {edition.recent.title!r} has no URL",
            hint=RECENT_URL_HINT.format(title=edition.recent.title),
        )
    return edition


def prepare_edition(settings, article: str, recent_title: str | None = None, recent_url: str | None = None,
                    theme: str | None = None):
    """The composed edition, or InputError naming the first pre-flight error."""
    from newsletter.compose.checks import errors

    edition = edition_from_options(settings, article, recent_title, recent_url, theme)
    problems = errors(edition.findings)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"pre-flight check failed: {problems[0].message}{more}",
                         hint=f"see every finding with: newsletter check {article}")
    return edition


def audience_of(store, list_name: str) -> int:
    """How many would receive a send to ``list_name``; InputError when nobody would."""
    from newsletter.store import ledger
    from newsletter.store.audience import get_list

    with store.session() as session:
        size = ledger.audience_size(session, get_list(session, list_name).id)
    if size == 0:
        raise InputError(f"list {list_name!r} has no confirmed, unsuppressed subscribers",
                         hint=f"add some with: newsletter subscribers import FILE --list {list_name}")
    return size


def sample_for_list(store, settings, edition, list_name: str) -> tuple[Path, str]:
    """Write the message the list's first recipient would get; returns its path and address."""
    from newsletter.audience.tokens import UNSUBSCRIBE, make_token
    from newsletter.compose.edition import edition_message, sample_recipient
    from newsletter.delivery.mime import as_file_bytes, build_mime
    from newsletter.fileio import write_atomically
    from newsletter.store import ledger
    from newsletter.store.audience import get_list

    with store.session() as session:
        mailing_list = get_list(session, list_name)
        first = ledger.first_audience_member(session, mailing_list.id)
        if first is None:
            raise InputError(f"list {list_name!r} has no confirmed, unsuppressed subscribers",
                             hint=f"add some with: newsletter subscribers import FILE --list {list_name}")
        token = make_token(settings.secret_keys, UNSUBSCRIBE, first.id, mailing_list.id, first.email)
        recipient = sample_recipient(edition, settings, email=first.email, name=first.name, token=token)
    path = Path(settings.workspace) / "build" / f"{edition.slug}.sample.eml"
    write_atomically(path, as_file_bytes(build_mime(edition_message(edition, settings), recipient)))
    return path, first.email
