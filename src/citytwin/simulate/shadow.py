"""Building shadows on flat ground: where each building's shadow falls at one instant.

An LoD1 building is a vertical prism: its footprint ``P`` from ``min_height`` (0 when the column
is absent) to ``height``. In sunlight from azimuth ``A`` at elevation ``e`` its shadow on flat
ground is the Minkowski sum of ``P`` with the segment ``[b·u, h·u]`` where
``u = −(sin A, cos A) / tan e`` points away from the sun: the union of the two translated
footprints and one parallelogram swept by each edge of every ring (holes included, so courtyards
are shaded by their own walls). The pieces are built for all buildings at once with shapely; a
point is in shade when any piece covers it (an STRtree query, no union needed). Azimuths are
turned from true north to grid north of the layer's CRS (the meridian convergence, 1–2° in the
Korean belts) and the sun comes from :func:`.sun.solar_position`. Hours of direct sun under
these shadows, and what a proposed building takes from its neighbours, are in :mod:`.sunlight`.

Limits: flat ground, no terrain or trees, LoD1 blocks only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer

from citytwin.errors import ValidationError
from citytwin.simulate.sun import solar_position

logger = logging.getLogger(__name__)

Floats = NDArray[np.float64]
Ints = NDArray[np.intp]
Geometries = NDArray[np.object_]


@dataclass(frozen=True)
class _Blocks:
    """Buildings split into polygon parts, each with the row it belongs to and its heights."""

    parts: Geometries
    owner: Ints
    top: Floats
    bottom: Floats
    keys: pd.Series
    convex: NDArray[np.bool_]


def shadow_polygons(
    buildings: gpd.GeoDataFrame,
    when: pd.Timestamp | datetime,
    *,
    lat: float | None = None,
    lon: float | None = None,
    height_column: str = "height",
) -> gpd.GeoSeries:
    """Each building's shadow on flat ground at one instant (footprint included).

    Parameters
    ----------
    buildings
        Footprints in a projected (metric) CRS with a ``height_column`` in metres (and
        optionally ``min_height``), such as :class:`~citytwin.space.buildings.BuildingLayer`.
    when
        A time-zone-aware instant.
    lat, lon
        Where the sun is computed; default: the centre of the layer.

    Returns
    -------
    GeoSeries aligned with ``buildings``; empty polygons while the sun is below the horizon.

    Examples
    --------
    A 30 m cube at Seoul's winter-solstice noon (sun 29° high) throws a 54 m shadow northwards.

    >>> cube = gpd.GeoDataFrame({"height": [30.0]},
    ...     geometry=[shapely.box(200000, 550000, 200030, 550030)], crs="EPSG:5186")
    >>> noon = pd.Timestamp("2025-12-21 12:30", tz="Asia/Seoul")
    >>> shadow = shadow_polygons(cube, noon, lat=37.57, lon=127.0)
    >>> round(float(shadow.area.iloc[0] / 30 - 30))  # metres of shadow beyond the wall
    54
    """
    _blocks(buildings, height_column, "buildings")
    lat, lon, north = _site(buildings, lat, lon)
    sun = solar_position(pd.DatetimeIndex([pd.Timestamp(when)]), lat, lon).iloc[0]
    if sun["elevation"] <= 0:
        logger.info("shadow_polygons: the sun is below the horizon at %s", when)
    return cast_shadows(
        buildings,
        azimuth=sun["azimuth"] + north,
        elevation=sun["elevation"],
        height_column=height_column,
    )


def cast_shadows(
    buildings: gpd.GeoDataFrame,
    *,
    azimuth: float,
    elevation: float,
    height_column: str = "height",
) -> gpd.GeoSeries:
    """Each building's shadow on flat ground for a sun at ``azimuth`` and ``elevation``.

    The exact Minkowski sum of the footprint and the shadow segment (module docstring).

    Parameters
    ----------
    azimuth
        Where the sun is, degrees clockwise from the grid north of the layer's CRS.
    elevation
        Sun elevation, degrees; at or below 0 the shadows are empty (no direct sun at all).

    Examples
    --------
    A 30 m cube under a sun 45° high in the south: a shadow 30 m long, due north.

    >>> cube = gpd.GeoDataFrame({"height": [30.0]}, geometry=[shapely.box(0, 0, 30, 30)],
    ...                         crs="EPSG:5186")
    >>> shadow = cast_shadows(cube, azimuth=180, elevation=45).iloc[0]
    >>> [round(side) for side in shadow.bounds], round(shadow.area, 6)
    ([0, 0, 30, 60], 1800.0)
    """
    blocks = _blocks(buildings, height_column, "buildings")
    result = gpd.GeoSeries(
        [shapely.Polygon()] * len(buildings), index=buildings.index, crs=buildings.crs
    )
    if not elevation > 0 or len(buildings) == 0:
        return result
    pieces, owner = _pieces(blocks, azimuth, elevation)
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=len(buildings))
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.full((len(buildings), max(int(counts.max()), 1)), None, dtype=object)
    padded[owner[order], rank] = pieces[order]
    result[:] = shapely.union_all(padded, axis=1)
    return result


# --- validation and site --------------------------------------------------------------------------


def _blocks(frame: gpd.GeoDataFrame, height_column: str, name: str) -> _Blocks:
    """Parts, owners and heights of a building frame; every problem reported at once."""
    if not isinstance(frame, gpd.GeoDataFrame):
        raise ValidationError(f"{name}: expected a GeoDataFrame, got {type(frame).__name__}")
    crs = frame.crs
    if crs is None or not CRS.from_user_input(crs).is_projected:
        raise ValidationError(f"{name}: CRS {crs}: expected a projected CRS in metres")
    if height_column not in frame.columns:
        raise ValidationError(f"{name}: no {height_column!r} column of heights in metres")
    keys = _keys(frame)
    top = pd.to_numeric(frame[height_column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bottom = np.zeros_like(top)
    if "min_height" in frame.columns:
        bottom = np.nan_to_num(
            pd.to_numeric(frame["min_height"], errors="coerce").to_numpy(np.float64, na_value=0)
        )
    geometry = frame.geometry.to_numpy()
    polygonal = np.isin(shapely.get_type_id(geometry), (3, 6)) & ~shapely.is_empty(geometry)
    checks = (
        (~(top > 0), f"{height_column} is {{top}}; expected a positive number of metres"),
        (~(bottom < top) & (top > 0), "min_height {bottom} is not below the height {top}"),
        (~polygonal, "footprint is not a non-empty polygon or multipolygon"),
    )
    problems = [
        f"{keys.iloc[row]} (row {row}): " + what.format(top=top[row], bottom=bottom[row])
        for bad, what in checks
        for row in np.flatnonzero(bad)[:5]
    ]
    if problems:
        raise ValidationError(f"{name}: " + "; ".join(problems))
    parts, owner = shapely.get_parts(geometry, return_index=True)
    solid = shapely.get_num_interior_rings(parts) == 0
    convex = solid & (shapely.area(parts) >= (1 - 1e-9) * shapely.area(shapely.convex_hull(parts)))
    return _Blocks(parts, owner, top[owner], np.maximum(bottom, 0.0)[owner], keys, convex)


def _keys(frame: gpd.GeoDataFrame) -> pd.Series:
    values = frame["key"] if "key" in frame.columns else frame.index.to_series()
    return pd.Series(values.astype("str").to_numpy(), dtype="str")


def _site(frame: gpd.GeoDataFrame, lat: float | None, lon: float | None) -> tuple[float, ...]:
    """Latitude, longitude and the grid bearing of true north (degrees) at the layer's centre."""
    minx, miny, maxx, maxy = frame.total_bounds
    x, y = (minx + maxx) / 2, (miny + maxy) / 2
    to_lonlat = Transformer.from_crs(frame.crs, "EPSG:4326", always_xy=True)
    centre_lon, centre_lat = to_lonlat.transform(x, y)
    north_x, north_y = to_lonlat.transform(centre_lon, centre_lat + 0.01, direction="INVERSE")
    north = math.degrees(math.atan2(north_x - x, north_y - y))
    return (
        float(centre_lat if lat is None else lat),
        float(centre_lon if lon is None else lon),
        north,
    )


