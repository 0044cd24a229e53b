"""Hours of direct sun, and what a proposed building takes from its neighbours.

The sun is sampled every ``step_minutes`` at the middle of each interval of a window of one day;
a receiver has direct sun in a sample when the sun is above the horizon and no shadow covers it
(shadows as in :mod:`.shadow`); hours = sunlit samples × step. The default window is the winter
solstice (동지) 09:00–15:00, the period Korean daylight-rights (일조권) practice examines: courts
commonly take 2 continuous hours in 09–15, or 4 hours in all in 08–16, as the tolerable minimum.
Receivers are ground cells (a :class:`~citytwin.analysis.grid.Grid`'s centres; cells under a
footprint are NaN) and façade points: points every ``facade_spacing`` metres around each building
(holes too), 0.5 m outside its walls at ground level, like a ground-floor window. A façade point
is shaded by its own building too, so a north wall gets no winter sun; a building's hours are the
mean over its façade points, ``best`` the sunniest point.

Limits: flat ground, no terrain or trees, no reflected or diffuse light, LoD1 blocks only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.shadow import (
    Floats,
    Geometries,
    Ints,
    _Blocks,
    _blocks,
    _keys,
    _pieces,
    _site,
)
from citytwin.simulate.sun import solar_position

logger = logging.getLogger(__name__)

DEFAULT_TIMEZONE: Final = "Asia/Seoul"
#: 동지 09:00–15:00, the window of the Korean daylight-rights check.
DEFAULT_WINDOW: Final = (time(9), time(15))
FACADE_OFFSET: Final = 0.5  # metres outside the wall where a façade point sits


@dataclass(frozen=True)
class SunlightHours:
    """Hours of direct sun in a window of one day.

    Attributes
    ----------
    buildings
        One row per building: ``key``, ``hours`` (mean over its façade points), ``best`` (its
        sunniest façade point) and ``points`` (how many façade points it has).
    ground
        ``grid.shape`` array of hours per cell; NaN under a footprint.
    """

    buildings: pd.DataFrame
    ground: Floats


def sunlight_hours(
    buildings: gpd.GeoDataFrame,
    grid: Grid,
    day: date,
    *,
    lat: float | None = None,
    lon: float | None = None,
    step_minutes: float = 10.0,
    window: tuple[time, time] = DEFAULT_WINDOW,
    timezone: str = DEFAULT_TIMEZONE,
    height_column: str = "height",
    facade_spacing: float = 2.0,
) -> SunlightHours:
    """Hours of direct sun at every ground cell and around every building on ``day``.

    See the module docstring for the method. ``window`` is local time in ``timezone``.

    Examples
    --------
    A lone 20 m block on the winter solstice: its south wall is sunlit 09–15, its north wall
    never, so the façade mean lies between; open ground far away gets the full 6 hours.

    >>> block = gpd.GeoDataFrame({"key": ["a"], "height": [20.0]},
    ...     geometry=[shapely.box(200000, 550000, 200020, 550020)], crs="EPSG:5186")
    >>> grid = Grid.covering((199900.0, 549900.0, 200100.0, 550100.0), cell=20.0)
    >>> sun = sunlight_hours(block, grid, date(2025, 12, 21), step_minutes=30)
    >>> float(sun.buildings["best"].iloc[0]), float(sun.ground[-1, 0])
    (6.0, 6.0)
    """
    blocks = _blocks(buildings, height_column, "buildings")
    points, point_owner = _facade_points(blocks, facade_spacing)
    sun = _sun_path(buildings, grid, day, lat, lon, step_minutes, window, timezone)
    receivers = np.concatenate([points, shapely.points(grid.points())])
    (hours,) = _hours_lit([blocks], [[0]], receivers, sun)
    frame = _per_building(blocks, point_owner, {"hours": hours[: len(points)]})
    ground = _ground(hours[len(points) :], [blocks], grid)
    return SunlightHours(buildings=frame.rename(columns={"hours_best": "best"}), ground=ground)


def sunlight_loss(
    buildings: gpd.GeoDataFrame,
    proposed: gpd.GeoDataFrame,
    grid: Grid,
    day: date,
    *,
    lat: float | None = None,
    lon: float | None = None,
    step_minutes: float = 10.0,
    window: tuple[time, time] = DEFAULT_WINDOW,
    timezone: str = DEFAULT_TIMEZONE,
    height_column: str = "height",
    facade_spacing: float = 2.0,
) -> tuple[pd.DataFrame, Floats]:
    """Hours of direct sun each building and ground cell loses when ``proposed`` is built.

    A proposed row whose ``key`` matches an existing building replaces it (a building raised or
    rebuilt); the others are added. Both scenarios use the same façade points (those of the
    existing buildings) and the same sun samples, so the difference is the proposal's alone.

    Returns
    -------
    ``(per_building, ground)``: per existing building ``key``, ``hours_before``,
    ``hours_after``, ``hours_lost`` (façade means) and ``max_hours_lost`` (the worst façade
    point); and a ``grid.shape`` array of hours lost per cell, NaN under any footprint. Negative
    values are hours gained (a replacement lower or smaller than what it replaces).

    Examples
    --------
    A 60 m tower 40 m south of a 10 m house takes its winter sun; built 40 m north, nothing.

    >>> def blocks(*boxes):
    ...     rows = [(key, h, shapely.box(200000, 550000 + y, 200020, 550020 + y))
    ...             for key, h, y in boxes]
    ...     return gpd.GeoDataFrame(rows, columns=["key", "height", "geometry"], crs="EPSG:5186")
    >>> house, grid = blocks(("house", 10.0, 0)), Grid.covering((199900., 549800., 200100.,
    ...     550200.), cell=20.0)
    >>> south, _ = sunlight_loss(house, blocks(("tower", 60.0, -60)), grid, date(2025, 12, 21))
    >>> north, _ = sunlight_loss(house, blocks(("tower", 60.0, 60)), grid, date(2025, 12, 21))
    >>> bool(south["max_hours_lost"].iloc[0] > 1), float(north["max_hours_lost"].iloc[0])
    (True, 0.0)
    """
    base = _blocks(buildings, height_column, "buildings")
    if proposed.crs is not None and proposed.crs != buildings.crs:
        proposed = proposed.to_crs(buildings.crs)
    new = _blocks(proposed, height_column, "proposed")
    replaced = _keys(buildings).isin(set(new.keys)).to_numpy()
    kept = _blocks(buildings[~replaced], height_column, "buildings")
    removed = _blocks(buildings[replaced], height_column, "buildings")
    logger.info("sunlight_loss: the proposal replaces %d buildings", int(replaced.sum()))
    points, point_owner = _facade_points(base, facade_spacing)
    sun = _sun_path(buildings, grid, day, lat, lon, step_minutes, window, timezone)
    receivers = np.concatenate([points, shapely.points(grid.points())])
    groups = [kept, removed, new]
    before, after = _hours_lit(groups, [[0, 1], [0, 2]], receivers, sun)
    frame = _per_building(
        base,
        point_owner,
        {"hours_before": before[: len(points)], "hours_after": after[: len(points)]},
    )
    frame["hours_lost"] = frame["hours_before"] - frame["hours_after"]
    worst = np.full(len(base.keys), np.nan)
    np.fmax.at(worst, point_owner, (before - after)[: len(points)])
    frame["max_hours_lost"] = worst
    frame = frame.drop(columns=["hours_before_best", "hours_after_best"])
    return frame, _ground((before - after)[len(points) :], groups, grid)


# --- receivers ------------------------------------------------------------------------------------


def _facade_points(blocks: _Blocks, spacing: float) -> tuple[Geometries, Ints]:
    """Points every ``spacing`` metres along each wall, just outside it; owner per point."""
    if not spacing > 0:
        raise ValidationError(f"facade_spacing {spacing}: expected a positive number of metres")
    grown = shapely.buffer(blocks.parts, FACADE_OFFSET, join_style="mitre")
    rings, part_of_ring = shapely.get_rings(grown, return_index=True)
    length = shapely.length(rings)
    count = np.maximum(np.round(length / spacing), 1).astype(np.intp)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    along = (local + 0.5) * np.repeat(length / count, count)
    points = shapely.line_interpolate_point(np.repeat(rings, count), along)
    owner = blocks.owner[np.repeat(part_of_ring, count)]
    inside = shapely.STRtree(blocks.parts).query(points, predicate="intersects")[0]
    keep = np.ones(len(points), dtype=bool)
    keep[inside] = False  # a point against a neighbour's party wall is no window
    return points[keep], owner[keep]


# --- sampling -------------------------------------------------------------------------------------


def _sun_samples(
    day: date, window: tuple[time, time], step: float, timezone: str
) -> pd.DatetimeIndex:
    """Mid-interval instants of ``window`` on ``day``, every ``step`` minutes."""
    start, end = (pd.Timestamp(datetime.combine(day, moment), tz=timezone) for moment in window)
    count = round((end - start) / pd.Timedelta(minutes=step)) if step > 0 else 0
    if not (step > 0 and end > start and count >= 1):
        raise ValidationError(
            f"window {window[0]}–{window[1]} every {step} min: expected start < end and a "
            "positive step no longer than the window"
        )
    offsets = pd.to_timedelta((np.arange(count) + 0.5) * step, unit="min")
    return pd.DatetimeIndex(start + offsets)


@dataclass(frozen=True)
class _SunPath:
    """Sun samples of one window: azimuth from grid north and elevation (degrees), step (min)."""

    azimuth: Floats
    elevation: Floats
    step: float


def _sun_path(
    frame: gpd.GeoDataFrame,
    grid: Grid,
    day: date,
    lat: float | None,
    lon: float | None,
    step: float,
    window: tuple[time, time],
    timezone: str,
) -> _SunPath:
    if CRS.from_user_input(grid.crs) != CRS.from_user_input(frame.crs):
        raise ValidationError(f"grid CRS {grid.crs}: expected the buildings' CRS {frame.crs}")
    lat, lon, north = _site(frame, lat, lon)
    sun = solar_position(_sun_samples(day, window, step, timezone), lat, lon)
    azimuth = sun["azimuth"].to_numpy() + north
    return _SunPath(azimuth, sun["elevation"].to_numpy(), step)


def _hours_lit(
    groups: list[_Blocks], scenarios: list[list[int]], receivers: Geometries, sun: _SunPath
) -> list[Floats]:
    """Hours of direct sun per receiver for each scenario (a list of building groups).

    Each group's shadows are cast once per sample and shared by the scenarios that contain it,
    so a what-if costs the proposal's shadows, not a second pass over the whole city.
    """
    tree = shapely.STRtree(receivers)
    lit = np.zeros((len(scenarios), len(receivers)))
    for azimuth, elevation in zip(sun.azimuth, sun.elevation, strict=True):
        if elevation <= 0:
            continue
        shaded = np.zeros((len(groups), len(receivers)), dtype=bool)
        for row, blocks in enumerate(groups):
            if len(blocks.parts):
                pieces, _ = _pieces(blocks, azimuth, elevation)
                shapely.prepare(pieces)  # each piece is tested against many receivers
                shaded[row, tree.query(pieces, predicate="intersects")[1]] = True
        for row, members in enumerate(scenarios):
            lit[row] += ~shaded[members].any(axis=0)
    return list(lit * sun.step / 60)


def _ground(values: Floats, groups: list[_Blocks], grid: Grid) -> Floats:
    """Cell values as a ``grid.shape`` array, NaN where a cell centre lies under a footprint."""
    cells = shapely.points(grid.points())
    covered = np.zeros(len(cells), dtype=bool)
    for blocks in groups:
        covered[shapely.STRtree(blocks.parts).query(cells, predicate="intersects")[0]] = True
    return np.where(covered, np.nan, values).reshape(grid.shape)


def _per_building(blocks: _Blocks, owner: Ints, values: dict[str, Floats]) -> pd.DataFrame:
    """Façade-point values → per-building mean (the name) and best (``<name>_best``)."""
    count = np.bincount(owner, minlength=len(blocks.keys))
    columns: dict[str, object] = {"key": blocks.keys}
    for name, value in values.items():
        total = np.bincount(owner, weights=value, minlength=len(blocks.keys))
        best = np.full(len(blocks.keys), np.nan)
        np.fmax.at(best, owner, value)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[name] = total / count
        columns[f"{name}_best"] = best
    columns["points"] = count
    return pd.DataFrame(columns)
