"""Accessibility pre-flight: what WCAG 2.1 AA asks of an email, read from the compiled HTML.

:func:`accessibility_findings` gives warnings (a send still goes; the author
is told what a reader with a screen reader, low vision or a phone in dark
mode will meet):

- ``lang-missing``: ``<html lang>`` absent, empty, ``und`` (MRML's default)
  or not a language tag (screen readers pick their voice from it);
  ``dir-missing``: a right-to-left language without ``dir="rtl"``.
- ``heading-order``: a heading level skipped (an ``h2`` followed by an
  ``h4``), no ``h1`` or more than one.
- ``low-contrast``: text whose colour against its background is under
  4.5:1 (3:1 for large text: 24px, or 18.66px bold), in light mode and, when
  the theme has a ``prefers-color-scheme: dark`` block, in dark mode. Colours
  come from the inline styles, ``bgcolor`` attributes and the head's style
  rules (class, tag, descendant and child selectors; ``!important`` as CSS
  ranks it), inherited as a browser does; text over a background image is
  not judged. Rules under a width media query (phone layouts) are left out.
- ``link-text``: links whose text says nothing out of context ("click
  here", "here", "read more", "more", "link"), links without text, and bare
  URLs as link text.
- ``font-size``: visible text under 14px.
- ``table-role``: a layout table without ``role="presentation"`` (a table
  with ``<th>``, ``<thead>`` or ``<caption>`` holds data and is left alone).
  MRML marks its own tables; an ``<mj-table>`` is not marked.

Hidden content (``display:none``, ``visibility:hidden``, zero font size or
opacity: the preheader), the head and Outlook's conditional comments are not
read.

Speed (the lint runs in every compose, check and send): the HTML is read in
one pass of a regular-expression tokenizer that nests elements as the
standard library's ``html.parser`` does (no tree is built), and styles are
computed once per path of distinct markup and kept on the theme's
stylesheet, so the skeleton and the paragraphs of every edition of a theme
are styled by look-ups. ``benchmarks/bench_accessibility.py`` measures it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from html import unescape
from typing import NamedTuple

from newsletter.compose.edition import Finding

NORMAL_CONTRAST, LARGE_CONTRAST = 4.5, 3.0
LARGE_PX, LARGE_BOLD_PX = 24.0, 18.66
MIN_FONT_PX = 14.0
SHOWN = 3  # examples named in one finding
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "khw", "ks", "nqo", "ps", "sd", "syr", "ug",
                           "ur", "yi"})
VAGUE_LINK_TEXTS = frozenset({"click here", "here", "click", "read more", "more", "link", "this link", "learn more",
                              "click this link", "go", "this"})
_LANG_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_BARE_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr"})
_UNREAD = frozenset({"head", "style", "script", "title", "template", "noscript"})
_HEADING = re.compile(r"h([1-6])")
_INVISIBLE = re.compile(r"[\u034f\u00a0\u200b-\u200d\ufeff]")  # joiners, no-break spaces
_HEADING_EM = {"h1": 2.0, "h2": 1.5, "h3": 1.17, "h4": 1.0, "h5": 0.83, "h6": 0.67}
_BOLD_TAGS = frozenset({"b", "strong", "th", "h1", "h2", "h3", "h4", "h5", "h6"})
_SPECIAL = _BOLD_TAGS | _UNREAD | {"a", "font"}  # elements whose style differs from the parent's by default
_KEYWORD_PX = {"xx-small": 9.0, "x-small": 10.0, "small": 13.0, "medium": 16.0, "large": 18.0, "x-large": 24.0,
               "xx-large": 32.0}
_NAMED = {"black": "#000000", "white": "#ffffff", "red": "#ff0000", "green": "#008000", "blue": "#0000ff",
          "gray": "#808080", "grey": "#808080", "silver": "#c0c0c0", "maroon": "#800000", "navy": "#000080",
          "purple": "#800080", "teal": "#008080", "olive": "#808000", "orange": "#ffa500", "yellow": "#ffff00",
          "lime": "#00ff00", "aqua": "#00ffff", "cyan": "#00ffff", "fuchsia": "#ff00ff", "magenta": "#ff00ff",
          "darkgray": "#a9a9a9", "darkgrey": "#a9a9a9", "lightgray": "#d3d3d3", "lightgrey": "#d3d3d3",
          "dimgray": "#696969", "dimgrey": "#696969", "whitesmoke": "#f5f5f5"}
_HEX = re.compile(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})\b", re.I)
_RGB = re.compile(r"rgba?\(\s*([\d.]+%?)[\s,]+([\d.]+%?)[\s,]+([\d.]+%?)(?:[\s,/]+([\d.]+%?))?\s*\)", re.I)
_DEFAULT_TEXT, _DEFAULT_BACKGROUND, _DEFAULT_LINK = (0, 0, 0, 1.0), (255, 255, 255, 1.0), (0, 0, 238, 1.0)

Colour = tuple[float, float, float, float]  # r, g, b (0-255), alpha (0-1)


def accessibility_findings(html: str) -> list[Finding]:
    """Every accessibility warning for the compiled ``html`` (see the module docstring)."""
    sheet = Stylesheet.of(html)
    read = _read(html, sheet, ("light", "dark") if sheet.has_dark else ("light",))
    findings = [*_language(read.html_attrs), *_headings(read.headings), *_link_texts(read.links),
                *_layout_tables(read.tables)]
    findings += _contrast(read.runs)
    findings += _font_sizes(read.runs["light"])
    return findings


def text_direction(lang: str) -> str:
    """ "rtl" for a language written right to left (Arabic, Hebrew, Persian, Urdu...), else "ltr"."""
    return "rtl" if lang.split("-")[0].strip().lower() in RTL_LANGUAGES else "ltr"


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


# -- the document ---------------------------------------------------------
#
# One pass over the tokens builds no tree: a stack of open elements, as the standard library's parser
# would nest them (an end tag closes up to its open element, else is ignored; void and self-closed
# elements are not opened; comments, so Outlook's conditional markup, are left out). The computed style
# of an element depends only on the elements from the root down to it (tag, classes, id, style, bgcolor,
# hidden...: its :class:`Element`), so it is kept per path of Elements on the theme's :class:`Stylesheet`:
# every edition of a theme repeats the same skeleton and paragraph markup, and is styled by look-ups.

# (a comment runs to the first "-->", a style element's text to "</style": written to jump, not to step a
# character at a time; possessive groups never backtrack, so a tag without its ">" costs one scan)
_COMMENT = r"!--[^-]*+(?:-(?!->)[^-]*+)*+(?:-->|\Z)"
_ATTRIBUTES = r"((?:[^>\"'<]++|\"[^\"]*+\"|'[^']*+')*+)"
_TOKEN = re.compile(r"<(?:" + _COMMENT + r"|[!?][^>]*>?|/([a-zA-Z][^\s/><]*+)[^<>]*+>|([a-zA-Z][^\s/><]*+)"
                    + _ATTRIBUTES + ">)")
_ATTRIBUTE = re.compile(r"([^\s/>=\"']+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]*))?")
_RAW_END = {"style": re.compile(r"</style", re.I), "script": re.compile(r"</script", re.I)}
_STYLE_ELEMENT = re.compile(r"<(?:" + _COMMENT + r"|(?i:style)\b" + _ATTRIBUTES
                            + r">([^<]*+(?:<(?!/(?i:style))[^<]*+)*+)(?:</(?i:style)|\Z))")
_CACHE_LIMIT = 20_000  # start tags and styled paths kept between documents (a long-running daemon stays small)
_TAGS: dict[str, tuple[str, dict[str, str], Element, bool, int]] = {}  # raw start tag -> see _start_tag
_ELEMENTS: dict[tuple, Element] = {}


def attributes(text: str) -> dict[str, str]:
    """The attributes of a start tag's ``text`` after its name (names lower case, values unescaped)."""
    found = {}
    for name, value in _ATTRIBUTE.findall(text):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found[name.lower()] = unescape(value) if "&" in value else value
    return found


