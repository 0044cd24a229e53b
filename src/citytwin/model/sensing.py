"""OGC SensorThings API v1.1, Part 1 (Sensing): the eight entity types.

Field names are the standard's (``@iot.id``, ``unitOfMeasurement``, ``phenomenonTime`` …) so that a
model dumps straight to a conforming JSON payload with ``model_dump(by_alias=True)``. Times are
timezone-aware UTC; locations and features are GeoJSON (``encodingType`` application/geo+json).

Identifiers are integers derived from a natural key (see :func:`stable_id`): the same sensor read
from two files, or by two stores, gets the same ``@iot.id`` without a lookup.

Reference: OGC 18-088, SensorThings API Part 1: Sensing Version 1.1, section 8.2.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from citytwin.model.geojson import Geometry

GEOJSON = "application/geo+json"
OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
SENSOR_ENCODING_PDF = "application/pdf"
SENSOR_ENCODING_SENSORML = "http://www.opengis.net/doc/IS/SensorML/2.0"

_ID_BITS = 53  # JavaScript clients read @iot.id as a double: keep ids exact there


@lru_cache(maxsize=65536)
def stable_id(kind: str, key: str) -> int:
    """A positive 53-bit integer id for an entity of ``kind`` with natural ``key``.

    >>> stable_id("Thing", "sdot:V02Q1940612") == stable_id("Thing", "sdot:V02Q1940612")
    True
    >>> 0 < stable_id("Datastream", "sdot:V02Q1940612/pm25") < 2**53
    True
    """
    digest = hashlib.blake2b(f"{kind}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _ID_BITS) or 1


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must be timezone-aware (citytwin keeps UTC inside)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is in year 0 once in UTC
        raise ValueError(f"{value.isoformat()} is outside years 1–9999 once in UTC") from exc


UTCDateTime = Annotated[datetime, AfterValidator(_aware_utc)]


class TimeInterval(BaseModel):
    """An ISO 8601 interval (start/end), as STA's TM_Period."""

    model_config = ConfigDict(frozen=True)
    start: UTCDateTime
    end: UTCDateTime

    @model_validator(mode="after")
    def _ordered(self) -> TimeInterval:
        if self.end < self.start:
            raise ValueError(f"interval ends ({self.end}) before it starts ({self.start})")
        return self

    def iso(self) -> str:
        """The interval as STA writes it: ``start/end``."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


class UnitOfMeasurement(BaseModel):
    """STA unitOfMeasurement: name, symbol and a definition URI (UCUM)."""

    model_config = ConfigDict(frozen=True)
    name: str
    symbol: str
    definition: str


class Entity(BaseModel):
    """Common base: ``@iot.id`` and the natural ``key`` it derives from."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")
    entity_set: ClassVar[str]

    id: int | None = Field(None, alias="@iot.id")
    key: str | None = Field(None, description="natural key (e.g. 'sdot:V02Q1940612'); not STA")

    def model_post_init(self, __context: Any) -> None:
        if self.id is None and self.key is not None:
            object.__setattr__(self, "id", stable_id(type(self).__name__, self.key))

    @classmethod
    def link_fields(cls) -> set[str]:
        """Fields holding ids of related entities (navigation links in STA, not properties)."""
        return {name for name in cls.model_fields if name.endswith("_id")}

    def to_sta(self) -> dict[str, Any]:
        """The entity as an STA JSON object (standard names, without links and natural key)."""
        return self.model_dump(
            mode="json", by_alias=True, exclude=self.link_fields() | {"key"}, exclude_none=True
        )


class Thing(Entity):
    entity_set: ClassVar[str] = "Things"
    name: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)


class Location(Entity):
    entity_set: ClassVar[str] = "Locations"
    name: str
    description: str = ""
    encoding_type: str = Field(GEOJSON, alias="encodingType")
    location: Geometry
    properties: dict[str, Any] = Field(default_factory=dict)
    thing_id: int | None = None


class HistoricalLocation(Entity):
    entity_set: ClassVar[str] = "HistoricalLocations"
    time: UTCDateTime
    thing_id: int
    location_id: int


class Sensor(Entity):
    entity_set: ClassVar[str] = "Sensors"
    name: str
    description: str = ""
    encoding_type: str = Field(SENSOR_ENCODING_PDF, alias="encodingType")
    metadata: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)


class ObservedProperty(Entity):
    entity_set: ClassVar[str] = "ObservedProperties"
    name: str
    definition: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)


class Datastream(Entity):
    entity_set: ClassVar[str] = "Datastreams"
    name: str
    description: str = ""
    unit_of_measurement: UnitOfMeasurement = Field(alias="unitOfMeasurement")
    observation_type: str = Field(OM_MEASUREMENT, alias="observationType")
    observed_area: Geometry | None = Field(None, alias="observedArea")
    phenomenon_time: TimeInterval | None = Field(None, alias="phenomenonTime")
    result_time: TimeInterval | None = Field(None, alias="resultTime")
    properties: dict[str, Any] = Field(default_factory=dict)
    thing_id: int
    sensor_id: int
    observed_property_id: int


class FeatureOfInterest(Entity):
    entity_set: ClassVar[str] = "FeaturesOfInterest"
    name: str
    description: str = ""
    encoding_type: str = Field(GEOJSON, alias="encodingType")
    feature: Geometry
    properties: dict[str, Any] = Field(default_factory=dict)


class Observation(Entity):
    """One observation. Its identity is (datastream, phenomenonTime start)."""

    entity_set: ClassVar[str] = "Observations"
    phenomenon_time: UTCDateTime | TimeInterval = Field(alias="phenomenonTime")
    result: float | int | str | bool | dict[str, Any] | list[Any] | None
    result_time: UTCDateTime | None = Field(None, alias="resultTime")
    result_quality: list[str] | None = Field(None, alias="resultQuality")
    valid_time: TimeInterval | None = Field(None, alias="validTime")
    parameters: dict[str, Any] = Field(default_factory=dict)
    datastream_id: int
    feature_of_interest_id: int | None = None

    @property
    def phenomenon_start(self) -> datetime:
        """Start of the phenomenon time (the instant itself for an instant)."""
        pt = self.phenomenon_time
        return pt.start if isinstance(pt, TimeInterval) else pt


SENSING_ENTITIES: tuple[type[Entity], ...] = (
    Thing,
    Location,
    HistoricalLocation,
    Sensor,
    ObservedProperty,
    Datastream,
    FeatureOfInterest,
    Observation,
)
