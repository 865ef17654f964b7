"""Pre-flight checks of an edition (``newsletter check``, and before every send).

Errors (a send must not start):
  ``base-url-missing``, ``unsubscribe-missing``, ``postal-address-missing``,
  ``recent-url-missing`` (a recently-published link named without a URL),
  ``unresolved-tags`` (Jinja tags or malformed merge tokens in the output that
  are not in the article itself),
  ``base-url-unsafe`` (mail leaves this machine but unsubscribe links would
  point to a loopback, private or plain-http address:
  :func:`newsletter.config.base_url_problem`).

Texts are compared with whitespace normalised: the text part wraps long
lines (a long postal address, an article quoting ``{{ name }}``), and a
wrapped line is still the same words.
Warnings:
  ``spam-score`` (with ``check --spam``: SpamAssassin scores the content above 0),
  ``html-size`` (over 102 KB: Gmail clips the message and hides the footer),
  ``image-alt``, ``link-insecure`` (http://), ``link-relative``,
  ``link-empty``, ``subject-length`` (over 78 or under 10 characters),
  ``preheader-missing``, ``placeholder`` ("TK", "lorem ipsum");
  accessibility (WCAG 2.1 AA, :mod:`newsletter.compose.accessibility`):
  ``lang-missing``, ``dir-missing``, ``heading-order``, ``low-contrast`` (light
  and dark mode), ``link-text``, ``font-size``, ``table-role``.
"""

from __future__ import annotations

import re
from html import unescape

from newsletter.compose.edition import Edition, Finding, merge_values
from newsletter.compose.model import Code, Heading, Image, ListBlock, Paragraph, Quote, plain

GMAIL_CLIP_BYTES = 102 * 1024
SUBJECT_MIN, SUBJECT_MAX = 10, 78
_HREF = re.compile(r"<(a|img|link)\b[^>]*?\b(href|src)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", re.I)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r"\balt\s*=\s*(\"([^\"]*)\"|'([^']*)')", re.I)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PERCENT_TOKEN = re.compile(r"%%[^%\n<>\"]{1,60}%%")
_VALID_TOKEN = re.compile(r"%%[A-Za-z_][A-Za-z0-9_]*(:raw)?%%")
_PLACEHOLDER = re.compile(r"\b(?:TK|lorem(?: ipsum)?)\b", re.I)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "warning"]


def check_edition(edition: Edition, settings) -> list[Finding]:
    """Every finding for ``edition`` under ``settings``, errors first."""
    findings: list[Finding] = []
    for rule in (_compliance, _recent, _unresolved, _size, _images, _links, _subject, _preheader, _placeholders,
                 _accessibility):
        findings.extend(rule(edition, settings))
    return errors(findings) + warnings(findings)


