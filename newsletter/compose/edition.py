"""An Edition: one article composed into an email, compiled once.

``compose_edition`` reads the article, renders the theme to MJML, compiles it
to HTML and writes the text part from the model. The HTML and text still
hold merge tokens (``%%name%%``, ``%%unsubscribe_url%%``, ``%%web_url%%``,
``%%email%%``; the text part their ``:raw`` forms) that each recipient's
values fill in a cheap second pass (:func:`merge_values` gives them), or
that SendGrid carries as substitutions. The pre-flight findings are attached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.compose.model import Article, Paragraph, RecentLink, plain
from newsletter.delivery.merge import STANDARD_FIELDS

FALLBACK_NAME = "there"  # "Hi there," when a subscriber has no name
SAMPLE_TOKEN = "sample-token"
SAMPLE_EMAIL = "reader@example.org"
SAMPLE_NAME = "Sample Reader"


@dataclass
class Finding:
    """One pre-flight result: ``level`` is "error" or "warning"."""

    level: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "code": self.code, "message": self.message}


@dataclass
class Edition:
    """One article as an email, compiled once, with merge tokens left in."""

    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    article: Article
    theme: str
    recent: RecentLink | None = None
    findings: list[Finding] = field(default_factory=list)

    def to_message(self, settings):
        """The provider-neutral Message of this edition."""
        return edition_message(self, settings)


def compose_edition(
    article_path,
    settings,
    *,
    recent_title: str | None = None,
    recent_url: str | None = None,
    theme: str | None = None,
    workspace_templates: Path | None = None,
) -> Edition:
    """Read, render and compile ``article_path``; run the pre-flight checks.

    ``recent_title``/``recent_url`` override the article's recently-published
    link (a URL alone keeps the article's title). A link named without a URL
    is not rendered (never an empty href) and is reported as an error finding
    (``recent-url-missing``). Template and MJML errors raise TemplateError.
    """
    from newsletter.compose.checks import check_edition
    from newsletter.compose.readers import read_article

    article = read_article(Path(article_path))
    recent = _recent_link(article, recent_title, recent_url)
    article.recently_published = recent
    theme = theme or settings.theme or "default"
    if workspace_templates is None:
        workspace_templates = Path(settings.workspace) / "templates"
    edition = build_edition(article, settings, theme=theme, workspace_templates=workspace_templates)
    edition.findings = check_edition(edition, settings)
    return edition


def build_edition(article: Article, settings, *, theme: str, workspace_templates: Path | None) -> Edition:
    """Render ``article`` (already read) with ``theme``; no checks."""
    from newsletter.compose.render import render_html
    from newsletter.compose.text import raw_tokens, render_text

    context = theme_context(article, settings)
    subject, preheader, recent = context["subject"], context["preheader"], context["recent"]
    html = render_html(theme, context, workspace_templates)
    text = render_text(article, _footer(settings), recent, settings.language or "en")
    return Edition(
        slug=article.slug, subject=raw_tokens(subject), preheader=preheader, html=html, text=text,
        article=article, theme=theme, recent=article.recently_published,
    )


# After the hidden preheader, inboxes show the next text of the email in the snippet ("A New Path...
# Ketamine Therapy Explained..."). Combining grapheme joiner + no-break space pairs fill the snippet with
# blanks instead (the Litmus practice, &#847;&nbsp;), 13 bytes a pair once written as references.
PREHEADER_PADDING = "\u034f\u00a0" * 45  # 90 characters; the seed stays under 20 KB


def theme_context(article: Article, settings) -> dict:
    """What a theme is rendered with: lang, dir ("rtl" for a right-to-left language, else "ltr"), subject,
    preheader, preheader_padding (put it right after the preheader, inside its hidden element), article,
    recent, newsletter, merge."""
    from newsletter.compose.accessibility import text_direction
    from newsletter.compose.filters import CONTROL

    recent = article.recently_published if article.recently_published and article.recently_published.url else None
    return {
        "lang": settings.language or "en",
        "dir": text_direction(settings.language or "en"),
        "subject": CONTROL.sub("", article.subject or article.title),
        "preheader": article.preheader or article.subtitle or _excerpt(article),
        "preheader_padding": PREHEADER_PADDING,
        "article": article,
        "recent": recent,
        "newsletter": _footer(settings),
        "merge": {name: f"%%{name}%%" for name in ("name", "first_name", "email", "unsubscribe_url", "web_url",
                                                   "preferences_url", "list_name")},
    }


def _recent_link(article: Article, title: str | None, url: str | None) -> RecentLink | None:
    current = article.recently_published
    title = (title or "").strip() or (current.title if current else "")
    url = (url or "").strip() or (current.url if current else None)
    if not title and url:
        from newsletter.errors import InputError

        raise InputError("--recent-url was given without a title", hint='add --recent-title "Title of that article"')
    if url:
        require_web_address(url)
    return RecentLink(title=title, url=url or None) if title else None


_WEB_ADDRESS = re.compile(r"https?://[^\s/?#]+[^\s]*", re.I)


URL_LIMIT = 2000  # longer addresses break in some mail clients; nobody types one


def require_web_address(url: str) -> None:
    """InputError unless ``url`` is an http(s) address: ``javascript:``, ``data:``,
    ``vbscript:`` (and anything else a reader's click should not run) are refused,
    as every unsafe link in an article is."""
    from newsletter.errors import InputError

    if len(url) > URL_LIMIT:
        raise InputError(f"the recently-published URL is {len(url):,} characters long (at most {URL_LIMIT:,})",
                         hint="give the article's plain address, without tracking parameters")
    if not _WEB_ADDRESS.fullmatch(url) or any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in url):
        raise InputError(f"the recently-published URL {url[:80]!r} is not a web address",
                         hint="give its https:// address, e.g. --recent-url https://example.org/blog/post")


def _excerpt(article: Article, limit: int = 110) -> str:
    first = next((plain(b.spans) for b in article.blocks if isinstance(b, Paragraph)), "")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + "…"


def _footer(settings) -> dict[str, str]:
    return {
        "name": settings.name,
        "sender_name": settings.sender_name,
        "postal_address": settings.postal_address,
    }


def unsubscribe_url(settings, token: str) -> str:
    """The recipient's one-click unsubscribe URL (the token is the last path segment)."""
    return f"{settings.base_url}/unsubscribe/{token}"


def preferences_url(settings, token: str) -> str:
    """The recipient's preference centre (the same token as the unsubscribe link: see audience.tokens)."""
    return f"{settings.base_url}/preferences/{token}"


def web_url(settings, slug: str) -> str:
    """The edition's web-version URL in the public archive."""
    return f"{settings.base_url}/archive/{slug}"


def merge_values(settings, slug: str, /, *, email: str, name: str = "", token: str,
                 attributes: Mapping[str, object] | None = None, list_name: str = "") -> dict[str, str]:
    """The merge values of one recipient (a missing name becomes "there").

    ``list_name`` is the name readers see of the list the message goes to
    (``MailingList.reader_name``; for a segment send, the segment's base
    list): the footer says "You get this as a subscriber of LIST" and
    "Unsubscribe from LIST". Without one, the newsletter's name.

    A subscriber's ``attributes`` are merge values too, but never override a
    standard field (:data:`STANDARD_FIELDS`); None becomes "". ``first_name``
    (the greeting's) is the subscriber's ``first_name`` attribute, else the
    first word of the name, else "there".
    """
    return merge_values_of(settings, slug, list_name)(email, name, token, attributes)


def merge_values_of(settings, slug: str, list_name: str = "",
                    ) -> Callable[[str, str, str, Mapping[str, object] | None], dict[str, str]]:
    """``values(email, name, token, attributes)``: :func:`merge_values` for one edition, with what every
    recipient shares (the URLs' fixed parts, the web version, the list's name) worked out once: a send
    calls it per recipient."""
    unsubscribe, preferences = unsubscribe_url(settings, ""), preferences_url(settings, "")
    web = web_url(settings, slug)
    listed = list_name or settings.name

    def values(email: str, name: str, token: str, attributes: Mapping[str, object] | None) -> dict[str, str]:
        merged = {key: "" if value is None else str(value) for key, value in attributes.items()
                  if key not in STANDARD_FIELDS} if attributes else {}
        chosen = attributes.get("first_name") if attributes else None
        merged.update(name=name or FALLBACK_NAME, first_name=first_name(name, None if chosen is None else str(chosen)),
                      email=email, unsubscribe_url=unsubscribe + token, web_url=web,
                      preferences_url=preferences + token, list_name=listed)
        return merged

    return values


def first_name(name: str | None, attribute: str | None = None) -> str:
    """The name a greeting uses: ``attribute`` if set, else the first word of ``name``, else "there"."""
    chosen = (attribute or "").strip() or next(iter((name or "").split()), "")
    return chosen or FALLBACK_NAME


# The themes wrap their greeting line in these comments (MRML keeps comments):
# the anonymous archive copy has no one to greet and drops the whole line.
GREETING_START, GREETING_END = "<!--nl:greeting-->", "<!--/nl:greeting-->"
_GREETING = re.compile(re.escape(GREETING_START) + ".*?" + re.escape(GREETING_END), re.S)


def without_greeting(html: str) -> str:
    """``html`` without the greeting line (for the web archive's copy, where no reader is known)."""
    return _GREETING.sub("", html)


def edition_message(edition: Edition, settings):
    """The provider-neutral Message: shared parts, merge tokens left in."""
    from newsletter.delivery.message import Message

    return Message(
        subject=edition.subject,
        from_email=settings.sender,
        html=edition.html,
        text=edition.text,
        tags=[t[:100] for t in edition.article.tags[:8]],
        metadata={"edition": edition.slug},
    )


def sample_recipient(edition: Edition, settings, email: str = SAMPLE_EMAIL, name: str = SAMPLE_NAME,
                     token: str = SAMPLE_TOKEN, list_name: str = ""):
    """A Recipient as a real subscriber would be addressed, with a fake token."""
    from newsletter.delivery.message import Recipient
    from newsletter.delivery.mime import new_message_id, unsubscribe_headers

    values = merge_values(settings, edition.slug, email=email, name=name, token=token, list_name=list_name)
    return Recipient(
        email=email,
        name=name,
        message_id=new_message_id(settings.sender_address or "localhost"),
        merge_data=values,
        headers=unsubscribe_headers(values["unsubscribe_url"]),
        metadata={"edition": edition.slug},
    )


def sample_mime(edition: Edition, settings):
    """The complete MIME message the sample recipient receives."""
    from newsletter.delivery.mime import build_mime

    return build_mime(edition_message(edition, settings), sample_recipient(edition, settings))
