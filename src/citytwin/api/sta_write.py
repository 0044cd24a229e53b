"""OGC SensorThings API v1.1 Part 1 (Sensing), write side: create (POST) and dataArray.

Reference: OGC 18-088 section 10.2 (create entities, deep insert, links by ``{"@iot.id": n}``) and
section 14.3 (``CreateObservations`` with ``dataArray``). Update and delete (10.3, 10.4) live in
:mod:`citytwin.api.sta_update`, which shares this module's authorisation and input models.

Bodies are read from the raw request and validated here (:func:`parse`), so that a 400 names the
field path the way STA clients expect; their JSON schemas are still published in the OpenAPI
document (:func:`request_body`), so generated clients and schemathesis see them.

Security by default: every write needs ``Authorization: Bearer <token>`` of a key whose role may
write (:func:`citytwin.api.auth.require`, roles in :mod:`citytwin.auth`). With no key configured
every write is refused (403); a missing or wrong token is a 401, a public or operator key a 403.
A department writer creates Things stamped with its department and writes only what hangs on
Things of its department (403 naming the entity and both departments otherwise).

Ids are server-assigned: each created entity gets a natural key ``api:<uuid4>`` and its ``@iot.id``
derives from it (:func:`citytwin.model.sensing.stable_id`). An inline object carrying ``@iot.id``
is a link to an existing entity (which must exist); its other fields are ignored, as FROST does.
Observations get the read side's deterministic id (:func:`citytwin.api.sta.observation_ids`);
the store keeps one observation per (datastream, phenomenon time start), so a second one at the
same instant is a 409 (or ``"error"`` in a dataArray response). ``resultTime`` is validated but
not stored (the store keeps none).

Speed: single Observations are written by group commit (:mod:`citytwin.api.sta_batch`): the
requests that arrive while a write is in flight share the next one. A dataArray is validated
column by column (Arrow parses a block's times at once; a block with a bad row or an interval
takes the per-row path, which names the bad rows) and written as one frame with one
:meth:`~citytwin.store.base.Store.write_new_observations`. Created observations are announced
on the app bus (``observations/api``), as the ingest pipeline announces its own; every other
entity created (deep inserts included) is announced after the commit on ``entities/<EntitySet>``
as ``{"event": "create", "entity_set": ..., "id": ...}`` (:func:`announce`; the MQTT bridge
publishes it), an existing one a deep insert links as an ``"update"`` (:func:`entity_event`).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from citytwin.api.auth import WriteError as WriteError  # re-exported: raised by update routes
from citytwin.api.auth import (
    Writer,
    check_datastreams,
    check_datastreams_async,
    check_entities,
    require,
    stamp,
)
from citytwin.api.auth import install_error_handlers as install_error_handlers
from citytwin.api.errors import InvalidParameterError
from citytwin.api.sta import (
    VERSION,
    StoreAccess,
    observation_ids,
    render_entity,
    render_observations,
    service_base,
)
from citytwin.api.sta_batch import ObservationBatcher, Outcome
from citytwin.auth import Principal
from citytwin.bus.base import Bus, observations_topic
from citytwin.model.geojson import Geometry
from citytwin.model.sensing import (
    GEOJSON,
    OM_MEASUREMENT,
    SENSOR_ENCODING_PDF,
    Datastream,
    Entity,
    FeatureOfInterest,
    HistoricalLocation,
    Location,
    ObservedProperty,
    Sensor,
    Thing,
    UnitOfMeasurement,
    UTCDateTime,
)
from citytwin.store.base import ObservationFrame, Store, first_of_identity, to_micros

E = TypeVar("E", bound=Entity)
KEY_PREFIX = "api:"
FIRST_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))
LAST_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))
# what pydantic and Arrow read alike; anything else takes the per-row path
ISO_INSTANT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
DATA_ARRAY_COMPONENTS = frozenset({"phenomenonTime", "result", "resultTime"})
ENTITIES = "entities"  # bus topics entities/<EntitySet>: entities created or updated over HTTP


# -- authorisation ------------------------------------------------------------------------------
authorise = require("write")
"""The dependency of every write route (kept under its old name for callers of before roles)."""


async def json_body(request: Request, _: Writer) -> Any:
    """The JSON body, read only after the request is authorised."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting beyond Python's limit
        raise InvalidParameterError("body", f"not valid JSON: {exc}") from None


