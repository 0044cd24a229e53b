"""MQTT device messages → feed batches: the message format, its validation, and batching.

One message is one device reading, a JSON object::

    {"thing": "V02Q1940612", "phenomenonTime": "2026-03-15T09:00:00+09:00",
     "values": {"pm25": 12.0, "air_temperature": 21.5},
     "lon": 126.97, "lat": 37.56, "name": "Jongno S-DoT 12", "properties": {"model": "SDOT-2"}}

- ``thing`` (required): the device id, a non-empty string; the Thing's key is ``mqtt:<id>``.
- ``phenomenonTime`` (required): ISO 8601 with a UTC offset or ``Z`` (a naive time is refused:
  a device's clock zone cannot be guessed).
- ``values`` (required): observed-property keys of ``citytwin vocabulary`` → finite numbers in
  the vocabulary's unit; at least one.
- ``lon``/``lat`` (WGS84 degrees), ``name`` and ``properties`` (an object) are optional; the
  latest ones a device sent describe its Thing.

A message that breaks any of this — not UTF-8 JSON, a wrong type, an unknown key, a bad time, a
payload over the size limit — becomes a :class:`BadMessage` with the reason, for quarantine.

>>> reading = parse_message(b'{"thing": "d1", "phenomenonTime": "2026-01-01T09:00:00+09:00",'
...                         b' "values": {"pm25": 7}}')
>>> reading.device, reading.time_us, reading.values
('d1', 1767225600000000, {'pm25': 7})
>>> parse_message(b'{"thing": "d1", "phenomenonTime": "2026-01-01T00:00:00",'
...               b' "values": {"pm25": 7}}').reason
"phenomenonTime '2026-01-01T00:00:00' has no UTC offset; expected e.g. 2026-01-01T00:00:00Z"
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from citytwin.ingest.base import FeedBatch, Readings, SensorSpec, ThingSpec
from citytwin.model.vocabulary import property_keys

FEED = "mqtt"
MAX_PAYLOAD_BYTES = 64 * 1024
SENSOR = SensorSpec(
    "mqtt:sensor", "MQTT device", "A device publishing JSON readings over MQTT (see docs/mqtt.md)"
)
_KEYS = frozenset(property_keys())
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OPTIONAL = ("lon", "lat", "name", "properties")
_FIELDS = frozenset({"thing", "phenomenonTime", "values", *_OPTIONAL})
_NUMBER_TYPES = (int, float)
_TIMES: dict[str, int | str] = {}  # devices share timestamps: parse each text once
_TIMES_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """A valid message: one device's values at one time."""

    device: str
    time_us: int
    values: dict[str, float]
    lon: float | None = None
    lat: float | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BadMessage:
    reason: str


def parse_message(
    payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES
) -> DeviceReading | BadMessage:
    """Validate one payload; see the module docstring for the format."""
    if len(payload) > max_bytes:
        return BadMessage(f"payload of {len(payload):,} bytes is over the {max_bytes:,}-byte limit")
    try:
        body = _DECODER.decode(payload.decode())
    except (ValueError, RecursionError) as exc:
        return BadMessage(f"not UTF-8 JSON: {exc}")
    if type(body) is not dict:
        return BadMessage(f"expected a JSON object, got {type(body).__name__}")
    try:
        valid = _looks_valid(body)
    except OverflowError:  # an integer beyond the float range: _problem names it
        valid = False
    if not valid:
        return BadMessage(_problem(body) or "invalid message")
    time_us = parse_time(body["phenomenonTime"])
    if isinstance(time_us, str):
        return BadMessage(time_us)
    lon, lat = body.get("lon"), body.get("lat")
    return DeviceReading(
        body["thing"],
        time_us,
        body["values"],
        None if lon is None else float(lon),
        None if lat is None else float(lat),
        body.get("name"),
        body.get("properties"),
    )


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _looks_valid(body: dict[str, Any]) -> bool:
    """The common case, checked fast; :func:`_problem` finds the reason when this says no."""
    thing, values = body.get("thing"), body.get("values")
    lon, lat = body.get("lon"), body.get("lat")
    name, properties = body.get("name"), body.get("properties")
    return (
        type(thing) is str
        and bool(thing.strip())
        and type(body.get("phenomenonTime")) is str
        and type(values) is dict
        and bool(values)
        and body.keys() <= _FIELDS
        and values.keys() <= _KEYS
        and all(type(v) in _NUMBER_TYPES for v in values.values())
        and math.isfinite(sum(values.values()))
        and (lon is None or (type(lon) in _NUMBER_TYPES and -180 <= lon <= 180))
        and (lat is None or (type(lat) in _NUMBER_TYPES and -90 <= lat <= 90))
        and (name is None or type(name) is str)
        and (properties is None or type(properties) is dict)
    ) or (_problem(body) is None)