def _error(code: str, message: str) -> Finding:
    return Finding("error", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def _squeeze(text: str) -> str:
    """``text`` with every run of whitespace as one space (wrapping-proof comparisons)."""
    return " ".join(text.split())


def spam_findings(report) -> list[Finding]:
    """A ``spam-score`` warning when SpamAssassin's content score is above 0 (see :mod:`newsletter.compose.spam`)."""
    if not report.available or report.content_score <= 0:
        return []
    rules = ", ".join(f"{r.name} ({r.points:+g})" for r in report.rules if r.points > 0)
    return [_warning("spam-score", f"SpamAssassin scores the content {report.content_score:g} points: {rules}")]


def _compliance(edition: Edition, settings):
    from newsletter.config import base_url_problem

    if not settings.base_url:
        yield _error("base-url-missing", "no base_url: unsubscribe and web-version links have nowhere to point"
                                         " (set base_url in newsletter.toml or NEWSLETTER_BASE_URL)")
    elif problem := base_url_problem(settings):
        yield _error("base-url-unsafe", f"{problem.message} ({problem.hint})")
    if (not re.search(r"href=[\"']%%unsubscribe_url%%[\"']", edition.html)
            or "%%unsubscribe_url:raw%%" not in edition.text):
        yield _error("unsubscribe-missing", f"theme {edition.theme!r} has no unsubscribe link"
                                            " (href=\"%%unsubscribe_url%%\" in HTML, %%unsubscribe_url:raw%% in text)")
    address = _squeeze(settings.postal_address)
    if not address:
        yield _error("postal-address-missing", "no postal address for the footer"
                                               " (set postal_address in newsletter.toml or NEWSLETTER_POSTAL_ADDRESS)")
    elif not _contains(edition.html, address, html=True) or not _contains(edition.text, address):
        yield _error("postal-address-missing",
                     f"theme {edition.theme!r} does not show the postal address ({{{{ newsletter.postal_address }}}})")


def _contains(text: str, words: str, *, html: bool = False) -> bool:
    """``words`` (whitespace squeezed) appear in ``text``: found as written, else after unescaping and squeezing."""
    return words in text or words in _squeeze(unescape(text) if html else text)


def _recent(edition: Edition, settings):
    if edition.recent and not edition.recent.url:
        yield _error(
            "recent-url-missing",
            f"the recently-published link {edition.recent.title!r} has no URL; pass --recent-url https://... "
            "(once to compose with --save-link writes it into the article)",
        )


def _unresolved(edition: Edition, settings):
    """Template leftovers: tags in the output that the article itself does not say."""
    found = [m.group(0) for part in (edition.html, edition.text) for m in _JINJA.finditer(part)]
    found += [m.group(0) for part in (edition.html, edition.text) for m in _PERCENT_TOKEN.finditer(part)
              if not _VALID_TOKEN.fullmatch(m.group(0))]
    if not found:
        return
    recent = edition.article.recently_published
    said = [unescape(edition.article.source), *map(str, _article_texts(edition.article)),
            recent.title if recent else ""]
    article_says = _squeeze(" ".join(said))
    found = [tag for tag in dict.fromkeys(found) if _squeeze(unescape(tag)) not in article_says]
    if found:
        shown = ", ".join(tag[:40] for tag in found[:3])
        yield _error("unresolved-tags", f"unresolved template tags in the output: {shown}")


def _size(edition: Edition, settings):
    values = merge_values(settings, edition.slug, email="reader@example.org", name="Reader", token="x" * 80)
    from newsletter.delivery.merge import personalise

    size = len(personalise(edition.html, values).encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        yield _warning("html-size", f"the HTML is {size / 1024:.0f} KB; Gmail clips messages over 102 KB"
                                    " and hides the footer with the unsubscribe link")


def _images(edition: Edition, settings):
    missing = []
    for tag in _IMG.findall(edition.html):
        alt = _ALT.search(tag)
        if not alt or not (alt.group(2) or alt.group(3) or "").strip():
            src = re.search(r"\bsrc\s*=\s*[\"']([^\"']*)", tag)
            missing.append(src.group(1) if src else "?")
    for path in dict.fromkeys(missing):
        yield _warning("image-alt", f"image without alt text: {path[:80]}")


def _links(edition: Edition, settings):
    seen: set[str] = set()
    for _tag, attribute, quoted in _HREF.findall(edition.html):
        url = unescape(quoted.strip("\"'")).strip()
        if url in seen or url.startswith("%%"):
            continue
        seen.add(url)
        if not url or url == "#":
            yield _warning("link-empty", f"empty {attribute} in the HTML")
        elif url.lower().startswith("http://"):
            yield _warning("link-insecure", f"http:// link (use https): {url[:80]}")
        elif not re.match(r"(https:|mailto:|tel:|cid:|data:)", url, re.I):
            yield _warning("link-relative", f"relative link (mail clients cannot follow it): {url[:80]}")


def _accessibility(edition: Edition, settings):
    from newsletter.compose.accessibility import accessibility_findings

    return accessibility_findings(edition.html)


def _subject(edition: Edition, settings):
    length = len(edition.subject)
    if length > SUBJECT_MAX:
        yield _warning("subject-length",
                       f"the subject is {length} characters; over {SUBJECT_MAX} it is cut in most inboxes")
    elif length < SUBJECT_MIN:
        yield _warning("subject-length",
                       f"the subject is {length} characters; under {SUBJECT_MIN} says little"
                       " (set 'subject:' in front matter)")


def _preheader(edition: Edition, settings):
    if not (edition.article.preheader or edition.article.subtitle):
        yield _warning("preheader-missing",
                       "no preheader: inboxes show the first words of the email (set 'preheader:' in front matter)")


def _placeholders(edition: Edition, settings):
    # the text part holds every article text but the preheader: one search in the common case
    # (a case-insensitive regex with \b is slow: look for the letters first)
    lowered = f"{edition.text}\n{edition.article.preheader or ''}".lower()
    if ("tk" not in lowered and "lorem" not in lowered) or not _PLACEHOLDER.search(lowered):
        return
    for text in _article_texts(edition.article):
        match = _PLACEHOLDER.search(text)
        if match:
            yield _warning("placeholder", f"placeholder {match.group(0)!r} left in: {text[:60]!r}")
            return


def _article_texts(article):
    yield from (article.title, article.subtitle, article.preheader, article.author_bio)
    for block in article.blocks:
        if isinstance(block, (Heading, Paragraph, Quote)):
            yield plain(block.spans)
        elif isinstance(block, ListBlock):
            yield from (plain(item) for item in block.items)
        elif isinstance(block, Image):
            yield block.alt
        elif isinstance(block, Code):
            yield block.text
