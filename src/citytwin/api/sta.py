"""OGC SensorThings API v1.1 Part 1 (Sensing), read side: entity sets, entities, navigation.

Reference: OGC 18-088, SensorThings API Part 1: Sensing Version 1.1 — section 9.2 (resource
path) and section 9.3 (query options). Every collection, entity and navigation route answers:

- ``$top $skip $count``; ``$orderby`` on several keys, each a property, a path into one or a
  to-one navigation path (``properties/gu desc, Thing/name``), nulls first ascending; on
  Observations ``id``, ``phenomenonTime``, ``resultTime``, ``result`` and ``Datastream/id``,
  sorted on the store's columns without rendering the rows;
- ``$filter`` (:mod:`citytwin.api.filter`), evaluated on each entity's STA JSON; its paths may
  follow to-one navigation links (``Datastream/Thing/properties/gu eq '송파구'``), read once per
  request by :class:`~citytwin.api.sta_navigate.Navigator`. On Observations the top-level ``and``
  conjuncts on ``phenomenonTime`` and ``Datastream/@iot.id`` also narrow the store query;
- ``$select`` (properties, ``id``, navigation links) and ``$expand`` with nested paths and
  options (``Datastreams($select=name;$expand=Observations($top=3))``), parsed by
  :mod:`citytwin.api.sta_query` and checked by :mod:`citytwin.api.sta_options`. An expanded
  to-many set is an inline array with ``Name@iot.count`` (nested ``$count=true``) and
  ``Name@iot.nextLink`` when its ``$top`` (default :data:`DEFAULT_TOP`) cuts it short.

Any other ``$`` option is refused with a 400 naming it, never ignored. Observation ids are
derived from (datastream, phenomenon time): see :mod:`citytwin.api.sta_render`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from numpy.typing import NDArray

from citytwin.api.errors import InvalidParameterError, NotFoundError, UnsupportedParameterError
from citytwin.api.sta_navigate import Navigator, link_value, observation_window
from citytwin.api.sta_options import (
    DEFAULT_TOP,
    MAX_TOP,
    Expansion,
    OrderKey,
    QueryOptions,
    bind_options,
)
from citytwin.api.sta_query import (
    QuerySyntaxError,
    QueryText,
    Span,
    parse_expand,
    parse_select,
    query_pairs,
)
from citytwin.api.sta_render import (
    find_observation,
    observation_ids,
    observation_rows,
    render_entity,
    render_observations,
    render_rows,
)
from citytwin.api.sta_schema import ENTITY_SETS, NAVIGATION, Nav
from citytwin.model.sensing import Entity
from citytwin.store.base import ObservationFrame, Store

VERSION = "v1.1"
SUPPORTED_OPTIONS = frozenset(
    {"$top", "$skip", "$count", "$orderby", "$filter", "$select", "$expand"}
)
_REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req"
CONFORMANCE = [
    f"{_REQ}/datamodel",
    f"{_REQ}/resource-path/resource-path-to-entities",
    f"{_REQ}/request-data/order",
    f"{_REQ}/request-data/expand",
    f"{_REQ}/request-data/select",
    f"{_REQ}/request-data/top",
    f"{_REQ}/request-data/skip",
    f"{_REQ}/request-data/count",
    f"{_REQ}/request-data/filter",
]


# -- query options ------------------------------------------------------------------------------
def query_options(
    request: Request,
    top: Annotated[int, Query(alias="$top", ge=0, le=MAX_TOP)] = DEFAULT_TOP,
    skip: Annotated[int, Query(alias="$skip", ge=0)] = 0,
    count: Annotated[bool, Query(alias="$count")] = False,
    orderby: Annotated[str | None, Query(alias="$orderby")] = None,
    filter_: Annotated[str | None, Query(alias="$filter")] = None,
    select: Annotated[str | None, Query(alias="$select")] = None,
    expand: Annotated[str | None, Query(alias="$expand")] = None,
) -> QueryText:
    """The query options as written, syntax checked; each route binds them to its entity set."""
    for name in request.query_params:
        if name.startswith("$") and name not in SUPPORTED_OPTIONS:
            raise UnsupportedParameterError(name)
    try:
        selected = None if select is None else parse_select(select)
    except QuerySyntaxError as exc:
        raise InvalidParameterError("$select", str(exc)) from None
    try:
        expanded = () if expand is None else parse_expand(expand)
    except QuerySyntaxError as exc:
        raise InvalidParameterError("$expand", str(exc)) from None
    return QueryText(
        top=top,
        skip=skip,
        count=count,
        orderby=None if orderby is None else Span(orderby, 0),
        filter=None if filter_ is None else Span(filter_, 0),
        select=selected,
        expand=expanded,
    )


Options = Annotated[QueryText, Depends(query_options)]


# -- collections --------------------------------------------------------------------------------
def service_base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/{VERSION}"


Rows = tuple[list[Entity], list[int]]  # entities and their @iot.id, in output order


@dataclass(frozen=True)
class Collection:
    """One entity set to page: its size after $filter, and its items for (skip, top) rendered."""

    total: int
    render: Callable[[int, int], list[dict[str, Any]]]


def page(request: Request, collection: Collection, options: QueryOptions) -> dict[str, Any]:
    """The STA collection body: value, @iot.count when asked, @iot.nextLink when more remain."""
    body: dict[str, Any] = {}
    if options.count:
        body["@iot.count"] = collection.total
    body["value"] = collection.render(options.skip, options.top)
    end = options.skip + options.top
    if options.top > 0 and end < collection.total:
        body["@iot.nextLink"] = str(request.url.include_query_params(**{"$skip": end}))
    return body


def collect(
    navigator: Navigator,
    entity_set: str,
    found: Sequence[Entity] | ObservationFrame,
    options: QueryOptions,
) -> Collection:
    """Order, filter, then render only the page asked for (with its expansions and selection).

    Entities are ordered by id unless ``$orderby`` names other keys: then every entity is
    rendered once to read them, and those bodies are reused for ``$filter`` and the page.
    """
    rendered: list[dict[str, Any]] | None = None
    if isinstance(found, ObservationFrame):
        order = _observation_order(found, options.order_by)

        def rows(skip: int, top: int) -> Rows:
            return observation_rows(found.take(order[skip : skip + top]))

        total = len(found)
    else:
        ordered = sorted(found, key=lambda e: e.id or 0)
        keys = options.order_by
        if keys and not keys[0].is_id:
            bodies = render_rows(entity_set, ordered, [e.id or 0 for e in ordered], navigator.base)
            index = _entity_order(navigator, entity_set, ordered, bodies, keys)
            ordered = [ordered[i] for i in index]
            rendered = [bodies[i] for i in index]
        elif keys and keys[0].descending:  # ids are unique: later keys never break a tie
            ordered.reverse()
        ordered_ids = [e.id or 0 for e in ordered]

        def rows(skip: int, top: int) -> Rows:
            return ordered[skip : skip + top], ordered_ids[skip : skip + top]

        total = len(ordered)
    if options.where is None:

        def render_page(skip: int, top: int) -> list[dict[str, Any]]:
            bodies = None if rendered is None else rendered[skip : skip + top]
            return finish(navigator, entity_set, *rows(skip, top), options, bodies)

        return Collection(total, render_page)
    entities, ids = rows(0, total)
    if rendered is None:
        rendered = render_rows(entity_set, entities, ids, navigator.base)
    bodies = rendered
    where = options.where
    kept = [
        i
        for i, body in enumerate(bodies)
        if where(body, navigator.resolver(entity_set, entities[i]))
    ]

    def render_kept(skip: int, top: int) -> list[dict[str, Any]]:
        chosen = kept[skip : skip + top]
        picked = [entities[i] for i in chosen], [ids[i] for i in chosen]
        return finish(navigator, entity_set, *picked, options, [bodies[i] for i in chosen])

    return Collection(len(kept), render_kept)


def _entity_order(
    navigator: Navigator,
    entity_set: str,
    entities: Sequence[Entity],
    bodies: Sequence[dict[str, Any]],
    keys: Sequence[OrderKey],
) -> list[int]:
    """Positions of the entities sorted by the keys (stable: one sort per key, last key first)."""
    resolvers = [navigator.resolver(entity_set, entity) for entity in entities]
    index = list(range(len(entities)))
    for key in reversed(keys):
        values = [
            _sort_value(resolve(key.path, body))
            for resolve, body in zip(resolvers, bodies, strict=True)
        ]
        index.sort(key=values.__getitem__, reverse=key.descending)
    return index


def _sort_value(value: object) -> tuple[int, Any]:
    """A key any two JSON values compare by: (type rank, value); null (and NaN) is lowest."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0, 0
    if isinstance(value, bool):
        return 1, value
    if isinstance(value, int | float):
        return 2, value
    if isinstance(value, str):
        return 3, value
    return 4, json.dumps(value, sort_keys=True, default=str)  # objects and arrays: by their text


