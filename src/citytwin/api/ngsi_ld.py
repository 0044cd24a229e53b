"""A read-only ETSI NGSI-LD view (GS CIM 009, API v1) typed with FIWARE Smart Data Models.

The same store the SensorThings and twin routes read, seen as NGSI-LD entities, so a FIWARE tool
(a dashboard, a QuantumLeap/Mintaka client) can read the twin without a second copy:

- ``GET /ngsi-ld/v1/entities`` — query: ``type``, ``id``, ``attrs``, ``q``, ``georel=near``,
  ``limit``/``offset`` (a ``Link: <…>; rel="next"`` header while more remain), ``count=true``
  (``NGSILD-Results-Count`` header), ``options=keyValues``;
- ``GET /ngsi-ld/v1/entities/{entityId}`` — one entity;
- ``GET /ngsi-ld/v1/temporal/entities`` and ``/temporal/entities/{entityId}`` — the temporal
  representation over ``timerel`` (``before``, ``after``, ``between``), ``timeAt``,
  ``endTimeAt``, ``attrs`` and ``lastN``.

**Entities.** Each Thing becomes one entity per domain it observes, with the Smart Data Model
attribute names (:data:`DOMAINS`): ``AirQualityObserved`` (pm25, pm10, gases, plus temperature and
relativeHumidity when the thing also measures air quality), ``NoiseLevelObserved`` (``LAeq``),
``WeatherObserved`` and ``TrafficFlowObserved`` (``averageVehicleSpeed``). Entity ids are URNs
``urn:ngsi-ld:<Type>:<thing key>``, e.g. ``urn:ngsi-ld:AirQualityObserved:sdot:V02Q1940612``.
Attributes are Properties with ``observedAt`` (UTC, ``Z``) and a UN/CEFACT ``unitCode`` where
known; ``relativeHumidity`` is a fraction 0–1 as the Smart Data Models define it (``C62``), not
the percent the feeds carry. ``location`` is a GeoProperty (GeoJSON Point, WGS84 lon/lat) and
``dateObserved`` the newest ``observedAt`` of the entity.

**Context.** ``@context`` lists the Smart Data Models context and the NGSI-LD core context as
references (nothing is fetched; terms are the short Smart Data Model names). With
``Accept: application/json`` the body carries no ``@context`` and the Smart Data Models context
travels in a ``Link`` header instead. A request ``Link`` header is not interpreted.

**Limits.** Unsupported parameters are refused (400), never ignored. ``q`` takes
``attr op number`` terms (``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``) joined by ``;`` (AND).
The temporal view returns at most :data:`MAX_INSTANCES` instances per attribute (the oldest, or
the newest with ``lastN``); when an attribute was cut, the status is 206 with a
``Content-Range: date-time <first>-<last>/*`` header. Errors are NGSI-LD ProblemDetails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from citytwin.api.features import plain
from citytwin.api.sta import Access, StoreAccess
from citytwin.errors import ValidationError
from citytwin.model.vocabulary import get_property
from citytwin.twin import Twin

PREFIX = "/ngsi-ld/v1"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SDM_CONTEXT = "https://smartdatamodels.org/context.jsonld"
CONTEXT = [SDM_CONTEXT, CORE_CONTEXT]
LD_JSON = "application/ld+json"
JSON = "application/json"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
URN = "urn:ngsi-ld:"
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_INSTANCES = 10_000
EARTH_RADIUS_M = 6_371_008.8

# UCUM (the vocabulary's units) → UN/CEFACT common codes
UNIT_CODES: dict[str, str] = {
    "ug/m3": "GQ",
    "Cel": "CEL",
    "%": "P1",
    "deg": "DD",
    "m/s": "MTS",
    "dB[SPL]": "2N",
    "[ppm]": "59",
    "mm": "MMT",
    "hPa": "A97",
    "km/h": "KMH",
    "lx": "LUX",
    "cm": "CMT",
    "m": "MTR",
}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One Smart Data Model attribute fed by one observed property."""

    name: str
    scale: float = 1.0
    unit_code: str | None = None  # overrides the code derived from the vocabulary unit


