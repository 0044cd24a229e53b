"""OGC SensorThings API v1.1 Part 1 (Sensing), write side: update (PATCH, PUT) and delete.

Reference: OGC 18-088 section 10.3 (update an entity) and section 10.4 (delete an entity). Every
route needs a key that may write (:func:`citytwin.api.auth.require`, 401/403 as for POST); a
department writer changes only what belongs to its department, before and after the change
(the shared catalogue of Sensors, ObservedProperties and FeaturesOfInterest only an admin).

Update
------
``PATCH /v1.1/<EntitySet>(id)`` applies the body to the entity with JSON merge semantics (RFC
7396): a property given replaces the stored one, an object given is merged into the stored object
key by key (so ``{"properties": {"floor": 3}}`` keeps the other properties), and ``null`` removes
a key — a property with a default goes back to it, a required one makes the request a 400.
Links change by binding, ``{"Thing": {"@iot.id": 7}}``; related entities inline are refused (the
standard forbids them in an update). ``@iot.id`` may be repeated but not changed; the read-only
annotations (``@iot.selfLink``, ``…@iot.navigationLink``) are ignored. ``PUT`` replaces every
property (omitted ones go back to their defaults) and keeps links that the body does not bind.

The answer is 200, the status FROST-Server gives, with the updated entity as body (FROST sends
none; clients ignore it, and an Observation whose identity changed must be told its new id).

Observations: the store identifies one by (datastream, phenomenon time start) and derives its id
from them (:func:`citytwin.api.sta.observation_ids`), so a PATCH of ``phenomenonTime`` or
``Datastream`` moves it to a new id; a clash with another observation is a 409. A changed result
clears the quality flags, which described the old value. ``resultTime`` is validated, not stored.

Delete
------
``DELETE /v1.1/<EntitySet>(id)`` answers 200 with an empty body (as FROST-Server) and removes what
the integrity constraints of section 10.4 say goes with the entity:

=====================  ==========================================================================
deleted                also deleted
=====================  ==========================================================================
Thing                  its Datastreams (with their Observations) and HistoricalLocations; its
                       Locations stay, unlinked
Location               the HistoricalLocations that reference it
Sensor                 the Datastreams that use it (with their Observations)
ObservedProperty       the Datastreams that use it (with their Observations)
Datastream             its Observations
HistoricalLocation,    nothing else (the store links no Observation to a FeatureOfInterest)
FeatureOfInterest,
Observation
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from citytwin.api.auth import Writer, check_datastreams, check_entities, department_cache, stamp
from citytwin.api.errors import InvalidParameterError, NotFoundError
from citytwin.api.sta import (
    ENTITY_SETS,
    VERSION,
    StoreAccess,
    find_observation,
    render_entity,
    render_observations,
    service_base,
)
from citytwin.api.sta_write import (
    Body,
    InputModel,
    Link,
    PhenomenonStart,
    Result,
    WriteError,
    announce,
    authorise,
    entity_event,
    new_key,
    new_rows,
    parse,
    request_body,
)
from citytwin.auth import Principal, Role
from citytwin.model.geojson import Geometry
from citytwin.model.sensing import (
    Datastream,
    Entity,
    HistoricalLocation,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
    UnitOfMeasurement,
    UTCDateTime,
)
from citytwin.store.base import ObservationFrame, Store, to_micros

MAX_ID = 2**63  # ids are BIGINT in the stores; larger ones name nothing
JSON = dict[str, Any]


# -- patch bodies -------------------------------------------------------------------------------
class ThingPatch(InputModel):
    name: str | None = None
    description: str | None = None
    properties: JSON | None = None


class LocationPatch(InputModel):
    name: str | None = None
    description: str | None = None
    encoding_type: str | None = Field(None, alias="encodingType")
    location: Geometry | None = None
    properties: JSON | None = None
    things: list[Link] | None = Field(None, alias="Things", max_length=1)


class HistoricalLocationPatch(InputModel):
    time: UTCDateTime | None = None
    thing: Link | None = Field(None, alias="Thing")
    locations: list[Link] | None = Field(None, alias="Locations", min_length=1, max_length=1)


class SensorPatch(InputModel):
    name: str | None = None
    description: str | None = None
    encoding_type: str | None = Field(None, alias="encodingType")
    metadata: str | None = None
    properties: JSON | None = None


class ObservedPropertyPatch(InputModel):
    name: str | None = None
    definition: str | None = None
    description: str | None = None
    properties: JSON | None = None


class DatastreamPatch(InputModel):
    name: str | None = None
    description: str | None = None
    unit_of_measurement: UnitOfMeasurement | None = Field(None, alias="unitOfMeasurement")
    observation_type: str | None = Field(None, alias="observationType")
    observed_area: Geometry | None = Field(None, alias="observedArea")
    properties: JSON | None = None
    thing: Link | None = Field(None, alias="Thing")
    sensor: Link | None = Field(None, alias="Sensor")
    observed_property: Link | None = Field(None, alias="ObservedProperty")


class FeatureOfInterestPatch(InputModel):
    name: str | None = None
    description: str | None = None
    encoding_type: str | None = Field(None, alias="encodingType")
    feature: Geometry | None = None
    properties: JSON | None = None


class ObservationPatch(InputModel):
    phenomenon_time: PhenomenonStart | None = Field(None, alias="phenomenonTime")
    result: Result | None = None
    result_time: UTCDateTime | None = Field(None, alias="resultTime")
    datastream: Link | None = Field(None, alias="Datastream")


PATCHES: dict[str, type[BaseModel]] = {
    "Things": ThingPatch,
    "Locations": LocationPatch,
    "HistoricalLocations": HistoricalLocationPatch,
    "Sensors": SensorPatch,
    "ObservedProperties": ObservedPropertyPatch,
    "Datastreams": DatastreamPatch,
    "FeaturesOfInterest": FeatureOfInterestPatch,
    "Observations": ObservationPatch,
}


@dataclass(frozen=True)
class Binding:
    """A navigation property an update may bind: body name, link field, linked kind."""

    name: str
    field: str
    target: type[Entity]


BINDINGS: dict[type[Entity], tuple[Binding, ...]] = {
    Location: (Binding("Things", "thing_id", Thing),),
    HistoricalLocation: (
        Binding("Thing", "thing_id", Thing),
        Binding("Locations", "location_id", Location),
    ),
    Datastream: (
        Binding("Thing", "thing_id", Thing),
        Binding("Sensor", "sensor_id", Sensor),
        Binding("ObservedProperty", "observed_property_id", ObservedProperty),
    ),
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, ``null`` removes, the rest replaces.

    >>> merge_patch({"a": 1, "p": {"x": 1, "y": 2}}, {"p": {"y": None, "z": 3}})
    {'a': 1, 'p': {'x': 1, 'z': 3}}
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


# -- update -------------------------------------------------------------------------------------
def _check_id(body: Any, entity_id: int) -> JSON:
    """The body as an object without its read-only annotations; ``@iot.id`` must not change."""
    if not isinstance(body, dict):
        raise InvalidParameterError("body", f"expected a JSON object, got {type(body).__name__}")
    if "@iot.id" in body and body["@iot.id"] != entity_id:
        raise InvalidParameterError(
            "@iot.id", f"cannot change the id {entity_id} to {body['@iot.id']!r} (ids are fixed)"
        )
    return {k: v for k, v in body.items() if "@iot." not in k}


def _bound(store: Store, binding: Binding, value: Link | list[Link] | None) -> int | None:
    """The id a binding links to, checked to exist (an empty list unlinks)."""
    link = (value[0] if value else None) if isinstance(value, list) else value
    if link is None:
        return None
    if not (0 <= link.id < MAX_ID and store.entities(binding.target, [link.id])):
        where = f"{binding.name}[0]" if isinstance(value, list) else binding.name
        raise InvalidParameterError(where, f"no {binding.target.entity_set}({link.id}) to link to")
    return link.id


def update_entity(store: Store, current: Entity, body: JSON, *, replace: bool) -> Entity:
    """The entity after a PATCH (``replace=False``) or PUT; registered, extra rows too."""
    updated = updated_entity(store, current, body, replace=replace)
    store.register([updated, *_moves(current, updated)])
    return updated


def updated_entity(store: Store, current: Entity, body: JSON, *, replace: bool) -> Entity:
    """The entity a PATCH (``replace=False``) or PUT would make, not yet registered."""
    kind = type(current)
    patch = parse(PATCHES[kind.entity_set], body)
    links = {f: getattr(current, f) for f in kind.link_fields()}
    bindings = BINDINGS.get(kind, ())
    for binding in bindings:
        if binding.name in body:
            links[binding.field] = _bound(
                store, binding, getattr(patch, _attribute(patch, binding))
            )
    plain = {k: v for k, v in body.items() if k not in {b.name for b in bindings}}
    doc = merge_patch({} if replace else current.to_sta(), plain)
    doc.pop("@iot.id", None)
    updated: Entity = parse(kind, {**doc, **links, "key": current.key, "@iot.id": current.id})
    return updated


def _moves(current: Entity, updated: Entity) -> list[HistoricalLocation]:
    """A Location linked to another Thing is a move: a HistoricalLocation records it."""
    if not (isinstance(updated, Location) and isinstance(current, Location)):
        return []
    if updated.thing_id is None or updated.thing_id == current.thing_id:
        return []
    return [_historical_location(updated.thing_id, updated.id or 0)]


def _attribute(patch: BaseModel, binding: Binding) -> str:
    fields = type(patch).model_fields
    return next(name for name, info in fields.items() if info.alias == binding.name)


def _historical_location(thing_id: int, location_id: int) -> HistoricalLocation:
    return HistoricalLocation(
        key=new_key(), time=datetime.now(UTC), thing_id=thing_id, location_id=location_id
    )


def update_observation(
    store: Store, current: ObservationFrame, body: JSON, *, replace: bool
) -> ObservationFrame:
    """The observation after a PATCH or PUT: deleted and written again under its new identity."""
    patch: ObservationPatch = parse(ObservationPatch, body)
    for name in ("phenomenonTime", "result"):
        if (replace and name not in body) or (name in body and body[name] is None):
            raise InvalidParameterError(name, "an Observation needs one (it cannot be null)")
    datastream = int(current.datastream_id[0])
    if patch.datastream is not None:
        datastream = patch.datastream.id
        if not (0 <= datastream < MAX_ID and store.entities(Datastream, [datastream])):
            raise InvalidParameterError("Datastream", f"no Datastreams({datastream}) to link to")
    time = int(current.phenomenon_time[0])
    if patch.phenomenon_time is not None:
        time = to_micros(patch.phenomenon_time)
    result = float(current.result[0]) if patch.result is None else patch.result
    quality = int(current.quality[0]) if result == current.result[0] else 0
    updated = ObservationFrame.from_arrays([datastream], [time], [result], [quality])
    moved = (datastream, time) != (int(current.datastream_id[0]), int(current.phenomenon_time[0]))
    if moved and not new_rows(store, datastream, updated.phenomenon_time).all():
        raise WriteError(
            409,
            f"Datastreams({datastream}) has an Observation at that phenomenonTime already "
            "(one per phenomenonTime)",
            parameter="phenomenonTime",
        )
    store.delete_observations(identities=current)
    store.write_observations(updated)
    return updated


# -- delete -------------------------------------------------------------------------------------
CASCADE: dict[type[Entity], tuple[tuple[type[Entity], str], ...]] = {
    Thing: ((Datastream, "thing_id"), (HistoricalLocation, "thing_id")),
    Location: ((HistoricalLocation, "location_id"),),
    Sensor: ((Datastream, "sensor_id"),),
    ObservedProperty: ((Datastream, "observed_property_id"),),
}


def delete_entities(store: Store, kind: type[Entity], ids: list[int]) -> int:
    """Delete entities and what OGC 18-088 section 10.4 deletes with them; rows removed."""
    removed, wanted = 0, set(ids)
    for child, link in CASCADE.get(kind, ()):
        doomed = [e.id or 0 for e in store.entities(child) if getattr(e, link) in wanted]
        if doomed:
            removed += delete_entities(store, child, doomed)
    if kind is Datastream:
        removed += store.delete_observations(datastream_ids=ids)
    if kind is Thing:  # a Location outlives its Thing; only the link goes
        located = [loc for loc in store.entities(Location) if loc.thing_id in wanted]
        store.register([loc.model_copy(update={"thing_id": None}) for loc in located])
    return removed + store.delete(kind, ids)


# -- routes -------------------------------------------------------------------------------------
def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.store_access
    return access


Access = Annotated[StoreAccess, Depends(_access)]


def _found(store: Store, entity_set: str, entity_id: int) -> Entity | ObservationFrame:
    kind = ENTITY_SETS[entity_set]
    if kind is None:
        frame = find_observation(store, entity_id)
        if len(frame):
            return frame
    elif 0 <= entity_id < MAX_ID and (found := store.entities(kind, [entity_id])):
        return found[0]
    raise NotFoundError(entity_set, entity_id)


def _check_observation(
    request: Request, who: Principal, current: ObservationFrame, body: JSON
) -> None:
    """A writer may move an Observation only between Datastreams of its department."""
    target = parse(ObservationPatch, body).datastream
    ids = [int(current.datastream_id[0])] + ([target.id] if target is not None else [])
    check_datastreams(request.app.state, who, ids)


def _owned(entity_set: str, who: Principal, fields: JSON, *, replace: bool) -> JSON:
    """A writer's PUT of a Thing keeps its department when the body names none."""
    if entity_set == "Things" and replace and who.role is Role.WRITER:
        return {**fields, "properties": stamp(fields.get("properties") or {}, who)}
    return fields


