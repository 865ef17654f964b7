"""Preparing an edition before a campaign exists: compose, check, size the audience, write a sample.

The store and the composer are imported inside the functions: the command
line imports this module to build its options, and ``newsletter --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.errors import InputError

RECENT_URL_HINT = ("add its address once with: {command} (writes it into the article, a backup beside it; or put "
                   'the URL on the line after "{title}", or recently_published.url in the front matter)')


def command_line(*words: str, **options: str | bool | None) -> str:
    """A shell command people can copy: ``words`` then each option that is set, all quoted for a POSIX shell.

    ``command_line("newsletter", "send", "a b.txt", list="readers", recent_url=None, yes=True)`` gives
    ``newsletter send 'a b.txt' --list readers --yes``: hints repeat the options in use, so the
    command they name works as printed.
    """
    import shlex

    parts = [shlex.quote(word) if index > 1 else word for index, word in enumerate(words)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif value not in (None, False, ""):
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def compose_flags(recent_title: str | None, recent_url: str | None, theme: str | None) -> dict[str, str | None]:
    """The shared compose options as :func:`command_line` keywords."""
    return {"recent_title": recent_title, "recent_url": recent_url, "theme": theme}


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
        command = command_line("newsletter", "compose", article, recent_url="https://...", save_link=True)
        raise InputError(
            f"the recently-published link {edition.recent.title!r} has no URL",
            hint=RECENT_URL_HINT.format(command=command, title=edition.recent.title),
        )
    return edition


def save_link(article: str, recent_url: str) -> Path:
    """Write ``recent_url`` into ``article`` as its recently-published link's address; returns the backup.

    The article is read again afterwards: when the link does not come out
    with that URL, the file is put back as it was and InputError says so.
    """
    from newsletter.compose.edition import require_web_address
    from newsletter.compose.readers import read_article
    from newsletter.compose.savelink import restore, save_recent_url

    require_web_address(recent_url)
    path = Path(article)
    backup = save_recent_url(path, recent_url)
    recent = read_article(path).recently_published
    if recent is None or recent.url != recent_url:
        restore(path, backup)
        raise InputError(f"{article}: the URL could not be written where the article's link is read from",
                         hint='put it by hand on the line after "Read ...", or in recently_published.url in '
                              "the front matter")
    return backup


def prepare_edition(settings, article: str, recent_title: str | None = None, recent_url: str | None = None,
                    theme: str | None = None):
    """The composed edition, or InputError naming the first pre-flight error."""
    from newsletter.compose.checks import errors

    edition = edition_from_options(settings, article, recent_title, recent_url, theme)
    problems = errors(edition.findings)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"pre-flight check failed: {problems[0].message}{more}",
                         hint="see every finding with: " + command_line(
                             "newsletter", "check", article, **compose_flags(recent_title, recent_url, theme)))
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


def sample_for_list(store, settings, edition, list_name: str, member_id: int | None = None) -> tuple[Path, str]:
    """Write the message the list's first recipient (or subscriber ``member_id``) would get; returns path, address."""
    from newsletter.audience.tokens import UNSUBSCRIBE, make_token
    from newsletter.compose.edition import edition_message, sample_recipient
    from newsletter.delivery.mime import as_file_bytes, build_mime
    from newsletter.fileio import write_atomically
    from newsletter.store import ledger
    from newsletter.store.audience import get_list

    with store.session() as session:
        mailing_list = get_list(session, list_name)
        if member_id is not None:
            from newsletter.store.models import Subscriber

            first = session.get(Subscriber, member_id)
        else:
            first = ledger.first_audience_member(session, mailing_list.id)
        if first is None:
            raise InputError(f"list {list_name!r} has no confirmed, unsuppressed subscribers",
                             hint=f"add some with: newsletter subscribers import FILE --list {list_name}")
        token = make_token(settings.secret_keys, UNSUBSCRIBE, first.id, mailing_list.id, first.email)
        recipient = sample_recipient(edition, settings, email=first.email, name=first.name, token=token,
                                     list_name=mailing_list.reader_name(settings.name))
    path = Path(settings.workspace) / "build" / f"{edition.slug}.sample.eml"
    write_atomically(path, as_file_bytes(build_mime(edition_message(edition, settings), recipient)))
    return path, first.email
