"""SensorThings API v1.1 ``$filter`` (OGC 18-088 §9.3.3.5): parser to a typed AST, and evaluator.

Precedence, loosest first: ``or``, ``and``, ``not``, comparison, ``add``/``sub``,
``mul``/``div``/``mod``, unary ``-``. The AST is for in-memory filtering now, SQL push-down later.

>>> parse_filter("a add 2 mul 3") == Binary("add", Property(("a",)),
...     Binary("mul", Literal(2), Literal(3)))
True
>>> compile_to_predicate("result gt 20 and Datastream/id eq 7")(
...     {"result": 23.4, "Datastream": {"@iot.id": 7}})
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import shapely
import shapely.geometry

from citytwin.api.filter_tokens import FilterSyntaxError, Geography, LiteralValue, Token, tokenize

__all__ = [
    "Binary",
    "Call",
    "FilterSyntaxError",
    "Geography",
    "Literal",
    "Node",
    "Predicate",
    "Property",
    "Resolver",
    "Unary",
    "compile_to_predicate",
    "conjuncts",
    "evaluate",
    "parse_filter",
    "properties",
    "resolve_path",
]

MAX_NESTING = (
    32  # parentheses, "not" and "-" nesting: keeps the recursive parser off the stack limit
)
MAX_DEPTH = 200  # AST depth (long operator chains): keeps evaluation off the stack limit


@dataclass(frozen=True, slots=True)
class Literal:
    value: LiteralValue
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Property:
    path: tuple[str, ...]
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "not" | "-"
    operand: Node
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # and or eq ne gt ge lt le add sub mul div mod
    left: Node
    right: Node
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    position: int = field(default=-1, compare=False)


Node = Literal | Property | Unary | Binary | Call

COMPARISON = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_ADDITIVE = frozenset({"add", "sub"})
_MULTIPLICATIVE = frozenset({"mul", "div", "mod"})
_RESERVED = COMPARISON | _ADDITIVE | _MULTIPLICATIVE | {"and", "or", "not"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def word(self, words: frozenset[str] | set[str]) -> Token | None:
        if self.tok.kind == "ident" and self.tok.text in words:
            return self.advance()
        return None

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise FilterSyntaxError(f"expected {kind!r}", self.tok.pos)
        return self.advance()

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FilterSyntaxError(f"expected at most {MAX_NESTING} nested expressions", pos)

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "eof":
            raise FilterSyntaxError(
                f"expected operator or end of filter, got {self.tok.text!r}", self.tok.pos
            )
        return node

    def binary_level(self, ops: frozenset[str] | set[str], operand: Callable[[], Node]) -> Node:
        left = operand()
        while (op := self.word(ops)) is not None:
            left = Binary(op.text, left, operand(), op.pos)
        return left

    def or_expr(self) -> Node:
        return self.binary_level({"or"}, self.and_expr)

    def and_expr(self) -> Node:
        return self.binary_level({"and"}, self.not_expr)

    def not_expr(self) -> Node:
        if (op := self.word({"not"})) is None:
            return self.binary_level(COMPARISON, self.additive)
        self.nest(op.pos)
        node = Unary("not", self.not_expr(), op.pos)
        self.depth -= 1
        return node

    def additive(self) -> Node:
        return self.binary_level(_ADDITIVE, self.multiplicative)

    def multiplicative(self) -> Node:
        return self.binary_level(_MULTIPLICATIVE, self.unary)

    def unary(self) -> Node:
        if self.tok.kind != "-":
            return self.primary()
        op = self.advance()
        self.nest(op.pos)
        node = Unary("-", self.unary(), op.pos)
        self.depth -= 1
        return node

    def primary(self) -> Node:
        tok = self.advance()
        if tok.kind == "literal":
            return Literal(tok.value, tok.pos)
        if tok.kind == "(":
            self.nest(tok.pos)
            node = self.or_expr()
            self.expect(")")
            self.depth -= 1
            return node
        if tok.kind == "ident" and tok.text not in _RESERVED:
            return self.call(tok) if self.tok.kind == "(" else self.path(tok)
        got = "end of filter" if tok.kind == "eof" else repr(tok.text)
        raise FilterSyntaxError(f"expected an operand, got {got}", tok.pos)

    def path(self, first: Token) -> Property:
        segments = [first.text]
        while self.tok.kind == "/":
            self.advance()
            segment = self.advance()
            if segment.kind != "ident" or segment.text in _RESERVED:
                raise FilterSyntaxError("expected a property name after '/'", segment.pos)
            segments.append(segment.text)
        return Property(tuple(segments), first.pos)

    def call(self, name: Token) -> Call:
        if name.text not in FUNCTIONS:
            raise FilterSyntaxError(f"expected a known function, got {name.text!r}", name.pos)
        self.advance()  # "("
        args: list[Node] = []
        if self.tok.kind != ")":
            args.append(self.or_expr())
            while self.tok.kind == ",":
                self.advance()
                args.append(self.or_expr())
        self.expect(")")
        low, high, _ = FUNCTIONS[name.text]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise FilterSyntaxError(
                f"expected {wanted} argument(s) to {name.text}(), got {len(args)}", name.pos
            )
        return Call(name.text, tuple(args), name.pos)


def _children(node: Node) -> tuple[Node, ...]:
    match node:
        case Unary(operand=operand):
            return (operand,)
        case Binary(left=left, right=right):
            return (left, right)
        case Call(args=args):
            return args
    return ()


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression; raises :class:`FilterSyntaxError` with a position."""
    root = _Parser(text).parse()
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FilterSyntaxError(
                f"expected at most {MAX_DEPTH} chained operations", node.position
            )
        stack.extend((child, depth + 1) for child in _children(node))
    return root


