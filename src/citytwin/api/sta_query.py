"""Parser of the SensorThings ``$expand`` and ``$select`` options (OGC 18-088 §9.3.2).

The grammar, as OData 4.01 writes it and SensorThings v1.1 uses it::

    select     = name *( "," name )
    expand     = item *( "," item )
    item       = name *( "/" name ) [ "(" option *( ";" option ) ")" ]
    option     = "$top=" int | "$skip=" int | "$count=" bool | "$select=" select
               | "$expand=" expand | "$filter=" text | "$orderby=" text

``text`` runs to the ``;`` or ``)`` that ends the option, skipping quoted strings and balanced
parentheses; the ``$filter`` parser reads it later. Names are not checked against the data model
here (that is :mod:`citytwin.api.sta_options`); every error carries its 0-based position.

>>> items = parse_expand("Datastreams($select=name;$expand=Observations($top=3))")
>>> items[0].path[0].text, items[0].options.select[0].text
('Datastreams', 'name')
>>> format_expand(items)
'Datastreams($select=name;$expand=Observations($top=3))'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citytwin.api.filter_tokens import PositionedSyntaxError

__all__ = [
    "ExpandItem",
    "QuerySyntaxError",
    "QueryText",
    "Span",
    "format_expand",
    "parse_expand",
    "parse_select",
    "query_pairs",
]

MAX_NESTING = 16  # levels of expansion: keeps parser and renderer far from the stack limit


class QuerySyntaxError(PositionedSyntaxError):
    """An ``$expand``/``$select`` that is not well formed."""


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of the option text and where it starts."""

    text: str
    position: int


@dataclass(frozen=True, slots=True)
class QueryText:
    """The query options of one level, as written (``None``: not given)."""

    top: int | None = None
    skip: int | None = None
    count: bool | None = None
    orderby: Span | None = None
    filter: Span | None = None
    select: tuple[Span, ...] | None = None
    expand: tuple[ExpandItem, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ExpandItem:
    """One ``$expand`` entry: a navigation path and the options of its last step."""

    path: tuple[Span, ...]
    options: QueryText = field(default_factory=QueryText)


_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_@")
_NAME_PART = _NAME_START | frozenset("0123456789.")
_OPTIONS = ("$top", "$skip", "$count", "$select", "$expand", "$filter", "$orderby")


class _Scanner:
    def __init__(self, text: str, offset: int = 0) -> None:
        self.text = text
        self.offset = offset  # where ``text`` starts inside the whole parameter
        self.i = 0
        self.depth = 0

    def error(self, message: str, at: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.offset + (self.i if at is None else at))

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i] == " ":
            self.i += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.i] if self.i < len(self.text) else ""

    def got(self) -> str:
        return repr(self.text[self.i]) if self.i < len(self.text) else "end of text"

    def accept(self, char: str) -> bool:
        if self.peek() != char:
            return False
        self.i += 1
        return True

    def expect(self, char: str) -> None:
        if not self.accept(char):
            raise self.error(f"expected {char!r}, got {self.got()}")

    def name(self) -> Span:
        self.skip_space()
        start = self.i
        if self.i < len(self.text) and self.text[self.i] in _NAME_START:
            self.i += 1
            while self.i < len(self.text) and self.text[self.i] in _NAME_PART:
                self.i += 1
        if self.i == start:
            raise self.error(f"expected a name, got {self.got()}")
        return Span(self.text[start : self.i], self.offset + start)

    def word(self) -> str:
        start = self.i
        while self.i < len(self.text) and (self.text[self.i].isalnum() or self.text[self.i] == "$"):
            self.i += 1
        return self.text[start : self.i]

    def free_text(self) -> Span:
        """Text up to the ``;`` or ``)`` that ends the option (strings and parentheses nest)."""
        start, depth = self.i, 0
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == "'":
                end = self.text.find("'", self.i + 1)
                while end != -1 and self.text.startswith("''", end):
                    end = self.text.find("'", end + 2)
                self.i = len(self.text) if end == -1 else end + 1
                continue
            if char in ";)" and depth == 0:
                break
            depth += {"(": 1, ")": -1}.get(char, 0)
            self.i += 1
        if not self.text[start : self.i].strip():
            raise self.error("expected a value", start)
        return Span(self.text[start : self.i], self.offset + start)

    def end(self, what: str) -> None:
        if self.peek():
            raise self.error(f"expected ',' or end of {what}, got {self.got()}")


