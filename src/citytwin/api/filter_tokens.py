"""Tokenizer for the SensorThings API v1.1 ``$filter`` language (OGC 18-088 §9.3.3.5).

>>> [t.text for t in tokenize("result gt 2.5 and Thing/name eq 'a''b'")]
['result', 'gt', '2.5', 'and', 'Thing', '/', 'name', 'eq', "'a''b'", '']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import shapely

__all__ = [
    "FilterSyntaxError",
    "Geography",
    "LiteralValue",
    "PositionedSyntaxError",
    "Token",
    "TokenKind",
    "tokenize",
]


class PositionedSyntaxError(ValueError):
    """A query option's text is not well formed; ``position`` is a 0-based offset into it."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} at position {self.position}"


class FilterSyntaxError(PositionedSyntaxError):
    """A ``$filter`` that is not well formed."""


@dataclass(frozen=True, slots=True)
class Geography:
    """A ``geography'WKT'`` literal; ``geometry`` is the shapely geometry parsed from ``wkt``."""

    wkt: str
    geometry: Any = field(default=None, compare=False, repr=False)


LiteralValue = int | float | str | bool | None | datetime | date | time | timedelta | Geography
TokenKind = Literal["literal", "ident", "(", ")", ",", "/", "-", "eof"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    pos: int
    value: LiteralValue = None


_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?", re.ASCII
)
_TIME = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?", re.ASCII)
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_@$][A-Za-z0-9_.@$]*", re.ASCII)
_DURATION = re.compile(
    r"(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", re.ASCII
)
_PUNCT: dict[str, TokenKind] = {"(": "(", ")": ")", ",": ",", "/": "/", "-": "-"}
_KEYWORD_VALUES: dict[str, LiteralValue] = {"true": True, "false": False, "null": None}
_TYPED_STRINGS = ("geography", "geometry", "duration")


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The string literal whose opening quote is at ``start``: (value, end offset)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if text.startswith("''", i):
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(text[i])
        i += 1
    raise FilterSyntaxError("expected closing quote of string literal", len(text))


def _duration(body: str, pos: int) -> timedelta:
    m = _DURATION.fullmatch(body)
    if m is None or not any(m.groups()[1:]):
        raise FilterSyntaxError("expected ISO 8601 duration such as 'P1DT2H'", pos)
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups()[1:])
    try:
        delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise FilterSyntaxError("duration out of range", pos) from None
    return -delta if m.group(1) else delta


def _geography(body: str, pos: int) -> Geography:
    try:
        geometry = shapely.from_wkt(body)
    except Exception:  # shapely raises several (untyped) exception types for bad WKT
        geometry = None
    if geometry is None:
        raise FilterSyntaxError("expected well-known text (WKT) geometry", pos)
    return Geography(body, geometry)


def _temporal(lexeme: str, pos: int) -> LiteralValue:
    try:
        if ":" not in lexeme:
            return date.fromisoformat(lexeme)
        if "-" not in lexeme[:5]:
            return time.fromisoformat(lexeme)
        value = datetime.fromisoformat(lexeme)
    except ValueError:
        raise FilterSyntaxError(f"expected a valid date/time, got {lexeme!r}", pos) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _number(lexeme: str, pos: int) -> int | float:
    try:
        return float(lexeme) if any(c in lexeme for c in ".eE") else int(lexeme)
    except ValueError:
        raise FilterSyntaxError("number literal too long", pos) from None


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``eof`` token at ``len(text)``."""
    tokens: list[Token] = []
    value: LiteralValue
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], ch, i))
            i += 1
        elif ch == "'":
            value, end = _read_string(text, i)
            tokens.append(Token("literal", text[i:end], i, value))
            i = end
        elif ch.isascii() and ch.isdigit():
            m = _DATETIME.match(text, i) or _TIME.match(text, i) or _NUMBER.match(text, i)
            assert m is not None  # _NUMBER matches any digit
            end = m.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "_.:'"):
                raise FilterSyntaxError(f"unexpected character {text[end]!r}", end)
            lexeme = m.group()
            number = m.re is _NUMBER
            value = _number(lexeme, i) if number else _temporal(lexeme, i)
            tokens.append(Token("literal", lexeme, i, value))
            i = end
        elif (m := _IDENT.match(text, i)) is not None:
            word, end = m.group(), m.end()
            if word in _TYPED_STRINGS and text.startswith("'", end):
                body, end = _read_string(text, end)
                value = _duration(body, i) if word == "duration" else _geography(body, i)
                tokens.append(Token("literal", text[i:end], i, value))
            elif word in _KEYWORD_VALUES:
                tokens.append(Token("literal", word, i, _KEYWORD_VALUES[word]))
            else:
                tokens.append(Token("ident", word, i))
            i = end
        else:
            raise FilterSyntaxError(f"unexpected character {ch!r}", i)
    tokens.append(Token("eof", "", len(text)))
    return tokens