Body = Annotated[Any, Depends(json_body)]


# -- input models -------------------------------------------------------------------------------
class InputModel(BaseModel):
    """A request body: unknown fields are errors, names are the standard's (aliases)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Link(InputModel):
    """``{"@iot.id": n}``: a link to an existing entity."""

    id: int = Field(alias="@iot.id", ge=0, lt=2**63)  # the stores keep ids as BIGINT

    @model_validator(mode="before")
    @classmethod
    def _only_id(cls, value: Any) -> Any:
        """Other fields next to ``@iot.id`` are ignored, as FROST-Server does (clients such as
        frost-sta-client send the whole linked entity)."""
        if isinstance(value, dict) and "@iot.id" in value:
            return {"@iot.id": value["@iot.id"]}
        return value


def _ref_kind(value: Any) -> str:
    return "@link" if isinstance(value, dict) and "@iot.id" in value else "@inline"


def _phenomenon_start(value: Any) -> Any:
    """An ISO 8601 instant, or an interval ``start/end`` (checked) reduced to its start."""
    if isinstance(value, str) and "/" in value:
        start, _, end = value.partition("/")
        adapter = TypeAdapter(UTCDateTime)
        if adapter.validate_python(end) < adapter.validate_python(start):
            raise ValueError(f"interval {value!r} ends before it starts")
        return start
    return value


PhenomenonStart = Annotated[UTCDateTime, BeforeValidator(_phenomenon_start)]
Result = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ObservationIn(InputModel):
    phenomenon_time: PhenomenonStart = Field(alias="phenomenonTime")
    result: Result
    result_time: UTCDateTime | None = Field(None, alias="resultTime")
    datastream: Link | None = Field(None, alias="Datastream")


class SensorIn(InputModel):
    name: str
    description: str = ""
    encoding_type: str = Field(SENSOR_ENCODING_PDF, alias="encodingType")
    metadata: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)


class ObservedPropertyIn(InputModel):
    name: str
    definition: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)


class FeatureOfInterestIn(InputModel):
    name: str
    description: str = ""
    encoding_type: str = Field(GEOJSON, alias="encodingType")
    feature: Geometry
    properties: dict[str, Any] = Field(default_factory=dict)


class LocationIn(InputModel):
    name: str
    description: str = ""
    encoding_type: str = Field(GEOJSON, alias="encodingType")
    location: Geometry
    properties: dict[str, Any] = Field(default_factory=dict)
    things: list[Link] = Field(default_factory=list, alias="Things", max_length=1)


SensorRef = Annotated[
    Annotated[Link, Tag("@link")] | Annotated[SensorIn, Tag("@inline")], Discriminator(_ref_kind)
]
ObservedPropertyRef = Annotated[
    Annotated[Link, Tag("@link")] | Annotated[ObservedPropertyIn, Tag("@inline")],
    Discriminator(_ref_kind),
]
LocationRef = Annotated[
    Annotated[Link, Tag("@link")] | Annotated[LocationIn, Tag("@inline")], Discriminator(_ref_kind)
]


class DatastreamIn(InputModel):
    name: str
    description: str = ""
    unit_of_measurement: UnitOfMeasurement = Field(alias="unitOfMeasurement")
    observation_type: str = Field(OM_MEASUREMENT, alias="observationType")
    observed_area: Geometry | None = Field(None, alias="observedArea")
    properties: dict[str, Any] = Field(default_factory=dict)
    thing: Link | None = Field(None, alias="Thing")
    sensor: SensorRef = Field(alias="Sensor")
    observed_property: ObservedPropertyRef = Field(alias="ObservedProperty")
    observations: list[ObservationIn] = Field(default_factory=list, alias="Observations")


class ThingIn(InputModel):
    name: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)
    locations: list[LocationRef] = Field(default_factory=list, alias="Locations")
    datastreams: list[DatastreamIn] = Field(default_factory=list, alias="Datastreams")


class DataArrayIn(InputModel):
    datastream: Link = Field(alias="Datastream")
    components: list[str]
    data_array: list[list[Any]] = Field(alias="dataArray")

    @field_validator("components")
    @classmethod
    def _components(cls, components: list[str]) -> list[str]:
        unknown = [c for c in components if c not in DATA_ARRAY_COMPONENTS]
        if unknown:
            raise ValueError(f"unsupported {unknown}; use {sorted(DATA_ARRAY_COMPONENTS)}")
        missing = {"phenomenonTime", "result"} - set(components)
        if missing or len(set(components)) != len(components):
            raise ValueError("components must name phenomenonTime and result once each")
        return components


def request_body(model: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body with the schema of ``model``.

    The schema is self-contained: pydantic's ``$defs`` are inlined (FastAPI publishes no
    components for a body it does not parse itself).
    """
    schema = TypeAdapter(model).json_schema(by_alias=True)
    content = {"application/json": {"schema": _inline(schema, schema.get("$defs", {}), ())}}
    return {"requestBody": {"required": True, "content": content}}


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"cannot inline the recursive schema {name!r}")
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(defs[name], defs, (*seen, name)), **_inline(rest, defs, seen)}
    # a discriminator's mapping points into $defs, which are gone; oneOf says the same
    return {
        key: _inline(value, defs, seen)
        for key, value in node.items()
        if key != "$defs" and not (key == "discriminator" and isinstance(value, dict))
    }


