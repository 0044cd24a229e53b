"""Decision-support services over the twin, in space: distribution maps, hotspots and
anomalies (faults versus events) of what the sensors say.

Every function takes a store (plus what to analyse) and returns a small result object that
:func:`save_map`-style writers turn into files: PNG pictures, GeoTIFF rasters and GeoJSON.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from citytwin.analysis.anomalies import AnomalyResult, detect_anomalies
from citytwin.analysis.grid import Grid
from citytwin.analysis.hotspots import HotspotResult, getis_ord_gi_star, local_morans_i
from citytwin.analysis.interpolate import CrossValidation, cross_validate, idw, krige
from citytwin.analysis.noise import energetic_mean
from citytwin.analysis.render import (
    contour_geojson,
    render_choropleth,
    render_map,
    write_geotiff,
)
from citytwin.analysis.variogram import VariogramModel
from citytwin.analysis.weights import contiguity_weights, grid_weights
from citytwin.errors import ValidationError
from citytwin.model.vocabulary import get_property
from citytwin.space.crs import DEFAULT_CITY_CRS
from citytwin.store.base import Store
from citytwin.twin.fields import (
    SensorField,
    SensorReadings,
    district_outlines,
    is_decibel,
    sensor_field,
    sensor_readings,
)
from citytwin.twin.state import Twin

logger = logging.getLogger(__name__)

Method = Literal["kriging", "idw"]
MapFormat = Literal["png", "tif", "geojson"]
HotspotStatistic = Literal["gi", "moran"]
HotspotUnit = Literal["gu", "dong", "grid"]
MARGIN_M = 500.0  # around the sensors when the store has no district outlines
MAX_CELLS = 2_000_000  # a larger grid is a typo in --cell, not a map
PM_LOG_OFFSET = 5.0  # µg/m³: PM differs between sites by a factor (see detect_anomalies)


@dataclass(frozen=True)
class MapInputs:
    """What a map reads from the twin: the sensors' window means and the district outlines."""

    field: SensorField
    districts: gpd.GeoDataFrame | None


@dataclass(frozen=True)
class DistributionMap:
    """A property interpolated from the sensors onto a grid (NaN outside the city)."""

    field: SensorField
    grid: Grid
    mean: np.ndarray
    variance: np.ndarray | None
    variogram: VariogramModel | None
    validation: CrossValidation
    districts: gpd.GeoDataFrame | None
    method: Method


def map_inputs(
    store: Store,
    observed_property: str,
    *,
    at: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    crs: str = DEFAULT_CITY_CRS,
) -> MapInputs:
    """Read a map's inputs (the only part that needs the store: a server holds its lock only
    for this)."""
    field = sensor_field(Twin(store), observed_property, at=at, window=window, crs=crs)
    return MapInputs(field, district_outlines(store, crs=crs))


def interpolate_inputs(
    inputs: MapInputs,
    *,
    method: Method = "kriging",
    cell: float = 100.0,
    model: str = "auto",
    neighbours: int | None = None,
) -> DistributionMap:
    """Interpolate the sensors' values over the city, with leave-one-out cross-validation.

    Ordinary kriging (variogram fitted automatically, kind chosen by cross-validation) or IDW;
    decibels are interpolated as levels after energetic time averaging. The grid covers the
    districts (cells outside them are NaN) or, without districts, the sensors plus a margin.
    """
    field, districts = inputs.field, inputs.districts
    grid = _grid_over(field.sensors, districts, cell, str(field.sensors.crs))
    xs, ys = field.sensors.geometry.x.to_numpy(), field.sensors.geometry.y.to_numpy()
    values = field.sensors["value"].to_numpy(float)
    if method == "kriging":
        result = krige(xs, ys, values, grid, model=model, neighbours=neighbours)  # type: ignore[arg-type]
        mean, variance, variogram = result.mean, result.variance, result.variogram
        validation = cross_validate(xs, ys, values, variogram=variogram, neighbours=neighbours)
    elif method == "idw":
        mean = idw(xs, ys, values, grid, neighbours=neighbours)
        variance, variogram = None, None
        validation = cross_validate(xs, ys, values, method="idw", neighbours=neighbours)
    else:
        raise ValidationError(f"interpolation method {method!r}: expected 'kriging' or 'idw'")
    inside = _inside(grid, districts)
    mean = np.where(inside, mean, np.nan)
    variance = None if variance is None else np.where(inside, variance, np.nan)
    return DistributionMap(field, grid, mean, variance, variogram, validation, districts, method)