class Element:
    """What the styles of an element depend on, besides its ancestors (one per distinct markup: interned)."""

    __slots__ = ("tag", "classes", "id", "style", "attrs", "heading")

    def __init__(self, tag: str, attrs: dict[str, str], kept: dict[str, str]):
        self.tag = tag
        self.classes = frozenset((attrs.get("class") or "").split())
        self.id = attrs.get("id")
        style = attrs.get("style")
        self.style = declarations(style) if style else {}
        self.attrs = kept  # the attributes that style it (in _element's key)
        match = _HEADING.fullmatch(tag)
        self.heading = int(match.group(1)) if match else 0


def _element(tag: str, attrs: dict[str, str]) -> Element:
    key = (tag, attrs.get("class"), attrs.get("id"), attrs.get("style"), attrs.get("bgcolor"),
           attrs.get("color") if tag == "font" else None, "hidden" in attrs, attrs.get("aria-hidden"),
           tag == "a" and attrs.get("href") is not None)
    element = _ELEMENTS.get(key)
    if element is None:
        kept: dict[str, str] = {name: attrs[name] for name in ("bgcolor", "aria-hidden") if name in attrs}
        if "hidden" in attrs:
            kept["hidden"] = ""
        if tag == "font" and "color" in attrs:
            kept["color"] = attrs["color"]
        if key[-1]:
            kept["href"] = ""
        element = _ELEMENTS[key] = Element(tag, attrs, kept)
    return element