def _select_list(scanner: _Scanner) -> tuple[Span, ...]:
    names = [scanner.name()]
    while scanner.accept(","):
        names.append(scanner.name())
    return tuple(names)


def _expand_list(scanner: _Scanner) -> tuple[ExpandItem, ...]:
    items = [_expand_item(scanner)]
    while scanner.accept(","):
        items.append(_expand_item(scanner))
    return tuple(items)


def _expand_item(scanner: _Scanner) -> ExpandItem:
    path = [scanner.name()]
    while True:
        if scanner.depth + len(path) > MAX_NESTING:  # each step of a path nests one level
            at = path[-1].position - scanner.offset
            raise scanner.error(f"expected at most {MAX_NESTING} nested expansions", at)
        if not scanner.accept("/"):
            break
        path.append(scanner.name())
    if not scanner.accept("("):
        return ExpandItem(tuple(path))
    scanner.depth += len(path)
    options = _options(scanner)
    scanner.expect(")")
    scanner.depth -= len(path)
    return ExpandItem(tuple(path), options)


def _options(scanner: _Scanner) -> QueryText:
    given: dict[str, Any] = {}  # "$top" -> 3 …, typed by _option_value
    while True:
        scanner.skip_space()
        at = scanner.i
        name = scanner.word()
        if name not in _OPTIONS:
            raise scanner.error(f"expected one of {', '.join(_OPTIONS)}, got {name!r}", at)
        if name in given:
            raise scanner.error(f"{name} given twice", at)
        scanner.expect("=")
        given[name] = _option_value(scanner, name)
        if not scanner.accept(";"):
            break
    return QueryText(**{name[1:]: value for name, value in given.items()})


def _option_value(scanner: _Scanner, name: str) -> object:
    if name == "$select":
        return _select_list(scanner)
    if name == "$expand":
        return _expand_list(scanner)
    if name in ("$filter", "$orderby"):
        return scanner.free_text()
    scanner.skip_space()
    at = scanner.i
    value = scanner.word()
    if name == "$count":
        if value not in ("true", "false"):
            raise scanner.error(f"expected true or false for $count, got {value!r}", at)
        return value == "true"
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise scanner.error(f"expected a non-negative integer for {name}, got {value!r}", at)
    return int(value)


def parse_select(text: str) -> tuple[Span, ...]:
    """The names of a ``$select`` list.

    >>> [s.text for s in parse_select("name, @iot.id")]
    ['name', '@iot.id']
    """
    scanner = _Scanner(text)
    names = _select_list(scanner)
    scanner.end("$select")
    return names


def parse_expand(text: str) -> tuple[ExpandItem, ...]:
    """The items of an ``$expand`` list; raises :class:`QuerySyntaxError` with a position."""
    scanner = _Scanner(text)
    items = _expand_list(scanner)
    scanner.end("$expand")
    return items


def query_pairs(options: QueryText) -> list[tuple[str, str]]:
    """The options as URL query parameters (for the ``@iot.nextLink`` of an expanded set)."""
    pairs: list[tuple[str, str]] = []
    if options.top is not None:
        pairs.append(("$top", str(options.top)))
    if options.skip is not None:
        pairs.append(("$skip", str(options.skip)))
    if options.count is not None:
        pairs.append(("$count", "true" if options.count else "false"))
    if options.orderby is not None:
        pairs.append(("$orderby", options.orderby.text.strip()))
    if options.filter is not None:
        pairs.append(("$filter", options.filter.text.strip()))
    if options.select is not None:
        pairs.append(("$select", ",".join(s.text for s in options.select)))
    if options.expand:
        pairs.append(("$expand", format_expand(options.expand)))
    return pairs


def format_expand(items: tuple[ExpandItem, ...]) -> str:
    """``$expand`` text that parses back to ``items``."""
    parts = []
    for item in items:
        path = "/".join(step.text for step in item.path)
        nested = ";".join(f"{name}={value}" for name, value in query_pairs(item.options))
        parts.append(f"{path}({nested})" if nested else path)
    return ",".join(parts)