def distribution_map(
    store: Store,
    observed_property: str,
    *,
    at: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    method: Method = "kriging",
    cell: float = 100.0,
    model: str = "auto",
    neighbours: int | None = None,
    crs: str = DEFAULT_CITY_CRS,
) -> DistributionMap:
    """A distribution map of ``observed_property``: :func:`map_inputs` then
    :func:`interpolate_inputs`."""
    inputs = map_inputs(store, observed_property, at=at, window=window, crs=crs)
    return interpolate_inputs(inputs, method=method, cell=cell, model=model, neighbours=neighbours)


def save_map(result: DistributionMap, out: Path, *, format: MapFormat | None = None) -> Path:
    """Write the map as a PNG picture, a GeoTIFF (mean and variance bands) or contour GeoJSON;
    the format follows ``out``'s suffix unless given."""
    chosen = format or _format_of(out)
    if chosen == "png":
        field = result.field
        return render_map(
            out,
            result.grid,
            result.mean,
            title=_title(result),
            unit=field.unit,
            districts=result.districts,
            points=np.column_stack([field.sensors.geometry.x, field.sensors.geometry.y]),
            cmap="magma_r" if is_decibel(field.unit) else "viridis",
            caption=_caption(result),
        )
    if chosen == "tif":
        bands = {"mean": result.mean}
        if result.variance is not None:
            bands["variance"] = result.variance
        return write_geotiff(out, result.grid, bands)
    if chosen == "geojson":
        import json

        collection = contour_geojson(result.grid, result.mean, unit=result.field.unit)
        out.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")
        return out
    raise ValidationError(f"map format {chosen!r}: expected png, tif or geojson")


@dataclass(frozen=True)
class Hotspots:
    """Hot and cold spots of a property over districts or grid cells."""

    field: SensorField
    sites: gpd.GeoDataFrame
    result: HotspotResult
    statistic: HotspotStatistic
    unit: HotspotUnit


def hotspots(
    store: Store,
    observed_property: str,
    *,
    at: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    statistic: HotspotStatistic = "gi",
    by: HotspotUnit = "gu",
    cell: float = 1000.0,
    permutations: int = 999,
    crs: str = DEFAULT_CITY_CRS,
) -> Hotspots:
    """Hot and cold spots of ``observed_property``: :func:`hotspot_inputs` then
    :func:`find_hotspots`."""
    inputs = hotspot_inputs(store, observed_property, at=at, window=window, by=by, crs=crs)
    return find_hotspots(inputs, statistic=statistic, by=by, cell=cell, permutations=permutations)


def hotspot_inputs(
    store: Store,
    observed_property: str,
    *,
    at: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    by: HotspotUnit = "gu",
    crs: str = DEFAULT_CITY_CRS,
) -> MapInputs:
    """Read what hotspots need: the sensors' window means and the outlines of level ``by``."""
    field = sensor_field(Twin(store), observed_property, at=at, window=window, crs=crs)
    outlines = None if by == "grid" else district_outlines(store, level=by, crs=crs)
    return MapInputs(field, outlines)