# what a start tag asks of the pass besides styling it
_PLAIN, _HTML, _IMG, _DATA, _HEADING_TAG, _LINK, _TABLE, _RAW = range(8)


def _start_tag(raw: str, name: str, rest: str) -> tuple[str, dict[str, str], Element, bool, int]:
    """``(tag, attributes, Element, opens, kind)`` of a start tag (``opens``: not void, not self-closed)."""
    found = _TAGS.get(raw)
    if found is None:
        tag = name.lower()
        attrs = attributes(rest)
        element = _element(tag, attrs)
        kind = (_HTML if tag == "html" else _IMG if tag == "img" else _DATA if tag in ("th", "thead", "caption")
                else _HEADING_TAG if element.heading else _LINK if tag == "a" and attrs.get("href") is not None
                else _TABLE if tag == "table" and (attrs.get("role") or "").strip().lower() not in ("presentation",
                                                                                                     "none")
                else _RAW if tag in _RAW_END else _PLAIN)
        found = _TAGS[raw] = (tag, attrs, element, tag not in _VOID and not rest.endswith("/"), kind)
    return found


class _State:
    """The computed style of one path of Elements, per mode (None: hidden), and its children's states."""

    __slots__ = ("styles", "visible", "shown", "children", "classes")

    def __init__(self, styles: tuple[Computed | None, ...], modes: tuple[str, ...],
                 classes: frozenset[str] = frozenset()):
        self.styles = styles
        self.classes = classes  # every class on the path: a selector ".card td" fails at once outside any .card
        self.visible = any(styles)  # in some mode
        self.shown = modes[0] == "light" and styles[0] is not None  # in light mode: the structure rules read it
        self.children: dict[Element, _State] = {}


@dataclass
class _Read:
    """What the rules need from a document, gathered in one pass."""

    html_attrs: dict[str, str] | None = None  # the first <html>'s
    headings: list[tuple[int, list[str]]] = field(default_factory=list)  # shown headings: level, text parts
    links: list[tuple[dict[str, str], list[str]]] = field(default_factory=list)  # shown <a href>: attrs, text
    tables: list[list] = field(default_factory=list)  # shown tables: [attributes, holds data]
    runs: dict[str, list[TextRun]] = field(default_factory=dict)


