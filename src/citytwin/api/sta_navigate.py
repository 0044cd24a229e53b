"""Following navigation links for one request, and pushing Observation filters into the store.

A :class:`Navigator` lives for one request and remembers every entity and grouping it has read,
so ``$filter=Datastream/Thing/name eq 'x'`` over ten thousand observations reads each linked
Datastream and Thing once, and ``$expand=Datastreams`` over a page of Things reads the
Datastreams once.

:func:`observation_window` walks the top-level ``and`` chain of a filter for conjuncts the store
can answer itself (``phenomenonTime`` against a datetime, ``Datastream/@iot.id eq N``), so
``store.observations`` reads only what may match; the filter still decides every row exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from citytwin.api.filter import (
    Binary,
    Literal,
    Predicate,
    Property,
    Resolver,
    conjuncts,
    resolve_path,
)
from citytwin.api.sta_render import render
from citytwin.api.sta_schema import ENTITY_SETS, Nav, find_nav
from citytwin.model.sensing import Entity
from citytwin.store.base import ObservationFrame, Store

__all__ = ["Navigator", "Window", "link_value", "observation_window"]

_FLIPPED = {"eq": "eq", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_ID_PATHS = {("Datastream", "id"), ("Datastream", "@iot.id")}
# the store compares int64 µs that to_micros computes through a float: widen each bound by 1 µs
_MICROSECOND = timedelta(microseconds=1)


def link_value(source: Entity, key: str) -> int | None:
    value = getattr(source, key, None)
    return None if value is None else int(value)


class Navigator:
    """Linked entities of one request, each read from the store at most once."""

    def __init__(self, store: Store, base: str) -> None:
        self.store = store
        self.base = base
        self._entities: dict[tuple[str, int], Entity | None] = {}
        self._bodies: dict[tuple[str, int], dict[str, Any]] = {}
        self._groups: dict[tuple[str, str], dict[int, list[Entity]]] = {}

    def entity(self, entity_set: str, entity_id: int | None) -> Entity | None:
        if entity_id is None:
            return None
        key = (entity_set, entity_id)
        if key not in self._entities:
            kind = ENTITY_SETS[entity_set]
            assert kind is not None, "observations are not looked up by id here"
            found = self.store.entities(kind, [entity_id])
            self._entities[key] = found[0] if found else None
        return self._entities[key]

    def one(self, source: Entity, nav: Nav) -> Entity | None:
        """The target of a link the source holds (Datastream → Thing, Observation → Datastream)."""
        return self.entity(nav.target, link_value(source, nav.key))

    def many(self, source: Entity, nav: Nav) -> list[Entity]:
        """The entity targets of a to-many link (not Observations: see :meth:`observations`)."""
        if nav.on_source:
            target = self.one(source, nav)
            return [] if target is None else [target]
        group = (nav.target, nav.key)
        if group not in self._groups:
            kind = ENTITY_SETS[nav.target]
            assert kind is not None
            grouped: dict[int, list[Entity]] = {}
            for entity in self.store.entities(kind):
                owner = link_value(entity, nav.key)
                if owner is not None:
                    grouped.setdefault(owner, []).append(entity)
            self._groups[group] = grouped
        return self._groups[group].get(source.id or 0, [])

    def observations(self, window: Window) -> ObservationFrame:
        if window.datastream_ids is not None and not window.datastream_ids:
            return ObservationFrame.empty()
        ids = None if window.datastream_ids is None else sorted(window.datastream_ids)
        return self.store.observations(datastream_ids=ids, start=window.start, end=window.end)

    def resolver(self, entity_set: str, source: Entity) -> Resolver:
        """The ``$filter`` path lookup for one entity: to-one links are followed, then the JSON."""

        def resolve(path: tuple[str, ...], body: Mapping[str, Any]) -> object:
            current_set, current, step = entity_set, source, 0
            while step < len(path) and (nav := find_nav(current_set, path[step])) is not None:
                target_id = link_value(current, nav.key)
                if path[step + 1 :] in (("id",), ("@iot.id",)):
                    return target_id  # the link holds the id: no lookup
                target = self.entity(nav.target, target_id)
                if target is None:
                    return None
                current_set, current, step = nav.target, target, step + 1
                body = self._body(current_set, target)
            return resolve_path(path[step:], body)

        return resolve

    def _body(self, entity_set: str, entity: Entity) -> dict[str, Any]:
        key = (entity_set, entity.id or 0)
        if key not in self._bodies:
            self._bodies[key] = render(entity_set, entity, entity.id or 0, self.base)
        return self._bodies[key]


@dataclass(frozen=True)
class Window:
    """What ``store.observations`` is asked for: datastreams (None: all) and [start, end)."""

    datastream_ids: frozenset[int] | None = None
    start: datetime | None = None
    end: datetime | None = None


def observation_window(where: Predicate | None, datastream_ids: Sequence[int] | None) -> Window:
    """The store query that returns a superset of the Observations ``where`` can keep.

    >>> from citytwin.api.filter import compile_to_predicate
    >>> w = observation_window(compile_to_predicate(
    ...     "phenomenonTime ge 2020-03-14T15:00:00Z and Datastream/id eq 7 and result gt 1"), None)
    >>> sorted(w.datastream_ids), w.start.isoformat(), w.end
    ([7], '2020-03-14T14:59:59.999999+00:00', None)
    """
    ids = None if datastream_ids is None else frozenset(datastream_ids)
    start: datetime | None = None
    end: datetime | None = None
    for node in [] if where is None else conjuncts(where.node):
        found = _comparison(node)
        if found is None:
            continue
        path, op, value = found
        if path in _ID_PATHS and op == "eq" and type(value) is int:  # not a bool
            ids = frozenset({value}) if ids is None else ids & {value}
        elif path == ("phenomenonTime",) and isinstance(value, datetime):
            low, high = _bounds(op, value)
            start = low if start is None or (low is not None and low > start) else start
            end = high if end is None or (high is not None and high < end) else end
    return Window(ids, start, end)


def _comparison(node: object) -> tuple[tuple[str, ...], str, object] | None:
    """``property op literal`` (either way round) as (path, op with the property left, value)."""
    if not isinstance(node, Binary) or node.op not in _FLIPPED:
        return None
    if isinstance(node.left, Property) and isinstance(node.right, Literal):
        return node.left.path, node.op, node.right.value
    if isinstance(node.left, Literal) and isinstance(node.right, Property):
        return node.right.path, _FLIPPED[node.op], node.left.value
    return None


def _bounds(op: str, value: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end) holding every instant ``instant op value`` keeps, a microsecond wider."""
    try:
        if op in ("gt", "ge"):
            return value - _MICROSECOND, None
        if op == "lt":
            return None, value + _MICROSECOND
        if op == "le":
            return None, value + 2 * _MICROSECOND
        return value - _MICROSECOND, value + 2 * _MICROSECOND  # eq
    except OverflowError:  # a literal at the edge of the calendar bounds nothing
        return None, None
