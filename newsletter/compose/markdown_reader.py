"""Markdown (CommonMark, via markdown-it-py) read into an Article.

- A first ``# heading`` is the title when front matter gives none; later
  level-1 headings become level 2 (the title is the only level 1).
- Paragraphs, bullet and numbered lists (nested items are flattened),
  block quotes, fenced or indented code, and images standing alone in a
  paragraph map to the model's blocks; inline bold, italic, code and links
  are kept.
- Raw HTML is *not* passed through: it is kept as visible text, so markup in
  an article never becomes live HTML in the email.
- The plain-text reader's tail rules also apply to the last paragraphs
  ("About the Author", "Read next: ..."), for articles written out by hand.
"""

from __future__ import annotations

from newsletter.compose.model import Article, Code, Heading, Image, ListBlock, Paragraph, Quote, Span, plain


def read_markdown(text: str) -> Article:
    """The Article in Markdown ``text`` (front matter already removed)."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    blocks = _Walker(tokens).blocks()
    title = ""
    if blocks and isinstance(blocks[0], Heading) and blocks[0].level == 1:
        title = plain(blocks.pop(0).spans)
    for block in blocks:
        if isinstance(block, Heading):
            block.level = min(max(block.level, 2), 4)
    article = Article(title=title, blocks=blocks)
    apply_tail_rules(article)
    return article


def apply_tail_rules(article: Article) -> None:
    """Take an author block and a recently-published line out of the blocks."""
    from newsletter.compose.plaintext import _take_author_block, _take_recent

    for index, block in enumerate(article.blocks):
        if not isinstance(block, (Paragraph, Heading)):
            continue
        after = article.blocks[index + 1 : index + 2]
        units = [plain(block.spans)] + [plain(b.spans) for b in after if isinstance(b, Paragraph)]
        rest, recent = _take_recent(units)
        if recent is None or (rest and rest[0] == units[0]):
            continue
        recent.url = recent.url or next((s.href for s in block.spans if s.href), None)
        del article.blocks[index : index + len(units) - len(rest)]
        article.recently_published = article.recently_published or recent
        break
    units = [plain(b.spans) if isinstance(b, (Paragraph, Heading)) else "\x00" for b in article.blocks]
    kept, name, bio = _take_author_block(units)
    if len(kept) < len(units):
        del article.blocks[len(kept) :]
        article.author = article.author or name
        article.author_bio = article.author_bio or bio.replace("\x00", "").strip()


class _Walker:
    """Turns markdown-it's flat token stream into model blocks."""

    def __init__(self, tokens):
        self.tokens = tokens

    def blocks(self) -> list:
        out: list = []
        stack: list[str] = []  # open containers: "quote", "bullet", "ordered"
        for token in self.tokens:
            kind = token.type
            if kind in ("blockquote_open", "bullet_list_open", "ordered_list_open"):
                stack.append({"blockquote_open": "quote", "bullet_list_open": "bullet"}.get(kind, "ordered"))
                if kind != "blockquote_open" and not any(s in ("bullet", "ordered") for s in stack[:-1]):
                    out.append(ListBlock([], ordered=kind == "ordered_list_open"))
            elif kind in ("blockquote_close", "bullet_list_close", "ordered_list_close"):
                stack.pop()
            elif kind == "heading_open":
                out.append(Heading([], level=int(token.tag[1])))
            elif kind in ("fence", "code_block"):
                out.append(Code(token.content.rstrip("\n")))
            elif kind == "html_block":
                out.append(Paragraph([Span(token.content.strip())]))
            elif kind == "inline":
                self._inline(out, stack, token)
        return [b for b in out if not (isinstance(b, ListBlock) and not b.items)]

    def _inline(self, out: list, stack: list[str], token) -> None:
        spans, images = _spans(token.children or [])
        if isinstance(out[-1:] and out[-1], Heading) and not out[-1].spans:
            out[-1].spans = spans
        elif any(s in ("bullet", "ordered") for s in stack):
            lists = [b for b in out if isinstance(b, ListBlock)]
            lists[-1].items.append(spans)
        elif images and not plain(spans).strip():
            out.extend(images)
        elif stack and stack[-1] == "quote":
            if out and isinstance(out[-1], Quote):
                out[-1].spans.extend([Span(" ")] + spans)
            else:
                out.append(Quote(spans))
        else:
            out.append(Paragraph(spans))
            out.extend(images)


def _spans(children) -> tuple[list[Span], list[Image]]:
    """Inline tokens as spans; images are returned apart (they become blocks)."""
    spans: list[Span] = []
    images: list[Image] = []
    strong = em = 0
    href: str | None = None
    for child in children:
        kind = child.type
        if kind == "strong_open":
            strong += 1
        elif kind == "strong_close":
            strong -= 1
        elif kind == "em_open":
            em += 1
        elif kind == "em_close":
            em -= 1
        elif kind == "link_open":
            href = child.attrGet("href")
        elif kind == "link_close":
            href = None
        elif kind in ("softbreak", "hardbreak"):
            spans.append(Span(" "))
        elif kind == "image":
            images.append(Image(src=child.attrGet("src") or "", alt=child.content or "",
                                caption=child.attrGet("title") or ""))
        elif kind in ("text", "code_inline", "html_inline"):
            spans.append(Span(child.content, href=href, strong=strong > 0, em=em > 0, code=kind == "code_inline"))
    return [s for s in spans if s.text], images