def _read(html: str, sheet: Stylesheet, modes: tuple[str, ...]) -> _Read:
    """The document's structure and each visible text with its computed style in each of ``modes``."""
    if len(_TAGS) > _CACHE_LIMIT or len(_ELEMENTS) > _CACHE_LIMIT:
        _TAGS.clear()
        _ELEMENTS.clear()
    root = sheet.root(modes)
    read = _Read()
    slots: list[tuple[_State, list[str]]] = [(root, [])]  # each visible element's own text, in document order
    # open elements: tag, Element, state, own text (None when hidden), table record, collects text (heading, link)
    stack: list[tuple[str, Element | None, _State, list[str] | None, list | None, bool]] = [
        ("#document", None, root, slots[0][1], None, False)]
    collecting: list[list[str]] = []  # text parts of the open shown headings and links
    search, pos, size = _TOKEN.search, 0, len(html)
    while pos < size:
        match = search(html, pos)
        start = match.start() if match is not None else size
        own = stack[-1][3]
        if start > pos and (own is not None or collecting):  # else hidden text nobody reads
            text = html[pos:start]
            if "&" in text:
                text = unescape(text)
            if own is not None:
                own.append(text)
            for parts in collecting:
                parts.append(text)
        if match is None:
            break
        pos = match.end()
        end_name, name, rest = match.groups()
        if name is not None:
            tag, attrs, element, opens, kind = _start_tag(match.group(0), name, rest)
            parent = stack[-1][2]
            state = parent.children.get(element)
            if state is None:
                state = parent.children[element] = sheet.state(element, stack, parent, modes)
            table, collects = None, False
            if kind:
                if kind == _HTML:
                    if read.html_attrs is None:
                        read.html_attrs = attrs
                elif kind == _IMG:
                    alt = attrs.get("alt") or ""
                    for parts in collecting:
                        parts.append(alt)
                elif kind == _DATA:
                    for entry in stack:
                        if entry[4] is not None:
                            entry[4][1] = True
                elif state.shown and kind == _HEADING_TAG:
                    read.headings.append((element.heading, []))
                    collecting.append(read.headings[-1][1])
                    collects = True
                elif state.shown and kind == _LINK:
                    read.links.append((attrs, []))
                    collecting.append(read.links[-1][1])
                    collects = True
                elif state.shown and kind == _TABLE:
                    table = [attrs, False]
                    read.tables.append(table)
            if not opens:
                continue
            own = None
            if state.visible:
                own = []
                slots.append((state, own))
            stack.append((tag, element, state, own, table, collects))
            if kind == _RAW:  # style, script: text up to the end tag
                end = _RAW_END[tag].search(html, pos)
                text = html[pos:end.start() if end else size]
                if text:
                    if own is not None:
                        own.append(text)
                    for parts in collecting:
                        parts.append(text)
                pos = end.start() if end else size
        elif end_name is not None:
            tag = end_name.lower()
            if stack[-1][0] == tag and len(stack) > 1:  # the common case: closing the innermost element
                if stack.pop()[5]:
                    collecting.pop()
                continue
            for depth in range(len(stack) - 2, 0, -1):  # close up to the matching element, if it is open
                if stack[depth][0] == tag:
                    for entry in stack[depth:]:
                        if entry[5]:
                            collecting.pop()
                    del stack[depth:]
                    break
    read.runs = {mode: [] for mode in modes}
    lists = [read.runs[mode] for mode in modes]
    for state, own in slots:
        if not own:
            continue
        words = " ".join(_INVISIBLE.sub(" ", " ".join(own)).split())
        if words:
            for runs, computed in zip(lists, state.styles, strict=True):
                if computed is not None and computed.size > 0:
                    runs.append(TextRun(words, computed))
    return read


# -- CSS: declarations, rules, the cascade --------------------------------


# the properties the lint reads (``background`` shares the slot of ``background-color``: the later one wins)
PROPERTIES = frozenset({"color", "background-color", "font-size", "font-weight", "display", "visibility", "opacity",
                        "max-height"})


def declarations(css: str) -> dict[str, tuple[str, bool, int]]:
    """``property -> (value, important, position)`` of a declaration block (later wins), for :data:`PROPERTIES`."""
    found: dict[str, tuple[str, bool, int]] = {}
    for position, declaration in enumerate(css.split(";")):
        name, colon, value = declaration.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        if name == "background":
            name = "background-color"
        if name not in PROPERTIES:
            continue
        value = value.strip()
        important = value.lower().endswith("important") and "!" in value
        if important:
            value = value[: value.rindex("!")].strip()
        found[name] = (value, important, position)
    return found


@dataclass(frozen=True)
class Rule:
    selector: tuple[tuple[str, tuple[str | None, frozenset[str], frozenset[str]]], ...]  # (combinator, compound)
    specificity: tuple[int, int, int]
    order: int
    declarations: dict[str, tuple[str, bool, int]]
    mode: str | None  # "dark", "light", or None for both


