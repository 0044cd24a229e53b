"""Query options checked against the data model: what one level of a SensorThings request asks.

:mod:`citytwin.api.sta_query` reads the text; this module binds it to an entity set (OGC 18-088
§9.3): ``$select`` names must be properties, ids or navigation links of that set, ``$expand``
names its navigation properties (paths such as ``Datastreams/Observations`` become nested
expansions), ``$filter`` paths may cross to-one navigation links only. An error names the option
(``$expand`` for anything inside an expansion) and its position in the parameter's text.

``$orderby`` (§9.3.3.3) is a comma-separated list of keys, each a property, a path into one
(``properties/gu``) or a to-one navigation path (``Datastream/name``), then ``asc`` or ``desc``;
later keys break ties of earlier ones.

>>> [(k.path, k.descending) for k in parse_orderby("Thing/name desc, id", "Datastreams")]
[(('Thing', 'name'), True), (('@iot.id',), False)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from citytwin.api.errors import InvalidParameterError
from citytwin.api.filter import Predicate, parse_filter, properties
from citytwin.api.filter_tokens import FilterSyntaxError, tokenize
from citytwin.api.sta_query import ExpandItem, QueryText, Span
from citytwin.api.sta_schema import NAVIGATION, PROPERTIES, Nav, find_nav

__all__ = [
    "DEFAULT_TOP",
    "MAX_TOP",
    "OBSERVATION_ORDER",
    "Expansion",
    "OrderKey",
    "QueryOptions",
    "UnknownOrderKey",
    "bind_options",
    "parse_orderby",
]

DEFAULT_TOP = 100
MAX_TOP = 10_000
OBSERVATION_ORDER = ("id", "phenomenonTime", "resultTime", "result", "Datastream/id")
"""The Observation keys ``$orderby`` sorts on the store's columns (rows are never rendered)."""
_OBSERVATION_KEYS = frozenset(
    tuple("@iot.id" if name == "id" else name for name in key.split("/"))
    for key in OBSERVATION_ORDER
)
_DIRECTIONS = {"asc": False, "desc": True}
_Fail = Callable[[str, str], InvalidParameterError]  # option, message -> the error to raise
_ID_NAMES = {"id": "@iot.id", "@iot.id": "@iot.id", "@iot.selfLink": "@iot.selfLink"}


@dataclass(frozen=True)
class Expansion:
    """One expanded navigation property and the options of the expanded entities."""

    nav: Nav
    options: QueryOptions


@dataclass(frozen=True)
class OrderKey:
    """One ``$orderby`` key: a property path (ids as ``@iot.id``) and its direction."""

    path: tuple[str, ...]
    descending: bool = False
    position: int = field(default=-1, compare=False)

    @property
    def is_id(self) -> bool:
        return self.path == ("@iot.id",)


@dataclass(frozen=True)
class QueryOptions:
    """The options of one level (the request, or one expansion), checked and compiled."""

    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    order_by: tuple[OrderKey, ...] = ()  # $orderby keys, most significant first
    where: Predicate | None = None  # $filter, evaluated on each entity's STA JSON
    select: frozenset[str] | None = None  # the JSON keys to keep; None keeps all
    expand: tuple[Expansion, ...] = ()
    text: QueryText = field(default_factory=QueryText)  # as written: for an expansion's nextLink


def bind_options(entity_set: str, text: QueryText, *, inside: str | None = None) -> QueryOptions:
    """Check ``text`` against ``entity_set``; ``inside`` names the parameter it is nested in."""

    def fail(option: str, message: str) -> InvalidParameterError:
        if inside is None:
            return InvalidParameterError(option, message)
        return InvalidParameterError(inside, f"{option}: {message}")

    top = DEFAULT_TOP if text.top is None else text.top
    if top > MAX_TOP:
        raise fail("$top", f"expected at most {MAX_TOP}, got {top}")
    order_by = _order(entity_set, text.orderby, fail)
    return QueryOptions(
        top=top,
        skip=text.skip or 0,
        count=bool(text.count),
        order_by=order_by,
        where=None if text.filter is None else _where(entity_set, text.filter, fail),
        select=None if text.select is None else _select(entity_set, text.select, fail),
        expand=_expand(entity_set, text.expand, inside or "$expand"),
        text=text,
    )


def _order(entity_set: str, orderby: Span | None, fail: _Fail) -> tuple[OrderKey, ...]:
    if orderby is None:
        return ()
    try:
        return parse_orderby(orderby.text, entity_set)
    except UnknownOrderKey as exc:
        raise fail(
            "$orderby",
            f"{exc.entity_set} has no property {exc.path!r} to order by (at position "
            f"{exc.position + orderby.position}); expected one of: {', '.join(exc.allowed)}",
        ) from None
    except FilterSyntaxError as exc:
        raise fail(
            "$orderby", f"{exc.message} at position {exc.position + orderby.position}"
        ) from None


