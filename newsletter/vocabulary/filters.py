"""The segment filter language: its grammar, its syntax tree and its parser.

A filter selects subscribers of a list (``segments create``, ``send --where``).
``newsletter.store.segments`` compiles the tree to SQL with bound parameters
(never by pasting text into SQL); the tests hold a Python evaluation of the
same tree and check that both agree on generated data.

Grammar (hand-written recursive descent; ``parse_filter``)::

    filter     := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")"
                | "tag:" NAME                       has the tag
                | "list:" NAME [":" STATUS]         on that list (confirmed, or pending / unsubscribed)
                | "dormant" | "bounced"
                | WITHIN "(" DURATION ")"           opened_within clicked_within sent_within joined_within
                | FIELD "exists"
                | FIELD "in" "(" VALUE ("," VALUE)* ")"
                | FIELD "contains" STRING
                | FIELD OP VALUE                    OP: = != < > <= >=
    FIELD      := email | name | timezone | joined | an attribute name [A-Za-z_][A-Za-z0-9_-]*
    VALUE      := "text" | 'text' | number | YYYY-MM-DD | true | false
    DURATION   := digits followed by d (days) or w (weeks): 90d, 12w
    NAME       := a quoted string, or letters, digits and _ . @ + -

Words (``and``, ``tag``, ``opened_within``...) are lower case. Meanings are
in :mod:`newsletter.store.segments` and the README's "Segments" section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from newsletter.errors import InputError

MAX_FILTER_LENGTH = 2000    # characters: a filter is typed by a person, not generated
MAX_DEPTH = 30              # nested parentheses / nots: keeps the recursion (and the SQL) small
MAX_IN_VALUES = 200
MAX_DAYS = 36500

BUILTIN_FIELDS = ("email", "name", "timezone", "joined")
WITHIN_KINDS = ("opened", "clicked", "sent", "joined")
LIST_STATUSES = ("confirmed", "pending", "unsubscribed")
COMPARISONS = ("=", "!=", "<", ">", "<=", ">=")
KEYWORDS = {"and", "or", "not", "in", "contains", "exists", "true", "false", "dormant", "bounced"}

Value = str | int | float | bool | date


# -- the tree ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``op`` is one of COMPARISONS or ``contains``."""

    field: str
    op: str
    value: Value


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class HasTag:
    name: str


@dataclass(frozen=True)
class OnList:
    name: str
    status: str = "confirmed"


@dataclass(frozen=True)
class Dormant:
    pass


@dataclass(frozen=True)
class Bounced:
    pass


@dataclass(frozen=True)
class Within:
    """``opened_within(90d)`` and the like: ``kind`` one of WITHIN_KINDS, ``days`` whole days."""

    kind: str
    days: int


Node = And | Or | Not | Compare | In | Exists | HasTag | OnList | Dormant | Bounced | Within


def normalise_tag(raw: str) -> str:
    """A tag's stored form: spaces collapsed, lower case (``Early  Adopter`` -> ``early adopter``)."""
    return " ".join(raw.split()).lower()


def tag_problem(name: str) -> str | None:
    """Why ``name`` (normalised) cannot be a tag, or None."""
    if not name:
        return "a tag name cannot be empty"
    if len(name) > 64:
        return f"tag name too long ({len(name)} characters, at most 64)"
    if any(not ch.isprintable() for ch in name) or "," in name:
        return "a tag name holds no control characters and no commas"
    return None


# -- tokens -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str       # string number date duration word op ( ) , : end
    text: str
    value: Value | None
    column: int     # 1-based


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w.@+-])
  | (?P<duration>\d{1,6}[dw])(?![\w.@+-])
  | (?P<number>-?\d{1,15}(?:\.\d{1,15})?)(?![\w.@+-])
  | (?P<word>[A-Za-z0-9_][\w.@+-]*)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[(),:])