_COMPOUND = re.compile(r"(\*|[a-z][a-z0-9-]*)?((?:[.#][\w-]+)*)(:root)?$", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def _selector(text: str):
    """``(parts, specificity)`` of one complex selector, or None when it uses what this lint does not model."""
    tokens = re.sub(r"\s*>\s*", " > ", text.strip()).split()
    parts, combinator, specificity = [], " ", [0, 0, 0]
    for token in tokens:
        if token == ">":
            combinator = ">"
            continue
        match = _COMPOUND.fullmatch(token)
        if not match or not token:
            return None  # attribute selectors, pseudo-classes: not modelled
        tag, rest, root = match.groups()
        classes = frozenset(re.findall(r"\.([\w-]+)", rest or ""))
        ids = frozenset(re.findall(r"#([\w-]+)", rest or ""))
        if root:
            tag, classes = "html", classes
            specificity[1] += 1
        specificity[0] += len(ids)
        specificity[1] += len(classes)
        specificity[2] += 1 if tag and tag != "*" and not root else 0
        parts.append((combinator, ((tag or "*").lower(), classes, ids)))
        combinator = " "
    return (tuple(parts), tuple(specificity)) if parts else None


_BRACES = re.compile(r"[{};]")


def _blocks(css: str):
    """``(prelude, body)`` of each top-level block of ``css``."""
    depth, start, prelude_start = 0, 0, 0
    for match in _BRACES.finditer(css):
        index, char = match.start(), match.group()
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                yield css[prelude_start:start].strip(), css[start + 1:index]
                prelude_start = index + 1
        elif char == ";" and depth == 0:
            prelude_start = index + 1  # @import ...; @charset ...;


class Stylesheet:
    """The style rules of a document's ``<style>`` elements, by colour scheme, and the styles they give."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.has_dark = any(rule.mode == "dark" for rule in rules)
        # rules by their rightmost compound's first class, else its tag (else "*"), as browsers index them:
        # an element is matched only against the rules that could match it
        self.index: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.declarations:
                tag, classes, _ids = rule.selector[-1][1]
                self.index.setdefault("." + min(classes) if classes else tag or "*", []).append(rule)
        # the classes a rule's selector asks of the element's ancestors
        self.needs = {rule.order: frozenset().union(*(compound[1] for _combinator, compound in rule.selector[:-1]))
                      for rule in rules}
        self.roots: dict[tuple[str, ...], _State] = {}
        self.paths = 0

    @classmethod
    def of(cls, html: str) -> Stylesheet:
        """The stylesheet of ``html``'s ``<style>`` elements (a theme's is read once: see :func:`_read_styles`)."""
        styles = []
        for match in _STYLE_ELEMENT.finditer(html):
            if match.group(0).startswith("<!"):
                continue  # a comment: Outlook's conditional styles
            if "mso" not in (attributes(match.group(1)).get("media") or "").lower():
                styles.append(match.group(2))
        return _read_styles(tuple(styles))

    @classmethod
    def _read(cls, css: str, mode: str | None, rules: list[Rule]) -> None:
        for prelude, body in _blocks(css):
            if prelude.startswith("@"):
                condition = prelude.lower()
                if not condition.startswith("@media") or "width" in condition or "print" in condition:
                    continue  # phone layouts, print, @font-face...: not the colours a reader gets by default
                scheme = re.search(r"prefers-color-scheme\s*:\s*(dark|light)", condition)
                cls._read(body, scheme.group(1) if scheme else mode, rules)
                continue
            found = declarations(body)
            for text in prelude.split(","):
                parsed = _selector(text)
                if parsed:
                    rules.append(Rule(parsed[0], parsed[1], len(rules), found, mode))

    def root(self, modes: tuple[str, ...]) -> _State:
        """The document's state in ``modes``: the browser's defaults (the paths under it are kept, up to a limit)."""
        if modes not in self.roots or self.paths > _CACHE_LIMIT:
            if self.paths > _CACHE_LIMIT:
                self.roots.clear()
                self.paths = 0
            start = Computed(_DEFAULT_TEXT, _DEFAULT_BACKGROUND, 16.0, False, False)
            self.roots[modes] = _State((start,) * len(modes), modes)
        return self.roots[modes]

    def state(self, element: Element, ancestors: list, parent: _State, modes: tuple[str, ...]) -> _State:
        """The state of ``element`` under the open elements ``ancestors`` (the document first: entries whose
        second item is the Element), whose state is ``parent``."""
        self.paths += 1
        if not parent.visible:
            return parent  # under a hidden element: hidden too
        matched = self.matched(element, ancestors, parent.classes)
        return _State(tuple(_visible(_compute(element, matched, inherited, mode)) if inherited is not None else None
                            for mode, inherited in zip(modes, parent.styles, strict=True)), modes,
                      parent.classes | element.classes if element.classes else parent.classes)

    def matched(self, element: Element, ancestors: list, above: frozenset[str] = frozenset()) -> list[Rule]:
        """The rules whose selector matches ``element`` under ``ancestors`` (as for :meth:`state`; ``above``:
        their classes), either scheme."""
        candidates = [*self.index.get("*", ()), *self.index.get(element.tag, ())]
        for name in element.classes:
            candidates += self.index.get("." + name, ())
        top = len(ancestors)
        return [rule for rule in candidates
                if self.needs[rule.order] <= above and _matches(rule.selector, len(rule.selector) - 1, element,
                                                                 ancestors, top)]

    @staticmethod
    def cascade(element: Element, matched: list[Rule], mode: str) -> dict[str, str]:
        """The cascaded value of each property declared for ``element`` in ``mode``.

        Ranked as CSS does: important before normal, then the style attribute before rules, then
        specificity, then order; presentational attributes (``bgcolor``) are the caller's fallback."""
        best: dict[str, tuple[tuple, str]] = {}
        for rule in matched:
            if rule.mode is not None and rule.mode != mode:
                continue
            for prop, (value, important, position) in rule.declarations.items():
                key = (important, 0, rule.specificity, rule.order * 1000 + position)
                if prop not in best or key > best[prop][0]:
                    best[prop] = (key, value)
        for prop, (value, important, position) in element.style.items():
            key = (important, 1, (0, 0, 0), position)
            if prop not in best or key > best[prop][0]:
                best[prop] = (key, value)
        return {prop: value for prop, (_key, value) in best.items()}


