"""Map layers for the operator dashboard, in the shapes a web map draws directly (WGS84).

- ``GET /layers/distribution?property=pm25&band=mean|sd`` — ordinary kriging of the sensors'
  window means (:func:`citytwin.services.analyses.interpolate_inputs`) as a coloured RGBA PNG
  with its four WGS84 corners and a legend: ``format=json`` (default) answers
  ``{coordinates, image (a data: URL), legend, grid, …}`` for a MapLibre ``image`` source,
  ``format=png`` the picture with the corners in the ``X-Image-Coordinates`` header. ``band=sd``
  is the kriging standard deviation (the square root of the kriging variance): the map's
  uncertainty, large far from sensors;
- ``GET /layers/history?property=pm25`` — every sensor's hourly mean over the stored history
  (the time slider replays it);
- ``GET /layers/release?lon=&lat=`` — a chemical release at a point
  (:func:`citytwin.services.simulations.chemical_release`) as its AEGL-1/2/3 zones (GeoJSON),
  each with the buildings and estimated residents inside it;
- ``GET /layers/traffic`` — peak-hour flows of the city's own traffic model
  (:mod:`citytwin.services.traffic_model`): every modelled road link with its volume (veh/h),
  volume/capacity and congested speed, as GeoJSON lines;
- ``GET /layers/closure?link=ID`` (repeatable) — the same model with those streets closed in both
  directions: the links whose volume changes by at least ten vehicles an hour and 5 % of the
  closed street's volume, each with
  ``volume``, ``volume_after`` and ``volume_change``, the closed ones marked ``closed``, and the
  peak hour's vehicle-hours before and after.

The image is the city grid (EPSG:5186 cells) pinned by its corners: MapLibre stretches it
linearly in Web Mercator between them. EPSG:5186's central meridian is 127° E, through Seoul, so
the grid is not rotated; over a 30 km city the stretch is off by a few tens of metres at most,
less than one 100 m cell.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from matplotlib import colormaps
from matplotlib.image import imsave
from numpy.typing import NDArray

from citytwin.analysis.grid import Grid
from citytwin.api.features import plain
from citytwin.api.sta import Access
from citytwin.errors import ValidationError
from citytwin.services import analyses, simulations
from citytwin.services.traffic_model import TrafficModels, build_traffic_model, layer_key
from citytwin.simulate.city_traffic import CityFlows
from citytwin.space.crs import to_city, to_wgs84
from citytwin.twin.fields import is_decibel
from citytwin.twin.state import SUSPECT, Twin

Band = Literal["mean", "sd"]
#: viridis for values (magma for decibels, as the PNG maps of /analysis/map), cividis for the
#: uncertainty so that the two toggles never look alike
COLOUR_MAPS = {"mean": "viridis", "decibel": "magma_r", "sd": "cividis"}
LEGEND_STOPS = 5
PropertyQuery = Annotated[str, Query(description="observed property key, e.g. pm25, noise")]


def corner_coordinates(grid: Grid) -> list[list[float]]:
    """The grid's outer corners in WGS84, clockwise from the north-west (MapLibre's order).

    EPSG:5186's origin is (200 km, 600 km) at 127° E, 38° N: 50 km south is 0.4505° of latitude,
    1 km east 0.0113° of longitude at 37.5° N.

    >>> grid = Grid(west=200_000.0, north=550_000.0, cell=100.0, width=10, height=5)
    >>> [[round(lon, 4), round(lat, 4)] for lon, lat in corner_coordinates(grid)[::2]]
    [[127.0, 37.5495], [127.0113, 37.545]]
    """
    west, south, east, north = grid.bounds
    lon, lat = to_wgs84([west, east, east, west], [north, north, south, south], grid.crs)
    return [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]


def colour_image(values: NDArray[np.float64], cmap: str) -> tuple[bytes, float, float]:
    """``values`` (row 0 north) as an RGBA PNG, NaN transparent; its colour range.

    >>> png, low, high = colour_image(np.array([[1.0, np.nan], [2.0, 3.0]]), "viridis")
    >>> png[:4], low, high
    (b'\\x89PNG', 1.0, 3.0)
    """
    finite = np.isfinite(values)
    if not finite.any():
        raise ValidationError("distribution layer: no grid cell has a value; expected at least one")
    low, high = float(values[finite].min()), float(values[finite].max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    rgba = colormaps[cmap](np.where(finite, scaled, 0.0), bytes=True)
    rgba[..., 3] = np.where(finite, 255, 0)
    buffer = io.BytesIO()
    imsave(buffer, rgba, format="png")  # uint8 RGBA is written as is
    return buffer.getvalue(), low, high


def legend(cmap: str, low: float, high: float, unit: str) -> dict[str, Any]:
    """Evenly spaced colour stops from ``low`` to ``high`` for a gradient bar."""
    ramp = colormaps[cmap](np.linspace(0.0, 1.0, LEGEND_STOPS), bytes=True)
    colours = ["#{:02x}{:02x}{:02x}".format(*rgba[:3]) for rgba in ramp]
    return {"min": low, "max": high, "unit": unit, "colours": colours}


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def distribution(
    access: Access,
    property: PropertyQuery,
    band: Band = "mean",
    at: Annotated[datetime | None, Query(description="window end (ISO 8601); latest")] = None,
    window: Annotated[float, Query(gt=0, le=168, description="hours averaged")] = 1.0,
    cell: Annotated[float, Query(ge=25, le=2000, description="grid cell (m)")] = 100.0,
    format: Literal["json", "png"] = "json",
) -> Response:
    """The kriged distribution (or its standard deviation) of one property as an image layer."""
    with access.lock:
        inputs = analyses.map_inputs(
            access.store(), property, at=_utc(at), window=timedelta(hours=window)
        )
    result = analyses.interpolate_inputs(inputs, method="kriging", cell=cell)
    unit = result.field.unit
    if band == "sd":
        assert result.variance is not None  # kriging always gives one
        values, cmap = np.sqrt(np.clip(result.variance, 0.0, None)), COLOUR_MAPS["sd"]
    else:
        values, cmap = result.mean, COLOUR_MAPS["decibel" if is_decibel(unit) else "mean"]
    png, low, high = colour_image(values, cmap)
    coordinates = corner_coordinates(result.grid)
    if format == "png":
        headers = {"X-Image-Coordinates": json.dumps(coordinates)}
        return Response(png, media_type="image/png", headers=headers)
    grid = result.grid
    return JSONResponse(
        {
            "observedProperty": property,
            "band": band,
            "start": plain(result.field.start),
            "end": plain(result.field.end),
            "coordinates": coordinates,
            "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            "legend": legend(cmap, low, high, unit),
            "grid": {"crs": grid.crs, "west": grid.west, "north": grid.north,
                     "cell": grid.cell, "width": grid.width, "height": grid.height},
            "sensors": len(result.field.sensors),
            "variogram": None if result.variogram is None else result.variogram.kind,
            "rmse": float(result.validation.rmse),
        }
    )  # fmt: skip


def history(
    access: Access,
    property: PropertyQuery,
    start: datetime | None = None,
    end: datetime | None = None,
) -> JSONResponse:
    """Every sensor's hourly mean (suspect values left out): ``values[i][k]`` is thing ``i`` in
    hour ``times[k]`` (``null`` without a reading)."""
    with access.lock:
        twin = Twin(access.store())
        catalogue = twin.catalogue()
        table = twin.store.aggregate(
            bucket="hour", by="datastream", start=_utc(start), end=_utc(end),
            observed_property=property, exclude_flags=SUSPECT,
        ).to_pandas()  # fmt: skip
    streams = catalogue[catalogue["observed_property"] == property]
    thing_of = dict(zip(streams["datastream_id"].astype(str), streams["thing"], strict=True))
    table["thing"] = table["group"].astype(str).map(thing_of)
    wide = table.dropna(subset=["thing"]).pivot_table(
        index="thing", columns="bucket", values="mean", aggfunc="mean"
    )
    wide = wide.reindex(columns=sorted(wide.columns))
    times = [plain(pd.Timestamp(t).tz_localize("UTC")) for t in wide.columns]
    values = [[plain(v) if np.isfinite(v) else None for v in row] for row in wide.to_numpy()]
    return JSONResponse(
        {"observedProperty": property, "times": times, "things": [str(t) for t in wide.index],
         "values": values}
    )  # fmt: skip


def release(
    access: Access,
    lon: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    substance: str = "chlorine",
    rate: Annotated[float, Query(gt=0, le=1e6, description="release rate (g/s)")] = 1000.0,
    extent: Annotated[float, Query(ge=500, le=20000, description="square side (m)")] = 5000.0,
) -> JSONResponse:
    """A continuous release at a point with the sensors' wind: its AEGL zones as GeoJSON."""
    x, y = to_city([lon], [lat])
    what = simulations.Release(substance, rate, float(x[0]), float(y[0]))
    with access.lock:
        result = simulations.chemical_release(access.store(), what, extent_m=extent, cell=50.0)
    zones = result.zones[~result.zones.geometry.is_empty].to_crs("EPSG:4326")
    if result.exposure is not None:  # per level, cumulative: AEGL-1 counts all three zones
        exposure = result.exposure.reindex(zones["level"])
        zones = zones.assign(buildings=exposure["buildings"].to_numpy(int),
                             residents=exposure["residents"].round().to_numpy(int))  # fmt: skip
    collection = json.loads(zones.to_json())
    collection.update(
        {
            "substance": substance,
            "rateGramsPerSecond": rate,
            "source": [lon, lat],
            "windSpeed": float(result.wind_speed),
            "windDirection": float(result.wind_direction),
            "stability": result.stability,
            "buildingsInAegl1": None if result.exposure is None else _outer(result, "buildings"),
            "residentsInAegl1": None if result.exposure is None else _outer(result, "residents"),
        }
    )
    return JSONResponse(collection, media_type="application/geo+json")


