"""Consequences of a release: AEGL threshold zones and the buildings and residents inside them.

:func:`threshold_zones` turns a concentration grid (g/m³, e.g. from
:func:`citytwin.simulate.plume.plume_grid`) into one polygon per AEGL level where the
concentration reaches that level's threshold (:mod:`citytwin.simulate.substances`). The zones are
unions of whole grid cells (``rasterio.features.shapes`` on the thresholded raster), so they are
valid polygons and exactly nested: AEGL-3 ⊆ AEGL-2 ⊆ AEGL-1, because a cell over a higher
threshold is over every lower one.

:func:`exposed_buildings` counts, per zone, the buildings whose representative point lies inside
and estimates their residents from the building volume:

    floors = max(1, round((height − min_height) / storey_height))
    residents = footprint area × floors / floor_area_per_person

The defaults are assumptions to be replaced by local data: a 3 m storey, and 30 m² of floor per
person — the order of Seoul's per-capita dwelling floor area in the Ministry of Land,
Infrastructure and Transport's Korea Housing Survey (주거실태조사). Counting every building as
residential overstates residents in commercial districts; pass ``residential_uses`` to count
residents only in buildings whose ``use`` is one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from numpy.typing import ArrayLike
from rasterio import features

from citytwin.analysis.grid import Grid
from citytwin.errors import ValidationError
from citytwin.simulate.substances import LEVELS, Duration, Substance, get_substance

logger = logging.getLogger(__name__)


def threshold_zones(
    grid: Grid,
    concentration: ArrayLike,
    substance: str | Substance,
    *,
    duration: Duration = "60min",
) -> gpd.GeoDataFrame:
    """AEGL-1/2/3 zones (cells where the concentration reaches the level) as polygons.

    Returns one row per level — ``level``, ``threshold_ppm``, ``threshold_g_m3``, ``cells``,
    ``area_m2`` and a (Multi)Polygon ``geometry`` in the grid's CRS (empty when no cell reaches
    the level).

    Examples
    --------
    >>> grid = Grid.covering((0.0, 0.0, 300.0, 100.0), cell=100.0)
    >>> c = np.array([[0.1, 0.004, 0.0]])   # g/m³ of chlorine
    >>> zones = threshold_zones(grid, c, "chlorine")
    >>> zones[["level", "cells", "area_m2"]].to_records(index=False).tolist()
    [('AEGL-1', 2, 20000.0), ('AEGL-2', 1, 10000.0), ('AEGL-3', 1, 10000.0)]
    """
    values = _check_concentration(grid, concentration)
    row = substance if isinstance(substance, Substance) else get_substance(substance)
    in_ppm, in_g_m3 = row.thresholds_ppm(duration), row.thresholds_g_m3(duration)
    level = sum(((values >= t).astype(np.uint8) for t in in_g_m3), np.zeros(grid.shape, np.uint8))
    transform = Affine(*grid.transform)
    geometries = [_cells_polygon(level >= k, transform) for k in (1, 2, 3)]
    zones = gpd.GeoDataFrame(
        {
            "level": list(LEVELS),
            "threshold_ppm": list(in_ppm),
            "threshold_g_m3": list(in_g_m3),
            "cells": [int((level >= k).sum()) for k in (1, 2, 3)],
        },
        geometry=geometries,
        crs=grid.crs,
    )
    zones["area_m2"] = zones.geometry.area
    logger.debug("%s zones (%s): %s cells", row.name, duration, zones["cells"].tolist())
    return zones


def exposed_buildings(
    zones: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    *,
    storey_height: float = 3.0,
    floor_area_per_person: float = 30.0,
    residential_uses: Collection[str] | None = None,
) -> pd.DataFrame:
    """Buildings, floor area and estimated residents inside each zone (cumulative: AEGL-1 counts
    everything at or above AEGL-1).

    ``buildings`` needs footprints and a ``height`` column (m; ``min_height`` is used when
    present); see the module docstring for the occupancy assumption.

    Examples
    --------
    >>> from shapely.geometry import box
    >>> zones = gpd.GeoDataFrame({"level": ["AEGL-1"]}, geometry=[box(0, 0, 100, 100)])
    >>> blocks = gpd.GeoDataFrame({"height": [9.0, 30.0]},
    ...                           geometry=[box(10, 10, 30, 30), box(200, 0, 220, 20)])
    >>> exposed_buildings(zones, blocks).loc["AEGL-1"].tolist()
    [1.0, 1200.0, 40.0]
    """
    if not (storey_height > 0 and floor_area_per_person > 0):
        raise ValidationError(
            f"storey_height {storey_height} and floor_area_per_person {floor_area_per_person}: "
            "expected positive metres and square metres"
        )
    frame = _check_buildings(buildings, zones)
    floor_area = _floor_area(frame, storey_height)
    housed = np.ones(len(frame), dtype=bool)
    if residential_uses is not None:
        uses = frame["use"] if "use" in frame else pd.Series([None] * len(frame))
        housed = uses.isin(list(residential_uses)).to_numpy()
    points = frame.geometry.representative_point().to_numpy()
    rows = []
    for level, zone in zip(zones["level"], zones.geometry, strict=True):
        shapely.prepare(zone)
        inside = shapely.contains(zone, points) if zone is not None else np.zeros(len(frame), bool)
        rows.append(
            (
                level,
                float(inside.sum()),
                float(floor_area[inside].sum()),
                float(floor_area[inside & housed].sum() / floor_area_per_person),
            )
        )
    return pd.DataFrame(
        rows, columns=["level", "buildings", "floor_area_m2", "residents"]
    ).set_index("level")


def floor_areas(buildings: gpd.GeoDataFrame, *, storey_height: float = 3.0) -> np.ndarray:
    """Each building's floor area (m²): footprint × ``max(1, round(occupied height / storey))``.

    The same volume rule :func:`exposed_buildings` estimates residents from; trip generation
    (:mod:`citytwin.simulate.city_traffic`) uses it too.

    >>> from shapely.geometry import box
    >>> floor_areas(gpd.GeoDataFrame({"height": [9.0]}, geometry=[box(0, 0, 10, 20)])).tolist()
    [600.0]
    """
    if not storey_height > 0:
        raise ValidationError(f"storey_height {storey_height}: expected positive metres")
    return _floor_area(_check_buildings(buildings, None), storey_height)


def _floor_area(frame: gpd.GeoDataFrame, storey_height: float) -> np.ndarray:
    floors = np.maximum(1.0, np.round(frame["occupied"].to_numpy() / storey_height))
    area: np.ndarray = frame.geometry.area.to_numpy() * floors
    return area


def _cells_polygon(mask: np.ndarray, transform: Affine) -> shapely.Geometry:
    """The union of the grid cells where ``mask`` holds (4-connected shapes, so always valid)."""
    if not mask.any():
        return shapely.Polygon()
    parts = [
        shapely.geometry.shape(geom)
        for geom, _ in features.shapes(
            mask.astype(np.uint8), mask=mask, transform=transform, connectivity=4
        )
    ]
    return shapely.union_all(parts)


def _check_concentration(grid: Grid, concentration: ArrayLike) -> np.ndarray:
    values = np.asarray(concentration, dtype=np.float64)
    if values.shape != grid.shape:
        raise ValidationError(
            f"concentration: shape {values.shape}, expected the grid's (height, width) {grid.shape}"
        )
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(
            f"concentration: {int(bad.sum())} cells are negative or not finite (first at row "
            f"{row}, column {col}: {values[row, col]}); expected g/m³ ≥ 0"
        )
    return values


def _check_buildings(
    buildings: gpd.GeoDataFrame, zones: gpd.GeoDataFrame | None
) -> gpd.GeoDataFrame:
    if "height" not in buildings:
        raise ValidationError(
            f"buildings: no 'height' column (has {', '.join(map(str, buildings.columns))}); "
            "expected heights in metres"
        )
    if zones is not None and None not in (buildings.crs, zones.crs) and buildings.crs != zones.crs:
        buildings = buildings.to_crs(zones.crs)
    height = pd.to_numeric(buildings["height"], errors="coerce").to_numpy(dtype=np.float64)
    base = (
        pd.to_numeric(buildings["min_height"], errors="coerce").fillna(0.0).to_numpy(np.float64)
        if "min_height" in buildings
        else np.zeros(len(buildings))
    )
    bad = ~np.isfinite(height) | (height <= base)
    if bad.any():
        positions = np.flatnonzero(bad)[:5].tolist()
        raise ValidationError(
            f"buildings: {int(bad.sum())} heights missing or not above min_height (rows "
            f"{positions}); expected a height in metres above the building's base"
        )
    frame = buildings.copy()
    frame["occupied"] = height - base
    return frame