@lru_cache(maxsize=16)
def _read_styles(styles: tuple[str, ...]) -> Stylesheet:
    """The stylesheet of these ``<style>`` texts (every edition of a theme has the same: read once).

    MRML adds style blocks for the components an article uses (phone layouts of images...): texts that
    differ but give the same rules share one Stylesheet, and so its styled paths."""
    rules: list[Rule] = []
    for css in styles:
        Stylesheet._read(_CSS_COMMENT.sub("", css), None, rules)
    key = tuple((rule.selector, rule.order, tuple(rule.declarations.items()), rule.mode) for rule in rules)
    sheet = _SHEETS.get(key)
    if sheet is None:
        if len(_SHEETS) >= 16:
            _SHEETS.clear()
        sheet = _SHEETS[key] = Stylesheet(rules)
    return sheet


_SHEETS: dict[tuple, Stylesheet] = {}  # by their rules


def _matches(parts, index: int, element: Element, ancestors: list, depth: int) -> bool:
    """``parts[:index + 1]`` matches the element at ``depth`` (``element`` itself at ``len(ancestors)``)."""
    if depth < 1:
        return False  # the document
    node = element if depth == len(ancestors) else ancestors[depth][1]
    combinator, (tag, classes, ids) = parts[index]
    if (tag != "*" and tag != node.tag) or not classes <= node.classes or (ids and node.id not in ids):
        return False
    if index == 0:
        return True
    if combinator == ">":
        return _matches(parts, index - 1, element, ancestors, depth - 1)
    return any(_matches(parts, index - 1, element, ancestors, ancestor) for ancestor in range(depth - 1, 0, -1))


# -- colours --------------------------------------------------------------


def colour(value: str | None) -> Colour | None:
    """The first colour in a CSS value (``#rgb``, ``#rrggbb``, ``rgb()``, ``rgba()``, a common name), else None."""
    if not value:
        return None
    value = value.strip().lower()
    if value == "transparent":
        return (0, 0, 0, 0.0)
    if match := _HEX.search(value):
        digits = match.group(1)
        if len(digits) in (3, 4):
            digits = "".join(d * 2 for d in digits)
        alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16), alpha)
    if match := _RGB.search(value):
        channels = [float(c[:-1]) * 2.55 if c.endswith("%") else float(c) for c in match.groups()[:3]]
        alpha_text = match.group(4)
        alpha = 1.0 if alpha_text is None else (float(alpha_text[:-1]) / 100 if alpha_text.endswith("%")
                                                 else float(alpha_text))
        return (channels[0], channels[1], channels[2], alpha)
    for word in re.findall(r"[a-z]+", value):
        if word in _NAMED:
            return colour(_NAMED[word])
    return None


def _over(top: Colour, below: Colour) -> Colour:
    """``top`` painted over the opaque ``below``."""
    a = top[3]
    return (top[0] * a + below[0] * (1 - a), top[1] * a + below[1] * (1 - a), top[2] * a + below[2] * (1 - a), 1.0)


def luminance(c: Colour) -> float:
    """WCAG 2.1 relative luminance."""
    def linear(channel: float) -> float:
        s = channel / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
    return 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2])


def contrast(foreground: Colour, background: Colour) -> float:
    """WCAG 2.1 contrast ratio of two opaque colours (1 to 21)."""
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def hex_of(c: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(round(v) for v in c[:3]))


# -- computed styles and text runs ----------------------------------------