def parse_orderby(text: str, entity_set: str) -> tuple[OrderKey, ...]:
    """The keys of an ``$orderby`` list, checked against ``entity_set``.

    Raises :class:`FilterSyntaxError` with a 0-based position into ``text``.
    """
    tokens = tokenize(text)
    keys: list[OrderKey] = []
    i = 0
    while True:
        start = tokens[i]
        if start.kind != "ident":
            got = "end of $orderby" if start.kind == "eof" else repr(start.text)
            raise FilterSyntaxError(f"expected a property name, got {got}", start.pos)
        path = [start.text]
        i += 1
        while tokens[i].kind == "/":
            if tokens[i + 1].kind != "ident":
                raise FilterSyntaxError("expected a property name after '/'", tokens[i + 1].pos)
            path.append(tokens[i + 1].text)
            i += 2
        descending = False
        if tokens[i].kind == "ident" and tokens[i].text.lower() in _DIRECTIONS:
            descending = _DIRECTIONS[tokens[i].text.lower()]
            i += 1
        keys.append(OrderKey(_order_path(entity_set, path, start.pos), descending, start.pos))
        if tokens[i].kind == "eof":
            return tuple(keys)
        if tokens[i].kind != ",":
            raise FilterSyntaxError(
                f"expected 'asc', 'desc', ',' or end of $orderby, got {tokens[i].text!r}",
                tokens[i].pos,
            )
        i += 1


class UnknownOrderKey(FilterSyntaxError):
    """An ``$orderby`` key that names no property of the entity set (or no sortable one)."""

    def __init__(self, entity_set: str, path: str, allowed: Sequence[str], position: int) -> None:
        super().__init__(f"cannot order {entity_set} by {path!r}", position)
        self.entity_set = entity_set
        self.path = path
        self.allowed = tuple(allowed)


def _order_path(entity_set: str, path: Sequence[str], position: int) -> tuple[str, ...]:
    """The path as looked up in the entity's JSON: ids become ``@iot.id``, links are checked."""
    key = tuple("@iot.id" if name == "id" else name for name in path)
    if entity_set == "Observations":
        if key in _OBSERVATION_KEYS:
            return key
        raise UnknownOrderKey(entity_set, "/".join(path), OBSERVATION_ORDER, position)
    current = entity_set
    for step, name in enumerate(key):
        rest = key[step + 1 :]
        if (name == "@iot.id" and not rest) or name in PROPERTIES[current]:
            return key
        nav = find_nav(current, name)
        if nav is None or nav.many or not rest:
            break
        current = nav.target
    allowed = ["id", *sorted(PROPERTIES[current])]
    allowed += [f"{nav.name}/..." for nav in NAVIGATION[current] if not nav.many]
    raise UnknownOrderKey(entity_set, "/".join(path), allowed, position)


def _where(entity_set: str, text: Span, fail: _Fail) -> Predicate:
    try:
        node = parse_filter(text.text)
    except FilterSyntaxError as exc:
        raise fail("$filter", f"{exc.message} at position {exc.position + text.position}") from None
    for prop in properties(node):
        _check_path(entity_set, prop.path, prop.position + text.position, fail)
    return Predicate(node)


def _check_path(entity_set: str, path: Sequence[str], position: int, fail: _Fail) -> None:
    """Paths may follow to-one navigation links; a to-many step is refused, never guessed."""
    current = entity_set
    for step, name in enumerate(path):
        nav = find_nav(current, name)
        if nav is None:
            return  # a property (or a key inside one): looked up in the entity's JSON
        if nav.many:
            shown = "/".join(path)
            raise fail(
                "$filter",
                f"path {shown!r} at position {position} crosses to-many navigation "
                f"{'/'.join(path[: step + 1])!r}; only to-one navigation paths can be filtered on",
            )
        current = nav.target


def _select(entity_set: str, names: Sequence[Span], fail: _Fail) -> frozenset[str]:
    keys: set[str] = set()
    for name in names:
        if name.text in _ID_NAMES:
            keys.add(_ID_NAMES[name.text])
        elif name.text in PROPERTIES[entity_set]:
            keys.add(name.text)
        elif find_nav(entity_set, name.text) is not None:
            keys.add(f"{name.text}@iot.navigationLink")
        else:
            allowed = sorted(PROPERTIES[entity_set]) + [n.name for n in NAVIGATION[entity_set]]
            raise fail(
                "$select",
                f"{entity_set} has no property {name.text!r} (at position {name.position}); "
                f"expected id, {', '.join(allowed)}",
            )
    return frozenset(keys)


def _expand(entity_set: str, items: Sequence[ExpandItem], parameter: str) -> tuple[Expansion, ...]:
    """Bind items, merging ``A``, ``A/B`` and ``A($select=x)`` into one expansion of ``A``."""
    own: dict[str, QueryText] = {}
    nested: dict[str, list[ExpandItem]] = {}
    navs: dict[str, Nav] = {}
    for item in items:
        first = item.path[0]
        nav = find_nav(entity_set, first.text)
        if nav is None:
            allowed = ", ".join(n.name for n in NAVIGATION[entity_set]) or "none"
            raise InvalidParameterError(
                parameter,
                f"{entity_set} has no navigation property {first.text!r} (at position "
                f"{first.position}); expected one of: {allowed}",
            )
        navs[nav.name] = nav
        nested.setdefault(nav.name, [])
        if len(item.path) == 1:
            own[nav.name] = item.options
        else:
            nested[nav.name].append(ExpandItem(item.path[1:], item.options))
    expansions = []
    for name, nav in navs.items():
        base = own.get(name, QueryText())
        text = replace(base, expand=base.expand + tuple(nested[name]))
        expansions.append(Expansion(nav, bind_options(nav.target, text, inside=parameter)))
    return tuple(expansions)
