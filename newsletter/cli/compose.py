"""``newsletter compose`` and ``newsletter check``.

Thin: parse options, call :func:`newsletter.compose.edition.compose_edition`,
print. The heavy imports (Jinja2, mjml, markdown-it) happen inside the
commands so ``newsletter --help`` stays fast. :func:`compose_options` is
shared with ``preview``, ``send`` and ``schedule``; composing with those
options is :func:`newsletter.usecases.editions.edition_from_options`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from newsletter.cli._common import json_option, pass_app, print_json, say
from newsletter.usecases.editions import RECENT_URL_HINT, command_line, compose_flags, edition_from_options


def compose_options(function: Callable) -> Callable:
    """Add ``--recent-title``, ``--recent-url`` and ``--theme`` to a command."""
    options = [
        click.option("--recent-title", metavar="TITLE",
                     help="Title of the recently published article to point readers to (overrides the article's)."),
        click.option("--recent-url", metavar="URL", help="Its https:// address (overrides the article's)."),
        click.option("--theme", metavar="NAME",
                     help="Theme folder under templates/ (default: the workspace's theme, else 'default')."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("compose")
@click.argument("article", metavar="ARTICLE")
@compose_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for <slug>.html, .txt, .sample.html and .eml (default: build/ in the workspace).")
@click.option("--save-link", is_flag=True,
              help="Write --recent-url into ARTICLE (backup beside it: ARTICLE.bak), so later commands need no flag.")
@json_option
@pass_app
def compose(app, article, recent_title, recent_url, theme, out_dir, save_link, as_json):
    """Turn ARTICLE (.md, .txt or .html) into <slug>.html, .txt, .sample.html and .eml.

    The .html and .txt keep the merge fields (%%name%%...); .sample.html is
    the HTML with them filled for a sample subscriber (open it in a browser);
    the .eml is the complete message that subscriber would receive.

    \b
    Example:
      newsletter compose articles/ketamine.md --out build/
      newsletter compose article.txt --recent-url https://example.org/blog/types --save-link
    """
    from newsletter.compose.checks import errors, warnings
    from newsletter.compose.output import write_edition
    from newsletter.errors import InputError

    if save_link and not recent_url:
        raise InputError("--save-link needs --recent-url", hint=command_line(
            "newsletter", "compose", article, recent_url="https://...", save_link=True))
    edition = edition_from_options(app.settings, article, recent_title, recent_url, theme)
    backup = None
    if save_link:  # composed first: the URL has passed the same checks as any --recent-url
        from newsletter.usecases.editions import save_link as save

        backup = save(article, recent_url)
    out = Path(out_dir) if out_dir else Path(app.settings.workspace) / "build"
    paths = write_edition(edition, app.settings, out)
    sizes = {kind: path.stat().st_size for kind, path in paths.items()}
    if as_json:
        print_json({
            "slug": edition.slug, "subject": edition.subject, "preheader": edition.preheader, "theme": edition.theme,
            "files": {kind: str(path) for kind, path in paths.items()}, "sizes": sizes,
            "saved_link": {"url": recent_url, "backup": str(backup)} if backup else None,
            "errors": [f.as_dict() for f in errors(edition.findings)],
            "warnings": [f.as_dict() for f in warnings(edition.findings)],
        })
        return
    say(f"[bold]{_escape(edition.subject)}[/bold]  (theme {edition.theme})")
    for kind, path in paths.items():
        say(f"  wrote {_escape(str(path))}  {_kb(sizes[kind])}")
    if backup:
        say(f"  saved the link's URL into {_escape(article)} (backup: {_escape(str(backup))}); "
            "later commands need no --recent-url")
    _print_findings(edition.findings)
    flags = compose_flags(recent_title, None if backup else recent_url, theme)
    if errors(edition.findings):
        say("Fix the errors before sending; this repeats the checks: "
            + _escape(command_line("newsletter", "check", article, **flags)))
    else:
        say("Next, see it live with: " + _escape(command_line("newsletter", "preview", article, **flags)))


@click.command("check")
@click.argument("article", metavar="ARTICLE")
@compose_options
@click.option("--spam", is_flag=True,
              help="Also run SpamAssassin on this machine (local rules, no network) and report its score and rules.")
@json_option
@pass_app
@click.pass_context
def check(ctx, app, article, recent_title, recent_url, theme, spam, as_json):
    """Pre-flight checks of ARTICLE's email; exit 1 when any error is found.

    Errors: no unsubscribe link, no postal address, a recently-published link
    without URL, unresolved template tags. Warnings: HTML over 102 KB, images
    without alt text, http:// or relative links, subject length, no preheader,
    leftover TK/lorem placeholders, and each HTML or CSS feature that a major
    mail client does not support (caniemail.com's data, shipped with
    newsletter). With --spam, SpamAssassin's score of the message's content (a
    warning when above 0) and each rule it matched.

    \b
    Example:
      newsletter check articles/ketamine.md --recent-url https://example.org/blog/types --json
      newsletter check articles/ketamine.md --spam
    """
    from newsletter.compose.caniemail import client_issues
    from newsletter.compose.checks import errors, spam_findings, warnings
    from newsletter.compose.edition import Finding
    from newsletter.errors import NewsletterError

    edition = edition_from_options(app.settings, article, recent_title, recent_url, theme, strict=False)
    issues = client_issues(edition.html)
    edition.findings += [Finding("warning", "client-support", issue.message()) for issue in issues]
    report = None
    if spam:
        from newsletter.compose.edition import sample_mime
        from newsletter.compose.spam import spam_check
        from newsletter.delivery.mime import as_file_bytes

        report = spam_check(as_file_bytes(sample_mime(edition, app.settings)))
        edition.findings += spam_findings(report)
    found_errors, found_warnings = errors(edition.findings), warnings(edition.findings)
    if as_json:
        data = {
            "errors": [f.as_dict() for f in found_errors],
            "warnings": [f.as_dict() for f in found_warnings],
            "clients": [issue.as_dict() for issue in issues],
        }
        if report is not None:
            data["spam"] = report.as_dict()
        print_json(data)
        if found_errors:
            ctx.exit(1)
        return
    _print_findings(edition.findings)
    if report is not None:
        _print_spam(report)
    again = command_line("newsletter", "check", article, **compose_flags(recent_title, recent_url, theme))
    if found_errors:
        hint = f"fix them and check again with: {again}"
        if any(f.code == "recent-url-missing" for f in found_errors):
            hint = RECENT_URL_HINT.format(title=edition.recent.title, command=command_line(
                "newsletter", "compose", article, recent_url="https://...", save_link=True, theme=theme))
        raise NewsletterError(f"{len(found_errors)} pre-flight error(s) in {article}", hint=hint)
    say(f"[green]OK[/green]: {_escape(edition.subject)} is ready to send ({len(found_warnings)} warning(s))")


def _print_findings(findings) -> None:
    for finding in findings:
        colour = "red" if finding.level == "error" else "yellow"
        say(f"  [{colour}]{finding.level}[/{colour}] {finding.code}: {_escape(finding.message)}")


def _print_spam(report) -> None:
    if not report.available:
        say(f"  SpamAssassin: not run: {_escape(report.reason)}; {_escape(report.hint)}")
        return
    say(f"  SpamAssassin: content score {report.content_score + 0:.1f}"
        f" (total {report.score + 0:.1f}, {report.required:.1f} required)")
    for rule in report.rules:
        say(f"    {rule.points + 0:+.1f} {rule.name}  {_escape(rule.description)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"