@dataclass(frozen=True)
class Computed:
    colour: Colour
    background: Colour | None  # None: over an image (not judged)
    size: float
    bold: bool
    hidden: bool
    # (ratio, ratio needed) of its text against its background, None when not judged (computed once per
    # style, which the stylesheet keeps per path: not once per text)
    judged: tuple[float, float] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        judged = None
        if self.background is not None and not self.hidden:
            large = self.size >= LARGE_PX or (self.bold and self.size >= LARGE_BOLD_PX)
            judged = (contrast(self.colour, self.background), LARGE_CONTRAST if large else NORMAL_CONTRAST)
        object.__setattr__(self, "judged", judged)  # the documented way to set a field of a frozen dataclass


class TextRun(NamedTuple):
    text: str
    style: Computed


def _length(value: str | None, parent: float) -> float | None:
    if not value:
        return None
    value = value.strip().lower()
    if value in _KEYWORD_PX:
        return _KEYWORD_PX[value]
    match = re.fullmatch(r"(-?[\d.]+)(px|pt|em|rem|%)?", value)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    return {"pt": number * 4 / 3, "em": number * parent, "rem": number * 16, "%": number * parent / 100}.get(
        unit or "px", number)


def _compute(node: Element, matched: list[Rule], parent: Computed, mode: str) -> Computed:
    values = Stylesheet.cascade(node, matched, mode)
    if not values and not node.attrs.get("bgcolor") and node.tag not in _SPECIAL:
        return parent if not node.attrs.get("hidden") and node.attrs.get("aria-hidden") != "true" else \
            Computed(parent.colour, parent.background, parent.size, parent.bold, True)
    declared = colour(values.get("color")) or colour(node.attrs.get("color") if node.tag == "font" else None)
    text_colour = declared or (_DEFAULT_LINK if node.tag == "a" and node.attrs.get("href") is not None
                               else parent.colour)
    background = parent.background
    painted = values.get("background-color")
    if painted and "url(" in painted.lower() and colour(painted) is None:
        background = None
    else:
        fill = colour(painted) or colour(node.attrs.get("bgcolor"))
        if fill is not None and fill[3] > 0 and background is not None:
            background = _over(fill, background)
    size = _length(values.get("font-size"), parent.size)
    if size is None:
        size = parent.size * _HEADING_EM.get(node.tag, 1.0)
    weight = (values.get("font-weight") or "").strip().lower()
    bold = (weight in ("bold", "bolder") or (weight.isdigit() and int(weight) >= 700) or
            (not weight and (node.tag in _BOLD_TAGS or parent.bold)))
    hidden = (parent.hidden or node.tag in _UNREAD or (values.get("display") or "").lower() == "none"
              or (values.get("visibility") or "").lower() == "hidden"
              or _length(values.get("opacity"), 1.0) == 0 or "hidden" in node.attrs
              or node.attrs.get("aria-hidden") == "true"
              or (values.get("max-height") or "").strip() in ("0", "0px"))
    if text_colour[3] < 1 and background is not None:
        text_colour = _over(text_colour, background)
    return Computed(text_colour, background, size, bold, hidden)


def _visible(style: Computed) -> Computed | None:
    return None if style.hidden else style


def text_runs(html: str, mode: str = "light") -> list[TextRun]:
    """Each visible text of ``html`` with the colours, size and weight the lint judges it by, in ``mode``."""
    return _read(html, Stylesheet.of(html), (mode,)).runs[mode]


