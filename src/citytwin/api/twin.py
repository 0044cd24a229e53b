"""Twin endpoints: the city's current state as GeoJSON (RFC 7946, WGS84 lon/lat).

- ``GET /twin/sensors`` — every located sensor with the latest value of each observed property;
- ``GET /twin/districts`` — district polygons with the rollup of one property (a choropleth layer;
  districts without data carry ``null``);
- ``GET /twin/objects/{key}`` — one city object (district, building, road link or node) with its
  bound sensors, and optionally their history.

Values come from :class:`citytwin.twin.Twin`; rollups leave out values QC flagged as suspect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from citytwin.api.errors import InvalidParameterError
from citytwin.api.features import (
    FeatureNotFoundError,
    check_interval,
    city_crs,
    find_feature,
    geojson_features,
    geojson_response,
    parse_bbox,
    plain,
)
from citytwin.api.sta import Access
from citytwin.model.quality import flag_names
from citytwin.store.base import FeatureBatch, Store
from citytwin.twin import Twin

MAX_HISTORY = 10_000
DISTRICTS = "districts"
OBJECT_LAYERS = ("buildings", "road_links", "road_nodes")
BINDING_KEYS = ("gu_code", "gu", "dong_code", "dong", "building", "road_link")


def _utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are read as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# -- rendering ----------------------------------------------------------------------------------
def sensor_features(latest: pd.DataFrame) -> list[dict[str, Any]]:
    """One Point Feature per thing, its latest value per observed property (``Twin.latest``)."""
    features = []
    for thing, rows in latest.groupby("thing", sort=True):
        first = rows.iloc[0]
        lon, lat = plain(first["lon"]), plain(first["lat"])
        geometry = (
            None if lon is None or lat is None else {"type": "Point", "coordinates": [lon, lat]}
        )
        observations = {
            str(row["observed_property"]): {
                "value": plain(row["value"]),
                "time": plain(row["time"]),
                "unit": plain(row["unit"]),
                "flags": list(row["flags"]),
                "datastream_id": plain(row["datastream_id"]),
            }
            for _, row in rows.iterrows()
        }
        properties = {
            "thing": str(thing),
            "name": plain(first["name"]),
            **{key: plain(first[key]) for key in BINDING_KEYS},
            "latest": observations,
        }
        features.append(
            {"type": "Feature", "id": str(thing), "geometry": geometry, "properties": properties}
        )
    return features


def _rollup_values(table: pd.DataFrame, bucketed: bool) -> dict[str, dict[str, Any]]:
    """Per district code: mean, max, count (over all buckets when bucketed) and the buckets."""
    out: dict[str, dict[str, Any]] = {}
    for code, rows in table.dropna(subset=["district"]).groupby("district", sort=True):
        count = int(rows["count"].sum())
        mean = float((rows["mean"] * rows["count"]).sum() / count) if count else None
        values: dict[str, Any] = {
            "mean": mean,
            "max": plain(rows["max"].max()) if count else None,
            "count": count,
        }
        if bucketed:
            values["buckets"] = [
                {
                    "bucket": plain(row["bucket"]),
                    "mean": plain(row["mean"]),
                    "max": plain(row["max"]),
                    "count": int(row["count"]),
                }
                for _, row in rows.sort_values("bucket").iterrows()
            ]
        out[str(code)] = values
    return out


# -- routes -------------------------------------------------------------------------------------
def sensors(
    access: Access,
    property: Annotated[str | None, Query(description="observed property, e.g. pm25")] = None,
    bbox: Annotated[str | None, Query(description="WGS84 minLon,minLat,maxLon,maxLat")] = None,
) -> JSONResponse:
    """Sensors as Points with the latest value, time, unit and QC flags per observed property."""
    box = parse_bbox(bbox)
    with access.lock:
        latest = Twin(access.store()).latest(observed_property=property, bbox=box)
    features = sensor_features(latest)
    return geojson_response(
        {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}
    )


def districts(
    request: Request,
    access: Access,
    level: Literal["gu", "dong"],
    property: Annotated[str, Query(description="observed property, e.g. pm25")],
    bucket: Literal["hour", "day"] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> JSONResponse:
    """District polygons with the rollup (mean, max, count) of one property: a choropleth."""
    start, end = _utc(start), _utc(end)
    if bucket is None:
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                raise InvalidParameterError(name, "applies only with bucket=hour|day")
    check_interval(start, end)
    crs = city_crs(request)
    with access.lock:
        store = access.store()
        layer = store.features(DISTRICTS)
        table = Twin(store).rollup(
            level, observed_property=property, bucket=bucket, start=start, end=end
        )
    prefix = f"{level}:"
    keep = [i for i, key in enumerate(layer.ids) if key.startswith(prefix)]
    batch = FeatureBatch(
        [layer.ids[i] for i in keep],
        [layer.properties[i] for i in keep],
        [layer.wkb[i] for i in keep],
    )
    values = _rollup_values(table, bucket is not None)
    empty: dict[str, Any] = {"mean": None, "max": None, "count": 0}
    if bucket is not None:
        empty["buckets"] = []
    features = geojson_features(batch, crs)
    for feature in features:
        code = str(feature["id"]).removeprefix(prefix)
        feature["properties"].update({"observed_property": property, **values.get(code, empty)})
    return geojson_response(
        {
            "type": "FeatureCollection",
            "level": level,
            "observed_property": property,
            "bucket": bucket,
            "start": plain(start),
            "end": plain(end),
            "features": features,
            "numberReturned": len(features),
        }
    )


def _locate(store: Store, key: str) -> tuple[str, FeatureBatch]:
    """The layer and feature a city-object key names; 404 naming the key when none does."""
    level, _, _ = key.partition(":")
    layers = store.layers()
    candidates = (DISTRICTS,) if level in ("gu", "dong") else OBJECT_LAYERS
    for layer in candidates:
        if layers.get(layer):
            found = find_feature(store, layer, key)
            if len(found):
                return layer, found
    raise FeatureNotFoundError("city object", key, parameter="key")


def _history(
    twin: Twin,
    things: list[str],
    observed_property: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    total = 0
    for thing in things:
        frame = twin.history(thing, observed_property=observed_property, start=start, end=end)
        total += len(frame)
        room = MAX_HISTORY - len(rows)
        for _, row in frame.head(max(room, 0)).iterrows():
            rows.append(
                {
                    "thing": thing,
                    "observed_property": plain(row["observed_property"]),
                    "time": plain(row["time"]),
                    "value": plain(row["value"]),
                    "flags": flag_names(int(row["quality"])),
                }
            )
    body: dict[str, Any] = {
        "start": plain(start),
        "end": plain(end),
        "numberMatched": total,
        "numberReturned": len(rows),
        "capped": total > len(rows),
        "observations": rows,
    }
    if body["capped"]:
        body["note"] = (
            f"history capped at {MAX_HISTORY} observations of {total}; "
            "narrow start/end or property to see the rest"
        )
    return body


def city_object(
    request: Request,
    access: Access,
    key: str,
    property: Annotated[str | None, Query(description="observed property, e.g. pm25")] = None,
    history: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> JSONResponse:
    """One city object as a Feature with its bound sensors (and their history on request)."""
    start, end = _utc(start), _utc(end)
    if not history:
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                raise InvalidParameterError(name, "applies only with history=true")
    check_interval(start, end)
    crs = city_crs(request)
    with access.lock:
        store = access.store()
        layer, found = _locate(store, key)
        twin = Twin(store)
        bound = twin.sensors_of(key, observed_property=property)
        things = sorted({str(t) for t in bound["thing"]})
        past = _history(twin, things, property, start, end) if history else None
    feature = geojson_features(found, crs)[0]
    feature["properties"]["layer"] = layer
    feature["properties"]["sensors"] = sensor_features(bound)
    if past is not None:
        feature["properties"]["history"] = past
    return geojson_response(feature)


def create_router() -> APIRouter:
    """The twin routes under ``/twin``."""
    router = APIRouter(prefix="/twin", tags=["twin"])
    router.add_api_route("/sensors", sensors, methods=["GET"], name="twin_sensors")
    router.add_api_route("/districts", districts, methods=["GET"], name="twin_districts")
    router.add_api_route("/objects/{key:path}", city_object, methods=["GET"], name="twin_object")
    return router