@dataclass(frozen=True, slots=True)
class Domain:
    """An entity type: ``primary`` properties make a thing one; ``secondary`` ride along."""

    primary: dict[str, Attribute]
    secondary: dict[str, Attribute] = field(default_factory=dict)

    def attribute(self, observed_property: str) -> Attribute | None:
        return self.primary.get(observed_property) or self.secondary.get(observed_property)


HUMIDITY = Attribute("relativeHumidity", scale=0.01, unit_code="C62")
DOMAINS: dict[str, Domain] = {
    "AirQualityObserved": Domain(
        {key: Attribute(key) for key in ("pm25", "pm10", "no2", "co", "so2", "o3", "nh3", "h2s")},
        {"air_temperature": Attribute("temperature"), "relative_humidity": HUMIDITY},
    ),
    "NoiseLevelObserved": Domain({"noise": Attribute("LAeq")}),
    "WeatherObserved": Domain(
        {
            "air_temperature": Attribute("temperature"),
            "relative_humidity": HUMIDITY,
            "wind_speed": Attribute("windSpeed"),
            "wind_direction": Attribute("windDirection"),
            "precipitation": Attribute("precipitation"),
            "air_pressure": Attribute("atmosphericPressure"),
            "dew_point_temperature": Attribute("dewPoint"),
            "illuminance": Attribute("illuminance"),
            "uv_index": Attribute("uVIndexMax"),
            "solar_radiation": Attribute("solarRadiation"),
            "snow_depth": Attribute("snowHeight"),
            "visibility": Attribute("visibility"),
        }
    ),
    "TrafficFlowObserved": Domain({"link_speed": Attribute("averageVehicleSpeed")}),
}
ENTITY_PARAMS = frozenset(
    {"type", "id", "attrs", "q", "georel", "geometry", "coordinates", "geoproperty"}
    | {"limit", "offset", "count", "options"}
)
TEMPORAL_PARAMS = frozenset(
    {"type", "id", "attrs", "georel", "geometry", "coordinates", "geoproperty"}
    | {"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "limit", "offset", "count"}
)
ONE_ENTITY_PARAMS = frozenset({"attrs", "options"})
ONE_TEMPORAL_PARAMS = frozenset(
    {"attrs", "timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"}
)
_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(==|!=|>=|<=|>|<)(.+)$")


class NgsiLdError(Exception):
    """An NGSI-LD error: rendered as ProblemDetails with its status."""

    def __init__(self, status: int, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail


def bad_request(detail: str) -> NgsiLdError:
    return NgsiLdError(400, "BadRequestData", "Bad request data", detail)


def problem(error: NgsiLdError) -> JSONResponse:
    """ProblemDetails per GS CIM 009 §5.5.3 (RFC 7807 fields)."""
    body = {
        "type": ERRORS + error.kind,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    return JSONResponse(body, status_code=error.status, media_type=JSON)


# -- identifiers and values ---------------------------------------------------------------------
def entity_id(entity_type: str, thing: str) -> str:
    """The entity URN of a thing in one domain.

    >>> entity_id("AirQualityObserved", "sdot:V02Q1940612")
    'urn:ngsi-ld:AirQualityObserved:sdot:V02Q1940612'
    """
    return f"{URN}{entity_type}:{thing}"


def split_id(value: str) -> tuple[str, str] | None:
    """(type, thing key) of an entity URN this server mints, else None.

    >>> split_id("urn:ngsi-ld:NoiseLevelObserved:sdot:V02Q1940612")
    ('NoiseLevelObserved', 'sdot:V02Q1940612')
    """
    if not value.startswith(URN):
        return None
    entity_type, _, thing = value.removeprefix(URN).partition(":")
    return (entity_type, thing) if entity_type in DOMAINS and thing else None


def utc_text(value: Any) -> str:
    """ISO 8601 UTC with ``Z``.

    >>> utc_text(pd.Timestamp("2020-03-14T15:02:00", tz="UTC"))
    '2020-03-14T15:02:00Z'
    """
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    text: str = stamp.isoformat()
    return text.replace("+00:00", "Z")


def unit_code(observed_property: str, attribute: Attribute) -> str | None:
    if attribute.unit_code is not None:
        return attribute.unit_code
    try:
        return UNIT_CODES.get(get_property(observed_property).unit.ucum)
    except ValidationError:
        return None


def _number(value: Any, scale: float) -> float | None:
    number = plain(value)
    if number is None:
        return None
    return float(number) * scale if scale != 1.0 else float(number)


def instance(observed_property: str, attribute: Attribute, value: Any, time: Any) -> dict[str, Any]:
    """One NGSI-LD Property (instance) of an observation."""
    prop: dict[str, Any] = {
        "type": "Property",
        "value": _number(value, attribute.scale),
        "observedAt": utc_text(time),
    }
    code = unit_code(observed_property, attribute)
    if code is not None:
        prop["unitCode"] = code
    return prop


# -- the entity view ----------------------------------------------------------------------------
@dataclass(slots=True)
class Entity:
    """One thing in one domain: its attributes' latest instances and its datastreams."""

    id: str
    type: str
    thing: str
    name: str | None
    lon: float | None
    lat: float | None
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    streams: dict[str, tuple[int, str, Attribute]] = field(default_factory=dict)

    def location(self) -> dict[str, Any] | None:
        if self.lon is None or self.lat is None:
            return None
        return {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [self.lon, self.lat]},
        }

    def value(self, attribute: str) -> float | None:
        found = self.latest.get(attribute)
        return None if found is None else found["value"]


def _coordinate(value: Any) -> float | None:
    number = plain(value)
    return None if number is None else float(number)


def build_entities(catalogue: pd.DataFrame, latest: pd.DataFrame) -> list[Entity]:
    """Entities of every thing, sorted by id (catalogue: streams; latest: ``Twin.latest``)."""
    newest: dict[int, tuple[Any, Any]] = {
        int(key): (value, time)
        for key, value, time in zip(
            latest["datastream_id"].tolist(),
            latest["value"].tolist(),
            latest["time"].tolist(),
            strict=True,
        )
    }
    entities: dict[str, Entity] = {}
    for thing, rows in catalogue.dropna(subset=["thing"]).groupby("thing", sort=True):
        observed = {str(p) for p in rows["observed_property"].dropna()}
        first = rows.iloc[0]
        for entity_type, domain in DOMAINS.items():
            if not observed & domain.primary.keys():
                continue
            entity = Entity(
                id=entity_id(entity_type, str(thing)),
                type=entity_type,
                thing=str(thing),
                name=plain(first["name"]),
                lon=_coordinate(first["lon"]),
                lat=_coordinate(first["lat"]),
            )
            streams = zip(
                rows["datastream_id"].tolist(), rows["observed_property"].tolist(), strict=True
            )
            for key, observed_property in streams:
                prop, datastream_id = str(observed_property), int(key)
                attribute = domain.attribute(prop)
                if attribute is None or attribute.name in entity.streams:
                    continue
                entity.streams[attribute.name] = (datastream_id, prop, attribute)
                last = newest.get(datastream_id)
                if last is not None:
                    entity.latest[attribute.name] = instance(prop, attribute, *last)
            entities[entity.id] = entity
    return [entities[key] for key in sorted(entities)]


def render(entity: Entity, attrs: set[str] | None, key_values: bool) -> dict[str, Any]:
    """The normalized (or keyValues) representation, without ``@context``."""
    body: dict[str, Any] = {"id": entity.id, "type": entity.type}
    properties: dict[str, Any] = {}
    if entity.name is not None:
        properties["name"] = {"type": "Property", "value": entity.name}
    location = entity.location()
    if location is not None:
        properties["location"] = location
    if entity.latest:
        newest = max(p["observedAt"] for p in entity.latest.values())
        properties["dateObserved"] = {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": newest},
        }
    properties.update(entity.latest)
    for name, prop in properties.items():
        if attrs is None or name in attrs:
            body[name] = _key_value(prop) if key_values else prop
    return body


def _key_value(prop: dict[str, Any]) -> Any:
    value = prop["value"]
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


# -- parameters ---------------------------------------------------------------------------------
def _check_params(request: Request, allowed: frozenset[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise bad_request(f"query parameter {name!r} is not supported by this server")
    for option in _list(request.query_params.get("options")):
        if option not in ("keyValues", "normalized"):
            raise bad_request(f"options={option!r} is not supported (keyValues, normalized)")
    if request.query_params.get("geoproperty", "location") != "location":
        raise bad_request("geoproperty: only 'location' is supported")
    if request.query_params.get("timeproperty", "observedAt") != "observedAt":
        raise bad_request("timeproperty: only 'observedAt' is supported")


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name}: not an integer: {text!r}") from None
    if not low <= value <= high:
        raise bad_request(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _flag(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "false")
    if text not in ("true", "false"):
        raise bad_request(f"{name}: expected true or false, got {text!r}")
    return text == "true"


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def parse_q(text: str | None) -> list[tuple[str, Callable[[float, float], bool], float]]:
    """``attr op number`` terms joined by ``;`` (AND).

    >>> [(a, b) for a, _, b in parse_q("pm25>35;LAeq<=70")]
    [('pm25', 35.0), ('LAeq', 70.0)]
    """
    if text is None:
        return []
    terms = []
    for part in text.split(";"):
        match = _TERM.match(part.strip())
        if match is None:
            raise bad_request(
                f"q: unsupported term {part!r}; expected attribute op number joined by ';' "
                "with op one of ==, !=, >, >=, <, <="
            )
        name, op, literal = match.groups()
        try:
            number = float(literal)
        except ValueError:
            raise bad_request(f"q: {literal!r} is not a number (only numeric q)") from None
        if not math.isfinite(number):
            raise bad_request(f"q: {literal!r} is not a finite number")
        terms.append((name, _OPERATORS[op], number))
    return terms


@dataclass(frozen=True, slots=True)
class Near:
    lon: float
    lat: float
    max_distance: float | None
    min_distance: float | None

    def holds(self, entity: Entity) -> bool:
        if entity.lon is None or entity.lat is None:
            return False
        distance = haversine(self.lon, self.lat, entity.lon, entity.lat)
        if self.max_distance is not None and distance > self.max_distance:
            return False
        return self.min_distance is None or distance >= self.min_distance


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres.

    >>> round(haversine(127.0, 37.5, 127.0, 37.6))
    11120
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def parse_geo(request: Request) -> Near | None:
    """``georel=near;maxDistance==<m>`` (and/or ``minDistance``) around a ``Point``."""
    params = request.query_params
    georel = params.get("georel")
    if georel is None:
        if "geometry" in params or "coordinates" in params:
            raise bad_request("geometry/coordinates apply only with georel")
        return None
    relation, *modifiers = georel.split(";")
    if relation != "near":
        raise bad_request(f"georel: only 'near' is supported, got {relation!r}")
    distances: dict[str, float] = {}
    for modifier in modifiers:
        key, sep, literal = modifier.partition("==")
        if not sep or key not in ("maxDistance", "minDistance"):
            raise bad_request(f"georel: expected near;maxDistance==<m>, got {georel!r}")
        try:
            distances[key] = float(literal)
        except ValueError:
            raise bad_request(f"georel: {literal!r} is not a distance in metres") from None
    if not distances:
        raise bad_request("georel: near needs maxDistance==<m> or minDistance==<m>")
    if params.get("geometry") != "Point":
        raise bad_request("geometry: only 'Point' is supported with georel=near")
    coordinates = params.get("coordinates", "")
    try:
        lon, lat = (float(v) for v in coordinates.strip("[] ").split(","))
    except ValueError:
        raise bad_request(f"coordinates: expected [lon,lat], got {coordinates!r}") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise bad_request(f"coordinates: not WGS84 lon,lat: {coordinates!r}")
    return Near(lon, lat, distances.get("maxDistance"), distances.get("minDistance"))


def _types(request: Request) -> list[str] | None:
    types = _list(request.query_params.get("type"))
    for entity_type in types:
        if "|" in entity_type or ";" in entity_type or "(" in entity_type:
            raise bad_request(f"type: only a comma-separated list of types, got {entity_type!r}")
    return types or None


def _ids(request: Request) -> list[str] | None:
    ids = _list(request.query_params.get("id"))
    for value in ids:
        if ":" not in value:
            raise bad_request(f"id: not a URI: {value!r}")
    return ids or None


def select(
    entities: Iterable[Entity],
    *,
    types: list[str] | None,
    ids: list[str] | None,
    attrs: set[str] | None,
    q: list[tuple[str, Callable[[float, float], bool], float]],
    near: Near | None,
) -> list[Entity]:
    """The entities every filter keeps (attrs: those having at least one listed attribute)."""
    out = []
    for entity in entities:
        if types is not None and entity.type not in types:
            continue
        if ids is not None and entity.id not in ids:
            continue
        if attrs is not None:
            names = set(entity.streams) | ({"location"} if entity.location() else set())
            if not names & attrs:
                continue
        if near is not None and not near.holds(entity):
            continue
        if not all(_holds(entity.value(name), op, number) for name, op, number in q):
            continue
        out.append(entity)
    return out


def _holds(value: float | None, op: Callable[[float, float], bool], number: float) -> bool:
    return value is not None and op(value, number)


# -- responses ----------------------------------------------------------------------------------
def _media_type(request: Request) -> str:
    """``application/ld+json`` unless Accept asks for ``application/json`` only."""
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return LD_JSON
    offered = [part.split(";")[0].strip() for part in accept.split(",")]
    if LD_JSON in offered or "*/*" in offered or "application/*" in offered:
        return LD_JSON
    if JSON in offered:
        return JSON
    raise NgsiLdError(
        406, "NotAcceptable", "Not acceptable", f"only {LD_JSON} and {JSON} are served"
    )


def _respond(
    body: Any, media_type: str, *, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if media_type == LD_JSON:
        if isinstance(body, list):
            body = [{**item, "@context": CONTEXT} for item in body]
        else:
            body = {**body, "@context": CONTEXT}
    else:
        headers["Link"] = (
            f'<{SDM_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="{LD_JSON}"'
        )
    return JSONResponse(body, status_code=status, media_type=media_type, headers=headers)


def _load(access: StoreAccess) -> list[Entity]:
    with access.lock:
        twin = Twin(access.store())
        catalogue = twin.catalogue()
        latest = twin.latest()
    return build_entities(catalogue, latest)


def _page_headers(request: Request, matched: int, offset: int, limit: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if _flag(request, "count"):
        headers["NGSILD-Results-Count"] = str(matched)
    if offset + limit < matched and limit > 0:
        query = dict(request.query_params)
        query["offset"] = str(offset + limit)
        query["limit"] = str(limit)
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return headers


def _query(
    request: Request, access: StoreAccess, allowed: frozenset[str]
) -> tuple[list[Entity], ...]:
    _check_params(request, allowed)
    types, ids = _types(request), _ids(request)
    attrs_list = _list(request.query_params.get("attrs"))
    attrs = set(attrs_list) or None
    q = parse_q(request.query_params.get("q"))
    near = parse_geo(request)
    if types is None and ids is None and attrs is None and not q and near is None:
        raise bad_request("at least one of type, id, attrs, q or georel is required")
    matched = select(_load(access), types=types, ids=ids, attrs=attrs, q=q, near=near)
    return (matched,)


# -- routes -------------------------------------------------------------------------------------
def query_entities(request: Request, access: Access) -> JSONResponse:
    """``GET /entities``: the latest state of the matching entities."""
    try:
        media_type = _media_type(request)
        (matched,) = _query(request, access, ENTITY_PARAMS)
        limit = _integer(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        offset = _integer(request, "offset", 0, 0, 2**31)
        if limit == 0 and not _flag(request, "count"):
            raise bad_request("limit=0 is only allowed with count=true")
        attrs = set(_list(request.query_params.get("attrs"))) or None
        key_values = "keyValues" in _list(request.query_params.get("options"))
        page = [render(e, attrs, key_values) for e in matched[offset : offset + limit]]
        headers = _page_headers(request, len(matched), offset, limit)
    except NgsiLdError as error:
        return problem(error)
    return _respond(page, media_type, headers=headers)


def retrieve_entity(request: Request, access: Access, entity_id: str) -> JSONResponse:
    """``GET /entities/{entityId}``: one entity, 404 when there is none."""
    try:
        media_type = _media_type(request)
        _check_params(request, ONE_ENTITY_PARAMS)
        entity = _find(access, entity_id)
        attrs = set(_list(request.query_params.get("attrs"))) or None
        key_values = "keyValues" in _list(request.query_params.get("options"))
    except NgsiLdError as error:
        return problem(error)
    return _respond(render(entity, attrs, key_values), media_type)


def _find(access: StoreAccess, value: str) -> Entity:
    if ":" not in value:
        raise bad_request(f"entityId: not a URI: {value!r}")
    for entity in _load(access) if split_id(value) else []:
        if entity.id == value:
            return entity
    raise NgsiLdError(404, "ResourceNotFound", "Resource not found", f"no entity {value!r}")


def _time(request: Request, name: str) -> datetime | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name}: not an ISO 8601 date-time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _interval(request: Request) -> tuple[datetime | None, datetime | None]:
    """[start, end) of ``timerel``/``timeAt``/``endTimeAt``; both None without timerel."""
    timerel = request.query_params.get("timerel")
    time_at, end_time_at = _time(request, "timeAt"), _time(request, "endTimeAt")
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise bad_request("timeAt/endTimeAt apply only with timerel")
        return None, None
    if time_at is None:
        raise bad_request("timerel needs timeAt")
    if timerel == "between":
        if end_time_at is None:
            raise bad_request("timerel=between needs endTimeAt")
        if end_time_at <= time_at:
            raise bad_request("endTimeAt must be after timeAt")
        return time_at, end_time_at
    if end_time_at is not None:
        raise bad_request("endTimeAt applies only with timerel=between")
    if timerel == "before":
        return None, time_at
    if timerel == "after":
        return time_at, None
    raise bad_request(f"timerel: expected before, after or between, got {timerel!r}")


@dataclass(slots=True)
class _Window:
    start: datetime | None
    end: datetime | None
    last_n: int | None
    capped: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)


def temporal(
    access: StoreAccess, entity: Entity, attrs: set[str] | None, window: _Window
) -> dict[str, Any]:
    """The temporal representation: each attribute an array of instances, oldest first."""
    body: dict[str, Any] = {"id": entity.id, "type": entity.type}
    location = entity.location()
    if location is not None and (attrs is None or "location" in attrs):
        body["location"] = [location]
    chosen = {n: s for n, s in entity.streams.items() if attrs is None or n in attrs}
    if not chosen:
        return body
    with access.lock:
        frame = access.store().observations(
            datastream_ids=[s[0] for s in chosen.values()], start=window.start, end=window.end
        )
    ids = np.asarray(frame.datastream_id)
    for name, (datastream_id, prop, attribute) in chosen.items():
        rows = np.flatnonzero(ids == datastream_id)
        order = rows[np.argsort(np.asarray(frame.phenomenon_time)[rows], kind="stable")]
        wanted = MAX_INSTANCES if window.last_n is None else min(window.last_n, MAX_INSTANCES)
        keep = order[-wanted:] if window.last_n is not None else order[:wanted]
        capped = window.last_n is None and len(order) > MAX_INSTANCES  # lastN is asked for
        times = pd.to_datetime(np.asarray(frame.phenomenon_time)[keep], unit="us", utc=True)
        values = np.asarray(frame.result)[keep]
        body[name] = [
            instance(prop, attribute, value, time)
            for value, time in zip(values, times, strict=True)
        ]
        if capped and len(keep):
            window.capped.append(name)
            window.times.extend([body[name][0]["observedAt"], body[name][-1]["observedAt"]])
    return body


def _window(request: Request) -> _Window:
    start, end = _interval(request)
    last_n = request.query_params.get("lastN")
    return _Window(
        start, end, None if last_n is None else _integer(request, "lastN", 0, 1, MAX_INSTANCES)
    )


def _temporal_response(
    request: Request, bodies: Any, window: _Window, media_type: str, headers: dict[str, str]
) -> JSONResponse:
    if window.capped:
        first, last = min(window.times), max(window.times)
        headers["Content-Range"] = f"date-time {first}-{last}/*"
        return _respond(bodies, media_type, status=206, headers=headers)
    return _respond(bodies, media_type, headers=headers)


def query_temporal(request: Request, access: Access) -> JSONResponse:
    """``GET /temporal/entities``: the history of the matching entities."""
    try:
        media_type = _media_type(request)
        (matched,) = _query(request, access, TEMPORAL_PARAMS)
        window = _window(request)
        limit = _integer(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        offset = _integer(request, "offset", 0, 0, 2**31)
        if limit == 0 and not _flag(request, "count"):
            raise bad_request("limit=0 is only allowed with count=true")
        attrs = set(_list(request.query_params.get("attrs"))) or None
        bodies = [temporal(access, e, attrs, window) for e in matched[offset : offset + limit]]
        headers = _page_headers(request, len(matched), offset, limit)
    except NgsiLdError as error:
        return problem(error)
    return _temporal_response(request, bodies, window, media_type, headers)


def retrieve_temporal(request: Request, access: Access, entity_id: str) -> JSONResponse:
    """``GET /temporal/entities/{entityId}``: one entity's history."""
    try:
        media_type = _media_type(request)
        _check_params(request, ONE_TEMPORAL_PARAMS)
        window = _window(request)
        entity = _find(access, entity_id)
        attrs = set(_list(request.query_params.get("attrs"))) or None
        body = temporal(access, entity, attrs, window)
    except NgsiLdError as error:
        return problem(error)
    return _temporal_response(request, body, window, media_type, {})


# Parameters are read from the raw query string (so that an unknown one is refused by name, as
# NGSI-LD asks); they are declared for the OpenAPI document, which clients and schemathesis read.
_PARAMETER_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "type": ("Entity types, comma-separated (e.g. AirQualityObserved)", {"type": "string"}),
    "id": ("Entity ids (URNs), comma-separated", {"type": "string"}),
    "attrs": ("Attributes to return, comma-separated (e.g. pm25,no2)", {"type": "string"}),
    "q": ("Query: terms attr==value, >, >=, <, <=, != joined by ';'", {"type": "string"}),
    "georel": ("Geo relation: near;maxDistance==<m> or within", {"type": "string"}),
    "geometry": ("Geometry type of 'coordinates' (Point or Polygon)", {"type": "string"}),
    "coordinates": ("GeoJSON coordinates, e.g. [127.1,37.5]", {"type": "string"}),
    "geoproperty": ("Geo-property the query applies to (location)", {"type": "string"}),
    "timerel": ("Temporal relation: before, after or between", {"type": "string"}),
    "timeAt": ("ISO 8601 instant the temporal relation uses", {"type": "string"}),
    "endTimeAt": ("ISO 8601 end instant for timerel=between", {"type": "string"}),
    "timeproperty": ("Temporal property the query applies to (observedAt)", {"type": "string"}),
    "lastN": ("Only the last N instances of each attribute", {"type": "integer", "minimum": 1}),
    "limit": ("Page size", {"type": "integer", "minimum": 0}),
    "offset": ("Entities to skip", {"type": "integer", "minimum": 0}),
    "count": ("Return the total in the NGSILD-Results-Count header", {"type": "boolean"}),
    "options": ("keyValues or normalized", {"type": "string", "enum": ["keyValues", "normalized"]}),
}


def _declared(names: frozenset[str]) -> dict[str, Any]:
    """``openapi_extra`` declaring the query parameters ``names``, in a stable order."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
            for name, (text, schema) in _PARAMETER_DOCS.items()
            if name in names
        ]
    }


def create_router() -> APIRouter:
    """The NGSI-LD routes under ``/ngsi-ld/v1``."""
    router = APIRouter(prefix=PREFIX, tags=["ngsi-ld"])
    routes = (
        ("/entities", query_entities, "ngsi_ld_entities", ENTITY_PARAMS),
        ("/entities/{entity_id:path}", retrieve_entity, "ngsi_ld_entity", ONE_ENTITY_PARAMS),
        ("/temporal/entities", query_temporal, "ngsi_ld_temporal", TEMPORAL_PARAMS),
        (
            "/temporal/entities/{entity_id:path}",
            retrieve_temporal,
            "ngsi_ld_temporal_entity",
            ONE_TEMPORAL_PARAMS,
        ),
    )
    for path, endpoint, name, params in routes:
        router.add_api_route(
            path, endpoint, methods=["GET"], name=name, openapi_extra=_declared(params)
        )
    return router