def _snippet(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _contrast(runs: dict[str, list[TextRun]]) -> list[Finding]:
    found: dict[tuple[str, str, str], tuple[float, float, str, int]] = {}
    for mode, mode_runs in runs.items():
        for run in mode_runs:
            style = run.style
            if style.judged is None or style.background is None:
                continue
            ratio, needed = style.judged
            if ratio < needed:
                key = (mode, hex_of(style.colour), hex_of(style.background))
                first = found.get(key)
                found[key] = (ratio, needed, run.text, 1) if first is None else (*first[:3], first[3] + 1)
    findings = []
    for (mode, fg, bg), (ratio, needed, text, count) in found.items():
        more = f" and {count - 1} more" if count > 1 else ""
        findings.append(_warning(
            "low-contrast",
            f"{mode} mode: text {_snippet(text)!r}{more} is {fg} on {bg}, contrast {ratio:.2f}:1 under WCAG AA's"
            f" {needed:g}:1 (darken or lighten the colour in the theme"
            f"{', in its prefers-color-scheme: dark rules' if mode == 'dark' else ''})"))
    return findings


def _font_sizes(runs: list[TextRun]) -> list[Finding]:
    small: dict[float, list[str]] = {}
    for run in runs:
        if run.style.size < MIN_FONT_PX:
            small.setdefault(round(run.style.size, 1), []).append(run.text)
    findings = []
    for size, texts in sorted(small.items()):
        more = f" and {len(texts) - 1} more" if len(texts) > 1 else ""
        findings.append(_warning("font-size", f"text in {size:g}px: {_snippet(texts[0])!r}{more}"
                                              f" (use at least {MIN_FONT_PX:g}px: small text is hard to read)"))
    return findings


# -- structure ------------------------------------------------------------


def _words(parts: list[str]) -> str:
    """Text parts as an accessible name reads them: whitespace squeezed."""
    return " ".join(" ".join(parts).split())


def _language(attrs: dict[str, str] | None):
    attrs = attrs or {}
    lang = (attrs.get("lang") or "").strip()
    if not lang or lang.lower() == "und" or not _LANG_TAG.fullmatch(lang):
        shown = f" ({lang[:20]!r} is not a language tag)" if lang else ""
        yield _warning("lang-missing", f"the email does not say its language{shown}: screen readers guess the"
                                       " voice (set language in newsletter.toml, e.g. language = \"en\")")
        return
    direction = (attrs.get("dir") or "").strip().lower()
    if text_direction(lang) == "rtl" and direction != "rtl":
        yield _warning("dir-missing", f"language {lang!r} is written right to left but <html> has "
                                      f"{'dir=' + repr(direction) if direction else 'no dir'}"
                                      " (set dir=\"rtl\": <mjml dir=\"{{ dir }}\"> in the theme)")


def _headings(headings: list[tuple[int, list[str]]]):
    levels = [(level, _words(parts)) for level, parts in headings]
    if not levels:
        return
    ones = [text for level, text in levels if level == 1]
    if not ones:
        yield _warning("heading-order", "no <h1>: screen readers jump to it to find what the email is about"
                                        " (make the title an h1)")
    elif len(ones) > 1:
        yield _warning("heading-order", f"{len(ones)} <h1> headings ({_snippet(ones[1])!r} is the second)"
                                        " (keep one h1, the title; make the others h2)")
    previous = 1 if ones else levels[0][0]
    for level, text in levels:
        if level > previous + 1:
            yield _warning("heading-order", f"heading level skipped: h{previous} then h{level}"
                                            f" ({_snippet(text)!r}) (use h{previous + 1})")
        previous = level


def _link_texts(links: list[tuple[dict[str, str], list[str]]]):
    vague: list[str] = []
    bare: list[str] = []
    empty: list[str] = []
    for attrs, parts in links:
        name = (attrs.get("aria-label") or "").strip() or _words(parts)
        words = " ".join(re.sub(r"[^\w\s]", " ", name.lower()).split())
        if not name:
            empty.append(attrs["href"])
        elif words in VAGUE_LINK_TEXTS:
            vague.append(name)
        elif _BARE_URL.fullmatch(name) or name.startswith("%%"):
            bare.append(name)
    if vague:
        more = f" and {len(vague) - 1} more" if len(vague) > 1 else ""
        yield _warning("link-text", f"link text {vague[0]!r}{more} says nothing out of context (screen readers"
                                    " list links alone: name where the link goes, e.g. 'Read the opening hours')")
    if bare:
        more = f" and {len(bare) - 1} more" if len(bare) > 1 else ""
        yield _warning("link-text", f"a bare URL as link text: {_snippet(bare[0], 60)!r}{more} (screen readers"
                                    " spell it out: name the page in words, in Markdown [the opening hours](URL))")
    if empty:
        more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
        yield _warning("link-text", f"a link without text: {_snippet(empty[0], 60)}{more}"
                                    " (give it words, or an image with alt text)")


def _layout_tables(tables: list[list]):
    unmarked = sum(1 for _attrs, holds_data in tables if not holds_data)  # <th>, <thead>, <caption>: data
    if unmarked:
        yield _warning("table-role", f"{unmarked} layout table(s) without role=\"presentation\": screen readers"
                                     " announce rows and columns (add role=\"presentation\"; MRML drops it from an"
                                     " <mj-table>: put a layout table in an <mj-text>; a data table gets <th>"
                                     " headers)")