def _path(location: Sequence[int | str]) -> str:
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("@link", "@inline"):
            out += f".{part}" if out else part
    return out or "body"


def parse(model: Any, body: Any) -> Any:
    """Validate a body; the first error becomes a 400 naming its field path."""
    try:
        return TypeAdapter(model).validate_python(body)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        path = _path(first["loc"])
        raise InvalidParameterError(path, first["msg"]) from None
    except OverflowError as exc:  # pydantic passes it through: a time beyond year 1…9999 in UTC
        raise InvalidParameterError(
            "body", f"a date-time is out of range once converted to UTC (years 1 to 9999): {exc}"
        ) from None


# -- creation -----------------------------------------------------------------------------------
def new_key() -> str:
    return f"{KEY_PREFIX}{uuid.uuid4()}"


def _fields(model: BaseModel, *exclude: str) -> dict[str, Any]:
    return {name: getattr(model, name) for name in type(model).model_fields if name not in exclude}


class Creation:
    """One create request: entities to register (dependencies first) and observations to write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entities: list[Entity] = []
        self.frames: list[ObservationFrame] = []

    def add(self, entity: E) -> E:
        self.entities.append(entity)
        return entity

    def existing(self, kind: type[E], entity_id: int, path: str) -> E:
        found = self.store.entities(kind, [entity_id])
        if not found:
            raise InvalidParameterError(path, f"no {kind.entity_set}({entity_id}) to link to")
        return found[0]

    def resolve(self, kind: type[Entity], ref: Any, path: str, build: Callable[..., Entity]) -> int:
        if isinstance(ref, Link):
            return self.existing(kind, ref.id, path).id or 0
        return build(ref, path).id or 0

    def sensor(self, body: SensorIn, path: str = "") -> Sensor:
        return self.add(Sensor(key=new_key(), **_fields(body)))

    def observed_property(self, body: ObservedPropertyIn, path: str = "") -> ObservedProperty:
        return self.add(ObservedProperty(key=new_key(), **_fields(body)))

    def feature(self, body: FeatureOfInterestIn, path: str = "") -> FeatureOfInterest:
        return self.add(FeatureOfInterest(key=new_key(), **_fields(body)))

    def location(self, body: LocationIn, path: str = "", thing_id: int | None = None) -> Location:
        if body.things and thing_id is not None:
            raise InvalidParameterError(f"{path}.Things", "a nested Location takes no Things")
        if body.things:
            thing_id = self.existing(Thing, body.things[0].id, f"{path}Things[0]").id
        location = self.add(Location(key=new_key(), thing_id=thing_id, **_fields(body, "things")))
        if thing_id is not None:
            self.add(
                HistoricalLocation(
                    key=new_key(),
                    time=datetime.now(UTC),
                    thing_id=thing_id,
                    location_id=location.id,
                )
            )
        return location

    def datastream(
        self, body: DatastreamIn, path: str = "", thing_id: int | None = None
    ) -> Datastream:
        prefix = f"{path}." if path else ""
        if thing_id is None:
            if body.thing is None:
                raise InvalidParameterError(f"{prefix}Thing", "a Datastream needs a Thing link")
            thing_id = self.existing(Thing, body.thing.id, f"{prefix}Thing").id
        elif body.thing is not None:
            raise InvalidParameterError(f"{prefix}Thing", "a nested Datastream takes no Thing")
        sensor_id = self.resolve(Sensor, body.sensor, f"{prefix}Sensor", self.sensor)
        property_id = self.resolve(
            ObservedProperty, body.observed_property, f"{prefix}ObservedProperty",
            self.observed_property,
        )  # fmt: skip
        datastream = self.add(
            Datastream(
                key=new_key(),
                thing_id=thing_id or 0,
                sensor_id=sensor_id,
                observed_property_id=property_id,
                **_fields(body, "thing", "sensor", "observed_property", "observations"),
            )
        )
        for i, obs in enumerate(body.observations):
            if obs.datastream is not None:
                raise InvalidParameterError(
                    f"{prefix}Observations[{i}].Datastream", "a nested Observation takes none"
                )
        if body.observations:
            times = [to_micros(o.phenomenon_time) for o in body.observations]
            ok = new_rows(self.store, datastream.id or 0, np.asarray(times, np.int64))
            if not ok.all():
                raise WriteError(
                    409,
                    "two Observations share a phenomenonTime",
                    parameter=f"{prefix}Observations",
                )
            self.frames.append(
                ObservationFrame.from_arrays(
                    [datastream.id or 0] * len(times), times, [o.result for o in body.observations]
                )
            )
        return datastream

    def thing(self, body: ThingIn, path: str = "") -> Thing:
        thing = self.add(Thing(key=new_key(), **_fields(body, "locations", "datastreams")))
        for i, ref in enumerate(body.locations):
            where = f"Locations[{i}]"
            if isinstance(ref, Link):
                linked = self.existing(Location, ref.id, where)
                self.add(linked.model_copy(update={"thing_id": thing.id}))
                self.add(
                    HistoricalLocation(
                        key=new_key(), time=datetime.now(UTC), thing_id=thing.id, location_id=ref.id
                    )
                )
            else:
                self.location(ref, where, thing_id=thing.id)
        for i, datastream in enumerate(body.datastreams):
            self.datastream(datastream, f"Datastreams[{i}]", thing_id=thing.id)
        return thing

    def commit(self) -> None:
        self.store.register(self.entities)
        for frame in self.frames:
            self.store.write_observations(frame)


def new_rows(store: Store, datastream_id: int, times: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which rows may be written: first of their time in the batch and not stored already."""
    frame = ObservationFrame.from_arrays(
        np.full(len(times), datastream_id, np.int64), times, np.zeros(len(times))
    )
    return first_of_identity(frame) & ~store.existing(frame)