def _outer(result: simulations.ReleaseResult, column: str) -> int:
    assert result.exposure is not None
    return round(float(result.exposure[column].get("AEGL-1", 0.0)))


#: Closure changes smaller than this (veh/h) are equilibrium noise (gap 1e-4), not drawn.
CHANGE_SHOWN = 10.0
#: …and changes under this share of the closed street's volume are the equilibrium spreading a
#: few vehicles over many near-equal routes: left out so the diversions stand out.
CHANGE_SHARE = 0.05
TRAFFIC_COLUMNS = ["link_id", "name", "road_class", "lanes", "capacity_veh_h", "volume", "vc",
                   "speed_kmh", "geometry"]  # fmt: skip
_models_lock = threading.Lock()


def _traffic_models(app: Any) -> TrafficModels:
    with _models_lock:
        models = getattr(app.state, "traffic_models", None)
        if models is None:
            models = app.state.traffic_models = TrafficModels()
        return models


def base_flows(app: Any, access: Any) -> CityFlows:
    """The base flows of ``app``'s city: the store read under its lock, the assignment outside
    it. ``citytwin demo`` calls it once at start so the dashboard's first toggle is instant."""
    with access.lock:
        key = layer_key(access.store())

    def build() -> Any:
        with access.lock:
            return build_traffic_model(access.store())

    return _traffic_models(app).base(key, build)


