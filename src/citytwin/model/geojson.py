"""GeoJSON geometries (RFC 7946) as validated pydantic models, WGS84 (lon, lat[, z])."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _check_position(position: list[float]) -> list[float]:
    if len(position) not in (2, 3):
        raise ValueError(f"a position has 2 or 3 numbers (lon, lat[, z]), got {len(position)}")
    lon, lat = position[0], position[1]
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude {lon} is outside [-180, 180] (is it lat, lon swapped?)")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude {lat} is outside [-90, 90] (is it lat, lon swapped?)")
    return position


Position = Annotated[list[float], AfterValidator(_check_position)]


def _check_ring(ring: list[Position]) -> list[Position]:
    if len(ring) < 4 or ring[0] != ring[-1]:
        raise ValueError("a linear ring needs >= 4 positions and must end where it starts")
    return ring


LinearRing = Annotated[list[Position], AfterValidator(_check_ring)]


class _Geometry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Point(_Geometry):
    type: Literal["Point"] = "Point"
    coordinates: Position


class MultiPoint(_Geometry):
    type: Literal["MultiPoint"] = "MultiPoint"
    coordinates: list[Position]


class LineString(_Geometry):
    type: Literal["LineString"] = "LineString"
    coordinates: Annotated[list[Position], Field(min_length=2)]


class MultiLineString(_Geometry):
    type: Literal["MultiLineString"] = "MultiLineString"
    coordinates: list[Annotated[list[Position], Field(min_length=2)]]


class Polygon(_Geometry):
    type: Literal["Polygon"] = "Polygon"
    coordinates: Annotated[list[LinearRing], Field(min_length=1)]


class MultiPolygon(_Geometry):
    type: Literal["MultiPolygon"] = "MultiPolygon"
    coordinates: list[Annotated[list[LinearRing], Field(min_length=1)]]


Geometry = Annotated[
    Point | MultiPoint | LineString | MultiLineString | Polygon | MultiPolygon,
    Field(discriminator="type"),
]