# ---------------------------------------------------------------------------- evaluation


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _as_datetime(v: object) -> datetime | None:
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC)
    return None


def _as_geometry(v: object) -> Any:
    if isinstance(v, Geography):
        return v.geometry
    if isinstance(v, Mapping):
        if v.get("type") == "Feature":
            v = v.get("geometry")
        try:
            return shapely.geometry.shape(v)
        except Exception:  # untyped library: malformed GeoJSON raises many types
            return None
    return v if hasattr(v, "geom_type") else None


def _coerce_pair(left: object, right: object) -> tuple[object, object]:
    """Bring temporal operands to a common type (entity strings are ISO 8601 text)."""
    if isinstance(left, datetime) or isinstance(right, datetime):
        return _as_datetime(left), _as_datetime(right)
    if isinstance(left, date) or isinstance(right, date):
        a, b = _as_datetime(left), _as_datetime(right)
        return (a.date() if a else None), (b.date() if b else None)
    if isinstance(left, time) or isinstance(right, time):
        try:
            return (time.fromisoformat(left) if isinstance(left, str) else left), (
                time.fromisoformat(right) if isinstance(right, str) else right
            )
        except ValueError:
            return None, None
    return left, right


def _compare(op: str, left: object, right: object) -> bool:
    if left is None or right is None:  # null compares false except eq/ne null
        return {"eq": left is right, "ne": left is not right}.get(op, False)
    left, right = _coerce_pair(left, right)
    if left is None or right is None:
        return op == "ne"
    try:
        if op == "eq":
            return bool(left == right)
        if op == "ne":
            return bool(left != right)
        return bool(
            {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op]  # type: ignore[operator]
        )
    except TypeError:
        return False


def _arithmetic(op: str, a: Any, b: Any) -> object:
    if a is None or b is None:
        return None
    if not (_is_num(a) and _is_num(b)):
        if isinstance(a, str | date):
            a = _as_datetime(a) or a
        if isinstance(b, str | date):
            b = _as_datetime(b) or b
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        if isinstance(a, int) and isinstance(b, int):
            return int(a / b) if abs(a) < 2**53 and abs(b) < 2**53 else a // b
        return a / b
    return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else a - b * int(a / b)