def _forget_owners(request: Request, entity_set: str) -> None:
    """Ownership of Datastreams follows Things and Datastreams: forget what was looked up."""
    if entity_set in ("Things", "Datastreams"):
        department_cache(request.app.state).clear()


def _updater(entity_set: str, *, replace: bool) -> Callable[..., JSONResponse]:
    def update(request: Request, access: Access, body: Body, who: Writer, id: int) -> JSONResponse:
        fields = _owned(entity_set, who, _check_id(body, id), replace=replace)
        events: list[dict[str, object]] = []
        if entity_set == "Observations" and who.role is not Role.ADMIN:
            with access.lock:
                found = _found(access.store(), entity_set, id)
            assert isinstance(found, ObservationFrame)
            _check_observation(request, who, found, fields)
        with access.lock:
            store = access.store()
            current = _found(store, entity_set, id)
            if isinstance(current, ObservationFrame):
                frame = update_observation(store, current, fields, replace=replace)
                rendered = render_observations(frame, service_base(request))[0]
            else:
                entity = updated_entity(store, current, fields, replace=replace)
                state = request.app.state
                check_entities(state, store, who, [(current, "update"), (entity, "update")])
                store.register([entity, *_moves(current, entity)])
                _forget_owners(request, entity_set)
                rendered = render_entity(entity, service_base(request))
                events.append(entity_event(entity, current))
        announce(request, events)  # after the commit, for the MQTT bridge
        return JSONResponse(rendered)

    return update