def find_hotspots(
    inputs: MapInputs,
    *,
    statistic: HotspotStatistic = "gi",
    by: HotspotUnit = "gu",
    cell: float = 1000.0,
    permutations: int = 999,
) -> Hotspots:
    """Getis-Ord Gi* or Local Moran's I on district means (``by="gu"``/``"dong"``, contiguity
    neighbours) or on ``cell``-metre grid cells holding sensors (``by="grid"``, queen cells)."""
    if statistic not in ("gi", "moran"):
        raise ValidationError(f"hotspot statistic {statistic!r}: expected 'gi' or 'moran'")
    if by not in ("gu", "dong", "grid"):
        raise ValidationError(f"hotspots by {by!r}: expected gu, dong or grid")
    if by == "grid":
        sites, values, weights = _grid_rollup(inputs.field, cell)
    else:
        sites, values, weights = _district_rollup(inputs, by)
    run = getis_ord_gi_star if statistic == "gi" else local_morans_i
    result = run(values, weights, permutations=permutations)
    return Hotspots(inputs.field, sites, result, statistic, by)


def save_hotspots(found: Hotspots, out: Path) -> Path:
    """Write hotspots as GeoJSON (``.geojson``/``.json``) or a PNG map of their classes."""
    frame = found.sites.copy()
    table = found.result.to_frame()
    for column in table.columns:
        frame[column] = table[column].to_numpy()
    if out.suffix.lower() == ".png":  # districts without sensors stay on the map, white
        name = "Gi*" if found.statistic == "gi" else "Local Moran's I"
        return render_choropleth(
            out,
            frame,
            "label",
            title=f"{found.field.observed_property} {name} by {found.unit}, "
            f"{found.field.start:%Y-%m-%d %H:%M}–{found.field.end:%H:%M} UTC",
            categorical=True,
        )
    frame = frame[frame["label"] != "no data"]
    out.write_text(frame.to_crs("EPSG:4326").to_json(ensure_ascii=False), encoding="utf-8")
    return out


def sensor_anomalies(
    store: Store,
    observed_property: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    neighbours: int = 8,
    crs: str = DEFAULT_CITY_CRS,
) -> tuple[AnomalyResult, gpd.GeoDataFrame]:
    """Sensor faults versus real events in ``[start, end)``: the detector's result and the
    sensors (same order as its rows)."""
    readings = sensor_readings(Twin(store), observed_property, start=start, end=end, crs=crs)
    return detect_reading_anomalies(readings, neighbours=neighbours), readings.sensors


def detect_reading_anomalies(readings: SensorReadings, *, neighbours: int = 8) -> AnomalyResult:
    """:func:`~citytwin.analysis.anomalies.detect_anomalies` with settings for the readings'
    property and time step (a week's window at most; PM on a log scale)."""
    positions = np.column_stack([readings.sensors.geometry.x, readings.sensors.geometry.y])
    step = readings.times[1] - readings.times[0] if len(readings.times) > 1 else pd.Timedelta("1h")
    steps_per_day = max(1, int(pd.Timedelta(days=1) / step))
    # a flat line counts once it outlasts the vocabulary's stuck time: quantised readings
    # (PM in whole µg/m³ every 2 minutes) repeat for minutes on a healthy sensor
    stuck_minutes = _stuck_minutes(readings.observed_property)
    stuck = max(6, math.ceil(pd.Timedelta(minutes=stuck_minutes) / step)) if stuck_minutes else 6
    return detect_anomalies(
        readings.values,
        positions,
        flags=readings.quality,
        times=readings.times.to_numpy(),
        neighbours=neighbours,
        window=min(readings.values.shape[1], 7 * steps_per_day),
        log_offset=PM_LOG_OFFSET if readings.observed_property.startswith("pm") else None,
        stuck_readings=stuck,
    )


def _stuck_minutes(observed_property: str) -> float | None:
    try:
        return get_property(observed_property).stuck_minutes
    except ValidationError:  # a property an API client named: no vocabulary entry
        return None


