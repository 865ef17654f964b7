"""Plain text pasted from a blog, read into an Article.

People paste articles from many blogs; this reader is tolerant and every
guess it makes is one of the rules below (first match wins). A line is a
"unit": one line of the file, or, when the text is hard-wrapped (no line over
100 characters and lines that break mid-sentence), a blank-line separated
paragraph joined into one.

Cleaning
  * Windows line ends, non-breaking and zero-width spaces are normalised.
  * Page chrome copied with the text is dropped: whole lines such as
    "Comments", "There are no comments for this story", "Be the first to
    respond...", "Share this", "5 min read", "Advertisement", "Back to top".
    A comment section ("Comments", "12 Responses", "Leave a reply") starting
    in the last dozen lines is cut off with everything after it.

Header
  * The first unit is the title ("# " or "Title:" prefixes are removed).
  * A short second unit (at most 140 characters, no closing full stop) is the
    subtitle; so is one written as "Subtitle: ...".
  * Among the first units, "By NAME" (optionally ", DATE") is the byline and a
    lone date ("March 3, 2025", "3 March 2025", "2025-03-03") is the date.

Body
  * "- ", "* ", "• ", "– " lines are bullet items; "1. " / "1) " numbered
    items; consecutive items make one list.
  * A line wrapped in quotation marks ("...", “...”), optionally followed by
    "— Name", or a line starting with "> ", is a quote; a following line
    "— Name" is its attribution.
  * A heading is a short line (at most 14 words and 90 characters) that starts
    with a capital or digit and either has no closing punctuation, or ends
    with "?" and is in Title Case (so "Sound familiar?" stays a paragraph).
    "## " prefixes, ALL-CAPS lines and lines underlined with === or --- are
    headings too. A heading never ends the article.
  * A line that is only an image URL (.png, .jpg, .gif, .webp) or
    "![alt](url)" is an image.
  * Everything else is a paragraph. Bare URLs and "[text](url)" become links.
  * When the first paragraph starts with a lowercase fragment such as "t's",
    the drop cap was lost in copying and "I" is put back.

Tail
  * "About the Creator" / "About the Author" / "About me" / "Author bio"
    starts the author block: the next short line is the author's name, the
    rest is the bio.
  * "Read Our Recently Published Article - TITLE" (also "Read next: TITLE",
    "Our latest post: TITLE", "Recently published: TITLE") is the
    recently-published link; a URL on that line ("[TITLE](URL)", "TITLE URL")
    or alone on the next line is its address. Without one, the link has no
    URL and composing asks for ``--recent-url``.
"""

from __future__ import annotations

import datetime as dt
import re
import string

from newsletter.compose.model import (
    Article,
    Heading,
    Image,
    ListBlock,
    Paragraph,
    Quote,
    RecentLink,
    Span,
    text_spans,
)

_CHROME = re.compile(
    r"^(?:comments?|\d+\s+(?:comments?|responses?|likes?|claps?)|responses?(?:\s*\(\d+\))?"
    r"|there (?:are|is) no (?:comments|responses)\b.*|be the first to (?:respond|comment|share)\b.*"
    r"|(?:leave|add|post) a (?:comment|reply|response)\b.*|share(?: this(?: story| post| article)?)?"
    r"|(?:share|tweet|pin it|like|follow|subscribe|sign up|sign in|log in|reply|report|tip|pledge your support)"
    r"|\d+\s*min(?:ute)?s?\s+read|advertisement|sponsored|skip to (?:main )?content|back to top"
    r"|(?:continue|keep) reading|read more|reader insights|add your insights|click to expand)\s*[.!]?$",
    re.I,
)
_COMMENT_SECTION = re.compile(
    r"^(?:comments?|\d+\s+(?:comments?|responses?)|responses?|leave a (?:comment|reply)"
    r"|discussion|reader insights)\s*:?$",
    re.I,
)
_AUTHOR_MARK = re.compile(
    r"^(?:about (?:the )?(?:creator|author|writer)|about me|author bio|meet the author)\s*:?$", re.I)
