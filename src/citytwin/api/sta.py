"""OGC SensorThings API v1.1 Part 1 (Sensing), read side: entity sets, entities, navigation.

Reference: OGC 18-088, SensorThings API Part 1: Sensing Version 1.1 — section 9 (resource path),
section 9.3 (query options ``$top``, ``$skip``, ``$count``, ``$orderby``, and ``$filter``, evaluated
in memory on each entity's STA JSON by :mod:`citytwin.api.filter` — SQL push-down comes next).
``$expand`` and ``$select`` are refused with a 400 naming the parameter rather than ignored.

Observation ids
---------------
The store identifies an observation by (datastream id, phenomenon time start) and keeps no id of
its own, so the API derives one that fits JavaScript's 53-bit exact integers and can be resolved
without a lookup table::

    @iot.id = hour << 32 | mix64(datastream_id, phenomenon_time_us) >> 32

``hour`` is the whole hours since 1970-01-01 UTC of the phenomenon time (21 bits, until 2209) and
the low 32 bits are a SplitMix64 hash of the identity. ``Observations(id)`` decodes the hour, reads
that hour of observations and keeps the row whose hash matches: resolution touches one hour of
data, never the whole store. Two observations of the same hour share an id only if their 32-bit
hashes collide (probability ≈ n² / 2³³ for n observations in the hour); the id is deterministic,
so every store and every restart gives the same ids.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from numpy.typing import NDArray

from citytwin.api.errors import InvalidParameterError, NotFoundError, UnsupportedParameterError
from citytwin.api.filter import compile_to_predicate
from citytwin.api.filter_tokens import FilterSyntaxError
from citytwin.model.sensing import (
    Datastream,
    Entity,
    FeatureOfInterest,
    HistoricalLocation,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
)
from citytwin.store.base import ObservationFrame, Store, from_micros

VERSION = "v1.1"
DEFAULT_TOP = 100
MAX_TOP = 10_000
HOUR_US = 3_600_000_000
_HOUR_BITS = 21
SUPPORTED_OPTIONS = frozenset({"$top", "$skip", "$count", "$orderby", "$filter"})
CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/order",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/top",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/skip",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/count",
]
ENTITY_SETS: dict[str, type[Entity] | None] = {
    "Things": Thing,
    "Locations": Location,
    "HistoricalLocations": HistoricalLocation,
    "Sensors": Sensor,
    "ObservedProperties": ObservedProperty,
    "Datastreams": Datastream,
    "FeaturesOfInterest": FeatureOfInterest,
    "Observations": None,  # rows of the store's observation frame, not registered entities
}


@dataclass(frozen=True)
class Nav:
    """A navigation property: ``source_set(id)/name``.

    ``key`` is the link field; ``on_source`` says whether it sits on the source entity (the
    source points at the target) or on the targets (they point back at the source).
    """

    name: str
    target: str
    key: str
    on_source: bool
    many: bool


NAVIGATION: dict[str, tuple[Nav, ...]] = {
    "Things": (
        Nav("Locations", "Locations", "thing_id", on_source=False, many=True),
        Nav("HistoricalLocations", "HistoricalLocations", "thing_id", on_source=False, many=True),
        Nav("Datastreams", "Datastreams", "thing_id", on_source=False, many=True),
    ),
    "Locations": (
        Nav("Things", "Things", "thing_id", on_source=True, many=True),
        Nav(
            "HistoricalLocations", "HistoricalLocations", "location_id", on_source=False, many=True
        ),
    ),
    "HistoricalLocations": (
        Nav("Thing", "Things", "thing_id", on_source=True, many=False),
        Nav("Locations", "Locations", "location_id", on_source=True, many=True),
    ),
    "Sensors": (Nav("Datastreams", "Datastreams", "sensor_id", on_source=False, many=True),),
    "ObservedProperties": (
        Nav("Datastreams", "Datastreams", "observed_property_id", on_source=False, many=True),
    ),
    "Datastreams": (
        Nav("Thing", "Things", "thing_id", on_source=True, many=False),
        Nav("Sensor", "Sensors", "sensor_id", on_source=True, many=False),
        Nav("ObservedProperty", "ObservedProperties", "observed_property_id", True, False),
        Nav("Observations", "Observations", "datastream_id", on_source=False, many=True),
    ),
    "FeaturesOfInterest": (),
    "Observations": (
        Nav("Datastream", "Datastreams", "datastream_id", on_source=True, many=False),
    ),
}


# -- observation ids ----------------------------------------------------------------------------
def _mix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014); uint64 arithmetic wraps by design."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def observation_ids(frame: ObservationFrame) -> NDArray[np.int64]:
    """The 53-bit ``@iot.id`` of every row (scheme in the module docstring).

    >>> f = ObservationFrame.from_arrays([7, 7], [0, 3_600_000_000], [1.0, 2.0])
    >>> [int(i) >> 32 for i in observation_ids(f)]
    [0, 1]
    """
    ds = frame.datastream_id.view(np.uint64)
    t = frame.phenomenon_time.view(np.uint64)
    low = _mix64(ds ^ _mix64(t)) >> np.uint64(32)
    hour = (frame.phenomenon_time // HOUR_US) & ((1 << _HOUR_BITS) - 1)
    return (hour << 32) | low.astype(np.int64)


def find_observation(store: Store, observation_id: int) -> ObservationFrame:
    """The observation (zero or one row) an id names; reads one hour of the store."""
    if not 0 <= observation_id < 2**53:
        return ObservationFrame.empty()
    start = from_micros((observation_id >> 32) * HOUR_US)
    frame = store.observations(start=start, end=start + timedelta(hours=1))
    return frame.take(np.flatnonzero(observation_ids(frame) == observation_id)[:1])


# -- query options ------------------------------------------------------------------------------
OrderField = Literal["id", "phenomenonTime"]


Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class QueryOptions:
    top: int
    skip: int
    count: bool
    descending: bool
    order_by: OrderField | None
    where: Predicate | None = None  # $filter, evaluated on each entity's STA JSON


_ORDERBY = re.compile(r"\s*(@iot\.id|id|phenomenonTime)(?:\s+(asc|desc))?\s*", re.IGNORECASE)


def query_options(
    request: Request,
    top: Annotated[int, Query(alias="$top", ge=0, le=MAX_TOP)] = DEFAULT_TOP,
    skip: Annotated[int, Query(alias="$skip", ge=0)] = 0,
    count: Annotated[bool, Query(alias="$count")] = False,
    orderby: Annotated[str | None, Query(alias="$orderby")] = None,
    filter_: Annotated[str | None, Query(alias="$filter")] = None,
) -> QueryOptions:
    """Validate the query options; refuse the ones not implemented rather than ignore them."""
    for name in request.query_params:
        if name.startswith("$") and name not in SUPPORTED_OPTIONS:
            raise UnsupportedParameterError(name)
    where = _predicate(filter_)
    if orderby is None:
        return QueryOptions(top, skip, count, descending=False, order_by=None, where=where)
    match = _ORDERBY.fullmatch(orderby)
    if match is None:
        raise InvalidParameterError(
            "$orderby", f"cannot order by {orderby!r}; expected 'id' or 'phenomenonTime' [asc|desc]"
        )
    field: OrderField = "id" if match[1].lower() in ("id", "@iot.id") else "phenomenonTime"
    return QueryOptions(top, skip, count, (match[2] or "").lower() == "desc", field, where)


def _predicate(text: str | None) -> Predicate | None:
    """``$filter`` parsed once per request; a syntax error is a 400 naming its position."""
    if text is None:
        return None
    try:
        return compile_to_predicate(text)
    except FilterSyntaxError as exc:
        raise InvalidParameterError("$filter", str(exc)) from None


Options = Annotated[QueryOptions, Depends(query_options)]


# -- rendering ----------------------------------------------------------------------------------
def service_base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/{VERSION}"


def _links(base: str, entity_set: str, entity_id: int) -> dict[str, Any]:
    self_link = f"{base}/{entity_set}({entity_id})"
    links: dict[str, Any] = {"@iot.id": entity_id, "@iot.selfLink": self_link}
    for nav in NAVIGATION[entity_set]:
        links[f"{nav.name}@iot.navigationLink"] = f"{self_link}/{nav.name}"
    return links


def render_entity(entity: Entity, base: str) -> dict[str, Any]:
    body = entity.to_sta()
    body.pop("@iot.id", None)
    return {**_links(base, entity.entity_set, entity.id or 0), **body}


def render_observations(frame: ObservationFrame, base: str) -> list[dict[str, Any]]:
    ids = observation_ids(frame).tolist()
    return [
        {**_links(base, "Observations", i), **obs.to_sta(), "resultTime": None}
        for i, obs in zip(ids, frame.to_observations(), strict=True)
    ]


@dataclass(frozen=True)
class Collection:
    """One page of an entity set: rendered items of the page, total size before paging."""

    total: int
    render: Callable[[int, int], list[dict[str, Any]]]  # (skip, top) -> items


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


def entity_collection(entities: Sequence[Entity], base: str, options: QueryOptions) -> Collection:
    if options.order_by == "phenomenonTime":
        raise InvalidParameterError("$orderby", "phenomenonTime applies to Observations only")
    ordered = sorted(entities, key=lambda e: e.id or 0, reverse=options.descending)
    if options.where is not None:  # in memory for now; a SQL push-down is the next step
        where = options.where
        rendered = [render_entity(e, base) for e in ordered]
        kept = [item for item in rendered if where(item)]
        return Collection(len(kept), lambda skip, top: kept[skip : skip + top])
    return Collection(
        len(ordered), lambda skip, top: [render_entity(e, base) for e in ordered[skip : skip + top]]
    )


def observation_collection(frame: ObservationFrame, base: str, options: QueryOptions) -> Collection:
    if options.order_by == "id":
        order = np.argsort(observation_ids(frame), kind="stable")
    elif options.order_by == "phenomenonTime":
        order = np.lexsort((frame.datastream_id, frame.phenomenon_time))
    else:
        order = np.arange(len(frame))  # storage order: (datastream, time)
    if options.descending:
        order = order[::-1]
    if options.where is not None:
        where = options.where
        kept = [item for item in render_observations(frame.take(order), base) if where(item)]
        return Collection(len(kept), lambda skip, top: kept[skip : skip + top])
    return Collection(
        len(frame),
        lambda skip, top: render_observations(frame.take(order[skip : skip + top]), base),
    )


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


def get_entity(store: Store, entity_set: str, entity_id: int) -> Entity | ObservationFrame:
    kind = ENTITY_SETS[entity_set]
    if kind is None:
        frame = find_observation(store, entity_id)
        if not len(frame):
            raise NotFoundError(entity_set, entity_id)
        return frame
    found = store.entities(kind, [entity_id])
    if not found:
        raise NotFoundError(entity_set, entity_id)
    return found[0]


def _link_value(source: Entity | ObservationFrame, key: str) -> int | None:
    if isinstance(source, ObservationFrame):
        return int(getattr(source, key)[0])
    value = getattr(source, key)
    return None if value is None else int(value)


def navigate(
    store: Store, source: Entity | ObservationFrame, nav: Nav
) -> list[Entity] | ObservationFrame:
    """Targets of a navigation property of one source entity."""
    source_id = source.id if isinstance(source, Entity) else None
    if nav.target == "Observations":
        return store.observations(datastream_ids=[source_id or 0])
    kind = ENTITY_SETS[nav.target]
    assert kind is not None
    if nav.on_source:
        target_id = _link_value(source, nav.key)
        return [] if target_id is None else store.entities(kind, [target_id])
    return [e for e in store.entities(kind) if getattr(e, nav.key) == source_id]


# -- routes -------------------------------------------------------------------------------------
def _collection_of(
    found: list[Entity] | ObservationFrame, base: str, options: QueryOptions
) -> Collection:
    if isinstance(found, ObservationFrame):
        return observation_collection(found, base, options)
    return entity_collection(found, base, options)


def _single(found: Entity | ObservationFrame, base: str) -> dict[str, Any]:
    if isinstance(found, ObservationFrame):
        return render_observations(found, base)[0]
    return render_entity(found, base)


def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.store_access
    return access


Access = Annotated[StoreAccess, Depends(_access)]


def _add_set_routes(router: APIRouter, entity_set: str) -> None:
    kind = ENTITY_SETS[entity_set]

    def list_set(request: Request, access: Access, options: Options) -> dict[str, Any]:
        base = service_base(request)
        with access.lock:
            store = access.store()
            found: list[Entity] | ObservationFrame = (
                store.observations() if kind is None else list(store.entities(kind))
            )
            return page(request, _collection_of(found, base, options), options)

    def get_one(request: Request, access: Access, id: int) -> dict[str, Any]:
        with access.lock:
            return _single(get_entity(access.store(), entity_set, id), service_base(request))

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
    def follow(request: Request, access: Access, options: Options, id: int) -> dict[str, Any]:
        base = service_base(request)
        with access.lock:
            store = access.store()
            source = get_entity(store, entity_set, id)
            found = navigate(store, source, nav)
            if nav.many:
                return page(request, _collection_of(found, base, options), options)
            if isinstance(found, ObservationFrame) or not found:
                raise NotFoundError(nav.target, _link_value(source, nav.key), parameter=nav.name)
            return render_entity(found[0], base)

    router.add_api_route(
        f"/{entity_set}({{id}})/{nav.name}", follow, methods=["GET"],
        name=f"navigate_{entity_set}_{nav.name}",
        summary=f"{nav.name} of one of the {entity_set}", tags=[entity_set],
    )  # fmt: skip


def service_root(request: Request) -> dict[str, Any]:
    """The service root: every entity set and the conformance classes implemented."""
    base = service_base(request)
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
        "serverSettings": {"conformance": CONFORMANCE},
    }


def create_router() -> APIRouter:
    """A router with every read route of the SensorThings API, mounted at ``/v1.1``."""
    router = APIRouter(prefix=f"/{VERSION}")
    router.add_api_route("", service_root, methods=["GET"], tags=["service"], name="service_root")
    for entity_set in ENTITY_SETS:
        _add_set_routes(router, entity_set)
    return router