def _deleter(entity_set: str) -> Callable[..., Response]:
    def delete(request: Request, access: Access, who: Writer, id: int) -> Response:
        if entity_set == "Observations" and who.role is not Role.ADMIN:
            with access.lock:
                found = _found(access.store(), entity_set, id)
            assert isinstance(found, ObservationFrame)
            check_datastreams(request.app.state, who, [int(found.datastream_id[0])])
        with access.lock:
            store = access.store()
            found = _found(store, entity_set, id)
            if isinstance(found, ObservationFrame):
                store.delete_observations(identities=found)
            else:
                check_entities(request.app.state, store, who, [(found, "delete")])
                delete_entities(store, type(found), [id])
                _forget_owners(request, entity_set)
        return Response(status_code=200)

    return delete


def create_router() -> APIRouter:
    """PATCH, PUT and DELETE on ``/v1.1/<EntitySet>({id})``; all need authorisation."""
    router = APIRouter(prefix=f"/{VERSION}", dependencies=[Depends(authorise, scope="function")])
    for entity_set in ENTITY_SETS:
        path = f"/{entity_set}({{id}})"
        body = request_body(PATCHES[entity_set])
        router.add_api_route(
            path, _updater(entity_set, replace=False), methods=["PATCH"],
            name=f"update_{entity_set}", tags=[entity_set], openapi_extra=body,
            summary=f"Update one of the {entity_set} (JSON merge patch, OGC 18-088 10.3)",
        )  # fmt: skip
        router.add_api_route(
            path, _updater(entity_set, replace=True), methods=["PUT"],
            name=f"replace_{entity_set}", tags=[entity_set], openapi_extra=body,
            summary=f"Replace one of the {entity_set} (omitted properties take their defaults)",
        )  # fmt: skip
        router.add_api_route(
            path, _deleter(entity_set), methods=["DELETE"], name=f"delete_{entity_set}",
            summary=f"Delete one of the {entity_set} and what depends on it (OGC 18-088 10.4)",
            tags=[entity_set],
        )  # fmt: skip
    return router