# -- routes -------------------------------------------------------------------------------------
def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.store_access
    return access


Access = Annotated[StoreAccess, Depends(_access)]


def _created(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=201, headers={"Location": body["@iot.selfLink"]})


def _publish(request: Request, frame: ObservationFrame) -> None:
    """Announce observations created over HTTP on the app bus (WebSocket clients, MQTT)."""
    bus: Bus | None = getattr(request.app.state, "bus", None)
    if bus is not None and len(frame):
        bus.publish(observations_topic("api"), frame)


def entity_event(entity: Entity, before: Entity | None = None) -> dict[str, object]:
    """The bus message announcing ``entity`` created (``before`` None) or updated from ``before``.

    An update names the link fields that now point elsewhere (``linked``: the entity is new in
    those navigation sets) and the STA properties whose value changed (``changed``).

    >>> old = Thing(key="k", name="a")
    >>> entity_event(old.model_copy(update={"name": "b"}), old)["changed"]
    ['name']
    """
    event: dict[str, object] = {"entity_set": entity.entity_set, "id": entity.id or 0}
    if before is None:
        return {"event": "create", **event}
    linked = [
        name
        for name in sorted(entity.link_fields())
        if getattr(entity, name) is not None and getattr(entity, name) != getattr(before, name)
    ]
    old, new = before.to_sta(), entity.to_sta()
    changed = [name for name in new.keys() | old.keys() if new.get(name) != old.get(name)]
    return {"event": "update", **event, "linked": linked, "changed": sorted(changed)}