_BYLINE = re.compile(r"^(?:by|written by|words by)\s+(?P<name>[^,|•·]{2,60}?)(?:\s*[,|•·]\s*(?P<rest>.+))?$", re.I)
_ITEM = re.compile(r"^\s*(?:(?P<bullet>[-*•·–])|(?P<number>\d{1,3})[.)])\s+(?P<text>\S.*)$")
_OPEN_QUOTES = "\"“‘«'"
_CLOSE_QUOTES = "\"”’»'"
_ATTRIBUTION = re.compile(r"^[—―–]{1,2}\s*(?P<who>\S.{0,80})$")
_QUOTED = re.compile(r"^[\"“‘«](?P<body>.+?)[\"”’»](?:\s*[—―–-]+\s*(?P<who>[^\"“”]{2,80}))?$")
_IMAGE_URL = re.compile(
    r"^(?:!\[(?P<alt>[^\]]*)\]\((?P<src>\S+?)\)|(?P<bare>https?://\S+\.(?:png|jpe?g|gif|webp)(?:\?\S*)?))$", re.I)
_MD_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)")
_URL = re.compile(r"https?://\S+")
_RECENT = re.compile(
    r"^(?:(?:read|check out|see|don['’]t miss)\s+)?(?:(?:our|my|the)\s+)?(?:most\s+)?"
    r"(?:recently[\s-]+published|recent|latest|previous|last)\s+(?:blog\s+)?(?:article|post|story|piece|issue)"
    r"\s*(?:[-–—:|]\s*(?P<rest>.*))?$"
    r"|^(?:read next|up next|recently published|previously|you (?:may|might) also like)\s*[-–—:|]\s*(?P<rest2>.*)$",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!,;:…\"”’)]$")
_RULE_LINE = re.compile(r"[=\-_*]{3,}")  # a line of ===, ---, ___ or *** under a heading or between parts
_INLINE = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)|\*\*(?P<bold>[^*]+)\*\*")  # [text](url), **bold**
_DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%Y-%m-%d", "%B %d %Y", "%b. %d, %Y")
_DROP_CAP = {"t’s": "It’s", "t's": "It's", "t": "It", "n": "In", "f": "If", "s": "Is", "’m": "I’m", "'m": "I'm"}


def read_plain_text(text: str) -> Article:
    """The Article in ``text`` (front matter already removed), by the rules above."""
    lines = _clean(text)
    units = _units(lines)
    units, recent = _take_recent(units)
    units, author, bio = _take_author_block(units)
    title, subtitle, author_top, date, body = _header(units)
    article = Article(title=title, subtitle=subtitle, author=author or author_top, author_bio=bio, date=date)
    article.blocks = _blocks(body)
    _repair_drop_cap(article.blocks)
    article.recently_published = recent
    return article