def _str_fn(fn: Callable[..., object]) -> Callable[[Sequence[object]], object]:
    def call(args: Sequence[object]) -> object:
        if not isinstance(args[0], str):
            return None
        return fn(*args)

    return call


def _dt_fn(fn: Callable[[datetime], object]) -> Callable[[Sequence[object]], object]:
    def call(args: Sequence[object]) -> object:
        value = _as_datetime(args[0])
        return None if value is None else fn(value)

    return call


def _num_fn(fn: Callable[[float], float]) -> Callable[[Sequence[object]], object]:
    def call(args: Sequence[object]) -> object:
        x = args[0]
        if not _is_num(x):
            return None
        result = fn(x)  # type: ignore[arg-type]
        return int(result) if isinstance(x, int) else float(result)

    return call


def _geo_fn(method: str) -> Callable[[Sequence[object]], object]:
    def call(args: Sequence[object]) -> object:
        geoms = [_as_geometry(a) for a in args[:2]]
        if any(g is None for g in geoms):
            return None
        return getattr(geoms[0], method)(*geoms[1:], *args[2:])

    return call


def _substring(s: str, start: int, length: int | None = None) -> str:
    return s[start:] if length is None else s[start : start + length]


def _round(x: float) -> float:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


FUNCTIONS: dict[str, tuple[int, int, Callable[[Sequence[object]], object]]] = {
    "substringof": (
        2,
        2,
        lambda a: a[0] in a[1] if isinstance(a[1], str) and isinstance(a[0], str) else None,
    ),
    "endswith": (2, 2, _str_fn(lambda s, x: s.endswith(x))),
    "startswith": (2, 2, _str_fn(lambda s, x: s.startswith(x))),
    "length": (1, 1, _str_fn(len)),
    "indexof": (2, 2, _str_fn(lambda s, x: s.find(x))),
    "substring": (2, 3, _str_fn(_substring)),
    "tolower": (1, 1, _str_fn(str.lower)),
    "toupper": (1, 1, _str_fn(str.upper)),
    "trim": (1, 1, _str_fn(str.strip)),
    "concat": (2, 2, _str_fn(lambda s, x: s + x)),
    "year": (1, 1, _dt_fn(lambda d: d.year)),
    "month": (1, 1, _dt_fn(lambda d: d.month)),
    "day": (1, 1, _dt_fn(lambda d: d.day)),
    "hour": (1, 1, _dt_fn(lambda d: d.hour)),
    "minute": (1, 1, _dt_fn(lambda d: d.minute)),
    "second": (1, 1, _dt_fn(lambda d: d.second)),
    "fractionalseconds": (1, 1, _dt_fn(lambda d: d.microsecond / 1e6)),
    "date": (1, 1, _dt_fn(lambda d: d.date())),
    "time": (1, 1, _dt_fn(lambda d: d.time())),
    "totaloffsetminutes": (
        1,
        1,
        _dt_fn(lambda d: int((d.utcoffset() or timedelta()) / timedelta(minutes=1))),
    ),
    "now": (0, 0, lambda a: datetime.now(UTC)),
    "mindatetime": (0, 0, lambda a: datetime.min.replace(tzinfo=UTC)),
    "maxdatetime": (0, 0, lambda a: datetime.max.replace(tzinfo=UTC)),
    "round": (1, 1, _num_fn(_round)),
    "floor": (1, 1, _num_fn(math.floor)),
    "ceiling": (1, 1, _num_fn(math.ceil)),
    "geo.intersects": (2, 2, _geo_fn("intersects")),
    "geo.length": (1, 1, lambda a: None if (g := _as_geometry(a[0])) is None else g.length),
    "geo.distance": (2, 2, _geo_fn("distance")),
    **{
        f"st_{name}": (2, 2, _geo_fn(name))
        for name in (
            "equals",
            "disjoint",
            "touches",
            "within",
            "overlaps",
            "crosses",
            "intersects",
            "contains",
        )
    },
    "st_relate": (3, 3, lambda a: _geo_fn("relate_pattern")(a) if isinstance(a[2], str) else None),
}


