"""HTML of an article body read into an Article (stdlib ``html.parser``).

- The first ``<h1>`` is the title (else ``<title>``); other headings become
  levels 2 to 4. A ``<p class="subtitle">``, ``<h2>`` or ``<p>`` right after
  the ``<h1>`` marked as subtitle/dek/lead/standfirst is the subtitle.
- ``<p>``, ``<ul>``/``<ol>``/``<li>``, ``<blockquote>`` (with ``<cite>``),
  ``<img alt>``, ``<pre>`` map to blocks; ``<strong>/<b>``, ``<em>/<i>``,
  ``<code>`` and ``<a href>`` are kept inline. Text outside any block (a
  bare ``<div>`` of text) becomes a paragraph.
- ``<script>``, ``<style>``, ``<nav>``, ``<header>``, ``<footer>``,
  ``<aside>``, ``<form>``, ``<button>`` and ``<svg>`` are page chrome and
  dropped. Attributes other than href/src/alt are ignored: nothing of the
  input's markup reaches the email except through the model.
- The plain-text reader's chrome and tail rules then apply to the
  paragraphs (comment sections, "About the Author", "Read next: ...").
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from newsletter.compose.model import Article, Code, Heading, Image, ListBlock, Paragraph, Quote, Span, plain

_SKIP = {"script", "style", "nav", "header", "footer", "aside", "form", "button", "svg", "noscript", "template",
         "iframe"}
_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "figcaption", "div", "section",
           "article", "td"}
_SUBTITLE_CLASSES = re.compile(r"\b(subtitle|dek|lead|standfirst|subhead)\b", re.I)


def read_html(text: str) -> Article:
    """The Article in HTML ``text``."""
    from newsletter.compose.markdown_reader import apply_tail_rules
    from newsletter.compose.plaintext import _CHROME, _COMMENT_SECTION

    parser = _Parser()
    parser.feed(text)
    parser.close()
    parser.flush()
    blocks = parser.blocks
    cut = next((i for i, b in enumerate(blocks)
                if _is_text(b) and _COMMENT_SECTION.match(plain(b.spans).strip()) and i >= len(blocks) - 12), None)
    blocks = blocks[:cut]
    blocks = [b for b in blocks if not (_is_text(b) and _CHROME.match(plain(b.spans).strip()))]
    title = parser.title
    subtitle = parser.subtitle
    if not title and blocks and isinstance(blocks[0], Heading):
        title = plain(blocks.pop(0).spans)
    article = Article(title=" ".join(title.split()), subtitle=" ".join(subtitle.split()), blocks=blocks)
    apply_tail_rules(article)
    return article


def _is_text(block) -> bool:
    return isinstance(block, (Paragraph, Heading))


class _Parser(HTMLParser):
    """Collects blocks while tracking inline state; chrome subtrees are skipped."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list = []
        self.title = self.subtitle = self.page_title = ""
        self.spans: list[Span] = []
        self.block_tag = "p"
        self.block_class = ""
        self.skip_depth = 0
        self.strong = self.em = self.code = 0
        self.href: str | None = None
        self.list_stack: list[ListBlock] = []
        self.quote_depth = 0
        self.pre_depth = 0
        self.in_title = False
        self.cite = ""
        self.in_cite = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "title":
            self.in_title = True
        elif tag in ("strong", "b"):
            self.strong += 1
        elif tag in ("em", "i"):
            self.em += 1
        elif tag == "code":
            self.code += 1
        elif tag == "a":
            self.href = (attributes.get("href") or "").strip()
        elif tag == "br":
            self.spans.append(Span(" "))
        elif tag == "cite":
            self.in_cite = True
        elif tag == "img":
            self.flush()
            self.blocks.append(Image(src=attributes.get("src") or "", alt=(attributes.get("alt") or "").strip()))
        elif tag in ("ul", "ol"):
            self.flush()
            self.list_stack.append(ListBlock([], ordered=tag == "ol"))
        elif tag == "blockquote":
            self.flush()
            self.quote_depth += 1
        elif tag == "pre":
            self.flush()
            self.pre_depth += 1
        elif tag in _BLOCKS:
            self.flush()
            self.block_tag, self.block_class = tag, attributes.get("class") or ""

    def handle_endtag(self, tag):
        if self.skip_depth:
            if tag in _SKIP:
                self.skip_depth -= 1
            return
        if tag == "title":
            self.in_title = False
        elif tag in ("strong", "b"):
            self.strong = max(0, self.strong - 1)
        elif tag in ("em", "i"):
            self.em = max(0, self.em - 1)
        elif tag == "code":
            self.code = max(0, self.code - 1)
        elif tag == "a":
            self.href = None
        elif tag == "cite":
            self.in_cite = False
        elif tag in ("ul", "ol") and self.list_stack:
            self.flush()
            finished = self.list_stack.pop()
            if not self.list_stack and finished.items:
                self.blocks.append(finished)
        elif tag == "blockquote":
            self.flush()
            self.quote_depth = max(0, self.quote_depth - 1)
            cite, self.cite = self.cite.strip(" —–-"), ""
            if cite and self.blocks and isinstance(self.blocks[-1], Quote) and not self.blocks[-1].cite:
                self.blocks[-1].cite = cite
        elif tag == "pre":
            self.flush()
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in _BLOCKS:
            self.flush()

    def handle_data(self, data):
        if self.skip_depth:
            return
        if self.in_title:
            self.page_title += data
            return
        if self.in_cite and self.quote_depth:
            self.cite += data
            return
        text = data if self.pre_depth else re.sub(r"\s+", " ", data)
        if text:
            self.spans.append(Span(text, href=self.href or None, strong=self.strong > 0, em=self.em > 0,
                                   code=self.code > 0))

    def flush(self) -> None:
        """End the block being collected and file it where it belongs."""
        spans, self.spans = _trim(self.spans), []
        if not spans:
            return
        text = plain(spans)
        if self.pre_depth:
            self.blocks.append(Code(text.strip("\n")))
        elif self.list_stack:
            self.list_stack[-1 if len(self.list_stack) == 1 else 0].items.append(spans)
        elif self.quote_depth:
            cite, self.cite = self.cite.strip(" —–-"), ""
            if self.blocks and isinstance(self.blocks[-1], Quote) and not self.blocks[-1].cite:
                self.blocks[-1].spans.extend([Span(" ")] + spans)
                self.blocks[-1].cite = cite
            else:
                self.blocks.append(Quote(spans, cite=cite))
        elif self.block_tag == "h1" and not self.title:
            self.title = text
        elif not self.subtitle and self.title and not self.blocks and (
            _SUBTITLE_CLASSES.search(self.block_class) or self.block_tag == "h2"
        ):
            self.subtitle = text
        elif self.block_tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.blocks.append(Heading(spans, level=min(max(int(self.block_tag[1]), 2), 4)))
        else:
            self.blocks.append(Paragraph(spans))

    def close(self):
        super().close()
        self.title = self.title or " ".join(self.page_title.split())


def _trim(spans: list[Span]) -> list[Span]:
    """Drop leading/trailing whitespace and merge runs of spaces between spans."""
    out: list[Span] = []
    for span in spans:
        text = span.text
        if out and out[-1].text.endswith(" ") and text.startswith(" "):
            text = text.lstrip(" ")
        if not out and not text.strip():
            continue
        if not out:
            text = text.lstrip()
        if text:
            out.append(Span(text, span.href, span.strong, span.em, span.code))
    while out and not out[-1].text.strip():
        out.pop()
    if out:
        last = out[-1]
        out[-1] = Span(last.text.rstrip(), last.href, last.strong, last.em, last.code)
    return out