def announce(request: Request, events: Iterable[Mapping[str, object]]) -> None:
    """Publish entity events (:func:`entity_event`) on the app bus, after their commit."""
    bus: Bus | None = getattr(request.app.state, "bus", None)
    if bus is not None:
        for event in events:
            bus.publish(f"{ENTITIES}/{event['entity_set']}", event)


def _stored_before(creation: Creation) -> dict[tuple[str, int], Entity]:
    """The entities of a creation that exist already (a deep insert links them), as stored."""
    wanted: dict[type[Entity], list[int]] = {}
    for entity in creation.entities:
        wanted.setdefault(type(entity), []).append(entity.id or 0)
    return {
        (found.entity_set, found.id or 0): found
        for kind, ids in wanted.items()
        for found in creation.store.entities(kind, ids)
    }


def _batcher(request: Request) -> ObservationBatcher:
    """The app's group-commit writer for single Observations, made on first use."""
    state = request.app.state
    batcher: ObservationBatcher | None = getattr(state, "observation_batcher", None)
    if batcher is None:
        bus: Bus | None = getattr(state, "bus", None)
        published = None if bus is None else partial(bus.publish, observations_topic("api"))
        batcher = ObservationBatcher(state.store_access, published=published)
        state.observation_batcher = batcher
    return batcher


_BUILDERS: dict[str, tuple[type[BaseModel], Callable[[Creation, Any], Entity]]] = {
    "Things": (ThingIn, lambda c, b: c.thing(b)),
    "Locations": (LocationIn, lambda c, b: c.location(b)),
    "Sensors": (SensorIn, lambda c, b: c.sensor(b)),
    "ObservedProperties": (ObservedPropertyIn, lambda c, b: c.observed_property(b)),
    "Datastreams": (DatastreamIn, lambda c, b: c.datastream(b)),
    "FeaturesOfInterest": (FeatureOfInterestIn, lambda c, b: c.feature(b)),
}


def _stamped(parsed: BaseModel, who: Principal) -> BaseModel:
    """A writer's new Thing (or free Location) carries its department unless it names one."""
    if isinstance(parsed, ThingIn) or (isinstance(parsed, LocationIn) and not parsed.things):
        return parsed.model_copy(update={"properties": stamp(parsed.properties, who)})
    return parsed


def _check_creation(
    request: Request, who: Principal, creation: Creation, stored: dict[tuple[str, int], Entity]
) -> None:
    """403 unless the writer may create every entity (and change every linked one)."""
    pending = {t.id or 0: t for t in creation.entities if isinstance(t, Thing)}
    changes: list[tuple[Entity, str]] = []
    for entity in creation.entities:
        before = stored.get((entity.entity_set, entity.id or 0))
        if before is None:
            changes.append((entity, "create"))
        elif not isinstance(before, (Sensor, ObservedProperty, FeatureOfInterest)):
            changes += [(before, "update"), (entity, "update")]
    check_entities(request.app.state, creation.store, who, changes, pending=pending)


def _add_create_route(router: APIRouter, entity_set: str) -> None:
    model, build = _BUILDERS[entity_set]

    def create(request: Request, access: Access, body: Body, who: Writer) -> JSONResponse:
        parsed = _stamped(parse(model, body), who)
        with access.lock:
            creation = Creation(access.store())
            entity = build(creation, parsed)
            stored = _stored_before(creation)
            _check_creation(request, who, creation, stored)
            creation.commit()
        _publish(request, ObservationFrame.concat(creation.frames))
        events = {
            (e.entity_set, e.id): entity_event(e, stored.get((e.entity_set, e.id or 0)))
            for e in creation.entities
        }  # one per entity, its last state
        announce(request, events.values())
        return _created(render_entity(entity, service_base(request)))

    router.add_api_route(
        f"/{entity_set}", create, methods=["POST"], status_code=201, name=f"create_{entity_set}",
        summary=f"Create one of the {entity_set} (deep insert)", tags=[entity_set],
        openapi_extra=request_body(model),
    )  # fmt: skip