def _problem(body: dict[str, Any]) -> str | None:
    """The first problem with a message's fields, or None."""
    thing = body.get("thing")
    if not isinstance(thing, str) or not thing.strip():
        return f"'thing' must be a non-empty string, got {thing!r}"
    if not isinstance(body.get("phenomenonTime"), str):
        return f"'phenomenonTime' must be an ISO 8601 string, got {body.get('phenomenonTime')!r}"
    values = body.get("values")
    if not isinstance(values, dict) or not values:
        return f"'values' must be a non-empty object of property key → number, got {values!r}"
    for key, value in values.items():
        if key not in _KEYS:
            return f"unknown observed property {key!r} (see `citytwin vocabulary`)"
        if not _is_number(value):
            return f"value of {key!r} must be a finite number, got {value!r}"
    for name, low, high in (("lon", -180.0, 180.0), ("lat", -90.0, 90.0)):
        given = body.get(name)
        if given is not None and not (_is_number(given) and low <= given <= high):
            return f"{name!r} must be a number in {low:g}…{high:g}, got {given!r}"
    if body.get("name") is not None and not isinstance(body["name"], str):
        return f"'name' must be a string, got {body['name']!r}"
    if body.get("properties") is not None and not isinstance(body["properties"], dict):
        return f"'properties' must be an object, got {body['properties']!r}"
    unknown = body.keys() - _FIELDS
    if unknown:
        return (
            f"unknown field(s) {', '.join(sorted(unknown))}; expected thing, phenomenonTime, "
            "values and optionally lon, lat, name, properties"
        )
    return None


def _is_number(value: object) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond the float range (JSON allows 4,300 digits)
        return False


def parse_time(text: str) -> int | str:
    """ISO 8601 with an offset → µs since the epoch (UTC); a reason string when it is not."""
    known = _TIMES.get(text)
    if known is None:
        if len(_TIMES) >= _TIMES_LIMIT:
            _TIMES.clear()
        known = _TIMES[text] = _parse_time(text)
    return known


def _parse_time(text: str) -> int | str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return f"phenomenonTime {text!r} is not ISO 8601; expected e.g. 2026-01-01T00:00:00Z"
    if moment.tzinfo is None:
        return f"phenomenonTime {text!r} has no UTC offset; expected e.g. 2026-01-01T00:00:00Z"
    return (moment - _EPOCH) // _MICROSECOND


@dataclass
class DeviceBook:
    """What the run knows of each device: the latest name, position and properties it sent."""

    specs: dict[str, ThingSpec] = field(default_factory=dict)

    def update(self, reading: DeviceReading) -> ThingSpec:
        known = self.specs.get(reading.device)
        if known is not None and (
            reading.lon in (None, known.lon)
            and reading.lat in (None, known.lat)
            and reading.name in (None, known.name)
            and (reading.properties is None or reading.properties == known.properties)
        ):
            return known
        spec = ThingSpec(
            key=f"{FEED}:{reading.device}",
            name=reading.name or (known.name if known else reading.device),
            description=f"MQTT device {reading.device}",
            lon=reading.lon if reading.lon is not None else (known.lon if known else None),
            lat=reading.lat if reading.lat is not None else (known.lat if known else None),
            properties=reading.properties or (known.properties if known else {}),
        )
        if spec != known:
            self.specs[reading.device] = spec
        return self.specs[reading.device]


def build_batch(
    readings: Sequence[tuple[int, DeviceReading]],
    book: DeviceBook,
    *,
    source: str,
    raw: dict[int, bytes],
) -> FeedBatch:
    """One feed batch from (message number, reading) pairs; ``raw`` gives each message's payload
    for the pipeline's own quarantine (same device and time twice with different values)."""
    index: dict[str, int] = {}
    things: list[ThingSpec] = []
    n = len(readings)
    thing_index = np.empty(n, np.int64)
    times = np.empty(n, np.int64)
    lines = np.empty(n, np.int64)
    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    for row, (number, reading) in enumerate(readings):
        spec = book.update(reading)
        slot = index.get(reading.device)
        if slot is None:
            slot = index[reading.device] = len(things)
            things.append(spec)
        else:
            things[slot] = spec
        thing_index[row], times[row], lines[row] = slot, reading.time_us, number
        for key, value in reading.values.items():
            column = values.get(key)
            if column is None:
                column = values[key] = np.full(n, np.nan)
            column[row] = value
    return FeedBatch(
        FEED,
        source,
        SENSOR,
        Readings(things, thing_index, times, values, lines),
        bytes_read=sum(len(raw[number]) for number, _ in readings),
        line_text=lambda number: raw.get(number, b"").decode("utf-8", errors="replace"),
    )