# --- geometry -------------------------------------------------------------------------------------


def _pieces(blocks: _Blocks, azimuth: float, elevation: float) -> tuple[Geometries, Ints]:
    """Polygons whose union is each building's shadow, and the building row of each.

    A convex part's shadow is the convex hull of its two translated footprints (one polygon);
    any other part gives both translated footprints and one parallelogram per edge.
    """
    away = -np.array([math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))])
    away /= math.tan(math.radians(elevation))
    rings, part_of_ring = shapely.get_rings(blocks.parts, return_index=True)
    coords, ring_of_coord = shapely.get_coordinates(rings, return_index=True)
    part = part_of_ring[ring_of_coord]
    low = coords + np.outer(blocks.bottom[part], away)
    high = coords + np.outer(blocks.top[part], away)
    convex = blocks.convex[part]
    hull_parts, hull_index = np.unique(np.tile(part[convex], 2), return_inverse=True)
    order = np.argsort(hull_index, kind="stable")
    corners = np.concatenate([low[convex], high[convex]])[order]
    hulls = shapely.convex_hull(shapely.multipoints(corners, indices=hull_index[order]))
    other = np.flatnonzero(~blocks.convex)
    footprints = [
        shapely.polygons(shapely.linearrings(shifted, indices=ring_of_coord), indices=part_of_ring)[
            other
        ]
        for shifted in (low, high)
    ]
    edge = np.flatnonzero((ring_of_coord[:-1] == ring_of_coord[1:]) & ~convex[:-1])
    span = coords[edge + 1] - coords[edge]
    swept = np.abs(span[:, 0] * away[1] - span[:, 1] * away[0]) > 1e-9
    edge = edge[swept & (blocks.top > blocks.bottom)[part[edge]]]
    quads = np.stack([low[edge], low[edge + 1], high[edge + 1], high[edge], low[edge]], axis=1)
    pieces = np.concatenate([hulls, *footprints, shapely.polygons(quads)])
    owners = (hull_parts, other, other, part[edge])
    return pieces, blocks.owner[np.concatenate(owners)]