async def _write_one(
    request: Request, who: Principal, obs: ObservationIn, datastream_id: int
) -> JSONResponse:
    if not 0 <= datastream_id < 2**63:  # the stores keep ids as BIGINT: this names nothing
        raise InvalidParameterError("Datastream", f"no Datastreams({datastream_id})")
    await check_datastreams_async(request.app.state, who, [datastream_id])
    t = to_micros(obs.phenomenon_time)
    outcome = await _batcher(request).create(datastream_id, t, obs.result)
    if outcome is Outcome.NO_DATASTREAM:
        raise InvalidParameterError("Datastream", f"no Datastreams({datastream_id})")
    if outcome is Outcome.DUPLICATE:
        raise WriteError(
            409,
            f"Datastreams({datastream_id}) has an Observation at "
            f"{obs.phenomenon_time.isoformat()} already (one per phenomenonTime)",
            parameter="phenomenonTime",
        )
    frame = ObservationFrame.from_arrays([datastream_id], [t], [obs.result])
    body = render_observations(frame, service_base(request))[0]
    if obs.result_time is not None:
        body["resultTime"] = obs.result_time.isoformat()
    return _created(body)


async def create_observation(request: Request, body: Body, who: Writer) -> JSONResponse:
    """Written with the requests arriving meanwhile (:mod:`citytwin.api.sta_batch`)."""
    obs: ObservationIn = parse(ObservationIn, body)
    if obs.datastream is None:
        raise InvalidParameterError("Datastream", "an Observation needs a Datastream link")
    return await _write_one(request, who, obs, obs.datastream.id)


async def create_datastream_observation(
    request: Request, body: Body, who: Writer, id: int
) -> JSONResponse:
    """Written with the requests arriving meanwhile (:mod:`citytwin.api.sta_batch`)."""
    obs: ObservationIn = parse(ObservationIn, body)
    if obs.datastream is not None and obs.datastream.id != id:
        raise InvalidParameterError("Datastream", f"differs from the path's Datastreams({id})")
    return await _write_one(request, who, obs, id)


def _data_array_rows(block: DataArrayIn, index: int) -> tuple[list[int | None], list[float]]:
    """Phenomenon times (µs, None where the row is bad) and results of one dataArray block."""
    at_time = block.components.index("phenomenonTime")
    at_result = block.components.index("result")
    at_rt = block.components.index("resultTime") if "resultTime" in block.components else None
    time_adapter = TypeAdapter(PhenomenonStart)
    result_adapter = TypeAdapter(Result)
    rt_adapter = TypeAdapter(UTCDateTime | None)
    times: list[int | None] = []
    results: list[float] = []
    for row in block.data_array:
        try:
            if len(row) != len(block.components):
                raise ValueError("row length differs from components")
            t = to_micros(time_adapter.validate_python(row[at_time]))
            r = float(result_adapter.validate_python(row[at_result]))
            if at_rt is not None:
                rt_adapter.validate_python(row[at_rt])
            if not math.isfinite(r):
                raise ValueError("result is not finite")
        # OverflowError: a time that is before year 1 or after 9999 in UTC
        except (ValueError, OverflowError, PydanticValidationError):
            times.append(None)
            results.append(math.nan)
            continue
        times.append(t)
        results.append(r)
    return times, results


def _parse_times(values: Sequence[Any], *, nullable: bool = False) -> NDArray[np.int64] | None:
    """A column of ISO 8601 instants as µs, parsed at once; None unless every value is plainly
    valid (then the per-row path names the bad rows)."""
    try:
        column = pa.array(values, pa.string())
        if column.null_count and not nullable:
            return None
        plain = pc.all(pc.match_substring_regex(column, ISO_INSTANT), min_count=0).as_py()
        if not plain or pc.any(pc.starts_with(column, "0000")).as_py():  # Arrow takes year 0
            return None
        parsed = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    micros = np.asarray(parsed.to_numpy(), dtype=np.int64)
    # a Python datetime (pydantic's) ends at years 1 and 9999 in UTC, Arrow's does not
    if len(micros) and (micros.min() < FIRST_MICROS or micros.max() > LAST_MICROS):
        return None
    return micros