def _clean(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\u202f", " ")
    text = re.sub("[\u200b\u200c\u200d\ufeff]", "", text).replace("\t", "    ")
    lines = [line.rstrip() for line in text.split("\n")]
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    for index in nonblank[-12:]:
        if _COMMENT_SECTION.match(lines[index].strip()):
            lines = lines[:index]
            break
    return [line for line in lines if not _CHROME.match(line.strip())]


def _units(lines: list[str]) -> list[str]:
    """One unit per line, or per paragraph when the text is hard-wrapped."""
    if not _hard_wrapped(lines):
        return [line.strip() for line in lines if line.strip()]
    width = sorted(len(line) for line in lines if line.strip())[-1]
    units: list[str] = []
    previous = ""
    for line in lines:
        stripped = line.strip()
        if stripped and units and previous and _continues(previous, line, units[-1], width):
            units[-1] += " " + (stripped.lstrip("> ").strip() if units[-1].startswith(">") else stripped)
        elif stripped:
            units.append(stripped)
        previous = line if stripped else ""
    return units


def _continues(previous: str, line: str, unit: str, width: int) -> bool:
    """Whether ``line`` carries on the unit above it in hard-wrapped text.

    An indented line continues a list item; a "> " line continues a quote;
    otherwise a line continues only a line that was filled to near the wrap
    width (a short line ended its paragraph, like a title or a byline).
    """
    stripped = line.strip()
    if re.fullmatch(r"[=\-_*]{3,}", stripped) or _ATTRIBUTION.match(stripped):
        return False
    if _ITEM.match(unit):
        return line[:1].isspace() and not _ITEM.match(line)
    if unit.startswith(">"):
        return stripped.startswith(">")
    if _ITEM.match(line) or stripped.startswith(">"):
        return False
    return len(previous.rstrip()) >= 0.6 * width


def _hard_wrapped(lines: list[str]) -> bool:
    nonblank = [line for line in lines if line.strip()]
    if not nonblank or max(len(line) for line in nonblank) > 100:
        return False
    breaks = sum(
        1
        for a, b in zip(lines, lines[1:], strict=False)
        if a.strip() and b.strip() and not _SENTENCE_END.search(a) and b.strip()[:1].islower()
    )
    return breaks >= (1 if len(nonblank) < 12 else 2)


def _take_recent(units: list[str]) -> tuple[list[str], RecentLink | None]:
    """Remove the recently-published line (and a URL line after it)."""
    for index, unit in enumerate(units):
        match = _RECENT.match(unit)
        if not match:
            continue
        rest = (match.group("rest") or match.group("rest2") or "").strip()
        has_separator = bool(re.search(r"[-–—:|]", unit[: len(unit) - len(rest)]))
        if not rest or not (has_separator or _URL.search(rest)):
            continue
        title, url = _title_and_url(rest)
        drop = 1
        if not url and index + 1 < len(units) and _URL.fullmatch(units[index + 1]):
            url, drop = units[index + 1], 2
        if title:
            return units[:index] + units[index + drop :], RecentLink(title=title, url=url)
    return units, None


def _title_and_url(rest: str) -> tuple[str, str | None]:
    link = _MD_LINK.search(rest)
    if link:
        return _strip_quotes(link.group("text")), link.group("url")
    url_match = _URL.search(rest)
    url = url_match.group(0).rstrip(").,>") if url_match else None
    title = _URL.sub("", rest).strip(" \t-–—:|()<>")
    return _strip_quotes(title), url


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) > 1 and text[0] in _OPEN_QUOTES and text[-1] in _CLOSE_QUOTES:
        text = text[1:-1].strip()
    return text


def _take_author_block(units: list[str]) -> tuple[list[str], str, str]:
    """Remove "About the Creator" and what follows; return (rest, name, bio)."""
    for index in range(len(units) - 1, -1, -1):
        if _AUTHOR_MARK.match(units[index]):
            tail = units[index + 1 :]
            name = ""
            if tail and len(tail[0].split()) <= 6 and not _SENTENCE_END.search(tail[0]):
                name, tail = tail[0], tail[1:]
            return units[:index], name, " ".join(tail)
    return units, "", ""


def _header(units: list[str]) -> tuple[str, str, str, dt.date | None, list[str]]:
    """Title, subtitle, byline author and date from the first units; the rest is the body."""
    if not units:
        return "", "", "", None, []
    title = re.sub(r"^(?:#\s+|title:\s*)", "", units[0], flags=re.I).strip()
    title = string.capwords(title) if title.isupper() else title
    rest = units[1:]
    subtitle, author, date = "", "", None
    for _ in range(4):
        if not rest:
            break
        unit = rest[0]
        byline = _BYLINE.match(unit)
        if byline and len(byline.group("name").split()) <= 6:
            author = byline.group("name").strip()
            date = date or _parse_date(byline.group("rest") or "")
        elif _parse_date(unit):
            date = _parse_date(unit)
        elif not subtitle and _is_subtitle(unit, rest[1:]):
            subtitle = re.sub(r"^subtitle:\s*", "", unit, flags=re.I)
        else:
            break
        rest = rest[1:]
    return title, subtitle, author, date, rest


def _is_subtitle(unit: str, after: list[str]) -> bool:
    if unit.lower().startswith("subtitle:"):
        return True
    if not after or len(unit) > 140 or _ITEM.match(unit) or unit[:1] in _OPEN_QUOTES:
        return False
    return not unit.endswith((".", "…", ":", ";", ","))


def _parse_date(text: str) -> dt.date | None:
    text = text.strip().rstrip(".")
    if not re.search(r"\d{4}", text):  # every format has a year (strptime is slow to say no)
        return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _blocks(units: list[str]) -> list:
    blocks: list = []
    for index, unit in enumerate(units):
        following = units[index + 1] if index + 1 < len(units) else None
        if _RULE_LINE.fullmatch(unit):
            if blocks and isinstance(blocks[-1], Paragraph) and unit[0] in "=-":
                blocks[-1] = Heading(blocks[-1].spans, level=2)
            continue
        _add_unit(blocks, unit, following)
    return blocks