def resolve_path(path: Sequence[str], entity: Mapping[str, Any]) -> object:
    """The value a property path names inside one entity's JSON; ``None`` when absent.

    >>> resolve_path(("Datastream", "id"), {"Datastream": {"@iot.id": 7}})
    7
    """
    value: object = entity
    for segment in path:
        if not isinstance(value, Mapping):
            return None
        if segment not in value and segment == "id":
            segment = "@iot.id"
        value = value.get(segment)
    return value


Resolver = Callable[[tuple[str, ...], Mapping[str, Any]], object]
"""Looks up a property path for the entity being evaluated; a server passes one to follow
navigation links (``Datastream/Thing/name``) that the entity's own JSON does not hold."""


def evaluate(node: Node, entity: Mapping[str, Any], resolve: Resolver = resolve_path) -> Any:
    """Value of ``node`` for one STA entity (a JSON-like dict); ``None`` is null.

    Type mismatches and failed operations (division by zero, overflow) evaluate to null.
    ``resolve`` gives the value of each property path (by default: looked up in ``entity``).
    """
    match node:
        case Literal(value=value):
            return value
        case Property(path=path):
            return resolve(path, entity)
        case Unary(op="not", operand=operand):
            return evaluate(operand, entity, resolve) is not True
        case Unary(operand=operand):
            value = evaluate(operand, entity, resolve)
            return -value if _is_num(value) or isinstance(value, timedelta) else None
        case Binary(op="and", left=left, right=right):
            return (
                evaluate(left, entity, resolve) is True and evaluate(right, entity, resolve) is True
            )
        case Binary(op="or", left=left, right=right):
            return (
                evaluate(left, entity, resolve) is True or evaluate(right, entity, resolve) is True
            )
        case Binary(op=op, left=left, right=right) if op in COMPARISON:
            return _compare(op, evaluate(left, entity, resolve), evaluate(right, entity, resolve))
        case Binary(op=op, left=left, right=right):
            try:
                return _arithmetic(
                    op, evaluate(left, entity, resolve), evaluate(right, entity, resolve)
                )
            except (TypeError, ValueError, ArithmeticError):
                return None
        case Call(name=name, args=args):
            values = [evaluate(arg, entity, resolve) for arg in args]
            try:
                return FUNCTIONS[name][2](values)
            except (TypeError, ValueError, ArithmeticError, shapely.errors.ShapelyError):
                return None
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def properties(node: Node) -> Iterator[Property]:
    """Every property path the expression reads, in no particular order.

    >>> sorted(p.path for p in properties(parse_filter("a eq 1 or length(b/c) gt 2")))
    [('a',), ('b', 'c')]
    """
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Property):
            yield current
        stack.extend(_children(current))


def conjuncts(node: Node) -> list[Node]:
    """The operands of the top-level ``and`` chain: each must hold for the whole to hold.

    >>> len(conjuncts(parse_filter("a eq 1 and (b eq 2 and c eq 3) or d eq 4")))
    1
    >>> len(conjuncts(parse_filter("a eq 1 and (b eq 2 and c eq 3)")))
    3
    """
    found: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Binary) and current.op == "and":
            stack.extend((current.right, current.left))
        else:
            found.append(current)
    return found


@dataclass(frozen=True, slots=True)
class Predicate:
    """A parsed filter as a test: true where the expression evaluates to ``true``."""

    node: Node

    def __call__(self, entity: Mapping[str, Any], resolve: Resolver = resolve_path) -> bool:
        return evaluate(self.node, entity, resolve) is True


def compile_to_predicate(text: str) -> Predicate:
    """Parse ``text`` once; the predicate is true where the filter evaluates to ``true``."""
    return Predicate(parse_filter(text))