def _parse_block(block: DataArrayIn) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
    """Phenomenon times (µs) and results of a block whose rows are all valid, column by column
    (~20× faster than row by row); None when any row is not (or holds an interval)."""
    names = block.components
    if any(len(row) != len(names) for row in block.data_array):
        return None
    transposed = list(zip(*block.data_array, strict=True)) or [()] * len(names)
    columns = dict(zip(names, transposed, strict=True))
    times = _parse_times(columns["phenomenonTime"])
    results = columns["result"]
    if times is None or not all(type(r) is float or type(r) is int for r in results):
        return None  # Result is strict: a bool or a numeric string is refused
    if "resultTime" in columns and _parse_times(columns["resultTime"], nullable=True) is None:
        return None
    try:
        values = np.asarray(results, dtype=np.float64)
    except OverflowError:
        return None
    return (times, values) if np.isfinite(values).all() else None


def _block_rows(
    block: DataArrayIn,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """Times (µs), results and validity of each row of one dataArray block."""
    fast = _parse_block(block)
    if fast is not None:
        times, results = fast
        return times, results, np.ones(len(times), dtype=bool)
    raw_times, raw_results = _data_array_rows(block, 0)
    valid = np.asarray([t is not None for t in raw_times], dtype=bool)
    times = np.asarray([t or 0 for t in raw_times], dtype=np.int64)
    return times, np.asarray(raw_results, dtype=np.float64), valid


def _joined(parts: list[NDArray[Any]]) -> NDArray[Any]:
    return np.concatenate(parts) if parts else np.empty(0)


def create_observations(request: Request, access: Access, body: Body, who: Writer) -> JSONResponse:
    """OGC 18-088 section 14.3: rows of dataArrays, written as one ObservationFrame.

    A row is ``"error"`` when it is invalid, when its identity (datastream, phenomenon time) is
    stored already, or when an earlier row of the request has the same identity.
    """
    blocks: list[DataArrayIn] = parse(list[DataArrayIn], body)
    rows = [_block_rows(block) for block in blocks]
    sizes = [len(t) for t, _, _ in rows]
    frame = ObservationFrame.from_arrays(
        np.repeat(np.asarray([b.datastream.id for b in blocks], np.int64), sizes),
        _joined([t for t, _, _ in rows]),
        _joined([r for _, r, _ in rows]),
    )
    valid = _joined([v for _, _, v in rows]).astype(bool)
    check_datastreams(request.app.state, who, [block.datastream.id for block in blocks])
    with access.lock:
        store = access.store()
        wanted = sorted({block.datastream.id for block in blocks})
        known = {d.id for d in store.entities(Datastream, wanted)}
        for i, block in enumerate(blocks):
            if block.datastream.id not in known:
                ds = block.datastream.id
                raise InvalidParameterError(f"[{i}].Datastream", f"no Datastreams({ds})")
        ok = valid.copy()
        ok[ok] = store.write_new_observations(frame.take(ok))
        written = frame.take(ok)
    _publish(request, written)
    base = service_base(request)
    ids = iter(observation_ids(written).tolist())
    links = [f"{base}/Observations({next(ids)})" if good else "error" for good in ok.tolist()]
    return JSONResponse(links, status_code=201)


def create_router() -> APIRouter:
    """The write routes of the SensorThings API, mounted at ``/v1.1``; all need authorisation."""
    router = APIRouter(prefix=f"/{VERSION}", dependencies=[Depends(authorise, scope="function")])
    for entity_set in _BUILDERS:
        _add_create_route(router, entity_set)
    router.add_api_route(
        "/Observations", create_observation, methods=["POST"], status_code=201,
        name="create_Observations", summary="Create one Observation", tags=["Observations"],
        openapi_extra=request_body(ObservationIn),
    )  # fmt: skip
    router.add_api_route(
        "/Datastreams({id})/Observations", create_datastream_observation, methods=["POST"],
        status_code=201, name="create_Datastream_Observations",
        summary="Create one Observation of a Datastream", tags=["Datastreams"],
        openapi_extra=request_body(ObservationIn),
    )  # fmt: skip
    router.add_api_route(
        "/CreateObservations", create_observations, methods=["POST"], status_code=201,
        name="create_observations_data_array",
        summary="Create Observations from dataArrays (OGC 18-088 section 14.3)",
        tags=["Observations"], openapi_extra=request_body(list[DataArrayIn]),
    )  # fmt: skip
    return router