def _grid_over(
    sensors: gpd.GeoDataFrame, districts: gpd.GeoDataFrame | None, cell: float, crs: str
) -> Grid:
    if districts is not None:
        bounds = tuple(float(v) for v in districts.total_bounds)
    else:
        minx, miny, maxx, maxy = (float(v) for v in sensors.total_bounds)
        bounds = (minx - MARGIN_M, miny - MARGIN_M, maxx + MARGIN_M, maxy + MARGIN_M)
    grid = Grid.covering(bounds, cell=cell, crs=crs)  # type: ignore[arg-type]
    if grid.size > MAX_CELLS:
        raise ValidationError(
            f"--cell {cell:g} m gives {grid.size:,} cells over the city; expected at most "
            f"{MAX_CELLS:,} (use a larger cell)"
        )
    return grid


def _inside(grid: Grid, districts: gpd.GeoDataFrame | None) -> np.ndarray:
    if districts is None:
        return np.ones(grid.shape, bool)
    x, y = grid.centres()
    city = shapely.union_all(districts.geometry.values)
    return np.asarray(shapely.contains_xy(city, x, y))


def _format_of(out: Path) -> MapFormat:
    suffix = out.suffix.lower().lstrip(".")
    formats: dict[str, MapFormat] = {"png": "png", "tif": "tif", "tiff": "tif"}
    formats |= {"geojson": "geojson", "json": "geojson"}
    if suffix not in formats:
        raise ValidationError(
            f"output {out}: unknown suffix {out.suffix!r}; expected .png, .tif or .geojson "
            "(or give --format)"
        )
    return formats[suffix]


def _title(result: DistributionMap) -> str:
    field = result.field
    span = f"{field.start:%Y-%m-%d %H:%M}–{field.end:%H:%M} UTC"
    how = "ordinary kriging" if result.method == "kriging" else "IDW"
    return f"{field.observed_property} ({how}), {span}"


def _caption(result: DistributionMap) -> str:
    cv = result.validation
    model = result.variogram
    kind = f"{model.kind} variogram, " if model is not None else ""
    return (
        f"{len(result.field.sensors):,} sensors · {kind}leave-one-out RMSE {cv.rmse:.3g} "
        f"{result.field.unit} · cell {result.grid.cell:g} m"
    )


def _district_rollup(inputs: MapInputs, level: str) -> tuple[gpd.GeoDataFrame, np.ndarray, Any]:
    field, outlines = inputs.field, inputs.districts
    code = f"{level}_code"
    if outlines is None or code not in field.sensors.columns:
        raise ValidationError(
            f"hotspots by {level}: the store has no {level} outlines or sensors are not bound "
            "to districts; run `citytwin import boundaries` and `citytwin bind`, or use --by grid"
        )
    sensors = field.sensors.dropna(subset=[code])
    if is_decibel(field.unit):
        means = sensors.groupby(code)["value"].agg(lambda v: energetic_mean(v.to_numpy(float)))
    else:
        means = sensors.groupby(code)["value"].mean()
    outlines = outlines.reset_index(drop=True)
    values = outlines["code"].astype(str).map(means.rename(index=str)).to_numpy(float)
    return outlines, values, contiguity_weights(outlines)


def _grid_rollup(field: SensorField, cell: float) -> tuple[gpd.GeoDataFrame, np.ndarray, Any]:
    sensors = field.sensors
    minx, miny, maxx, maxy = (float(v) for v in sensors.total_bounds)
    grid = Grid.covering((minx, miny, maxx + 1e-6, maxy + 1e-6), cell=cell, crs=str(sensors.crs))
    col = ((sensors.geometry.x - grid.west) // cell).astype(int).clip(0, grid.width - 1)
    row = ((grid.north - sensors.geometry.y) // cell).astype(int).clip(0, grid.height - 1)
    cells = (row * grid.width + col).to_numpy()
    values = pd.Series(sensors["value"].to_numpy(float)).groupby(cells).mean()
    flat = np.full(grid.size, np.nan)
    flat[values.index.to_numpy()] = values.to_numpy()
    x, y = grid.centres()
    half = cell / 2
    squares = shapely.box(x - half, y - half, x + half, y + half).ravel()
    sites = gpd.GeoDataFrame({"cell": np.arange(grid.size)}, geometry=squares, crs=grid.crs)
    return sites, flat.reshape(grid.shape), grid_weights(grid.shape)