def _lines(frame: Any, columns: list[str], extra: dict[str, Any]) -> JSONResponse:
    shown = frame[columns].to_crs("EPSG:4326")
    numbers = shown.select_dtypes("number").columns
    shown[numbers] = shown[numbers].round(2)
    collection = json.loads(shown.to_json(drop_id=True))
    collection.update(extra)
    return JSONResponse(collection, media_type="application/geo+json")


def traffic(access: Access, request: Request) -> JSONResponse:
    """Peak-hour flows on every modelled road link (GeoJSON lines)."""
    flows = base_flows(request.app, access)
    trips = flows.model.trips
    return _lines(flows.table(), TRAFFIC_COLUMNS, {
        "zones": len(trips.zones), "trips": round(trips.total),
        "vehicleHours": round(flows.vehicle_hours, 1), "iterations": flows.result.iterations,
        "relativeGap": flows.result.relative_gap,
    })  # fmt: skip


def closure(
    access: Access,
    request: Request,
    link: Annotated[list[str], Query(max_length=20, description="link_id of a street to close")],
) -> JSONResponse:
    """The changes when the streets of ``link`` close: changed links and vehicle-hours."""
    base = base_flows(request.app, access)
    result = _traffic_models(request.app).closure(base, link)
    links = result.links
    lost = float(links.loc[links["closed"], "volume"].max())
    shown = max(CHANGE_SHOWN, CHANGE_SHARE * lost)
    changed = links[(links["volume_change"].abs() >= shown) | links["closed"]]
    columns = [*TRAFFIC_COLUMNS[:-1], "volume_after", "vc_after", "volume_change", "closed",
               "geometry"]  # fmt: skip
    return _lines(changed, columns, {
        "minimumChangeShown": round(shown, 1),
        "closed": sorted({str(i) for i in link}), "closedLinks": int(links["closed"].sum()),
        "vehicleHoursBase": round(result.vehicle_hours_base, 1),
        "vehicleHours": round(result.vehicle_hours, 1),
        "vehicleHoursChange": result.vehicle_hours_change,
    })  # fmt: skip


def create_router() -> APIRouter:
    """The dashboard layers under ``/layers``."""
    router = APIRouter(prefix="/layers", tags=["layers"])
    images: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/json": {}, "image/png": {}}}
    }
    router.add_api_route(
        "/distribution", distribution, methods=["GET"], name="layers_distribution",
        responses=images, response_class=Response,
    )  # fmt: skip
    router.add_api_route("/history", history, methods=["GET"], name="layers_history")
    router.add_api_route("/release", release, methods=["GET"], name="layers_release")
    router.add_api_route("/traffic", traffic, methods=["GET"], name="layers_traffic")
    router.add_api_route("/closure", closure, methods=["GET"], name="layers_closure")
    return router