""", re.VERBOSE | re.ASCII)


class FilterSyntaxError(InputError):
    """A filter that does not parse; the message names the column."""


def _error(source: str, text: str, column: int, what: str) -> FilterSyntaxError:
    start = max(column - 1 - 20, 0)
    shown = "".join(ch if ch.isprintable() else " " for ch in text[start:start + 50])  # one line, always
    excerpt = ("..." if start else "") + shown + ("..." if start + 50 < len(text) else "")
    return FilterSyntaxError(
        f"{source}: {what} at column {column}: {excerpt}",
        hint="see the filter grammar in the README (Segments), e.g. "
             "'city = \"London\" and tag:vip and not opened_within(90d)'")


def _tokens(text: str, source: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            value, i2 = _string(text, i, source)
            tokens.append(Token("string", text[i:i2], value, i + 1))
            i = i2
            continue
        match = _TOKEN.match(text, i)
        if match is None:
            raise _error(source, text, i + 1, f"unexpected character {ch!r}")
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "date":
            try:
                tokens.append(Token("date", raw, date.fromisoformat(raw), i + 1))
            except ValueError:
                raise _error(source, text, i + 1, f"not a date: {raw}") from None
        elif kind == "duration":
            amount = int(raw[:-1]) * (7 if raw.endswith("w") else 1)
            if not 1 <= amount <= MAX_DAYS:
                raise _error(source, text, i + 1, f"a duration between 1d and {MAX_DAYS}d, not {raw}")
            tokens.append(Token("duration", raw, amount, i + 1))
        elif kind == "number":
            tokens.append(Token("number", raw, float(raw) if "." in raw else int(raw), i + 1))
        elif kind == "punct":
            tokens.append(Token(raw, raw, None, i + 1))
        elif kind != "space":
            tokens.append(Token(kind, raw, None, i + 1))
        i = match.end()
    tokens.append(Token("end", "", None, len(text) + 1))
    return tokens


def _string(text: str, start: int, source: str) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            value = "".join(out)
            if any(not c.isprintable() and c not in " " for c in value):
                raise _error(source, text, start + 1, "a string holds no control characters")
            return value, i + 1
        out.append(ch)
        i += 1
    raise _error(source, text, start + 1, "a string that is never closed")


# -- the parser -------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self.tokens = _tokens(text, source)
        self.at = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.at += 1
        return token

    def fail(self, what: str, token: Token | None = None) -> FilterSyntaxError:
        token = token or self.peek()
        found = "the end" if token.kind == "end" else repr(token.text)
        return _error(self.source, self.text, token.column, f"expected {what}, found {found}")

    def word(self, token: Token, *words: str) -> bool:
        return token.kind == "word" and token.text in words

    def expect(self, kind: str, what: str) -> Token:
        if self.peek().kind != kind:
            raise self.fail(what)
        return self.next()

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.word(self.peek(), "or"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.word(self.peek(), "and"):
            self.next()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.word(self.peek(), "not"):
            self.next()
            self.enter()
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"at most {MAX_DEPTH} levels of nesting")

    def primary(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.next()
            self.enter()
            node = self.or_expr()
            self.depth -= 1
            self.expect(")", "')'")
            return node
        if token.kind != "word":
            raise self.fail("a condition (a field, tag:NAME, list:NAME, dormant, opened_within(90d)...)")
        if token.text in ("tag", "list") and self.peek(1).kind == ":":
            self.next()
            self.next()
            return self.tag() if token.text == "tag" else self.on_list()
        if token.text == "dormant":
            self.next()
            return Dormant()
        if token.text == "bounced":
            self.next()
            return Bounced()
        if token.text.endswith("_within") and token.text[:-len("_within")] in WITHIN_KINDS:
            self.next()
            self.expect("(", "'(' after " + token.text)
            days = self.expect("duration", "a duration such as 90d or 12w")
            self.expect(")", "')'")
            assert isinstance(days.value, int)
            return Within(token.text[:-len("_within")], days.value)
        return self.condition()

    def name(self, what: str) -> str:
        token = self.peek()
        if token.kind in ("string", "word", "number"):
            self.next()
            return token.value if isinstance(token.value, str) else token.text
        raise self.fail(what)

    def tag(self) -> Node:
        token = self.peek()
        name = normalise_tag(self.name("a tag name"))
        problem = tag_problem(name)
        if problem:
            raise _error(self.source, self.text, token.column, problem)
        return HasTag(name)

    def on_list(self) -> Node:
        name = self.name("a list name")
        status = "confirmed"
        if self.peek().kind == ":":
            self.next()
            token = self.peek()
            if not self.word(token, *LIST_STATUSES):
                raise self.fail("a list status (" + ", ".join(LIST_STATUSES) + ")")
            status = self.next().text
        return OnList(name, status)

    def condition(self) -> Node:
        token = self.next()
        field = token.text
        if field in KEYWORDS or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", field):
            raise self.fail("a field name (letters, digits, _ and -)", token)
        operator = self.peek()
        if self.word(operator, "exists"):
            self.next()
            return Exists(field)
        if self.word(operator, "in"):
            self.next()
            self.expect("(", "'(' after in")
            values = [self.value(field, "=")]
            while self.peek().kind == ",":
                self.next()
                values.append(self.value(field, "="))
            if len(values) > MAX_IN_VALUES:
                raise self.fail(f"at most {MAX_IN_VALUES} values in a list")
            self.expect(")", "',' or ')'")
            return In(field, tuple(values))
        if self.word(operator, "contains"):
            self.next()
            value_token = self.peek()
            value = self.value(field, "contains")
            if not isinstance(value, str) or value_token.kind != "string":
                raise self.fail("a quoted string after contains", value_token)
            return Compare(field, "contains", value)
        if operator.kind != "op":
            raise self.fail("=, !=, <, >, <=, >=, contains, in or exists")
        self.next()
        return Compare(field, operator.text, self.value(field, operator.text))

    def value(self, field: str, op: str) -> Value:
        token = self.peek()
        if token.kind in ("string", "number", "date") or self.word(token, "true", "false"):
            self.next()
            value: Value = (token.text == "true") if token.kind == "word" else token.value  # type: ignore[assignment]
        else:
            raise self.fail("a value (a quoted string, a number, a date YYYY-MM-DD, true or false)")
        if field == "joined" and not isinstance(value, date):
            raise self.fail("a date YYYY-MM-DD after joined", token)
        if field == "joined" and op == "contains":
            raise self.fail("a comparison (=, !=, <, >, <=, >=) for joined", token)
        if field in ("email", "name", "timezone") and not isinstance(value, str):
            raise self.fail(f"a quoted string for {field}", token)
        if isinstance(value, bool) and op not in ("=", "!="):
            raise self.fail("= or != with true and false", token)
        if isinstance(value, str) and "\x00" in value:
            raise self.fail("a string without NUL characters", token)
        return value


def parse_filter(text: str, source: str = "--where") -> Node:
    """The syntax tree of ``text``; FilterSyntaxError (one line naming the column) when it does not parse.

    ``source`` names where the text came from in the message (``--where``).
    """
    if not text.strip():
        raise FilterSyntaxError(f"{source}: the filter is empty", hint="e.g. --where 'tag:vip'")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(f"{source}: the filter is too long ({len(text)} characters, at most "
                                f"{MAX_FILTER_LENGTH})", hint="save long filters as several segments")
    return _Parser(text, source).parse()


def fields_of(node: Node) -> set[str]:
    """The attribute and built-in field names a filter reads (for messages and tests)."""
    if isinstance(node, (And, Or)):
        return set().union(*(fields_of(item) for item in node.items))
    if isinstance(node, Not):
        return fields_of(node.item)
    if isinstance(node, (Compare, In, Exists)):
        return {node.field}
    return set()


def render(node: Node) -> str:
    """``node`` as filter text that parses back to the same tree (nested and/or in parentheses)."""
    if isinstance(node, (And, Or)):
        word = " and " if isinstance(node, And) else " or "
        return word.join(_grouped(item) for item in node.items)
    if isinstance(node, Not):
        return "not " + _grouped(node.item)
    if isinstance(node, Compare):
        return f"{node.field} {node.op} {_literal(node.value)}"
    if isinstance(node, In):
        return f"{node.field} in (" + ", ".join(_literal(value) for value in node.values) + ")"
    if isinstance(node, Exists):
        return f"{node.field} exists"
    if isinstance(node, HasTag):
        return "tag:" + _name(node.name)
    if isinstance(node, OnList):
        return "list:" + _name(node.name) + ("" if node.status == "confirmed" else ":" + node.status)
    if isinstance(node, Dormant):
        return "dormant"
    if isinstance(node, Bounced):
        return "bounced"
    return f"{node.kind}_within({node.days}d)"


def _grouped(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, (And, Or)) else render(node)


def _literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, date)):
        return str(value) if not isinstance(value, date) else value.isoformat()
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_][\w.@+-]*", name, re.ASCII) and name not in KEYWORDS else _literal(name)