def _observation_order(frame: ObservationFrame, keys: Sequence[OrderKey]) -> NDArray[np.intp]:
    """Row positions sorted by the keys on the frame's columns; ties keep the frame's order."""
    columns: list[NDArray[Any]] = []  # most significant first
    for key in keys:
        match key.path:
            case ("@iot.id",):
                columns.append(observation_ids(frame))
            case ("phenomenonTime",):
                columns.append(frame.phenomenon_time)
            case ("Datastream", "@iot.id"):
                columns.append(frame.datastream_id)
            case ("result",):
                missing = np.isnan(frame.result)  # null results sort first ascending
                columns.append(missing if key.descending else ~missing)
                columns.append(np.where(missing, 0.0, frame.result))
                if key.descending:
                    columns[-1] = -columns[-1]
                continue
            case _:  # resultTime: always null, so every row ties
                continue
        if key.descending:
            columns[-1] = -columns[-1]
    if not columns:
        return np.arange(len(frame))  # storage order: (datastream, time)
    return np.lexsort(columns[::-1])


def finish(
    navigator: Navigator,
    entity_set: str,
    entities: list[Entity],
    ids: list[int],
    options: QueryOptions,
    bodies: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """STA JSON of entities with ``$expand`` applied, then ``$select``."""
    if bodies is None:
        bodies = render_rows(entity_set, entities, ids, navigator.base)
    for expansion in options.expand:
        _expand(navigator, entity_set, entities, ids, bodies, expansion)
    if options.select is None:
        return bodies
    suffixes = ("", "@iot.count", "@iot.nextLink")  # an expansion is kept whatever $select says
    keep = options.select | {f"{e.nav.name}{end}" for e in options.expand for end in suffixes}
    return [{key: value for key, value in body.items() if key in keep} for body in bodies]


def _expand(
    navigator: Navigator,
    entity_set: str,
    entities: list[Entity],
    ids: list[int],
    bodies: list[dict[str, Any]],
    expansion: Expansion,
) -> None:
    """Inline one navigation property into each body: an object (to-one) or a paged array."""
    nav, options = expansion.nav, expansion.options
    if not nav.many:
        for entity, body in zip(entities, bodies, strict=True):
            if (target := navigator.one(entity, nav)) is not None:
                body[nav.name] = finish(navigator, nav.target, [target], [target.id or 0], options)[
                    0
                ]
        return
    frames = _observations_of(navigator, ids, options) if nav.target == "Observations" else None
    for entity, entity_id, body in zip(entities, ids, bodies, strict=True):
        targets = navigator.many(entity, nav) if frames is None else frames[entity_id]
        collection = collect(navigator, nav.target, targets, options)
        if options.count:
            body[f"{nav.name}@iot.count"] = collection.total
        body[nav.name] = collection.render(options.skip, options.top)
        end = options.skip + options.top
        if options.top > 0 and end < collection.total:
            pairs = query_pairs(replace(options.text, skip=end, top=options.top))
            query = urlencode(pairs, quote_via=quote)
            body[f"{nav.name}@iot.nextLink"] = (
                f"{navigator.base}/{entity_set}({entity_id})/{nav.name}?{query}"
            )


def _observations_of(
    navigator: Navigator, datastream_ids: list[int], options: QueryOptions
) -> dict[int, ObservationFrame]:
    """Observations of a page of Datastreams, read in one store query and split by datastream."""
    frame = navigator.observations(observation_window(options.where, datastream_ids))
    order = np.argsort(frame.datastream_id, kind="stable")  # the store's order already, normally
    frame = frame.take(order)
    low = np.searchsorted(frame.datastream_id, datastream_ids, side="left")
    high = np.searchsorted(frame.datastream_id, datastream_ids, side="right")
    return {
        ds: frame.take(np.arange(a, b)) for ds, a, b in zip(datastream_ids, low, high, strict=True)
    }


# -- resolution ---------------------------------------------------------------------------------
class StoreAccess:
    """The store behind a lock: a store connection is not shared by threads concurrently."""

    def __init__(self, opener: Callable[[], Store]) -> None:
        self._opener = opener
        self._store: Store | None = None
        self.lock = threading.Lock()

    def store(self) -> Store:
        """The store, opened on first use (call with :attr:`lock` held)."""
        if self._store is None:
            self._store = self._opener()
        return self._store

    def close(self) -> None:
        with self.lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def get_entity(navigator: Navigator, entity_set: str, entity_id: int) -> Entity:
    """The entity a path names (an Observation row too); 404 when there is none."""
    if ENTITY_SETS[entity_set] is None:
        rows, _ = observation_rows(find_observation(navigator.store, entity_id))
        found = rows[0] if rows else None
    else:
        found = navigator.entity(entity_set, entity_id)
    if found is None:
        raise NotFoundError(entity_set, entity_id)
    return found


# -- routes -------------------------------------------------------------------------------------
def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.store_access
    return access


Access = Annotated[StoreAccess, Depends(_access)]


def _add_set_routes(router: APIRouter, entity_set: str) -> None:
    kind = ENTITY_SETS[entity_set]

    def list_set(request: Request, access: Access, text: Options) -> dict[str, Any]:
        options = bind_options(entity_set, text)
        with access.lock:
            navigator = Navigator(access.store(), service_base(request))
            found: Sequence[Entity] | ObservationFrame = (
                navigator.observations(observation_window(options.where, None))
                if kind is None
                else navigator.store.entities(kind)
            )
            return page(request, collect(navigator, entity_set, found, options), options)

    def get_one(request: Request, access: Access, text: Options, id: int) -> dict[str, Any]:
        options = bind_options(entity_set, QueryText(select=text.select, expand=text.expand))
        with access.lock:
            navigator = Navigator(access.store(), service_base(request))
            entity = get_entity(navigator, entity_set, id)
            return finish(navigator, entity_set, [entity], [id], options)[0]

    router.add_api_route(
        f"/{entity_set}", list_set, methods=["GET"], name=f"list_{entity_set}",
        summary=f"The {entity_set} collection", tags=[entity_set],
    )  # fmt: skip
    router.add_api_route(
        f"/{entity_set}({{id}})", get_one, methods=["GET"], name=f"get_{entity_set}",
        summary=f"One of the {entity_set} by @iot.id", tags=[entity_set],
    )  # fmt: skip
    for nav in NAVIGATION[entity_set]:
        _add_nav_route(router, entity_set, nav)


def _add_nav_route(router: APIRouter, entity_set: str, nav: Nav) -> None:
    def follow(request: Request, access: Access, text: Options, id: int) -> dict[str, Any]:
        if not nav.many:
            text = QueryText(select=text.select, expand=text.expand)
        options = bind_options(nav.target, text)
        with access.lock:
            navigator = Navigator(access.store(), service_base(request))
            source = get_entity(navigator, entity_set, id)
            if nav.target == "Observations":
                window = observation_window(options.where, [id])
                found: Sequence[Entity] | ObservationFrame = navigator.observations(window)
            elif nav.many:
                found = navigator.many(source, nav)
            else:
                target = navigator.one(source, nav)
                if target is None:
                    raise NotFoundError(nav.target, link_value(source, nav.key), parameter=nav.name)
                return finish(navigator, nav.target, [target], [target.id or 0], options)[0]
            return page(request, collect(navigator, nav.target, found, options), options)

    router.add_api_route(
        f"/{entity_set}({{id}})/{nav.name}", follow, methods=["GET"],
        name=f"navigate_{entity_set}_{nav.name}",
        summary=f"{nav.name} of one of the {entity_set}", tags=[entity_set],
    )  # fmt: skip


TASKING_CONFORMANCE = "http://www.opengis.net/spec/iot_tasking/1.0/req/tasking-core"


def service_root(request: Request) -> dict[str, Any]:
    """The service root: every entity set and the conformance classes implemented."""
    base = service_base(request)
    names, conformance = list(ENTITY_SETS), list(CONFORMANCE)
    if getattr(request.app.state, "control", None) is not None:  # Part 2: Tasking Core
        names += ["Actuators", "TaskingCapabilities", "Tasks"]
        conformance.append(TASKING_CONFORMANCE)
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in names],
        "serverSettings": {"conformance": conformance},
    }


def create_router() -> APIRouter:
    """A router with every read route of the SensorThings API, mounted at ``/v1.1``."""
    router = APIRouter(prefix=f"/{VERSION}")
    router.add_api_route("", service_root, methods=["GET"], tags=["service"], name="service_root")
    for entity_set in ENTITY_SETS:
        _add_set_routes(router, entity_set)
    return router


__all__ = [
    "CONFORMANCE",
    "DEFAULT_TOP",
    "ENTITY_SETS",
    "MAX_TOP",
    "NAVIGATION",
    "SUPPORTED_OPTIONS",
    "VERSION",
    "Access",
    "Nav",
    "StoreAccess",
    "create_router",
    "find_observation",
    "observation_ids",
    "render_entity",
    "render_observations",
    "service_base",
]
