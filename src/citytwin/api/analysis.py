"""Analysis endpoints: decision support over the live twin (read-only, no role needed).

- ``GET /analysis/map`` — a distribution map of one property (kriging or IDW) as PNG, GeoTIFF
  (EPSG:5186, bands mean and variance) or contour GeoJSON;
- ``GET /analysis/hotspots`` — Getis-Ord Gi* / Local Moran's I by gu, dong or grid cell, as
  GeoJSON or a PNG map;
- ``GET /analysis/anomalies`` — sensor faults versus real events, as episodes;
- ``GET /analysis/noise`` — Lday/Levening/Lnight/Lden (or the Korean day/night) per station;
- ``GET /analysis/forecast`` — the next 1–24 hours of one sensor or district.

The store lock is held only while the inputs are read; the computation runs after it, so a map
being kriged does not stall ingestion or other requests.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from citytwin.api.features import plain
from citytwin.api.sta import Access
from citytwin.services import analyses, series
from citytwin.twin.fields import sensor_readings
from citytwin.twin.state import Twin

MEDIA_TYPES = {"png": "image/png", "tif": "image/tiff", "geojson": "application/geo+json"}
MAX_EPISODES = 1000

PropertyQuery = Annotated[str, Query(description="observed property key, e.g. pm25, noise")]
AtQuery = Annotated[
    datetime | None,
    Query(description="end of the averaging window (ISO 8601; naive = UTC); default: latest"),
]
WindowQuery = Annotated[float, Query(gt=0, le=168, description="hours averaged before `at`")]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _file_response(write: Any, suffix: str) -> Response:
    """Run ``write(path)`` into a temporary file and answer its bytes."""
    with tempfile.TemporaryDirectory(prefix="citytwin-analysis-") as scratch:
        path = Path(scratch) / f"result.{suffix}"
        write(path)
        body = path.read_bytes()
    return Response(body, media_type=MEDIA_TYPES[suffix])


def distribution_map(
    access: Access,
    property: PropertyQuery,
    at: AtQuery = None,
    window: WindowQuery = 1.0,
    method: Literal["kriging", "idw"] = "kriging",
    cell: Annotated[float, Query(ge=10, le=5000, description="grid cell (m)")] = 100.0,
    model: Literal["auto", "spherical", "exponential", "gaussian", "matern"] = "auto",
    format: Literal["png", "tif", "geojson"] = "png",
) -> Response:
    """A distribution map of one property from the sensors' means over the window."""
    with access.lock:
        inputs = analyses.map_inputs(
            access.store(), property, at=_utc(at), window=timedelta(hours=window)
        )
    result = analyses.interpolate_inputs(inputs, method=method, cell=cell, model=model)
    return _file_response(lambda path: analyses.save_map(result, path, format=format), format)


def hotspots(
    access: Access,
    property: PropertyQuery,
    at: AtQuery = None,
    window: WindowQuery = 1.0,
    by: Literal["gu", "dong", "grid"] = "gu",
    statistic: Literal["gi", "moran"] = "gi",
    cell: Annotated[float, Query(ge=100, le=10_000, description="cell (m) for by=grid")] = 1000.0,
    permutations: Annotated[int, Query(ge=0, le=9999)] = 999,
    format: Literal["geojson", "png"] = "geojson",
) -> Response:
    """Hot and cold spots (Gi*) or clusters and outliers (Local Moran's I) with significance."""
    with access.lock:
        inputs = analyses.hotspot_inputs(
            access.store(), property, at=_utc(at), window=timedelta(hours=window), by=by
        )
    found = analyses.find_hotspots(
        inputs, statistic=statistic, by=by, cell=cell, permutations=permutations
    )
    return _file_response(lambda path: analyses.save_hotspots(found, path), format)


def anomalies(
    access: Access,
    property: PropertyQuery,
    start: datetime | None = None,
    end: datetime | None = None,
) -> JSONResponse:
    """Sensor faults and real events in ``[start, end)``: counts and episodes (first 1,000)."""
    with access.lock:
        readings = sensor_readings(Twin(access.store()), property, start=_utc(start), end=_utc(end))
    result = analyses.detect_reading_anomalies(readings)
    things = readings.sensors["thing"].tolist()
    episodes = [
        {
            "kind": row["kind"],
            "thing": things[row["sensor"]] if row["sensor"] >= 0 else None,
            "members": [things[i] for i in row["members"]],
            "start": plain(row["start_time"]),
            "end": plain(row["end_time"]),
            "cause": row["cause"],
            "peakScore": _finite(row["peak_score"]),
            "readings": int(row["readings"]),
        }
        for row in result.to_frame().head(MAX_EPISODES).to_dict("records")
    ]
    return JSONResponse(
        {
            "observedProperty": property,
            "start": plain(readings.times[0]),
            "end": plain(readings.times[-1]),
            "readings": result.counts(),
            "episodes": episodes,
            "numberReturned": len(episodes),
        }
    )


def noise(
    access: Access,
    thing: Annotated[str | None, Query(description="one station's Thing key")] = None,
    periods: Literal["eu", "korea"] = "eu",
    daily: bool = False,
) -> JSONResponse:
    """Noise indicators per station (and day), from the stored LEQ averaged energetically."""
    with access.lock:
        report = series.noise_report(access.store(), thing=thing, periods=periods, daily=daily)
    rows = json.loads(report.to_json(orient="records", date_format="iso"))
    return JSONResponse({"periods": periods, "stations": rows, "numberReturned": len(rows)})


def forecast(
    access: Access,
    property: PropertyQuery,
    thing: Annotated[str | None, Query(description="one sensor's Thing key")] = None,
    district: Annotated[str | None, Query(description="gu:<code> or dong:<code>")] = None,
    horizon: Annotated[int, Query(ge=1, le=24, description="hours ahead")] = 24,
) -> JSONResponse:
    """The next hours of one sensor or one district's sensor mean, from its hourly history."""
    with access.lock:
        result = series.series_forecast(
            access.store(), property, thing=thing, district=district, horizon=horizon
        )
    return JSONResponse(
        {
            "observedProperty": property,
            "subject": result.subject,
            "historyHours": int(result.history.notna().sum()),
            "forecast": [
                {"time": plain(moment), "value": _finite(value)}
                for moment, value in result.forecast.items()
            ],
        }
    )


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def create_router() -> APIRouter:
    """The analysis routes under ``/analysis``."""
    router = APIRouter(prefix="/analysis", tags=["analysis"])
    files: dict[int | str, dict[str, Any]] = {
        200: {"content": {"image/png": {}, "image/tiff": {}, "application/geo+json": {}}}
    }
    router.add_api_route(
        "/map", distribution_map, methods=["GET"], name="analysis_map",
        responses=files, response_class=Response,
    )  # fmt: skip
    router.add_api_route(
        "/hotspots", hotspots, methods=["GET"], name="analysis_hotspots",
        responses=files, response_class=Response,
    )  # fmt: skip
    router.add_api_route("/anomalies", anomalies, methods=["GET"], name="analysis_anomalies")
    router.add_api_route("/noise", noise, methods=["GET"], name="analysis_noise")
    router.add_api_route("/forecast", forecast, methods=["GET"], name="analysis_forecast")
    return router
