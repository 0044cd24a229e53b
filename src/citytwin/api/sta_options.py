"""Query options checked against the data model: what one level of a SensorThings request asks.

:mod:`citytwin.api.sta_query` reads the text; this module binds it to an entity set (OGC 18-088
§9.3): ``$select`` names must be properties, ids or navigation links of that set, ``$expand``
names its navigation properties (paths such as ``Datastreams/Observations`` become nested
expansions), ``$filter`` paths may cross to-one navigation links only. An error names the option
(``$expand`` for anything inside an expansion) and its position in the parameter's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from citytwin.api.errors import InvalidParameterError
from citytwin.api.filter import Predicate, parse_filter, properties
from citytwin.api.filter_tokens import FilterSyntaxError
from citytwin.api.sta_query import ExpandItem, QueryText, Span
from citytwin.api.sta_schema import NAVIGATION, PROPERTIES, Nav, find_nav

__all__ = ["DEFAULT_TOP", "MAX_TOP", "Expansion", "OrderField", "QueryOptions", "bind_options"]

DEFAULT_TOP = 100
MAX_TOP = 10_000
OrderField = Literal["id", "phenomenonTime"]
_ORDERBY = re.compile(r"\s*(@iot\.id|id|phenomenonTime)(?:\s+(asc|desc))?\s*", re.IGNORECASE)
_Fail = Callable[[str, str], InvalidParameterError]  # option, message -> the error to raise
_ID_NAMES = {"id": "@iot.id", "@iot.id": "@iot.id", "@iot.selfLink": "@iot.selfLink"}


@dataclass(frozen=True)
class Expansion:
    """One expanded navigation property and the options of the expanded entities."""

    nav: Nav
    options: QueryOptions


@dataclass(frozen=True)
class QueryOptions:
    """The options of one level (the request, or one expansion), checked and compiled."""

    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    descending: bool = False
    order_by: OrderField | None = None
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
    order_by, descending = _order(entity_set, text.orderby, fail)
    return QueryOptions(
        top=top,
        skip=text.skip or 0,
        count=bool(text.count),
        descending=descending,
        order_by=order_by,
        where=None if text.filter is None else _where(entity_set, text.filter, fail),
        select=None if text.select is None else _select(entity_set, text.select, fail),
        expand=_expand(entity_set, text.expand, inside or "$expand"),
        text=text,
    )


def _order(entity_set: str, orderby: Span | None, fail: _Fail) -> tuple[OrderField | None, bool]:
    if orderby is None:
        return None, False
    match = _ORDERBY.fullmatch(orderby.text)
    if match is None:
        raise fail(
            "$orderby",
            f"cannot order by {orderby.text!r} at position {orderby.position}; "
            "expected 'id' or 'phenomenonTime' [asc|desc]",
        )
    field_name: OrderField = "id" if match[1].lower() in ("id", "@iot.id") else "phenomenonTime"
    if field_name == "phenomenonTime" and entity_set != "Observations":
        raise fail("$orderby", f"phenomenonTime applies to Observations only, not {entity_set}")
    return field_name, (match[2] or "").lower() == "desc"


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