def _add_unit(blocks: list, unit: str, following: str | None) -> None:
    item = _ITEM.match(unit)
    attribution = _ATTRIBUTION.match(unit)
    if item:
        ordered = item.group("number") is not None
        if blocks and isinstance(blocks[-1], ListBlock) and blocks[-1].ordered == ordered:
            blocks[-1].items.append(inline(item.group("text")))
        else:
            blocks.append(ListBlock([inline(item.group("text"))], ordered=ordered))
    elif attribution and blocks and isinstance(blocks[-1], Quote) and not blocks[-1].cite:
        blocks[-1].cite = attribution.group("who").strip()
    elif unit.startswith(">"):
        text = unit.lstrip("> ").strip()
        if blocks and isinstance(blocks[-1], Quote) and not blocks[-1].cite:
            blocks[-1].spans.extend([Span(" ")] + inline(text))
        else:
            blocks.append(Quote(inline(text)))
    elif (match := _QUOTED.match(unit)) and _balanced_quote(unit):
        blocks.append(Quote(inline(unit[0] + match.group("body") + _closing(unit[0])),
                            cite=(match.group("who") or "").strip()))
    elif match := _IMAGE_URL.match(unit):
        blocks.append(Image(src=match.group("src") or match.group("bare"), alt=(match.group("alt") or "").strip()))
    elif _is_heading(unit, following):
        text = unit.lstrip("#").strip()
        level = 3 if unit.startswith("###") else 2
        blocks.append(Heading(inline(string.capwords(text) if text.isupper() else text), level=level))
    else:
        blocks.append(Paragraph(inline(unit)))


def _balanced_quote(unit: str) -> bool:
    """A quoted line, not a paragraph that merely starts and ends with quoted speech."""
    match = _QUOTED.match(unit)
    if match is None:
        return False
    body = match.group("body")
    return not any(mark in body for mark in "\"“”") and len(body.split()) >= 3


def _closing(opening: str) -> str:
    return _CLOSE_QUOTES[_OPEN_QUOTES.index(opening)]


def _is_heading(unit: str, following: str | None) -> bool:
    if following is None:
        return False
    if unit.startswith("#"):
        return True
    words = unit.split()
    if len(words) > 14 or len(unit) > 90 or not (unit[0].isupper() or unit[0].isdigit()):
        return False
    if unit.isupper() and len(words) <= 10:
        return True
    if unit.endswith("?"):
        return len(words) >= 3 and _title_case_ratio(words) > 0.6
    if _SENTENCE_END.search(unit) or unit.endswith(("!", "?")):
        return False
    return _title_case_ratio(words) >= 0.5 or len(words) <= 8


def _title_case_ratio(words: list[str]) -> float:
    long_words = [w.strip("\"“”‘’()[]?!.,:;") for w in words]
    long_words = [w for w in long_words if len(w) >= 4 and w[:1].isalpha()]
    if not long_words:
        return 1.0
    return sum(1 for w in long_words if w[0].isupper()) / len(long_words)


def _repair_drop_cap(blocks: list) -> None:
    """Put back an initial "I" lost with a decorative drop cap ("t's 2 a.m." -> "It's 2 a.m.")."""
    first = next((b for b in blocks if isinstance(b, Paragraph)), None)
    if first is None or not first.spans or first.spans[0].href:
        return
    text = first.spans[0].text
    word = text.split(" ", 1)[0]
    if word and word[0].islower() and word in _DROP_CAP:
        first.spans[0] = Span(_DROP_CAP[word] + text[len(word) :])


def inline(text: str) -> list[Span]:
    """Spans of one unit: ``[text](url)`` links, bare URLs, and ``**bold**``."""
    spans: list[Span] = []
    position = 0
    for match in _INLINE.finditer(text):
        spans.extend(text_spans(text[position : match.start()]))
        if match.group("bold"):
            spans.append(Span(match.group("bold"), strong=True))
        else:
            spans.append(Span(match.group("text"), href=match.group("url")))
        position = match.end()
    spans.extend(text_spans(text[position:]))
    return [span for span in spans if span.text]
