"""Reading an article file into an :class:`~newsletter.compose.model.Article`.

``read_article(path)`` picks a reader from the suffix (``.md``/``.markdown``,
``.txt``, ``.html``/``.htm``) or, for other suffixes, from the content. Any
format may start with YAML front matter between ``---`` lines; its fields win
over what the reader finds in the text:

    title, subtitle, preheader, author, bio (or author_bio), date, image,
    image_alt, tags, slug, subject,
    recently_published: {title, url}   (also: recent: {title, url})

Errors (missing file, undecodable bytes, bad front matter) are
:class:`~newsletter.errors.InputError` with a hint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from newsletter.compose.model import Article, RecentLink, parse_date
from newsletter.errors import InputError

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


def read_article(path: Path | str) -> Article:
    """Read the article at ``path``; raise InputError when it cannot be read."""
    path = Path(path)
    text = _read_text(path)
    meta, body = split_front_matter(text, path)
    kind = article_kind(path, body)
    if kind == "markdown":
        from newsletter.compose.markdown_reader import read_markdown

        article = read_markdown(body)
    elif kind == "html":
        from newsletter.compose.html_reader import read_html

        article = read_html(body)
    else:
        from newsletter.compose.plaintext import read_plain_text

        article = read_plain_text(body)
    article = apply_front_matter(article, meta, path)
    article.source = text
    if not article.title:
        raise InputError(f"{path}: the article has no title", hint="add a first line, or 'title:' in front matter")
    return article


def article_kind(path: Path, body: str) -> str:
    """``markdown``, ``html`` or ``text``: by suffix, else by a look at the content."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix == ".txt":
        return "text"
    head = body.lstrip()[:2000].lower()
    if head.startswith("<") and re.search(r"<(p|h[1-6]|article|html|body|div)\b", head):
        return "html"
    if re.search(r"^(#{1,6} |\* |```)|\]\(https?://", body, re.M):
        return "markdown"
    return "text"


def _read_text(path: Path) -> str:
    from newsletter.fileio import open_input

    with open_input(path, missing="article not found: {path}",
                    missing_hint="check the path, e.g. newsletter compose articles/welcome.md",
                    folder="{path} is a folder, not an article file",
                    folder_hint="name one .md, .txt or .html file") as handle:
        data = handle.read()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path}: not a text file", hint="save the article as UTF-8 text")


def split_front_matter(text: str, path: Path | None = None) -> tuple[dict[str, Any], str]:
    """``(front matter dict, rest)``; no front matter gives ``({}, text)``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 2})" if line is not None else ""
        raise InputError(f"{path or 'article'}: front matter is not valid YAML{where}",
                         hint="fix the YAML between the --- lines") from None
    except (ValueError, OverflowError) as exc:  # a date-shaped value that is no date: date: 2026-02-30
        raise InputError(f"{path or 'article'}: front matter holds an impossible date ({exc})",
                         hint="fix the date between the --- lines, e.g. date: 2026-02-28") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path or 'article'}: front matter must be 'key: value' lines", hint="e.g. title: My article")
    return meta, text[match.end() :]


def apply_front_matter(article: Article, meta: dict[str, Any], path: Path) -> Article:
    """Overlay the front matter fields on what the reader found."""
    for key in ("title", "subtitle", "preheader", "author", "image", "image_alt", "subject"):
        if meta.get(key) not in (None, ""):
            setattr(article, key, _one_line(meta[key]))
    bio = meta.get("bio", meta.get("author_bio"))
    if bio:
        article.author_bio = " ".join(str(bio).split())
    if meta.get("date") is not None:
        date = parse_date(meta["date"])
        if date is None:
            raise InputError(f"{path}: front matter date {str(meta['date'])[:40]!r} is not a date",
                             hint="write it as date: 2026-12-01")
        article.date = date
    if meta.get("tags"):
        tags = meta["tags"]
        article.tags = [t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if str(t).strip()]
    recent = meta.get("recently_published", meta.get("recent"))
    if recent:
        article.recently_published = _recent_from_meta(recent, path)
    if meta.get("slug"):
        from newsletter.compose.model import slugify

        article.slug = slugify(str(meta["slug"])) or article.slug
    elif meta.get("title"):
        from newsletter.compose.model import slugify

        article.slug = slugify(article.title) or article.slug
    return article


def _recent_from_meta(value: Any, path: Path) -> RecentLink:
    if isinstance(value, str):
        return RecentLink(title=_one_line(value))
    if not isinstance(value, dict) or not value.get("title"):
        raise InputError(
            f"{path}: recently_published needs a title",
            hint="write it as  recently_published: {title: ..., url: https://...}",
        )
    url = str(value.get("url") or "").strip() or None
    return RecentLink(title=_one_line(value["title"]), url=url)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())
